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

A window whose separated output holds NaN or inf is never passed on:
``nonfinite="raise"`` (offline) stops with a ``SeparatorError`` naming the
model; ``"dry"`` (live) plays that segment unseparated instead (the input on
the last stem that is not the vocals: accompaniment, or other beside drums
and bass, so the mixes carry the dry signal, as
during a deadline miss), reached through the segments' usual crossfade,
resets a stateful model's state and counts the window in
``nonfinite_windows``.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .base import Separator, SeparatorError, group_channels


def crossfade_halves(fade: int, shape: str = "sin2") -> tuple[np.ndarray, np.ndarray]:
    """Rising and falling weights of length ``fade`` with rise + fall == 1 (``shape``: "sin2" or "linear")."""
    if fade == 0:
        empty = np.zeros(0, np.float32)
        return empty, empty
    phase = (np.arange(fade, dtype=np.float64) + 0.5) / fade
    rise = phase if shape == "linear" else np.sin(0.5 * np.pi * phase) ** 2
    rise = rise.astype(np.float32)
    return rise, (np.float32(1.0) - rise)


class Framer:
    def __init__(
        self,
        separator: Separator,
        channels: int,
        trim: bool = False,
        on_call: Callable[[float], None] | None = None,
        nonfinite: str = "raise",
    ):
        if nonfinite not in ("raise", "dry"):
            raise ValueError(f"nonfinite must be 'raise' or 'dry', not {nonfinite!r}")
        spec = separator.spec
        self.nonfinite = nonfinite
        self._dry_stem = max((i for i, name in enumerate(spec.stems) if name != "vocals"), default=0)
        self.separator = separator
        self.spec = spec
        self.channels = channels
        self.groups = group_channels(channels, spec.channels)
        self._gather = np.array(self.groups, dtype=np.intp)  # (batch, model channels)
        self._scatter = self._scatter_weights()
        self.rise, self.fall = crossfade_halves(spec.fade, spec.fade_shape)
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
        self.calls = 0
        self.nonfinite_windows = 0
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
        self.calls += 1
        if not np.isfinite(result).all():
            result = self._nonfinite(batch, result)
        # (batch, stems, model ch, n) x (batch, model ch, stream ch) -> (stems, stream ch, n)
        return np.einsum("bsmn,bmc->scn", result, self._scatter, optimize=False).astype(np.float32, copy=False)

    def _nonfinite(self, batch: np.ndarray, result: np.ndarray) -> np.ndarray:
        s = self.spec
        self.nonfinite_windows += 1
        if self.nonfinite == "raise":
            bad = int(np.size(result) - np.count_nonzero(np.isfinite(result)))
            end = self.calls * s.hop
            where = f"{end / s.sample_rate:.2f} s" if s.sample_rate else f"sample {end}"
            raise SeparatorError(
                f"model {s.name!r} returned NaN or inf ({bad} of {np.size(result)} values) for the window "
                f"ending near {where} of the input; its output is unusable (broken weights, or an input it "
                f"cannot handle), so nothing was written")
        dry = np.zeros(result.shape, np.float32)
        dry[:, self._dry_stem] = np.nan_to_num(self.separator.segment_of(batch), nan=0.0, posinf=0.0, neginf=0.0)
        self.separator.reset(len(self.groups))  # a stateful model's state may hold the NaN now
        return dry

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
