"""OSC set-to-audible latency on the real engine (paced like a device)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
from pythonosc.osc_message_builder import build_msg

from .server import OscServer


def bench_set_to_audible(changes: int = 20, block: int = 256, rate: int = 48000, profile: str = "live",
                         spacing_s: float = 0.25, seed: int = 0) -> dict:
    """Send ``changes`` OSC gain messages to a RealtimeEngine (passthrough separator)
    paced in real time by ``run_paced``; for each, the time from ``sendto`` to the
    start of the callback that first plays the changed level (the moment the block
    is handed to the device; the device's own output latency is not included)."""
    from ..params import Params  # noqa: F401 - engine imports below pull the rest
    from ..pipeline import Pipeline
    from ..profiles import get_profile
    from ..realtime import RealtimeEngine, run_paced
    from ..separators.registry import load_separator

    engine = RealtimeEngine(Pipeline(load_separator("passthrough", profile), rate, 2, get_profile(profile)), block)
    engine.store.update(lambda p: p.with_(karaoke=False))
    server = OscServer(engine.store, list(engine.pipeline.stems), engine.status, port=0, meter_hz=0)
    freq = rate / block * 2  # two whole periods per block: every block has the same RMS
    seconds = 1.0 + changes * (spacing_s + block / rate)
    n = int(seconds * rate) // block * block
    t = np.arange(n) / rate
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    source = np.stack([tone, tone], axis=1)
    starts: list[float] = []
    inner = engine.callback

    def timed_callback(indata, outdata, frames, time_info, status):
        starts.append(time.perf_counter())
        inner(indata, outdata, frames, time_info, status)

    engine.callback = timed_callback  # type: ignore[method-assign]
    sent: list[tuple[float, float]] = []
    rng = np.random.default_rng(seed)

    def sender():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        time.sleep(0.6)
        for i in range(changes):
            time.sleep(spacing_s + rng.uniform(0, block / rate))
            value = 0.25 if i % 2 == 0 else 1.0
            dgram = build_msg("/stemstream/stem/vocals/gain", [value]).dgram
            t0 = time.perf_counter()
            sock.sendto(dgram, ("127.0.0.1", server.port))
            sent.append((t0, value))
        sock.close()

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        played = run_paced(engine, source, realtime=True)
    finally:
        th.join()
        server.close()
    rms = np.sqrt(np.mean(played[: len(starts) * block, 0].reshape(-1, block) ** 2, axis=1))
    starts_a = np.array(starts)
    lat_ms = []
    for i, (t0, value) in enumerate(sent):
        before = 1.0 if value == 0.25 else 0.25
        k0 = int(np.searchsorted(starts_a, t0))  # first callback after the send
        level0 = 0.5 / np.sqrt(2) * before
        for k in range(k0, len(rms)):
            if abs(rms[k] - level0) > 0.02 * level0:
                lat_ms.append((starts_a[k] - t0) * 1e3)
                break
    res = {"changes": len(sent), "detected": len(lat_ms), "block": block, "rate": rate, "profile": profile,
           "median_ms": float(np.median(lat_ms)) if lat_ms else float("nan"),
           "max_ms": float(np.max(lat_ms)) if lat_ms else float("nan"),
           "min_ms": float(np.min(lat_ms)) if lat_ms else float("nan"),
           "misses": engine.stats.misses, "xruns": engine.stats.xruns, "prefill": engine.prefill}
    print(f"osc set->audible ({profile}, {rate} Hz / {block}): median {res['median_ms']:.2f} ms, "
          f"min {res['min_ms']:.2f}, max {res['max_ms']:.2f} over {res['detected']}/{res['changes']} changes "
          f"(to the callback that plays it; output ring prefill {engine.prefill} frames = "
          f"{1e3 * engine.prefill / rate:.2f} ms; misses {res['misses']}, xruns {res['xruns']})")
    return res
