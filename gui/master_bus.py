"""The master bus: master fader, safety limiter and main meter, in the audio callback."""

from __future__ import annotations

import numpy as np

LIMITER_CEILING_DB = -1.0  # the safety limiter's ceiling: headroom for a stream's lossy encoder
LIMITER_RELEASE_DB_PER_S = 20.0


class MasterBus:
    """The master fader and safety limiter on the main output's channels, and the main meter.

    Runs in the audio callback after the engine (music and mic mixed): no allocation, no locks;
    numpy with ``out=`` on preallocated buffers. The limiter is a block-wise peak limiter: a block
    that would exceed the ceiling is ramped down to the gain that fits it (then hard-clipped at the
    ceiling, so nothing above it ever leaves, even within the ramp); the gain recovers at 20 dB/s.
    It does nothing to audio below the ceiling (gain 1), which is why it is on by default: mic plus
    music clipped at 0 dBFS on a live stream is worse than a limiter that never acts on sane levels.
    """

    def __init__(self, channels, rate: int, max_block: int = 8192, limiter: bool = True, gain: float = 1.0):
        self.channels = list(channels)  # replaced whole on a routing change
        self.rate = rate
        self.gain = float(gain)  # the master fader (linear, 0..2): set from the UI
        self.limiter = bool(limiter)
        self.ceiling = 10.0 ** (LIMITER_CEILING_DB / 20.0)
        self.limit_gain = 1.0  # the limiter's current gain
        self.reduction = 1.0  # the smallest limiter gain since the UI last looked
        self.peak = 0.0  # what goes out on main, held until the UI reads it
        self.square = 0.0
        self.count = 0
        self._abs = np.zeros(max_block, np.float32)
        self._ramp = np.zeros(max_block, np.float32)
        self._index = np.arange(max_block, dtype=np.float32)

    def process(self, out: np.ndarray, frames: int) -> None:
        channels = self.channels  # one read of each reference
        if not channels:
            return
        gain = self.gain
        buf = self._abs[:frames]
        peak = 0.0
        for c in channels:
            column = out[:frames, c]
            if gain != 1.0:
                np.multiply(column, gain, out=column)
            np.abs(column, out=buf)
            peak = max(peak, float(buf.max()))
        if self.limiter:
            target = 1.0 if peak <= self.ceiling else self.ceiling / peak
            current = self.limit_gain
            recovered = current * 10.0 ** (LIMITER_RELEASE_DB_PER_S / 20.0 * frames / self.rate)
            new = target if target < current else min(target, recovered, 1.0)
            if new != 1.0 or current != 1.0:
                ramp = self._ramp[:frames]
                np.multiply(self._index[:frames], (new - current) / frames, out=ramp)
                np.add(ramp, current, out=ramp)
                for c in channels:
                    column = out[:frames, c]
                    np.multiply(column, ramp, out=column)
                    np.clip(column, -self.ceiling, self.ceiling, out=column)
            self.limit_gain = new
            self.reduction = min(self.reduction, new)
        for c in channels:  # the meter: what leaves on main
            column = out[:frames, c]
            np.abs(column, out=buf)
            self.peak = max(self.peak, float(buf.max()))
            np.multiply(column, column, out=buf)
            self.square += float(buf.sum())
        self.count += frames * len(channels)

    def take_levels(self) -> tuple[float, float, float]:
        """Linear (peak, rms, smallest limiter gain) since the last call."""
        peak, square, count, reduction = self.peak, self.square, self.count, self.reduction
        self.peak, self.square, self.count, self.reduction = 0.0, 0.0, 0, self.limit_gain
        return peak, (square / count) ** 0.5 if count else 0.0, reduction
