"""``stemstream bench``: latency, per-call compute time, speed and misses.

Figures, not pass/fail: the machine is shared and noisy; read them as such.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .pipeline import Pipeline
from .profiles import get_profile
from .realtime import RealtimeEngine, run_paced
from .separators.registry import load_separator


def bench_source(seconds: float, rate: int) -> np.ndarray:
    """(frames, 2) of the demo song, looped to ``seconds`` at ``rate``."""
    from .audio_io import read_audio
    from .demo import DEMO_SONG

    audio, song_rate = read_audio(DEMO_SONG)
    if song_rate != rate:
        import soxr

        audio = soxr.resample(audio.T, song_rate, rate).T
    n = int(seconds * rate)
    reps = -(-n // audio.shape[1])
    return np.ascontiguousarray(np.tile(audio, reps)[:, :n].T, dtype=np.float32)


def speed(model: str | None, profile: str, rate: int, source: np.ndarray, threads: int | None) -> dict:
    """Real-time factor (compute time / audio time) pushing blocks as fast as possible."""
    separator = load_separator(model, profile, sample_rate=rate, threads=threads)
    pipeline = Pipeline(separator, rate, source.shape[1], get_profile(profile))
    block = get_profile(profile).block
    started = time.perf_counter()
    for i in range(0, len(source), block):
        pipeline.process(source[i : i + block].T)
    elapsed = time.perf_counter() - started
    return {"threads": threads or os.cpu_count(), "rtf": elapsed / (len(source) / rate),
            "compute_ms": pipeline.compute.percentiles_ms()}


def run_bench(model: str | None, profile: str, seconds: float, rate: int = 48000, block: int | None = None,
              recalibrate: bool = False) -> dict:
    prof = get_profile(profile)
    block = block or prof.block
    separator = load_separator(model, profile, sample_rate=rate, recalibrate=recalibrate)
    source = bench_source(seconds, rate)
    engine = RealtimeEngine(Pipeline(separator, rate, 2, prof), block)
    latency = engine.latency()
    run_paced(engine, source, realtime=True)
    paced = engine.stats.as_dict()
    return {
        "model": separator.spec.name,
        "profile": profile,
        "sample_rate": rate,
        "block": block,
        "latency": latency.as_dict(),
        "latency_target_ms": prof.latency_target_ms,
        "hop": separator.spec.hop,
        "hop_ms": 1000.0 * separator.spec.hop / (separator.spec.sample_rate or rate),
        # a separator whose hop is chosen from this machine's speed says how (spleeter_hop.py)
        "hop_calibration": getattr(separator, "calibration", None),
        "paced_run": {"seconds": len(source) / rate, **paced},
        "speed_one_thread": speed(model, profile, rate, source, threads=1),
        "speed_all_threads": speed(model, profile, rate, source, threads=os.cpu_count()),
    }


def format_bench(r: dict) -> str:
    lat, run = r["latency"], r["paced_run"]
    c = run["compute_ms"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"model {r['model']}, profile {r['profile']}, {r['sample_rate']} Hz, block {r['block']}",
        f"algorithmic latency: {lat['algorithmic_samples']} samples = {lat['algorithmic_ms']:.2f} ms "
        f"(target <= {r['latency_target_ms']:.0f} ms; compute excluded, as in DESIGN.md)",
        f"latency with the compute budget: {lat['total_samples']} samples = {lat['total_ms']:.2f} ms "
        f"(what the live path schedules, before the device's own latency)",
    ]
    if "hop" in r:
        lines.append(f"hop: {r['hop']} samples = {r['hop_ms']:.1f} ms per separator call")
    cal = r.get("hop_calibration")
    if cal:
        lines.append(f"hop chosen for this machine: {cal['hop_frames']} STFT frames ({cal['source']}"
                     f"{', ' + cal['measured_at'] if cal.get('measured_at') else ''}; {cal['path']}): {cal['why']}")
    lines += [f"  {name}: {p['samples']} samples, {p['ms']:.2f} ms" + ("" if p["algorithmic"] else " (not algorithmic)")
              for name, p in lat["parts"].items()]
    lines += [
        f"paced run {run['seconds']:.1f} s: {run['callbacks']} callbacks, {run['misses']} misses, "
        f"{run['dropped_frames']} late frames dropped, worker cpu {run['cpu_percent']:.1f}%",
        f"per-call compute (ms): p50 {fmt(c['p50'])}, p95 {fmt(c['p95'])}, p99 {fmt(c['p99'])}, "
        f"max {fmt(c['max'])} over {c['count']} calls",
    ]
    for key in ("speed_one_thread", "speed_all_threads"):
        s = r[key]
        lines.append(f"real-time factor, {s['threads']} thread(s): {s['rtf']:.4f} ({1 / s['rtf']:.1f}x real time)")
    return "\n".join(lines)
