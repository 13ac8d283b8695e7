"""Four stems at Spleeter's vocal quality: Spleeter takes the vocals, a four-stem
separator splits what is left into drums and bass.

No published four-stem model ships its weights in a package this project
can install (Deezer's 4-stem Spleeter, Demucs and Open-Unmix download theirs
at run time), so the quality profile's four-stem model is a chain of two we
have:

    vocals = Spleeter's vocals
    rest   = the mixture - vocals
    drums, bass = the ``parts`` separator's drums and bass of ``rest``
                  (``dsp-4stem`` live, or a four-stem student's ONNX file)
    other  = rest - drums - bass

The stems sum to the mixture. ``rest`` is not Spleeter's accompaniment:
Spleeter leaves both its stems empty above 11 kHz, and the cymbals' top
octave belongs with the drums.

Streaming: both separators run behind their own framers, on continuous
streams, so the chain is a stateful model to the engine: each call takes
``hop`` new samples and returns the ``hop`` samples that lie both framers'
latencies back. The vocals wait in a short history for the drums and bass.
Both run at 44.1 kHz (the parts separator at any rate).
The chain lives beside ``framer.py`` in this package: composing separators needs
framing, and nothing above it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import Separator, SeparatorError, SeparatorSpec
from .framer import Framer

NAME = "hybrid-4stem"
STEMS = ("vocals", "drums", "bass", "other")
CARD_PATH = Path(__file__).resolve().parent.parent / "models" / "third_party" / f"{NAME}.json"
PARTS = "dsp-4stem"  # the default drums-and-bass separator (measured: docs/eval, the card's metrics)


def load_card() -> dict:
    return json.loads(CARD_PATH.read_text())


def available() -> bool:
    from . import spleeter

    return spleeter.available()


def _parts_separator(parts: str | Path, sample_rate: int, device: str, threads: int | None) -> Separator:
    if str(parts) == "dsp-4stem":
        from .dsp_4stem import Dsp4Stem

        return Dsp4Stem("live", sample_rate=sample_rate)
    from .onnx_backend import OnnxSeparator

    if not Path(parts).exists():
        raise SeparatorError(f"{NAME}: no such four-stem model {str(parts)!r}")
    return OnnxSeparator.from_path(parts, profile="live", device=device, threads=threads)


class HybridFourStem(Separator):
    def __init__(self, profile: str = "offline", threads: int | None = None, device: str = "cpu",
                 parts: str | Path = PARTS):
        from .spleeter import SpleeterSeparator

        self.spleeter = SpleeterSeparator(profile, threads=threads, device=device)
        sp = self.spleeter.spec
        self.parts = _parts_separator(parts, sp.sample_rate, device, threads)
        pt = self.parts.spec
        if tuple(pt.stems) != STEMS:
            raise SeparatorError(f"{NAME}: {parts} separates {list(pt.stems)}, not {list(STEMS)}")
        if pt.sample_rate not in (None, sp.sample_rate):
            raise SeparatorError(f"{NAME}: {parts} runs at {pt.sample_rate} Hz, Spleeter at {sp.sample_rate} Hz")
        if sp.hop % pt.hop:  # each call hands both framers whole hops, so each returns exactly `hop` samples
            raise SeparatorError(f"{NAME}: Spleeter's hop ({sp.hop}) is not a multiple of {parts}'s ({pt.hop})")
        self._vocal_lag = sp.latency  # Spleeter's output lags its input by lookahead + fade
        self._parts_lag = pt.latency
        lookahead = self._vocal_lag + self._parts_lag
        card = {**load_card(), "parts": str(parts)}
        self.spec = SeparatorSpec(NAME, STEMS, window=sp.hop + lookahead, hop=sp.hop, lookahead=lookahead,
                                  sample_rate=sp.sample_rate, channels=2, stateful=True, card=card)
        self.reset(1)

    def reset(self, batch: int) -> None:
        self._vocals_framer = Framer(self.spleeter, channels=2 * batch)  # resets the separators too
        self._parts_framer = Framer(self.parts, channels=2 * batch)
        self._vocals = np.zeros((batch, 2, self._parts_lag + self.spec.hop), np.float32)

    def separate(self, window: np.ndarray) -> np.ndarray:
        B, C, W = window.shape
        if B != self._vocals.shape[0]:
            self.reset(B)
        hop = self.spec.hop
        vocals = self._vocals_framer.push(window[..., W - hop:].reshape(B * C, hop))[0].reshape(B, C, hop)
        end = W - self._vocal_lag  # the input samples these vocals belong to
        rest = window[..., end - hop:end] - vocals
        parts = self._parts_framer.push(rest.reshape(B * C, hop)).reshape(len(STEMS), B, C, hop)
        self._vocals = np.concatenate([self._vocals[..., hop:], vocals], axis=-1)
        out = np.empty((B, len(STEMS), C, hop), np.float32)
        out[:, 0] = self._vocals[..., :hop]  # lined up with the parts: `parts_lag` older
        out[:, 1] = parts[1]
        out[:, 2] = parts[2]
        out[:, 3] = self.segment_of(window) - out[:, 0] - out[:, 1] - out[:, 2]
        return out
