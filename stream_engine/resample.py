"""Streaming sample-rate conversion with soxr, on (channels, n) arrays.

soxr keeps its output aligned with its input (the filter delay is removed);
in streaming mode it holds samples back instead, more for the better
qualities. The live profile uses the quick 'QQ' filter (a few samples held
back); the others use 'HQ' (hundreds of samples, bursty).
"""

from __future__ import annotations

import numpy as np


class StreamResampler:
    def __init__(self, in_rate: int, out_rate: int, channels: int, quality: str = "HQ"):
        import soxr  # a compiled dependency; kept out of module import time

        self.in_rate, self.out_rate, self.channels, self.quality = in_rate, out_rate, channels, quality
        self._soxr = soxr
        self.reset()

    def reset(self) -> None:
        self._stream = self._soxr.ResampleStream(
            self.in_rate, self.out_rate, self.channels, dtype="float32", quality=self.quality
        )

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        frames = np.ascontiguousarray(x.T, dtype=np.float32)
        return np.ascontiguousarray(self._stream.resample_chunk(frames, last=last).T)

    def flush(self) -> np.ndarray:
        return self.process(np.zeros((self.channels, 0), np.float32), last=True)
