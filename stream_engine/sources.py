"""Inputs that can change while the output stream plays: files, input devices, microphones.

The output stream is the clock. What the engine separates comes from a
*source*, a function ``next(frames) -> (frames, channels)`` called in the
output callback: a ``FileSource`` (a file in a loop), or a ``Capture`` reader
(an input device on a stream of its own, through an overwriting ring). A
``SourceSwitch`` holds the current source and crossfades to another one
inside the callback (preallocated buffers, nothing else), so changing the
input never stops the output. A microphone is a ``Capture`` reader of one
channel, on any device, mixed in by the engine's callback.

Two devices run on two clocks: a reader keeps between one and four blocks
of the capture in hand (dropping the oldest beyond that, waiting with
silence below it), so drift costs a dropped or repeated block now and then,
never a growing delay. On JACK every stream runs in the same cycle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .devices import CLOSE_TIMEOUT, abandon, close_within, portaudio

FADE_FRAMES = 1440  # 30 ms at 48 kHz: an input change crossfades over this


class LoopSource:
    """Frames (n, channels) played in a loop. ``next(frames)`` is called from the audio callback:
    slicing only, and a copy into a preallocated buffer where the loop wraps."""

    def __init__(self, data: np.ndarray, max_block: int = 8192):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.position = 0
        self._wrap = np.zeros((max_block, self.data.shape[1]), np.float32)
        self.latency = 0.0  # seconds the source adds before the engine sees it

    def next(self, frames: int) -> np.ndarray:
        n = len(self.data)
        p = self.position
        self.position = (p + frames) % n
        if p + frames <= n:
            return self.data[p:p + frames]
        out = self._wrap[:frames]
        first = n - p
        out[:first] = self.data[p:]
        out[first:] = self.data[: frames - first]
        return out

    def close(self) -> None:
        pass


class FileSource(LoopSource):
    """A file played in a loop (the demo, a backing track), resampled to the stream rate once."""

    def __init__(self, path: str | Path, rate: int, channels: int = 2, max_block: int = 8192):
        from .audio_io import read_audio

        data, file_rate = read_audio(path)
        if file_rate != rate:
            import soxr

            data = soxr.resample(data.T, file_rate, rate, "HQ").T
        if data.shape[0] == 1:
            data = np.repeat(data, channels, axis=0)
        elif data.shape[0] > channels:
            data = data[:channels]
        super().__init__(data.T, max_block)  # (frames, channels)
        self.path = Path(path)


class CaptureRing:
    """Overwriting ring: the capture callback writes, any number of readers copy from their own position."""

    def __init__(self, channels: int, capacity: int):
        self.buffer = np.zeros((capacity, channels), np.float32)
        self.capacity = capacity
        self.written = 0

    def write(self, frames: np.ndarray) -> None:
        n = min(len(frames), self.capacity)
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self.buffer[start:start + first] = frames[:first]
        if first < n:
            self.buffer[: n - first] = frames[first:n]
        self.written += n

    def copy_out(self, position: int, out: np.ndarray) -> None:
        n = len(out)
        start = position % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self.buffer[start:start + first]
        if first < n:
            out[first:] = self.buffer[: n - first]


class Capture:
    """An input device on its own PortAudio input stream, written into a ``CaptureRing``."""

    def __init__(self, device: int, channels: int, rate: int, block: int, name: str = ""):
        self.device, self.channels, self.rate, self.block = device, channels, rate, block
        self.name = name
        self.ring = CaptureRing(channels, max(rate, 64 * block))
        self.stream = None
        self.latency = 0.0  # PortAudio's input latency (seconds), once open
        self.overflows = 0

    def open(self) -> "Capture":
        sd = portaudio()
        self.stream = sd.InputStream(device=self.device, channels=self.channels, samplerate=self.rate,
                                     blocksize=self.block, dtype="float32", callback=self._callback,
                                     latency="low")
        self.latency = float(self.stream.latency)
        self.stream.start()
        return self

    def _callback(self, indata, frames, time_info, status) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        self.ring.write(indata)

    def reader(self, columns, max_block: int = 8192) -> "CaptureReader":
        return CaptureReader(self, columns, max_block)

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None and not close_within(stream, CLOSE_TIMEOUT):
            abandon(stream)


class CaptureReader:
    """``next(frames)`` for a callback: ``columns`` of a ``Capture``, one to four blocks behind it."""

    def __init__(self, capture: Capture, columns, max_block: int = 8192):
        self.capture = capture
        self.columns = tuple(int(c) for c in columns)
        self.position: int | None = None  # starts when the capture has delivered a block
        self.slack = capture.block
        self._raw = np.zeros((max_block, capture.channels), np.float32)
        self._out = np.zeros((max_block, len(self.columns)), np.float32)
        self.underruns = 0  # reads the capture could not fill (silence played)
        self.skips = 0  # times the reader jumped ahead (the capture's clock ran faster)

    @property
    def latency(self) -> float:
        """Seconds from the capture device to the engine: its latency, the slack held, and one block
        more: where both streams run in one cycle, the capture may run after the output (JACK,
        measured: mic to output three blocks, this plus the device block)."""
        return self.capture.latency + (self.slack + self.capture.block) / self.capture.rate

    def next(self, frames: int) -> np.ndarray:
        out = self._out[:frames]
        written = self.capture.ring.written
        if self.position is None:
            if written < frames + self.slack:
                out.fill(0.0)
                return out
            self.position = written - frames - self.slack
        if written - self.position > frames + 4 * self.slack:  # too far behind: drop the oldest
            self.position = written - frames - self.slack
            self.skips += 1
        if written - self.position < frames:  # not there yet: silence, and wait for it
            self.underruns += 1
            out.fill(0.0)
            return out
        raw = self._raw[:frames]
        self.capture.ring.copy_out(self.position, raw)
        self.position += frames
        for i, c in enumerate(self.columns):
            out[:, i] = raw[:, c]
        return out

    def recent(self, out: np.ndarray) -> None:
        """The newest ``len(out)`` frames of the first column (for a meter; the UI thread)."""
        raw = np.zeros((len(out), self.capture.channels), np.float32)
        self.capture.ring.copy_out(self.capture.ring.written - len(out), raw)
        out[:] = raw[:, self.columns[0]]


class SourceSwitch:
    """The engine's input in the callback; ``switch_to`` crossfades to another source over FADE_FRAMES."""

    def __init__(self, source, channels: int, max_block: int = 8192, fade: int = FADE_FRAMES):
        self.current = source
        self._next = None
        self.fade = fade
        self._done = 0  # frames of the fade played
        self._out = np.zeros((max_block, channels), np.float32)
        self._gain = np.zeros(max_block, np.float32)
        self._term = np.zeros(max_block, np.float32)
        self._index = np.arange(max_block, dtype=np.float32)
        self.switches = 0

    def switch_to(self, source):
        """Start a crossfade to ``source`` (any thread); returns the source being left, to close later."""
        old = self.current
        self._done = 0
        self._next = source  # the callback picks it up on its next call
        return old

    @property
    def switching(self) -> bool:
        return self._next is not None

    def next(self, frames: int) -> np.ndarray:
        upcoming = self._next
        if upcoming is None:
            return self.current(frames)
        a = self.current(frames)
        b = upcoming(frames)
        out = self._out[:frames]
        rise = self._ramp(frames)
        term = self._term[:frames]
        for ch in range(out.shape[1]):
            column = out[:, ch]
            np.multiply(b[:, ch], rise, out=column)
            np.subtract(1.0, rise, out=term)
            np.multiply(a[:, ch], term, out=term)
            np.add(column, term, out=column)
        self._done += frames
        if self._done >= self.fade:
            self.current, self._next = upcoming, None
            self.switches += 1
        return out

    def _ramp(self, frames: int) -> np.ndarray:
        """Linear 0..1 across the fade for these frames, 1 after it (into a preallocated buffer)."""
        rise = self._gain[:frames]
        np.add(self._index[:frames], float(self._done + 1), out=rise)
        np.multiply(rise, 1.0 / self.fade, out=rise)
        np.minimum(rise, 1.0, out=rise)
        return rise
