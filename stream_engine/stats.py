"""Counters and timings the engine reports: misses, xruns, compute time."""

from __future__ import annotations

import time

import numpy as np


class ComputeTimes:
    """Durations of separator calls in a fixed ring; percentiles on demand."""

    def __init__(self, capacity: int = 8192):
        self._values = np.zeros(capacity, np.float64)
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._values[self.count % len(self._values)] = seconds
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def percentiles_ms(self) -> dict:
        n = min(self.count, len(self._values))
        if n == 0:
            return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
        p50, p95, p99 = np.percentile(self._values[:n], [50, 95, 99]) * 1000.0
        return {"count": self.count, "p50": p50, "p95": p95, "p99": p99, "max": self.max * 1000.0}


class Stats:
    """Written by one side each (callback or worker); read by anyone."""

    def __init__(self):
        self.callbacks = 0
        self.xruns = 0  # PortAudio reported an input overflow or output underflow
        self.misses = 0  # blocks whose separated output was not ready in time
        self.nonfinite_windows = 0  # model windows of NaN/inf output, played dry (worker side)
        self.dropped_frames = 0  # late output frames dropped by the writer
        self.input_overflows = 0  # frames the input ring had no room for
        self.compute = ComputeTimes()
        self.busy_seconds = 0.0  # worker time spent processing
        self.switches = 0  # model / profile / stage / routing changes completed while playing
        self.last_switch: dict | None = None  # SwitchReport.as_dict() of the latest one
        self.started = time.perf_counter()

    def cpu_percent(self) -> float:
        elapsed = time.perf_counter() - self.started
        return 100.0 * self.busy_seconds / elapsed if elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "callbacks": self.callbacks,
            "xruns": self.xruns,
            "misses": self.misses,
            "nonfinite_windows": self.nonfinite_windows,
            "dropped_frames": self.dropped_frames,
            "input_overflows": self.input_overflows,
            "cpu_percent": round(self.cpu_percent(), 2),
            "compute_ms": self.compute.percentiles_ms(),
            "switches": self.switches,
            "last_switch": self.last_switch,
        }
