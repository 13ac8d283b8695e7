"""Moved to ``stream_engine/separators/framer.py`` (framing belongs with the separators it streams through).

Kept so that code written against the old path still imports; import
``stream_engine.separators.framer`` in new code.
"""

from .separators.framer import Framer, crossfade_halves  # noqa: F401
