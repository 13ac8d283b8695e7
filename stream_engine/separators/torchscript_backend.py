"""Run an exported TorchScript model, framed by its card (torch imported here only).

``forward(audio, *states) -> (stems, *new_states)``; a stateless model may
return the stems tensor alone. Conventions as in ``onnx_backend``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Separator, SeparatorError
from .card import load_card, spec_from_card


class TorchScriptSeparator(Separator):
    def __init__(self, path: str | Path, card: dict, profile: str = "balanced", device: str = "cpu",
                 threads: int | None = None):
        try:
            import torch
        except ImportError as e:  # pragma: no cover
            raise SeparatorError(f"{path}: running TorchScript models needs torch") from e
        self._torch = torch
        self.path = Path(path)
        self.spec = spec_from_card(card, profile)
        if device == "cuda" and not torch.cuda.is_available():
            raise SeparatorError(f"{self.path.name}: device 'cuda' asked for, but torch sees no CUDA device")
        if device not in ("cpu", "cuda"):
            raise SeparatorError(f"{self.path.name}: unknown device {device!r} (cpu or cuda)")
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(int(threads))
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device)
        except Exception as e:
            raise SeparatorError(f"{self.path}: not a loadable TorchScript model ({type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'})") from None
        self.module.eval()
        self._state_shapes = [tuple(st["shape"]) for st in card.get("state", [])]
        self._cut = card.get("output_span", "segment") == "window"
        self.reset(1)

    @classmethod
    def from_path(cls, path: str | Path, profile: str = "balanced", device: str = "cpu",
                  threads: int | None = None) -> "TorchScriptSeparator":
        card = load_card(path, expected_format="torchscript")
        return cls(path, card, profile=profile, device=device, threads=threads)

    def reset(self, batch: int) -> None:
        t = self._torch
        self._batch = batch
        self._states = [t.zeros((batch,) + s, dtype=t.float32, device=self.device) for s in self._state_shapes]

    def separate(self, window: np.ndarray) -> np.ndarray:
        t = self._torch
        if window.shape[0] != self._batch and self._states:
            self.reset(window.shape[0])
        x = t.from_numpy(np.ascontiguousarray(window, dtype=np.float32)).to(self.device)
        with t.inference_mode():
            try:
                res = self.module(x, *self._states)
            except Exception as e:
                raise SeparatorError(f"{self.path.name}: model call failed ({type(e).__name__}: "
                                     f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''})") from None
        if isinstance(res, (tuple, list)):
            out, self._states = res[0], list(res[1:])
        else:
            out = res
        out = out.cpu().numpy()
        if self._cut:
            out = self.segment_of(out)
        return np.ascontiguousarray(out, dtype=np.float32)
