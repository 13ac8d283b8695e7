"""Centre-channel extraction: no weights, stereo only.

Lead vocals are usually mixed to the centre: equal in both channels and in
phase. Per STFT bin, the inter-channel coherence

    psi = 2 Re(S_LR) / (S_LL + S_RR)      (1 = centred, <= 0 = wide / opposite)

with S the cross and auto spectra smoothed over time, drives a soft mask on
the mid signal (L + R) / 2, restricted to the vocal band. The band starts at
300 Hz because bass and kick drum are usually centred too. Threshold,
smoothing and band were picked on the two musdb excerpts in ../shared/data
(the only stereo stems at hand), so scores on those are optimistic. The accompaniment
is what is left, so vocals + accompaniment == input (delayed) exactly.

It streams: each call takes the latest ``n_fft`` samples, adds one frame to
an overlap-add buffer and returns the ``hop`` samples that are now complete,
so its latency is ``n_fft - hop`` (lookahead) with no crossfade. On a mono
stream both "channels" are the same signal and everything counts as centre:
vocals = the input's vocal band.
"""

from __future__ import annotations

import numpy as np

from ..profiles import pick_framing
from .base import Separator, SeparatorSpec

# profile -> (n_fft, hop)
FRAMING = {"live": (512, 128), "balanced": (2048, 512), "quality": (4096, 1024)}


class CentreMask:
    """The coherence mask on the mid signal, streaming (its smoothed spectra are its state).

    Shared by dsp-center and dsp-4stem (which applies it to its harmonic rest).
    """

    def __init__(self, n_fft: int, hop: int, band_hz=(300.0, 12000.0), threshold: float = 0.7,
                 smoothing_ms: float = 40.0):
        self.n_fft, self.hop = n_fft, hop
        self.band_hz, self.threshold, self.smoothing_ms = band_hz, threshold, smoothing_ms

    def configure_rate(self, sample_rate: int) -> None:
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        lo, hi = self.band_hz
        # soft band edges: an octave-wide fade below lo and above hi
        below = np.clip(np.log2(np.maximum(freqs, 1.0) / (lo / 2)), 0.0, 1.0) if lo > 0 else np.ones_like(freqs)
        above = np.clip(1.0 - np.log2(np.maximum(freqs, 1.0) / hi), 0.0, 1.0)
        self.band = (below * above).astype(np.float32)
        frame_ms = 1000.0 * self.hop / sample_rate
        self.alpha = float(np.exp(-frame_ms / self.smoothing_ms))

    def reset(self, batch: int) -> None:
        bins = self.n_fft // 2 + 1
        self._s_lr = np.zeros((batch, bins), np.float32)
        self._s_ll = np.zeros((batch, bins), np.float32)
        self._s_rr = np.zeros((batch, bins), np.float32)

    def mask(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """One frame's (batch, bins) spectra of both channels -> (batch, bins) mask in 0..1."""
        a = self.alpha
        self._s_lr = a * self._s_lr + (1 - a) * (left * np.conj(right)).real
        self._s_ll = a * self._s_ll + (1 - a) * np.abs(left) ** 2
        self._s_rr = a * self._s_rr + (1 - a) * np.abs(right) ** 2
        psi = 2.0 * self._s_lr / (self._s_ll + self._s_rr + 1e-12)
        return np.clip((psi - self.threshold) / (1.0 - self.threshold), 0.0, 1.0) ** 2 * self.band


class DspCenter(Separator):
    def __init__(
        self,
        profile: str = "balanced",
        sample_rate: int = 48000,
        threshold: float = 0.7,
        smoothing_ms: float = 40.0,
        band_hz: tuple[float, float] = (300.0, 12000.0),
    ):
        n_fft, hop = pick_framing(FRAMING, profile)
        self.n_fft, self.hop = n_fft, hop
        self.spec = SeparatorSpec(
            name="dsp-center",
            stems=("vocals", "accompaniment"),
            window=n_fft,
            hop=hop,
            lookahead=n_fft - hop,
            channels=2,
            stateful=True,
        )
        self.centre = CentreMask(n_fft, hop, band_hz, threshold, smoothing_ms)
        self.window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
        overlap_sum = sum(np.roll(self.window**2, k * hop) for k in range(n_fft // hop))
        self.synthesis = (self.window / overlap_sum).astype(np.float32)  # OLA sums to one
        self.configure_rate(sample_rate)
        self.reset(1)

    def configure_rate(self, sample_rate: int) -> None:
        """The engine calls this with the stream rate (the model runs at any rate)."""
        self.centre.configure_rate(sample_rate)

    def reset(self, batch: int) -> None:
        self._ola = np.zeros((batch, self.n_fft), np.float32)  # vocal (mono centre) overlap-add
        self.centre.reset(batch)

    def separate(self, window: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(window * self.window, axis=-1)  # (batch, 2, bins)
        left, right = spec[:, 0], spec[:, 1]
        mask = self.centre.mask(left, right)
        centre = np.fft.irfft(mask * 0.5 * (left + right), n=self.n_fft, axis=-1).astype(np.float32)
        self._ola += centre * self.synthesis
        vocals = self._ola[:, : self.hop].copy()
        self._ola[:, : -self.hop] = self._ola[:, self.hop :]
        self._ola[:, -self.hop :] = 0.0
        dry = window[:, :, : self.hop]  # the input samples the vocals belong to
        out = np.empty((window.shape[0], 2, 2, self.hop), np.float32)
        out[:, 0] = vocals[:, None, :]
        out[:, 1] = dry - out[:, 0]
        return out
