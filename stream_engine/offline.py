"""Offline separation: the live pipeline fed from a file, faster than real time.

The same Pipeline, Mixer and separator as ``stemstream live``; only the
source (file blocks instead of a device) and the sink (stem files instead of
an output ring) differ. The pipeline runs trimmed, so every output file has
exactly the input's length and timing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .audio_io import AtomicStemWriter, open_audio, read_blocks, sanitize
from .mixer import Mixer
from .params import Params
from .pipeline import Pipeline
from .profiles import get_profile
from .separators.base import Separator

BLOCK = 16384  # offline read size; any size gives the same result
OFFLINE_BUSES = ("instrumental", "karaoke")


@dataclass
class TrackResult:
    track: str
    files: dict
    seconds: float  # audio duration
    elapsed: float  # wall time
    nonfinite: int  # NaN/inf samples replaced by silence
    latency: object

    @property
    def speed(self) -> float:
        return self.seconds / self.elapsed if self.elapsed > 0 else float("inf")


def run_blocks(pipeline: Pipeline, blocks: Iterable[np.ndarray], params: Params,
               sink: Callable[[dict], None]) -> int:
    """Push blocks through pipeline and mixer; hand each block of buses to ``sink``."""
    mixer = Mixer(pipeline.stems, pipeline.channels)
    nonfinite = 0
    for block in blocks:
        nonfinite += sanitize(block)
        stems = pipeline.process(block, params)
        if stems.shape[2]:
            sink(mixer.mix(stems, params))
    stems = pipeline.flush(params)
    if stems.shape[2]:
        sink(mixer.mix(stems, params))
    return nonfinite


def separate_array(separator: Separator, audio: np.ndarray, rate: int, profile: str = "balanced",
                   params: Params | None = None, stages=()) -> dict[str, np.ndarray]:
    """In memory: (channels, n) -> {bus: (channels, n)} (evaluation, tests)."""
    pipeline = Pipeline(separator, rate, audio.shape[0], get_profile(profile), stages=stages, trim=True)
    params = params or Params.for_stems(separator.spec.stems)
    pieces: dict[str, list] = {}

    def keep(buses):
        for name, data in buses.items():
            pieces.setdefault(name, []).append(data)

    run_blocks(pipeline, (audio[:, i : i + BLOCK].copy() for i in range(0, audio.shape[1], BLOCK)), params, keep)
    return {name: np.concatenate(parts, axis=1) for name, parts in pieces.items()}


def separate_file(path: Path, out_dir: Path, make_separator: Callable[[int], Separator], profile: str,
                  fmt: str = "wav", params: Params | None = None, stages=(), progress: bool = True,
                  track: str | None = None) -> TrackResult:
    """Write ``out_dir/<track>/<stem>.<fmt>`` plus the instrumental and karaoke mixes."""
    from tqdm import tqdm

    path = Path(path)
    track = track or path.stem
    with open_audio(path) as f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
        separator = make_separator(rate)
        if callable(stages):  # stages depend on the file's rate and channels
            stages = stages(rate, channels)
        pipeline = Pipeline(separator, rate, channels, get_profile(profile), stages=stages, trim=True)
        params = params or Params.for_stems(separator.spec.stems)
        names = separator.spec.stems + OFFLINE_BUSES
        started = time.perf_counter()
        with AtomicStemWriter(out_dir / track, names, rate, channels, fmt) as writer, \
                tqdm(total=frames, unit="frame", unit_scale=True, desc=track, disable=not progress,
                     file=sys.stderr, leave=False) as bar:

            def write(buses):
                for name in names:
                    writer.write(name, buses[name])
                bar.update(buses[names[0]].shape[1])

            nonfinite = run_blocks(pipeline, read_blocks(f, BLOCK, path), params, write)
            files = writer.commit()
        elapsed = time.perf_counter() - started
    return TrackResult(track, files, frames / rate, elapsed, nonfinite, pipeline.latency())
