"""The balanced profile's hop for Spleeter, chosen from this machine's speed.

Each call runs the U-Nets over a whole 64-frame window, whatever the hop, so
a shorter hop (less latency: the hop is buffered before a call can start)
costs proportionally more compute. The shortest hop this machine sustains is
measured, not assumed: one call's time (median of ``CALLS`` after warm-up) is
set against each hop's duration, and the shortest hop whose load (call time /
hop time) stays within ``LOAD_LIMIT`` is taken; the longest is the fallback,
said so, when none fits.

The measurement is stored per machine in ``calibration_path()`` (key: CPU
model and count, onnxruntime version, threads, device, mask mode), so a
start-up costs it once; ``recalibrate=True`` (``stemstream bench
--calibrate``) measures again. The record says why the hop was chosen;
``stemstream bench`` prints it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

CALLS = 7
# One call may use at most this share of its hop's audio time on one core: the
# rest is for the resamplers, the mixer, the GIL's other threads and a loaded
# machine's hiccups. A margin chosen, not yet tuned on a quiet machine: under
# load the calls vary 2-5x (docs/experiments.md, session 12), which no fixed
# margin covers; re-measure with `stemstream bench --calibrate`.
LOAD_LIMIT = 0.6
FILE = "spleeter-calibration.json"


def calibration_path() -> Path:
    """``$STEMSTREAM_CONFIG_DIR/cache/…``, else the user cache folder (``~/.cache/stemstream``)."""
    env = os.environ.get("STEMSTREAM_CONFIG_DIR")
    if env:
        return Path(env).expanduser() / "cache" / FILE
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("stemstream")) / FILE


def machine_key(threads: int, device: str, masks: str, frames: int) -> str:
    """What the measurement depends on: another CPU, library, thread count or graph is measured anew."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu} x{os.cpu_count()} | onnxruntime {onnxruntime.__version__} | {device} | "
            f"threads {threads} | {masks} | {frames} frames")


def choose_hop(call_ms: float, choices: list[int], hop_ms_per_frame: float,
               limit: float = LOAD_LIMIT) -> tuple[int, str]:
    """(hop in frames, why): the shortest hop whose load call_ms / hop_ms is within ``limit``."""
    loads = {hop: call_ms / (hop * hop_ms_per_frame) for hop in sorted(choices)}
    table = ", ".join(f"hop {h}: {load:.2f}" for h, load in loads.items())
    for hop, load in loads.items():
        if load <= limit:
            return hop, (f"a call takes {call_ms:.1f} ms; load (call / hop time) {table}; "
                         f"hop {hop} is the shortest within {limit:.2f}")
    hop = max(choices)
    return hop, (f"a call takes {call_ms:.1f} ms; load {table}; none within {limit:.2f}: "
                 f"hop {hop}, the longest, and misses are likely on this machine")


def load_stored(key: str, path: Path | None = None) -> dict | None:
    """The stored record for ``key``, or None (absent, unreadable or malformed: measured again)."""
    path = path or calibration_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(record, dict):
        return None
    call_ms = record.get("call_ms")
    if not isinstance(call_ms, (int, float)) or not 0 < call_ms < 1e6:
        return None
    return record


def store(key: str, record: dict, path: Path | None = None) -> str | None:
    """Add ``record`` under ``key`` (other machines' records kept); returns an error message or None."""
    path = path or calibration_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[key] = record
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        return f"cannot store the Spleeter calibration in {path}: {exc}"
    return None


def measure_call_ms(run, window: np.ndarray, calls: int = CALLS) -> float:
    """Median wall time of ``run(window)`` in ms, after two warm-up calls."""
    for _ in range(2):
        run(window)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        run(window)
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))


def calibrate(run, window: np.ndarray, key: str, choices: list[int], hop_ms_per_frame: float,
              recalibrate: bool = False, path: Path | None = None) -> dict:
    """The hop for this machine with why: from the stored record for ``key``, else measured (and stored)."""
    record = None if recalibrate else load_stored(key, path)
    source = "stored"
    if record is None:
        record = {"call_ms": round(measure_call_ms(run, window), 2), "calls": CALLS,
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        source = "measured now"
        error = store(key, record, path)
        if error:
            source += f" (not stored: {error})"
    hop, why = choose_hop(float(record["call_ms"]), choices, hop_ms_per_frame)
    return {"hop_frames": hop, "call_ms": float(record["call_ms"]), "measured_at": record.get("measured_at"),
            "source": source, "path": str(path or calibration_path()), "key": key, "why": why,
            "load_limit": LOAD_LIMIT}
