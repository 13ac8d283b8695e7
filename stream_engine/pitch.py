"""Key change for karaoke: a streaming pitch shifter as a pipeline stage.

``KeyShift`` shifts every stem except ``"vocals"`` by ``Params.key`` semitones
(-12..12) and delays the vocals by the same constant latency so the stems stay
aligned.

The shifter is a peak-locked phase vocoder (Laroche & Dolson, "New
phase-vocoder techniques for pitch-shifting", 1999), numpy only, no extra
dependency. Each analysis frame (periodic Hann, ``fft_size`` samples, ``hop``
apart, 8x overlap) is transformed; spectral peaks are found, each peak's
region of bins is moved as a whole by the peak's frequency offset (rounded to
bins), and the region's phase rotation accumulates the exact offset
``f_peak * (ratio - 1)``, so the lobe keeps its shape (no level loss) and the
frequency is exact. The rotation state carries across frames, so a key change
mid-stream keeps phase continuity. Frames are overlap-added with
window-square normalisation.

Latency is exactly ``fft_size`` samples (2048 at 48 kHz = 42.7 ms): the newest
complete output sample lags the input by ``fft_size - hop``, and ``hop``
samples of output are queued so that any block size is served with no gap.

At key 0 the shifted stems are the input delayed by the latency, bit for bit;
moving to or from 0 crossfades between the delayed input and the vocoder over
one block (the vocoder always runs, so its state is warm).

Why not a library: pedalboard's PitchShift streams silence; python-stretch
0.3.1 (Signalsmith Stretch) resets its state on every ``process`` call (the
output of a block does not depend on earlier blocks), so it cannot stream;
pylibrb 0.1.2 (Rubber Band, GPL) in real-time mode, in a quick trial here with
256-frame blocks, queued output irregularly (up to 7879 samples behind at +12)
and put a 440 Hz tone 1.0-2.7% off at -12/-5/+12 (this may have been our
usage; not pursued, and its GPL licence would bind the project).
"""

from __future__ import annotations

import numpy as np

from .params import KEY_RANGE

VOCALS = "vocals"


def _fft_size_for(sample_rate: int, max_latency_s: float = 0.050) -> int:
    """Largest power of two that keeps the latency at or under ``max_latency_s``
    (2048 at 44.1 and 48 kHz, 4096 at 96 kHz)."""
    n = 256
    while n * 2 <= max_latency_s * sample_rate:
        n *= 2
    return n


class PhaseVocoderShifter:
    """Streaming pitch shifter for ``rows`` independent signals ([rows, n] blocks)."""

    def __init__(self, rows: int, fft_size: int = 2048, overlap: int = 8):
        self.rows = rows
        self.N = int(fft_size)
        self.H = self.N // overlap
        self.latency = self.N
        N, H = self.N, self.H
        self.nb = N // 2 + 1
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N)).astype(np.float64)
        wsum = np.zeros(N)
        for k in range(0, N, H):
            wsum += np.roll(self.window ** 2, k)
        self.norm = 1.0 / wsum.mean()  # constant for periodic Hann at overlap >= 4
        self.omega = 2 * np.pi * H * np.arange(self.nb) / N  # expected phase advance per hop
        self._bins = np.arange(self.nb)
        self.ratio = 1.0
        self.reset()

    def reset(self) -> None:
        self.inbuf = np.zeros((self.rows, self.N))
        self.fill = 0  # new samples at the end of inbuf since the last frame
        self.acc = np.zeros((self.rows, self.N))
        self.last_phase = np.zeros((self.rows, self.nb))
        self.rot = np.zeros((self.rows, self.nb))  # per-bin phase rotation of its region
        # output queue: hop samples of silence make up for frame granularity
        self.out = np.zeros((self.rows, self.H))

    def _frame(self) -> np.ndarray:
        N, H = self.N, self.H
        spec = np.fft.rfft(self.inbuf * self.window, axis=-1)
        phase = np.angle(spec)
        dphi = phase - self.last_phase - self.omega
        self.last_phase = phase
        dphi -= 2 * np.pi * np.round(dphi / (2 * np.pi))
        true_bin = self._bins + dphi * N / (2 * np.pi * H)  # true frequency, in bins
        r = self.ratio
        if r == 1.0:
            # identity: the analysis spectrum, rotations kept at their values
            out = spec * np.exp(1j * self.rot)
        else:
            mag = np.abs(spec)
            out = np.zeros_like(spec)
            for row in range(self.rows):
                out[row] = self._shift_row(spec[row], mag[row], true_bin[row], row, r)
        frame = np.fft.irfft(out, n=N, axis=-1)
        return frame * self.window * self.norm

    def _shift_row(self, X, mag, true_bin, row, r):
        """Peak-locked shift (Laroche & Dolson): each peak's region of bins moves
        as a whole, keeping the lobe's shape and relative phases; the region's
        phase rotation accumulates the exact frequency offset of its peak."""
        nb = self.nb
        m = mag
        peak = np.zeros(nb, bool)
        peak[2:-2] = (m[2:-2] > m[1:-3]) & (m[2:-2] >= m[3:-1]) & (m[2:-2] > m[:-4]) & (m[2:-2] >= m[4:])
        peak &= m > (m.max() * 1e-5 + 1e-12)
        peaks = np.flatnonzero(peak)
        rot_prev = self.rot[row]
        if peaks.size == 0:
            self.rot[row] = 0.0
            return np.zeros(nb, complex)
        mids = (peaks[:-1] + peaks[1:]) // 2 + 1  # first bin of each next region
        region = np.searchsorted(mids, self._bins, side="right")
        f_p = true_bin[peaks]
        d_p = np.round(f_p * (r - 1.0)).astype(np.int64)
        rot_p = rot_prev[peaks] + 2 * np.pi * self.H * f_p * (r - 1.0) / self.N
        rot_p -= 2 * np.pi * np.round(rot_p / (2 * np.pi))
        self.rot[row] = rot_p[region]
        target = self._bins + d_p[region]
        ok = (target >= 0) & (target < nb)
        vals = X[ok] * np.exp(1j * rot_p[region[ok]])
        t = target[ok]
        return (np.bincount(t, weights=vals.real, minlength=nb)
                + 1j * np.bincount(t, weights=vals.imag, minlength=nb))

    def process(self, x: np.ndarray) -> np.ndarray:
        """[rows, n] -> [rows, n], delayed by ``latency`` samples."""
        n = x.shape[-1]
        H = self.H
        pos = 0
        produced = [self.out]
        while pos < n:
            take = min(H - self.fill, n - pos)
            self.inbuf[:, :-take] = self.inbuf[:, take:]
            self.inbuf[:, -take:] = x[:, pos:pos + take]
            self.fill += take
            pos += take
            if self.fill == H:
                self.fill = 0
                self.acc[:, :-H] = self.acc[:, H:]
                self.acc[:, -H:] = 0.0
                self.acc += self._frame()
                produced.append(self.acc[:, :H].copy())
        q = np.concatenate(produced, axis=-1) if len(produced) > 1 else self.out
        self.out = q[:, n:]
        return q[:, :n]


class KeyShift:
    """Stage: shift all stems but the vocals by ``Params.key`` semitones.

    ``latency`` (samples) is constant and applies to every stem.
    """

    def __init__(self, stem_names, sample_rate: int, channels: int = 2, fft_size: int | None = None):
        self.stem_names = list(stem_names)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.shifted = [i for i, s in enumerate(self.stem_names) if s != VOCALS]
        self.kept = [i for i, s in enumerate(self.stem_names) if s == VOCALS]
        n = fft_size or _fft_size_for(self.sample_rate)
        self._pv = PhaseVocoderShifter(len(self.shifted) * self.channels, n)
        self.latency = self._pv.latency
        self.reset()

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.sample_rate

    def reset(self) -> None:
        self._pv.reset()
        self._delay = np.zeros((len(self.stem_names), self.channels, self.latency), np.float32)
        self.key = 0
        self._wet = 0.0  # 0: delayed input, 1: vocoder

    def set_key(self, semitones) -> None:
        k = int(round(min(max(float(semitones), KEY_RANGE[0]), KEY_RANGE[1])))
        self.key = k
        self._pv.ratio = 2.0 ** (k / 12.0)

    def process(self, stems: np.ndarray, params=None) -> np.ndarray:
        n = stems.shape[-1]
        if params is not None and params.key != self.key:
            self.set_key(params.key)
        if n == 0:
            return stems
        x = stems.astype(np.float32, copy=False)
        # constant delay for every stem (the dry path)
        joined = np.concatenate([self._delay, x], axis=-1)
        out = joined[..., :n].copy()
        self._delay = joined[..., n:].copy()
        if not self.shifted:
            return out
        rows = x[self.shifted].reshape(len(self.shifted) * self.channels, n)
        wet = self._pv.process(rows.astype(np.float64)).reshape(len(self.shifted), self.channels, n)
        target = 0.0 if self.key == 0 else 1.0
        if target != self._wet or target == 1.0:
            if target == self._wet:
                out[self.shifted] = wet
            else:
                ramp = np.linspace(self._wet, target, n, endpoint=False, dtype=np.float64) if n > 1 else np.array([target])
                dry = out[self.shifted]
                out[self.shifted] = dry * (1.0 - ramp) + wet * ramp
                self._wet = target
        return out


def bench_key_shift(sample_rate: int = 48000, block: int = 256, stems=("vocals", "accompaniment"),
                    channels: int = 2, key: int = 3, seconds: float = 5.0) -> dict:
    """Print and return the per-block cost of KeyShift."""
    import time

    from .params import Params

    ks = KeyShift(list(stems), sample_rate, channels)
    params = Params.for_stems(stems).with_(key=key)
    rng = np.random.default_rng(0)
    n_blocks = int(seconds * sample_rate / block)
    x = (0.2 * rng.standard_normal((len(stems), channels, block))).astype(np.float32)
    times = []
    for _ in range(n_blocks):
        t0 = time.perf_counter()
        ks.process(x, params)
        times.append(time.perf_counter() - t0)
    t = np.array(times[10:]) * 1e3
    budget = block / sample_rate * 1e3
    res = {"sample_rate": sample_rate, "block": block, "stems": list(stems), "channels": channels, "key": key,
           "latency_samples": ks.latency, "latency_ms": ks.latency_ms,
           "median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
           "budget_ms": budget, "median_pct_of_budget": float(100 * np.median(t) / budget)}
    print(f"key shift bench: {key:+d} st on {len(ks.shifted)} of {len(stems)} stems x {channels} ch at "
          f"{sample_rate} Hz / {block} frames: median {res['median_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms, "
          f"max {res['max_ms']:.3f} ms per block ({res['median_pct_of_budget']:.1f}% of {budget:.2f} ms); "
          f"latency {ks.latency} samples = {ks.latency_ms:.1f} ms")
    return res


__all__ = ["KeyShift", "PhaseVocoderShifter", "bench_key_shift"]
