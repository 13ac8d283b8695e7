"""Run slow work (model loading, separation, device start/stop) off the UI thread.

A ``Job`` runs a function on its own ``QThread`` and reports back through Qt
signals; signals emitted from another thread are queued, so the slots run on
the UI thread. The UI never joins or waits on a job.
"""

from __future__ import annotations

import threading
import traceback
from typing import Callable

from PySide6.QtCore import QObject, QThread, Signal

_alive: set["Job"] = set()  # keep jobs referenced until they report
_relays: set = set()


class _Runner(QThread):
    def __init__(self, target: Callable, name: str):
        super().__init__()
        self._target = target
        self.setObjectName(name)

    def run(self) -> None:
        self._target()


class Job(QObject):
    finished = Signal(object)  # the function's result
    failed = Signal(str)  # a message for the user
    progress = Signal(float)  # 0..1

    def __init__(self, fn: Callable, *args, name: str = "stemstream-job", **kwargs):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.cancel = threading.Event()
        self._thread = _Runner(self._run, name)
        self._thread.finished.connect(self._release)  # queued: runs on the UI thread once run() returned

    def start(self) -> "Job":
        _alive.add(self)
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def _release(self) -> None:
        _alive.discard(self)

    def _run(self) -> None:
        try:
            result = self._fn(*self._args, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the user, never raised in Qt
            message = str(exc) or type(exc).__name__
            if not isinstance(exc, (OSError, ValueError, RuntimeError, KeyError)):
                message = f"{type(exc).__name__}: {message}\n{traceback.format_exc(limit=3)}"
            self.failed.emit(message)
        else:
            self.finished.emit(result)


class _Relay(QObject):
    """Lives on the UI thread; its bound-method slots receive the job's queued
    signals there and call plain callables (lambdas included) on that thread."""

    def __init__(self, job: Job, on_done, on_error, on_progress):
        super().__init__()
        self.on_done, self.on_error, self.on_progress = on_done, on_error, on_progress
        job.finished.connect(self.done)
        job.failed.connect(self.error)
        job.progress.connect(self.progress)
        self.job = job  # both stay referenced until the result is delivered
        _relays.add(self)

    def done(self, result):
        _relays.discard(self)
        if self.on_done is not None:
            self.on_done(result)

    def error(self, message):
        _relays.discard(self)
        if self.on_error is not None:
            self.on_error(message)

    def progress(self, fraction):
        if self.on_progress is not None:
            self.on_progress(fraction)


def run_job(fn: Callable, *args, on_done=None, on_error=None, on_progress=None, name="stemstream-job", **kwargs) -> Job:
    """Run ``fn`` in the background; the callbacks run on the UI thread."""
    job = Job(fn, *args, name=name, **kwargs)
    job._relay = _Relay(job, on_done, on_error, on_progress)
    return job.start()


def wait_all(timeout_s: float = 5.0) -> bool:
    """At quit only: ask running jobs to cancel and wait for them; False if some still run."""
    import time

    deadline = time.monotonic() + timeout_s
    for job in list(_alive):
        job.cancel.set()
    for job in list(_alive):
        left_ms = max(0, int(1000 * (deadline - time.monotonic())))
        if not job._thread.wait(left_ms):
            return False
    return True
