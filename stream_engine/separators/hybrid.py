"""Four stems at Spleeter's vocal quality: Spleeter's vocals, the four-stem student's drums and bass.

No published four-stem model ships its weights in a package this project
can install (Deezer's 4-stem Spleeter, Demucs and Open-Unmix download theirs
at run time), so the quality profile's four-stem model is built from the two
we have:

    vocals = Spleeter's vocals
    drums  = the four-stem student's drums
    bass   = the four-stem student's bass
    other  = the mixture - vocals - drums - bass

The stems sum to the mixture. ``other`` is not Spleeter's accompaniment less
drums and bass: Spleeter leaves both its stems empty above 11 kHz, so that
would drop the cymbals' top octave the student's drums hold. The framing is
Spleeter's (its profile picks window, hop and lookahead); the student is
stateful and streams every new sample through its own framer, and its
estimates wait in a short history until Spleeter's segment, which lies
``lookahead`` samples back, catches up with them. Both run at 44.1 kHz.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..framer import Framer
from .base import Separator, SeparatorError, SeparatorSpec

NAME = "hybrid-4stem"
STEMS = ("vocals", "drums", "bass", "other")
CARD_PATH = Path(__file__).resolve().parent.parent / "models" / "third_party" / f"{NAME}.json"
STUDENT = "stemstream-4stem"  # the bundled four-stem student whose drums and bass it uses


def load_card() -> dict:
    return json.loads(CARD_PATH.read_text())


def student_path() -> Path | None:
    """The bundled four-stem student's ONNX file, if this install has it."""
    from .registry import bundled_models

    card = bundled_models().get(STUDENT)
    return Path(card["path"]) if card else None


def available() -> bool:
    from . import spleeter

    return spleeter.available() and student_path() is not None


class HybridFourStem(Separator):
    def __init__(self, profile: str = "offline", threads: int | None = None, device: str = "cpu",
                 student: str | Path | None = None):
        from .onnx_backend import OnnxSeparator
        from .spleeter import SpleeterSeparator

        path = Path(student) if student else student_path()
        if path is None or not path.exists():
            raise SeparatorError(f"{NAME}: the four-stem student {student or STUDENT!r} is not installed")
        self.spleeter = SpleeterSeparator(profile, threads=threads, device=device)
        self.student = OnnxSeparator.from_path(path, profile="live", device=device, threads=threads)
        sp, st = self.spleeter.spec, self.student.spec
        if tuple(st.stems) != STEMS:
            raise SeparatorError(f"{NAME}: {path} separates {list(st.stems)}, not {list(STEMS)}")
        if st.sample_rate != sp.sample_rate or st.channels != 2:
            raise SeparatorError(f"{NAME}: {path} must be a stereo model at {sp.sample_rate} Hz "
                                 f"(it is {st.channels} channels at {st.sample_rate} Hz)")
        if sp.hop % st.hop:  # each call must hand the student whole hops, or its output would drift
            raise SeparatorError(f"{NAME}: Spleeter's hop ({sp.hop}) is not a multiple of the student's ({st.hop})")
        if st.latency > sp.lookahead:
            raise SeparatorError(f"{NAME}: the student's latency ({st.latency}) exceeds Spleeter's lookahead")
        card = {**load_card(), "student": str(path)}
        self.spec = SeparatorSpec(NAME, STEMS, window=sp.window, hop=sp.hop, lookahead=sp.lookahead, fade=sp.fade,
                                  sample_rate=sp.sample_rate, channels=2, card=card)
        # the segment ends `lookahead` input samples back; the student's output lags its input by its latency
        self._back = sp.lookahead - st.latency
        self._history_len = self._back + sp.segment
        self.reset(1)

    def reset(self, batch: int) -> None:
        self.spleeter.reset(batch)
        self._framer = Framer(self.student, channels=2 * batch)  # resets the student's state too
        self._history = np.zeros((batch, len(STEMS), 2, self._history_len), np.float32)

    def separate(self, window: np.ndarray) -> np.ndarray:
        B, C, _ = window.shape
        if B != self._history.shape[0]:
            self.reset(B)
        vocals_acc = self.spleeter.separate(window)  # (B, 2, 2, segment)
        newest = window[..., -self.spec.hop:].reshape(B * C, -1)
        est = self._framer.push(newest)  # (4, B*C, hop), lagging by the student's latency
        est = est.reshape(len(STEMS), B, C, -1).transpose(1, 0, 2, 3)
        self._history = np.concatenate([self._history[..., est.shape[-1]:], est], axis=-1)
        end = self._history_len - self._back
        student = self._history[..., end - self.spec.segment:end]
        out = np.empty((B, len(STEMS), C, self.spec.segment), np.float32)
        out[:, 0] = vocals_acc[:, 0]
        out[:, 1] = student[:, 1]
        out[:, 2] = student[:, 2]
        out[:, 3] = self.segment_of(window) - out[:, 0] - out[:, 1] - out[:, 2]
        return out
