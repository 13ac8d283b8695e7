"""Run an exported model with ONNX Runtime, framed by its card.

Graph convention (written by ``stemstream export``): inputs ``audio`` (batch,
channels, window) followed by the state tensors named in the card; outputs
``stems`` (batch, stems, channels, hop + fade) — or the whole window when the
card says ``output_span: "window"`` — followed by the new states, in the same
order. State tensors have the batch on axis 0 and are zeros after ``reset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Separator, SeparatorError
from .card import load_card, spec_from_card


class OnnxSeparator(Separator):
    def __init__(self, path: str | Path, card: dict, profile: str = "balanced", device: str = "cpu",
                 threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise SeparatorError(f"{path}: running ONNX models needs onnxruntime (pip install onnxruntime)") from e
        self.path = Path(path)
        self.spec = spec_from_card(card, profile)
        self.profile = profile
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise SeparatorError(
                    f"{self.path.name}: device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider "
                    f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use "
                    f"device 'cpu'")
            providers = ["CUDAExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise SeparatorError(f"{self.path.name}: unknown device {device!r} (cpu or cuda)")
        opts = ort.SessionOptions()
        # One thread unless asked: measured here, a second intra-op thread made the
        # teacher slower (RTF 0.37 vs 0.28) and, on a busy machine, its spinning
        # pool stalled single calls for seconds in the live engine.
        threads = 1 if threads is None else threads
        opts.intra_op_num_threads = int(threads)
        if threads != 1:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad bytes
            raise SeparatorError(f"{self.path}: onnxruntime cannot load this model ({type(e).__name__}: "
                                 f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no detail'})") from None
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise SeparatorError(f"{self.path.name}: the CUDA provider failed to initialise; not falling back to CPU")
        self._check_graph(card)
        self._audio_name = self._inputs[0]
        self._state_shapes = [tuple(st["shape"]) for st in card.get("state", [])]
        self._cut = card.get("output_span", "segment") == "window"
        self.reset(1)

    def _check_graph(self, card: dict) -> None:
        ins = [i.name for i in self.session.get_inputs()]
        outs = [o.name for o in self.session.get_outputs()]
        states = [st["name"] for st in card.get("state", [])]
        want_in = card.get("inputs") or (["audio"] + states)
        want_out = card.get("outputs") or (["stems"] + [s + "_out" for s in states])
        if ins != list(want_in) or outs[: len(want_out)] != list(want_out):
            raise SeparatorError(
                f"{self.path}: model does not match its card: graph inputs {ins} / outputs {outs}, card expects "
                f"{list(want_in)} / {list(want_out)}")
        for meta, st in zip(self.session.get_inputs()[1:], card.get("state", [])):
            dims = list(meta.shape[1:])
            if any(isinstance(d, int) and d != s for d, s in zip(dims, st["shape"])) or len(dims) != len(st["shape"]):
                raise SeparatorError(
                    f"{self.path}: state {st['name']!r} is {dims} in the model but {st['shape']} in the card")
        a = self.session.get_inputs()[0].shape
        ch = card["channels"]
        if len(a) != 3 or (ch and isinstance(a[1], int) and a[1] != ch):
            raise SeparatorError(f"{self.path}: audio input shape {a} does not fit channels={ch} in the card")
        if isinstance(a[2], int) and a[2] != self.spec.window:
            raise SeparatorError(
                f"{self.path}: model takes windows of {a[2]} samples but the card's framing says {self.spec.window}"
                f" (profile {self.profile})")
        self._inputs, self._outputs = ins, outs[: len(want_out)]

    @classmethod
    def from_path(cls, path: str | Path, profile: str = "balanced", device: str = "cpu",
                  threads: int | None = None) -> "OnnxSeparator":
        card = load_card(path, expected_format="onnx")
        return cls(path, card, profile=profile, device=device, threads=threads)

    def reset(self, batch: int) -> None:
        self._batch = batch
        self._states = [np.zeros((batch,) + shp, np.float32) for shp in self._state_shapes]
        self._feed = {name: st for name, st in zip(self._inputs[1:], self._states)}

    def separate(self, window: np.ndarray) -> np.ndarray:
        if window.dtype != np.float32 or not window.flags.c_contiguous:
            window = np.ascontiguousarray(window, dtype=np.float32)
        if window.shape[0] != self._batch and self._states:
            self.reset(window.shape[0])
        feed = self._feed
        feed[self._audio_name] = window
        res = self.session.run(self._outputs, feed)
        if self._states:
            for name, new in zip(self._inputs[1:], res[1:]):
                feed[name] = new
        out = res[0]
        if self._cut:
            out = self.segment_of(out)
        return out if out.flags.c_contiguous else np.ascontiguousarray(out)

    def describe(self) -> str:
        return super().describe() + f"; onnxruntime {self.session.get_providers()[0]}"
