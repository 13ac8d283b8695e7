"""The engine's one family of errors: everything it raises on purpose derives from ``StemstreamError``.

A caller (the Python API, a front end, a script) catches ``StemstreamError``
to catch every failure the engine explains in words; Python's own errors
(a bug) pass through. Each subclass also keeps the built-in type it had
before (``SeparatorError`` is a ``RuntimeError``, ``AudioFileError`` a
``ValueError``, ``OutputError`` an ``OSError``), so older ``except`` clauses
still catch them.

Where they live: ``SeparatorError`` (separators/base.py), ``AudioFileError``
and ``OutputError`` (audio_io.py), ``BatchError`` (batch.py), ``DeviceError``
(devices.py); the two below have no better home.
"""

from __future__ import annotations


class StemstreamError(Exception):
    """Base class of every error stemstream raises on purpose; the message says what and where."""


class ArgumentError(StemstreamError, ValueError):
    """A value passed to the engine is unusable (audio shape, sample rate, profile, block size)."""


class LiveError(StemstreamError, RuntimeError):
    """A clear, user-facing failure of the live path; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
