"""The Files tab's separation: ``offline.separate_file`` with progress and cancel.

Same pipeline, mixer and stem writer as ``stemstream separate``; only the
block loop reports its progress and checks for a cancel between blocks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from stream_engine.audio_io import AtomicStemWriter, open_audio, read_blocks
from stream_engine.offline import BLOCK, OFFLINE_BUSES, run_blocks
from stream_engine.params import Params
from stream_engine.pipeline import Pipeline
from stream_engine.profiles import get_profile
from stream_engine.separators.registry import load_separator


class Cancelled(RuntimeError):
    """The user pressed Cancel (a plain message, not a traceback: gui.jobs shows RuntimeErrors as text)."""


def separate_one(path: Path, out_dir: Path, model: str | None, profile: str, fmt: str = "wav",
                 progress: Callable[[float], None] | None = None, cancel: threading.Event | None = None,
                 track: str | None = None) -> dict[str, Path]:
    """Write ``out_dir/<track>/<bus>.<fmt>``; returns {bus: file}. Raises on failure, writing nothing."""
    path = Path(path)
    track = track or path.stem
    with open_audio(path) as f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        separator = load_separator(model, profile, sample_rate=rate)
        pipeline = Pipeline(separator, rate, channels, get_profile(profile), trim=True)
        params = Params.for_stems(separator.spec.stems)
        names = separator.spec.stems + OFFLINE_BUSES
        done = [0]

        def blocks():
            for block in read_blocks(f, BLOCK, path):
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"{path.name}: cancelled")
                yield block

        with AtomicStemWriter(Path(out_dir) / track, names, rate, channels, fmt) as writer:
            def write(buses):
                for name in names:
                    writer.write(name, buses[name])
                done[0] += buses[names[0]].shape[1]
                if progress is not None:
                    progress(min(1.0, done[0] / max(1, frames)))

            run_blocks(pipeline, blocks(), params, write)
            return writer.commit()
