"""Lock-free single-producer / single-consumer ring buffers.

Positions are absolute frame counts that only grow: the producer alone moves
``written``, the consumer alone moves ``consumed``. Rebinding an int attribute
is atomic under CPython, and each side publishes its position only after its
copy is done, so neither side ever waits for the other. Data is laid out
(frames, channels), as sounddevice hands it over.
"""

from __future__ import annotations

import numpy as np


class Ring:
    def __init__(self, channels: int, capacity: int):
        if capacity <= 0 or channels <= 0:
            raise ValueError(f"ring needs positive channels and capacity, got {channels}, {capacity}")
        self.buffer = np.zeros((capacity, channels), dtype=np.float32)
        self.capacity = capacity
        self.channels = channels
        self.written = 0
        self.consumed = 0

    def available(self) -> int:
        """Frames written and not yet consumed (never negative)."""
        return max(0, self.written - self.consumed)

    def space(self) -> int:
        return self.capacity - self.available()

    # -- producer side ---------------------------------------------------
    def write(self, frames: np.ndarray) -> int:
        """Append ``frames``; returns how many fit (the rest is an overflow)."""
        n = min(len(frames), self.space())
        self._copy_in(self.written, frames[:n])
        self.written += n
        return n

    def write_dropping_late(self, frames: np.ndarray) -> int:
        """Append, skipping frames whose position the consumer already passed.

        This is the output side's late-work policy: the callback moves on
        every block, and what arrives after its time is dropped. Returns the
        number of frames dropped.
        """
        late = min(len(frames), max(0, self.consumed - self.written))
        fresh = frames[late:]
        n = min(len(fresh), self.capacity - max(0, self.written + late - self.consumed))
        self._copy_in(self.written + late, fresh[:n])
        self.written += late + n
        return late + (len(fresh) - n)

    def _copy_in(self, position: int, frames: np.ndarray) -> None:
        n = len(frames)
        if n == 0:
            return
        start = position % self.capacity
        first = min(n, self.capacity - start)
        self.buffer[start : start + first] = frames[:first]
        if first < n:
            self.buffer[: n - first] = frames[first:]

    # -- consumer side ---------------------------------------------------
    def read_into(self, out: np.ndarray, advance: int | None = None) -> int:
        """Copy up to ``len(out)`` available frames into ``out``.

        Returns the frames copied. ``advance`` moves the read position by a
        fixed amount whatever was available (the callback's clock).
        """
        n = min(len(out), self.available())
        self.copy_out(self.consumed, out[:n])
        self.consumed += n if advance is None else advance
        return n

    def copy_out(self, position: int, out: np.ndarray) -> None:
        """Copy frames starting at absolute ``position`` (history included)."""
        n = len(out)
        if n == 0:
            return
        start = position % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self.buffer[start : start + first]
        if first < n:
            out[first:] = self.buffer[: n - first]
