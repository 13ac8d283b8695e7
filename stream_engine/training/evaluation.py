"""SDR of exported models through the engine (offline.separate_array: framer, resampling, mixer).

The mixture is the track's ``mixture`` file or else the sum of *all* its
stems (vocals + accompaniment for MIR-1K), references are the stems;
SDR from ``stream_engine.metrics``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from .data import load_stem_folder


def engine_eval(make_separator, folder: str | Path, profile: str = "live", stream_rate: int | None = None,
                stems=("vocals", "accompaniment"), limit: int | None = None, log=None) -> dict:
    from stream_engine.metrics import sdr
    from stream_engine.offline import separate_array

    tracks = load_stem_folder(folder, stems=stems, channels=None, limit=limit)
    out: dict[str, dict[str, float]] = {}
    name = None
    started = time.perf_counter()
    audio_seconds = 0.0
    for t in tracks:
        mix = t.mix().astype(np.float32)
        refs = {s: t.stems[s] for s in stems}
        rate = t.sample_rate
        if stream_rate and stream_rate != rate:
            import soxr

            mix = soxr.resample(mix.T, rate, stream_rate).T.astype(np.float32).copy()
            refs = {k: soxr.resample(v.T, rate, stream_rate).T.copy() for k, v in refs.items()}
            rate = stream_rate
        sep = make_separator(rate)
        name = sep.spec.name
        est = separate_array(sep, np.ascontiguousarray(mix), rate, profile)
        out[t.name] = {s: sdr(refs[s], est[s]) for s in stems if s in est}
        audio_seconds += mix.shape[-1] / rate
    elapsed = time.perf_counter() - started
    mean = {s: statistics.fmean(v[s] for v in out.values()) for s in stems}
    median = {s: statistics.median(v[s] for v in out.values()) for s in stems}
    return {"model": name, "profile": profile, "tracks": out, "mean": mean, "median": median,
            "seconds": elapsed, "audio_seconds": audio_seconds}
