"""Run slow work (model loading, separation, device start/stop) off the UI thread.

A ``Job`` runs a function on a plain Python thread and reports back through Qt
signals; signals emitted from another thread are queued, so the slots run on
the UI thread. The UI never joins or waits on a job.
"""

from __future__ import annotations

import threading
import traceback
from typing import Callable

from PySide6.QtCore import QObject, Signal

_alive: set["Job"] = set()  # keep jobs referenced until they report
_relays: set = set()


class Job(QObject):
    finished = Signal(object)  # the function's result
    failed = Signal(str)  # a message for the user
    progress = Signal(float)  # 0..1

    def __init__(self, fn: Callable, *args, name: str = "stemstream-job", **kwargs):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self.cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Job":
        _alive.add(self)
        self._thread.start()
        return self

    def is_running(self) -> bool:
        return self._thread.is_alive()

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
        finally:
            _alive.discard(self)


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
