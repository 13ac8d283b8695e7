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
before) and ``click_ratio`` (the loudest 1 ms of the third difference there,
over its 99th percentile in the second before or the second after, whichever
is higher: the new model's own sound is not a click). The click measure needs a
smooth input: with ``signal="tones"`` (three steady tones, the default) a hard
cut between two latencies scored 300-3900 and the 30 ms crossfade about 1
(simulated); on the demo song (``signal="demo"``) its drums' own edges hide a
cut, so there only the dropout measure says something.
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


def window_rms(x: np.ndarray, width: int) -> np.ndarray:
    return np.sqrt(np.mean(x[: len(x) // width * width].reshape(-1, width) ** 2, axis=1))


def around_fade(recording: np.ndarray, start: int, fade: int) -> dict:
    """Dropout and click measures for the fade at output position ``start`` (mono sum of channels)."""
    mono = recording.sum(axis=1).astype(np.float64)
    begin, end = start - 2400, start + fade + 4800  # 50 ms before the fade, 100 ms after it
    if start - RATE < 0 or end + RATE > len(mono):
        return {"dropout_ms": None, "click_ratio": None}
    before, region = mono[start - RATE:start], mono[begin:end]
    quiet = window_rms(region, WINDOW) < 0.1 * float(np.median(window_rms(before, WINDOW)))
    edges = np.diff(mono, 3)
    # the old chain's own edges before, the new one's after (another model sounds otherwise)
    steady = max(float(np.percentile(window_rms(edges[start - RATE:start - 96], 48), 99)),
                 float(np.percentile(window_rms(edges[end:end + RATE], 48), 99))) or 1e-12
    return {"dropout_ms": 1000.0 * WINDOW * int(quiet.sum()) / RATE,
            "click_ratio": float(window_rms(edges[begin:end], 48).max()) / steady}


def tones(seconds: float = 6.0) -> np.ndarray:
    """(frames, 2): a centred 220 Hz tone and two off-centre ones, whole cycles so the loop is seamless."""
    t = np.arange(int(seconds * RATE)) / RATE
    centre = 0.2 * np.sin(2 * np.pi * 220 * t)
    left = centre + 0.1 * np.sin(2 * np.pi * 331 * t + 1.0)
    right = centre + 0.05 * np.sin(2 * np.pi * 554 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def run_switches(switches=(("model", "stemstream-student-int8"), ("profile", "balanced")), first="dsp-center",
                 settle: float = 1.5, client: str = "stemstream-switch", signal: str = "tones") -> dict:
    """Play, switch as listed ((what, value) with what in model/profile/keystage), measure. A JACK
    server must be running (``stream_engine.tools.jack.JackServer``) and PortAudio must see it."""
    from .. import devices, live
    from ..control import ChainSpec, LiveControl
    from ..demo import DEMO_SONG
    from ..params import ParamStore, Params
    from ..pipeline import Pipeline
    from ..profiles import get_profile
    from ..realtime import RealtimeEngine
    from ..separators.registry import load_separator
    from ..sources import FileSource, LoopSource

    live.preload_backends()
    separator = load_separator(first, "live", sample_rate=RATE)
    store = ParamStore(Params.for_stems(separator.spec.stems, listen="full"))  # main = every stem
    engine = RealtimeEngine(Pipeline(separator, RATE, 2, get_profile("live")), BLOCK, store=store)
    control = LiveControl(engine, ChainSpec(first, "live"))
    source = FileSource(DEMO_SONG, RATE, 2) if signal == "demo" else LoopSource(tones())
    seconds = settle * (len(switches) + 2) + 10.0 * len(switches)
    recorder = Recorder(engine, seconds)
    devices.set_jack_client_name(client)
    device = devices.find_device(None, "output", "jack", need=engine.out_channels)
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
            "model": engine.pipeline.separator.spec.name, "profile": engine.pipeline.profile.name,
            "signal": signal}


def format_switches(result: dict) -> str:
    lines = [f"switches on JACK dummy ({RATE} Hz, block {BLOCK}), {result['signal']}, main = full mix: "
             f"{result['callbacks']} callbacks in {result['seconds']} s (expected ~{result['expected_callbacks']}), "
             f"{result['xruns']} xruns, {result['misses']} misses in the whole run"]
    for r in result["switches"]:
        lines.append(
            f"  {r['what']} -> {r['value']}: crossfade {r['fade_ms']:.1f} ms, gap {r['gap_ms']:.1f} ms "
            f"(measured dropout {r.get('dropout_ms')} ms, click ratio {r.get('click_ratio') and round(r['click_ratio'], 2)}), "
            f"latency {r['latency_before_ms']:.1f} -> {r['latency_after_ms'] or 0:.1f} ms, "
            f"build {r['build_ms'] or 0:.0f} ms + prime {r['prime_ms'] or 0:.0f} ms, "
            f"{r['xruns']} xruns and {r['misses']} misses from request to done ({r['misses_during']} during the fade)"
            + (f", ERROR {r['error']}" if r.get("error") else ""))
    return "\n".join(lines)


def main_result(model: str = "stemstream-student-int8", signal: str = "tones") -> dict:
    """``run_switches`` on a JACK dummy server of its own."""
    from .. import devices
    from .jack import JackServer

    with JackServer(realtime=None):
        devices.rescan()
        try:
            return run_switches(switches=(("model", model), ("profile", "balanced")), signal=signal)
        finally:
            devices.release_portaudio()


def main() -> int:
    for signal in ("tones", "demo"):
        print(format_switches(main_result(signal=signal)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
