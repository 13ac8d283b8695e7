"""The live engine's inputs the app offers besides devices: the demo song and files, played as a player plays them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_engine.sources import FileSource

FILE_SOURCE_PREFIX = "file:"
DEMO_SOURCE = "demo song"


class PlayerSource(FileSource):
    """A song as the engine's input, as a player plays it: ``paused`` (silence), ``loop`` (or once:
    silence at the end and ``ended`` set), ``seek``. ``next`` runs in the audio callback: slices and
    copies into preallocated buffers only; the flags are plain attributes the UI sets."""

    def __init__(self, path, rate: int, channels: int = 2, max_block: int = 8192, loop: bool = True):
        super().__init__(path, rate, channels, max_block)
        self.loop = loop
        self.paused = False
        self.ended = False
        self._silence = np.zeros((max_block, self.data.shape[1]), np.float32)

    def next(self, frames: int) -> np.ndarray:
        if self.paused or self.ended:
            return self._silence[:frames]
        n, p = len(self.data), self.position
        if not self.loop and p + frames >= n:  # the last frames, then silence
            out = self._wrap[:frames]
            first = n - p
            out[:first] = self.data[p:]
            out[first:] = 0.0
            self.position, self.ended = n, True
            return out
        return super().next(frames)

    def seek(self, fraction: float) -> None:
        self.position = int(min(max(fraction, 0.0), 0.999999) * len(self.data))
        self.ended = False


def source_path(source: str | None) -> Path | None:
    """The file behind an input choice (``demo song`` or ``file:PATH``), else None."""
    if not source:
        return None
    if source == DEMO_SOURCE:
        from stream_engine.demo import DEMO_SONG

        return DEMO_SONG
    if source.startswith(FILE_SOURCE_PREFIX):
        return Path(source[len(FILE_SOURCE_PREFIX):])
    return None


def resolve_auto(cfg):
    """``LiveConfig`` with ``profile="auto"`` made concrete: a file or the demo (never heard
    unseparated, so its latency is free) runs ``registry.file_input_choice()`` (Spleeter, quality,
    block 512 where installed); a device input the live profile. Other profiles are kept as chosen."""
    from dataclasses import replace

    from .live_config import AUTO_PROFILE

    if cfg.profile != AUTO_PROFILE:
        return cfg
    if source_path(cfg.input) is None:
        return replace(cfg, profile="live")
    from stream_engine.separators.registry import file_input_choice

    choice = file_input_choice()
    return replace(cfg, profile=choice["profile"], model=cfg.model or choice["model"],
                   block=cfg.block or choice["block"])
