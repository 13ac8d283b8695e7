"""Model and profile switches while playing on a JACK server: what the listener gets.

``stemstream bench --switch`` and ``tests/test_switch.py`` run this. The
engine plays the demo song (a looped ``FileSource``) on an output-only JACK
stream; its callback is wrapped to copy every block it played into a
preallocated recording. Switches are asked for through ``LiveControl`` while
it plays. For each switch the figures are: the engine's report (build,
prime, crossfade, gap, latency before and after), the xruns PortAudio
reported and the deadline misses counted from the request until the new
chain played alone, and two measurements of the recording around the fade:
``dropout_ms`` (2.5 ms windows whose level fell below a tenth of the second
before) and ``jump_ratio`` (the largest sample-to-sample step there, over
the largest in the second before: a click is a step far above the music's own).
"""

from __future__ import annotations

import time

import numpy as np

RATE = 48000
BLOCK = 256
WINDOW = 120  # 2.5 ms at 48 kHz


class Recorder:
    """Wraps the engine callback; copies what it played into a preallocated array (no allocation)."""

    def __init__(self, engine, seconds: float):
        self.engine = engine
        self.frames = np.zeros((int(seconds * RATE) + 16 * BLOCK, engine.out_channels), np.float32)
        self.position = 0

    def __call__(self, indata, outdata, frames, time_info, status):
        self.engine.callback(indata, outdata, frames, time_info, status)
        p = self.position
        if p + frames <= len(self.frames):
            self.frames[p:p + frames] = outdata
        self.position = p + frames


def around_fade(recording: np.ndarray, start: int, fade: int) -> dict:
    """Dropout and click measures for the fade at output position ``start`` (mono sum of channels)."""
    mono = recording.sum(axis=1)
    before = mono[max(0, start - RATE):start]
    region = mono[max(0, start - 2400):start + fade + 4800]  # 50 ms before, 100 ms after the fade ends
    if len(before) < WINDOW or len(region) < WINDOW:
        return {"dropout_ms": None, "jump_ratio": None}
    level = np.sqrt(np.mean(before[: len(before) // WINDOW * WINDOW].reshape(-1, WINDOW) ** 2, axis=1))
    windows = region[: len(region) // WINDOW * WINDOW].reshape(-1, WINDOW)
    quiet = np.sqrt(np.mean(windows ** 2, axis=1)) < 0.1 * float(np.median(level))
    steady_jump = float(np.max(np.abs(np.diff(before)))) or 1e-9
    return {"dropout_ms": 1000.0 * WINDOW * int(quiet.sum()) / RATE,
            "jump_ratio": float(np.max(np.abs(np.diff(region)))) / steady_jump}


def run_switches(switches=(("model", "stemstream-student-int8"), ("profile", "balanced")), first="dsp-center",
                 settle: float = 1.5, client: str = "stemstream-switch") -> dict:
    """Play, switch as listed ((what, value) with what in model/profile/keystage), measure. A JACK
    server must be running (``stream_engine.tools.jack.JackServer``) and PortAudio must see it."""
    from .. import live
    from ..control import ChainSpec, LiveControl
    from ..demo import DEMO_SONG
    from ..params import ParamStore, Params
    from ..pipeline import Pipeline
    from ..profiles import get_profile
    from ..realtime import RealtimeEngine
    from ..separators.registry import load_separator
    from ..sources import FileSource

    live.preload_backends()
    separator = load_separator(first, "live", sample_rate=RATE)
    store = ParamStore(Params.for_stems(separator.spec.stems, listen="full"))  # main = every stem
    engine = RealtimeEngine(Pipeline(separator, RATE, 2, get_profile("live")), BLOCK, store=store)
    control = LiveControl(engine, ChainSpec(first, "live"))
    source = FileSource(DEMO_SONG, RATE, 2)
    seconds = settle * (len(switches) + 2) + 10.0 * len(switches)
    recorder = Recorder(engine, seconds)
    live.set_jack_client_name(client)
    device = live.find_device(None, "output", "jack", need=engine.out_channels)
    stream = live.LiveStream(engine, None, device["index"], 0, RATE, callback=recorder, source=source.next)
    results = []
    stream.start()
    started = time.perf_counter()
    try:
        time.sleep(settle)
        for what, value in switches:
            xruns, misses = engine.stats.xruns, engine.stats.misses
            asked = time.perf_counter()
            setter = {"model": control.set_model, "profile": control.set_profile,
                      "keystage": lambda v: control.set_key_stage(bool(v))}[what]
            report = setter(value)
            finished = report.done.wait(30.0)
            took = time.perf_counter() - asked
            results.append({"what": what, "value": value, "finished": finished, "seconds": round(took, 3),
                            "xruns": engine.stats.xruns - xruns, "misses": engine.stats.misses - misses,
                            **report.as_dict()})
            time.sleep(settle)
        elapsed = time.perf_counter() - started
    finally:
        stream.stop()
        control.close()
    played = recorder.frames[:min(recorder.position, len(recorder.frames))]
    for r in results:
        if r.get("fade_start") is not None:
            r.update(around_fade(played, r["fade_start"], round(r["fade_ms"] * RATE / 1000.0)))
    return {"switches": results, "callbacks": engine.stats.callbacks, "seconds": round(elapsed, 3),
            "expected_callbacks": round(elapsed * RATE / BLOCK), "xruns": engine.stats.xruns,
            "misses": engine.stats.misses, "engine_switches": engine.stats.switches,
            "model": engine.pipeline.separator.spec.name, "profile": engine.pipeline.profile.name}


def format_switches(result: dict) -> str:
    lines = [f"switches on JACK dummy ({RATE} Hz, block {BLOCK}), demo song, main = full mix: "
             f"{result['callbacks']} callbacks in {result['seconds']} s (expected ~{result['expected_callbacks']}), "
             f"{result['xruns']} xruns, {result['misses']} misses in the whole run"]
    for r in result["switches"]:
        lines.append(
            f"  {r['what']} -> {r['value']}: crossfade {r['fade_ms']:.1f} ms, gap {r['gap_ms']:.1f} ms "
            f"(measured dropout {r.get('dropout_ms')} ms, jump ratio {r.get('jump_ratio') and round(r['jump_ratio'], 2)}), "
            f"latency {r['latency_before_ms']:.1f} -> {r['latency_after_ms'] or 0:.1f} ms, "
            f"build {r['build_ms'] or 0:.0f} ms + prime {r['prime_ms'] or 0:.0f} ms, "
            f"{r['xruns']} xruns and {r['misses']} misses from request to done ({r['misses_during']} during the fade)"
            + (f", ERROR {r['error']}" if r.get("error") else ""))
    return "\n".join(lines)


def main_result(model: str = "stemstream-student-int8") -> dict:
    """``run_switches`` on a JACK dummy server of its own."""
    from .. import live
    from .jack import JackServer

    with JackServer(realtime=None):
        live.rescan()
        try:
            return run_switches(switches=(("model", model), ("profile", "balanced")))
        finally:
            live.release_portaudio()


def main() -> int:
    print(format_switches(main_result()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
