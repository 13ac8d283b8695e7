"""stemstream desktop app (PySide6). Entry point: ``gui.app:main`` (``stemstream-gui``).

PySide6 is pinned below 6.12 in pyproject.toml: 6.12.0 on CPython 3.11
returns ``None`` from void methods without taking a reference, and a busy UI
aborts with "none_dealloc: deallocating None" (measured: 1000
``QWidget.setEnabled`` calls took 1000 off None's reference count; 6.11.3
takes none).
"""
