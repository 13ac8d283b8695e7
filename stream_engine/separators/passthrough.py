"""vocals = input, accompaniment = silence: makes framing errors audible.

Its output must equal its input exactly, whatever the block size, so any
fault in ring, framer, crossfade or trimming shows up as a difference.
"""

from __future__ import annotations

import numpy as np

from ..profiles import pick_framing
from .base import Separator, SeparatorSpec

# profile -> (hop, fade): short and cheap for live, long segments elsewhere
FRAMING = {"live": (128, 32), "balanced": (1024, 256), "quality": (4096, 1024)}


class Passthrough(Separator):
    def __init__(self, profile: str = "balanced"):
        hop, fade = pick_framing(FRAMING, profile)
        self.spec = SeparatorSpec(
            name="passthrough", stems=("vocals", "accompaniment"), window=hop + fade, hop=hop, fade=fade
        )

    def separate(self, window: np.ndarray) -> np.ndarray:
        segment = self.segment_of(window)
        out = np.zeros((window.shape[0], 2) + segment.shape[1:], np.float32)
        out[:, 0] = segment
        return out
