"""How soon a fader change is heard while a model plays a file (JACK dummy server).

    python3 -m stream_engine.tools.fader_response --model spleeter --profile quality

The engine plays the demo song from a file source on an output-only stream
(the app's Live tab with a song), main = every stem at full level. Every
``gap`` seconds every stem is muted, then unmuted. For each change: the
time from the change (``ParamStore.update``) to the first callback whose
block has changed level by 20 dB or more, plus the stream's output latency
as PortAudio reports it (what the block waits before the device plays it).
``just_in_time=False`` mixes at separation time, as the engine did before
(for comparison in the same run).
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

RATE = 48000


def measure(model: str, profile: str, block: int | None = None, changes: int = 8, gap: float = 0.6,
            just_in_time: bool = True, settle: float = 1.5) -> dict:
    """Run on the JACK server this process points at (``JACK_DEFAULT_SERVER``); returns figures in ms."""
    from .. import live
    from ..demo import DEMO_SONG
    from ..params import ParamStore, Params
    from ..pipeline import Pipeline
    from ..profiles import get_profile
    from ..realtime import RealtimeEngine
    from ..separators.registry import load_separator
    from ..sources import FileSource

    prof = get_profile(profile)
    block = block or prof.block
    separator = load_separator(model, profile, sample_rate=RATE)
    store = ParamStore(Params.for_stems(separator.spec.stems, listen="full"))
    engine = RealtimeEngine(Pipeline(separator, RATE, 2, prof), block, store=store)
    engine.just_in_time = just_in_time
    source = FileSource(DEMO_SONG, RATE)
    n = 1 << 16
    stamps, energy = np.zeros(n), np.zeros(n)
    count = [0]

    def record(indata, outdata, frames, time_info, status):
        engine.callback(indata, outdata, frames, time_info, status)
        i = count[0]
        if i < n:
            stamps[i] = time.perf_counter()
            column = outdata[:, 0]
            energy[i] = float(np.dot(column, column)) / frames
            count[0] = i + 1

    device = live.find_device(None, "output", "jack", need=engine.out_channels)
    stream = live.LiveStream(engine, None, device["index"], 0, RATE, callback=record, source=source.next)
    stream.open()
    changed_at = []
    try:
        stream.start()
        time.sleep(settle + engine.latency().ms / 1000.0)
        for k in range(changes):
            mute = k % 2 == 0
            changed_at.append((time.perf_counter(), mute))
            store.update(lambda p, m=mute: _all(p, m))
            time.sleep(gap)
    finally:
        stream.stop()
    output_ms = 1000.0 * stream.device_latency[1]
    heard, before_levels = [], []
    for t, mute in changed_at:
        k = int(np.searchsorted(stamps[: count[0]], t))
        before = float(np.median(energy[max(0, k - 8):k])) if k else 0.0
        before_levels.append(before)
        for j in range(k, count[0]):
            level = energy[j]
            if (mute and level <= before / 100.0) or (not mute and level >= 100.0 * max(before, 1e-12)):
                heard.append(1000.0 * (stamps[j] - t) + output_ms)
                break
    stats = engine.stats
    return {"model": separator.spec.name, "profile": profile, "block": block, "just_in_time": just_in_time,
            "mixes_just_in_time": engine.mixes_just_in_time(engine.chain),
            "latency_total_ms": engine.latency().ms, "output_latency_ms": output_ms,
            "changes": len(changed_at), "heard": len(heard), "heard_ms": heard,
            "heard_ms_max": max(heard) if heard else None,
            "heard_ms_median": float(np.median(heard)) if heard else None,
            "misses": stats.misses, "xruns": stats.xruns}


def _all(params, mute: bool):
    for stem in params.stems:
        params = params.with_stem(stem, mute=mute)
    return params


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="spleeter")
    p.add_argument("--profile", default="quality")
    p.add_argument("--block", type=int, default=None, action="append",
                   help="device block (repeatable; default: the profile's)")
    p.add_argument("--changes", type=int, default=8)
    p.add_argument("--compare", action="store_true", help="also mixing at separation time (the old way), interleaved")
    args = p.parse_args(argv)
    from .. import live
    from .jack import JackServer

    server = JackServer(name=f"stemstream-fader-{os.getpid()}", rate=RATE, period=256, realtime=None).start()
    try:
        live.rescan()
        for block in args.block or [None]:
            for jit in ([True, False] if args.compare else [True]):
                r = measure(args.model, args.profile, block, args.changes, just_in_time=jit)
                heard = ", ".join(f"{v:.0f}" for v in r["heard_ms"])
                print(f"{r['model']} {r['profile']} block {r['block']} "
                      f"{'just in time' if r['mixes_just_in_time'] else 'mixed at separation'}: heard after "
                      f"median {r['heard_ms_median']:.1f} ms, max {r['heard_ms_max']:.1f} ms "
                      f"({r['heard']}/{r['changes']} changes: {heard}; output latency {r['output_latency_ms']:.1f} ms, "
                      f"engine latency {r['latency_total_ms']:.0f} ms, misses {r['misses']}, xruns {r['xruns']})",
                      flush=True)
    finally:
        live.release_portaudio()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
