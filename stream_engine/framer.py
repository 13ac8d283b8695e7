"""Cut a stream into overlapping windows, separate, crossfade the segments.

Works at the separator's sample rate on ``(channels, samples)`` arrays. Each
call to the separator sees the latest ``window`` samples and returns one
segment of ``hop + fade`` samples (see ``separators/base.py``). Consecutive
segments overlap by ``fade`` samples and are weighted by a rising and a
falling half that sum to one, so a separator that returns its input
reproduces it exactly.

Output sample ``q`` belongs to input sample ``q - latency`` (latency =
``lookahead + fade``). With ``trim=True`` (offline) the first ``latency``
output samples are dropped and ``flush`` pads the end, so the output lines up
with the input sample for sample.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .separators.base import Separator, SeparatorError, group_channels


def crossfade_halves(fade: int) -> tuple[np.ndarray, np.ndarray]:
    """Rising and falling weights of length ``fade`` with rise + fall == 1."""
    if fade == 0:
        empty = np.zeros(0, np.float32)
        return empty, empty
    phase = (np.arange(fade, dtype=np.float64) + 0.5) / fade
    rise = np.sin(0.5 * np.pi * phase) ** 2
    rise = rise.astype(np.float32)
    return rise, (np.float32(1.0) - rise)


class Framer:
    def __init__(
        self,
        separator: Separator,
        channels: int,
        trim: bool = False,
        on_call: Callable[[float], None] | None = None,
    ):
        spec = separator.spec
        self.separator = separator
        self.spec = spec
        self.channels = channels
        self.groups = group_channels(channels, spec.channels)
        self._gather = np.array(self.groups, dtype=np.intp)  # (batch, model channels)
        self._scatter = self._scatter_weights()
        self.rise, self.fall = crossfade_halves(spec.fade)
        self.on_call = on_call
        self.trim = trim
        self.reset()

    @property
    def latency(self) -> int:
        return self.spec.latency

    def reset(self) -> None:
        s = self.spec
        # The first window sees ``window - hop`` samples of silence before the stream.
        self._buffer = np.zeros((self.channels, s.window - s.hop), np.float32)
        self._tail = np.zeros((len(s.stems), self.channels, s.fade), np.float32)
        self._to_trim = self.latency if self.trim else 0
        self.samples_in = 0
        self.samples_out = 0  # emitted, after trimming
        self.separator.reset(len(self.groups))

    def _scatter_weights(self) -> np.ndarray:
        """(batch, model channels, stream channels) weights to undo grouping.

        A stream channel carried twice (the duplicated odd channel) is averaged.
        """
        weights = np.zeros((len(self.groups), self._gather.shape[1], self.channels), np.float32)
        for b, group in enumerate(self.groups):
            for k, c in enumerate(group):
                weights[b, k, c] = 1.0
        counts = weights.sum(axis=(0, 1))
        return weights / np.maximum(counts, 1.0)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Feed ``(channels, n)`` samples; return the finished ``(stems, channels, m)``."""
        s = self.spec
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"framer expects ({self.channels}, n) input, got {x.shape}")
        self.samples_in += x.shape[1]
        buffer = np.concatenate([self._buffer, x.astype(np.float32, copy=False)], axis=1)
        calls = (buffer.shape[1] - (s.window - s.hop)) // s.hop
        out = np.empty((len(s.stems), self.channels, calls * s.hop), np.float32)
        for j in range(calls):
            start = j * s.hop
            segment = self._separate(buffer[:, start : start + s.window])
            chunk = out[:, :, start : start + s.hop]
            chunk[...] = segment[:, :, : s.hop]
            if s.fade:
                chunk[:, :, : s.fade] *= self.rise
                chunk[:, :, : s.fade] += self._tail
                np.multiply(segment[:, :, s.hop :], self.fall, out=self._tail)
        self._buffer = buffer[:, calls * s.hop :].copy()
        return self._emit(out)

    def _separate(self, window: np.ndarray) -> np.ndarray:
        s = self.spec
        batch = window[self._gather]  # (batch, model channels, window)
        started = time.perf_counter()
        result = self.separator.separate(batch)
        if self.on_call is not None:
            self.on_call(time.perf_counter() - started)
        expected = (batch.shape[0], len(s.stems), batch.shape[1], s.segment)
        if getattr(result, "shape", None) != expected:
            raise SeparatorError(
                f"{s.name}: separate() returned shape {getattr(result, 'shape', type(result))}, "
                f"expected {expected}"
            )
        # (batch, stems, model ch, n) x (batch, model ch, stream ch) -> (stems, stream ch, n)
        return np.einsum("bsmn,bmc->scn", result, self._scatter, optimize=False).astype(np.float32, copy=False)

    def _emit(self, out: np.ndarray) -> np.ndarray:
        if self._to_trim:
            cut = min(self._to_trim, out.shape[2])
            self._to_trim -= cut
            out = out[:, :, cut:]
        self.samples_out += out.shape[2]
        return out

    def flush(self) -> np.ndarray:
        """Pad the end with silence so every input sample has its output."""
        s = self.spec
        pending = self.samples_in
        out = self.push(np.zeros((self.channels, self.latency + s.hop), np.float32))
        self.samples_in = pending
        surplus = self.samples_out - pending if self.trim else 0
        if surplus > 0:
            out = out[:, :, : out.shape[2] - surplus]
            self.samples_out -= surplus
        return out
