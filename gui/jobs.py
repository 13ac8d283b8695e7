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


def run_job(fn: Callable, *args, on_done=None, on_error=None, on_progress=None, name="stemstream-job", **kwargs) -> Job:
    job = Job(fn, *args, name=name, **kwargs)
    if on_done is not None:
        job.finished.connect(on_done)
    if on_error is not None:
        job.failed.connect(on_error)
    if on_progress is not None:
        job.progress.connect(on_progress)
    return job.start()
