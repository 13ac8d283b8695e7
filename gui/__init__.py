"""stemstream desktop app (PySide6). Entry point: ``gui.app:main`` (``stemstream-gui``)."""

import sys


def _pin_none() -> None:
    """Work around PySide6 6.12 on CPython 3.11: its void methods return ``None``
    without taking a reference (None is immortal only from 3.12, PEP 683), so
    each call lowers None's reference count by one and a busy UI aborts with
    "none_dealloc: deallocating None" after ~10^5 calls (measured here: 1000
    ``QWidget.setEnabled`` calls took 1000 off the count). Raising the count
    by 2**40 makes None as good as immortal, as 3.12 does."""
    if sys.implementation.name == "cpython" and sys.version_info < (3, 12):
        import ctypes

        ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40


_pin_none()
