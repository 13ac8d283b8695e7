"""Taps: what the UI copies from the audio side (spectrogram input, stems) without locks."""

from __future__ import annotations

import numpy as np


class TapRing:
    """Overwriting ring the worker writes and the UI copies from, without locks.

    The UI may read a block the worker is overwriting: a torn frame in a
    spectrogram column, never a wait.
    """

    def __init__(self, channels: int, capacity: int = 1 << 15):
        self.buffer = np.zeros((capacity, channels), np.float32)
        self.capacity = capacity
        self.written = 0

    def write(self, frames: np.ndarray) -> None:
        n = len(frames)
        if n >= self.capacity:
            frames, n = frames[-self.capacity:], self.capacity
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self.buffer[start:start + first] = frames[:first]
        if first < n:
            self.buffer[: n - first] = frames[first:]
        self.written += n

    def latest(self, out: np.ndarray) -> None:
        n = len(out)
        start = (self.written - n) % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self.buffer[start:start + first]
        if first < n:
            out[first:] = self.buffer[: n - first]


class StemTap:
    """Pipeline stage (latency 0) that keeps a mono copy of each stem for the UI."""

    latency = 0

    def __init__(self, stems, capacity: int = 1 << 15):
        self.stems = list(stems)
        self.ring = TapRing(len(self.stems), capacity)

    def reset(self) -> None:
        pass

    def process(self, stems: np.ndarray, params=None) -> np.ndarray:
        if stems.shape[-1]:
            self.ring.write(stems.mean(axis=1).T)
        return stems
