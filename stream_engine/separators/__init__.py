"""Separators behind one interface (see ``base.py``)."""

from .base import Separator, SeparatorError, SeparatorSpec, group_channels

__all__ = ["Separator", "SeparatorError", "SeparatorSpec", "group_channels"]
