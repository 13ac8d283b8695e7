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

from .audio_io import AtomicStemWriter, open_audio, read_blocks, sanitize, truncation
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
    truncated: tuple | None = None  # (frames the header promises, frames present) of a file cut short

    @property
    def speed(self) -> float:
        return self.seconds / self.elapsed if self.elapsed > 0 else float("inf")


def track_names(paths: list[Path], roots: list[Path | None] | None = None) -> list[str]:
    """One output folder name per input, predictable from its path, never shared.

    A file's name without its extension (``song.wav`` -> ``song``) when no
    other input has that name. Inputs that share a name are told apart by
    their path relative to the common parent of their folders
    (``a/x.wav``, ``b/a/x.wav`` -> ``a/x``, ``b/a/x``), keeping the extension
    when that is still ambiguous (``a/x.wav``, ``a/x.ogg`` -> ``a/x.wav``,
    ``a/x.ogg``); the same file given twice gets ``-2``, ``-3``... Names are
    compared ignoring case (case-insensitive file systems).

    ``roots`` (one per path, None for a file given by itself) names the
    folder an input was found in: such an input is named by its path inside
    that folder (``lib/a/x.wav`` found in ``lib`` -> ``a/x``), so the output
    mirrors the input tree; clashes are resolved as above, relative to the
    common parent of the clashing inputs' roots (``lib1/x.wav``,
    ``lib2/x.wav`` -> ``lib1/x``, ``lib2/x``).
    """
    import os
    from collections import Counter

    paths = [Path(p) for p in paths]
    full = [Path(os.path.abspath(p)) for p in paths]
    roots = [Path(os.path.abspath(r)) if r is not None else f.parent
             for r, f in zip(roots or [None] * len(paths), full)]
    names = [f.relative_to(r).with_suffix("").as_posix() for f, r in zip(full, roots)]
    counts = Counter(n.casefold() for n in names)
    clash = [i for i, n in enumerate(names) if counts[n.casefold()] > 1]
    if clash:
        base = Path(os.path.commonpath([str(roots[i]) for i in clash]))
        rel = {i: full[i].relative_to(base) for i in clash}
        again = Counter(r.with_suffix("").as_posix().casefold() for r in rel.values())
        same = Counter(r.as_posix().casefold() for r in rel.values())
        for i, r in rel.items():
            bare = r.with_suffix("").as_posix()
            ambiguous = again[bare.casefold()] > 1 and same[r.as_posix().casefold()] == 1
            names[i] = r.as_posix() if ambiguous else bare
    used: set[str] = set()
    for i, name in enumerate(names):
        k, unique = 2, name
        while unique.casefold() in used:
            unique, k = f"{name}-{k}", k + 1
        used.add(unique.casefold())
        names[i] = unique
    return names


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
        cut = truncation(f)
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
    return TrackResult(track, files, frames / rate, elapsed, nonfinite, pipeline.latency(), cut)
