"""The live path on a real JACK server (dummy driver: real time, no hardware).

The engine runs in this process on a sounddevice stream (``LiveStream``, the
code ``stemstream live`` runs); the probe (``stream_engine.tools.jack_probe``)
is a second process and JACK client. ``jack_connect`` wires them:

    probe:out -> engine:in ... engine:out -> probe:in      (round trip)
    probe:out_R -> probe:in_R                               (reference loop)

The reference loop measures what the probe and JACK's cycle-breaking add on
their own; the engine's port-to-port latency is round trip minus reference.
Timing figures are printed, not asserted (shared, noisy machine); the
latencies asserted are sample counts, which JACK makes exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from stream_engine import devices, live
from stream_engine.params import ParamStore, Params
from stream_engine.pipeline import Pipeline
from stream_engine.profiles import get_profile
from stream_engine.realtime import RealtimeEngine
from stream_engine.separators.registry import load_separator
from stream_engine.tools.jack_probe import Probe, delay

RATE = 48000
BLOCK = 256
REPO = Path(__file__).resolve().parent.parent
PERIOD = 24000  # clicks 0.5 s apart on each probe channel: far more than any live latency


def make_engine(model="passthrough", profile="live", routes=None, mic=None, karaoke=False, budget=None,
                mic_processor=None, mic_fx_in_callback=False):
    separator = load_separator(model, profile, sample_rate=RATE)
    store = ParamStore(Params.for_stems(separator.spec.stems, karaoke=karaoke))
    pipeline = Pipeline(separator, RATE, 2, get_profile(profile))
    return RealtimeEngine(pipeline, BLOCK, routes=routes, store=store, mic_channel=mic, budget=budget,
                          mic_processor=mic_processor, mic_fx_in_callback=mic_fx_in_callback)


@contextmanager
def engine_on_jack(jack_server, engine, client: str, inputs: int = 2):
    """The engine on a JACK stream whose client is called ``client``."""
    jack_server.activate()  # another test may have pointed JACK_DEFAULT_SERVER elsewhere
    devices.set_jack_client_name(client)
    device = devices.find_device(None, "output", "jack", need=max(inputs, engine.out_channels))
    stream = live.LiveStream(engine, device["index"], device["index"], inputs, RATE)
    stream.open()
    try:
        stream.start()
        jack_server.wait_for_ports(client, inputs + engine.out_channels)
        yield stream
    finally:
        stream.stop()


def run_probe(jack_server, tmp_path, wiring, inputs, outputs, seconds=4.0, **options):
    """Start the probe, apply ``wiring`` [(source, destination)], play and record."""
    probe = Probe("probe", inputs=inputs, outputs=outputs, seconds=seconds, period=PERIOD, **options)

    def wire():
        jack_server.wait_for_ports("probe", inputs + outputs)
        clients = {p.split(":")[0] for pair in wiring for p in pair}
        jack_server.isolate(*clients)
        for source, destination in wiring:
            jack_server.connect(source, destination)

    return probe.run(str(tmp_path / "probe.npz"), wire, env=jack_server.env)


def best_of_three(run_once):
    """Run a loopback up to three times; the first clean run ends it, else the best is judged.

    ``run_once(attempt)`` returns (clicks matched, worst channel: 1.0 all back; clean, whatever
    it measured). A click lost on a loaded machine says nothing about routing or latency: an
    xrun drops a period of audio and with it a click (fresh CI VMs: 1 xrun and 7 of 8 clicks
    back; once 1-9 xruns in each of three runs in a row, 7 of 8 back every time; once 7 of 8
    with no xrun counted). So the tests judge the clicks that came back, with a floor of
    CLICKS_BACK: the match is measured at one lag, so a wrong or wandering delay, silence or a
    distorted signal scores far below it.
    """
    runs = []
    for attempt in range(3):
        matched, clean, measured = run_once(attempt)
        runs.append((matched, attempt, measured))
        if clean and matched > 0.95:
            break
    return max(runs, key=lambda run: run[:2])[2]


CLICKS_BACK = 0.7  # at least 6 of the 8 clicks a channel plays in a 4 s probe run


def ms(samples: float) -> float:
    return 1000.0 * samples / RATE


def _dsp_center_run(jack_server, seconds: float) -> dict:
    engine = make_engine("dsp-center", "live", karaoke=True)
    before = jack_server.xrun_counts()
    with engine_on_jack(jack_server, engine, "stemstream-a") as stream:
        latency = stream.latency()
        time.sleep(seconds)
        active = stream.active
    after = jack_server.xrun_counts()
    stats = engine.stats.as_dict()
    c = stats["compute_ms"]
    cb = stream.timer.percentiles_ms()
    stalls = after["server_late"] - before["server_late"]
    print(f"\nJACK dummy ({'real-time' if jack_server.realtime else 'no real-time'} scheduling), dsp-center live, "
          f"block {BLOCK}, {seconds:.0f} s: {stats['callbacks']} callbacks, {stats['xruns']} xruns, "
          f"{stats['misses']} misses, {stats['dropped_frames']} dropped frames, cpu {stats['cpu_percent']:.1f}%")
    print(f"compute per call ms: p50 {c['p50']:.3f} p95 {c['p95']:.3f} p99 {c['p99']:.3f} max {c['max']:.3f}; "
          f"callback ms: p50 {cb['p50']:.4f} p99 {cb['p99']:.4f} max {cb['max']:.4f}; "
          f"budget {engine.budget} frames; worker priority raised: {stream.engine.tuning.worker_boosted}")
    print(f"latency: {latency.describe()}; jackd's own thread late {stalls} times, "
          f"late client cycles {after['client_late'] - before['client_late']}")
    assert active and engine.worker_error is None
    assert stats["callbacks"] > 0.8 * seconds * RATE / BLOCK
    return {**stats, "stalls": stalls}


def test_dsp_center_stream_on_jack(jack_server):
    """dsp-center, live profile, 256 frames, 10 s through JACK: 0 xruns, 0 misses.

    A shared machine can hold any thread back, the JACK client's included:
    measured in CI on a fresh VM, one client cycle in 10 s ran late while the
    Python callback itself took at most 0.77 ms and jackd's own thread was on
    time; and on this 2-core VM, idle, three runs in a row had 1 miss, 1 xrun
    and 2 xruns (the last with jackd's own thread late twice). So a run with an
    xrun or a miss is repeated, up to three runs, and one clean run passes.
    Otherwise every run must stay rare-event sized: an engine that xruns or
    misses by itself does so by the hundred in 10 s (a wrong budget misses on
    every one of ~1875 blocks, a blocking callback xruns every cycle). jackd's
    own (real-time, otherwise idle) thread running late means the whole
    machine stalled (measured while training jobs used both cores: single
    separator calls of 10 ms against a p99 of 0.3 ms at the same moments), so
    each stall allows a few more.
    """
    runs = []
    for attempt in range(3):
        run = _dsp_center_run(jack_server, 10.0)
        if run["xruns"] == 0 and run["misses"] == 0:
            return
        runs.append(run)
        print(f"attempt {attempt + 1}: {run['xruns']} xruns, {run['misses']} misses, "
              f"{run['stalls']} times jackd's own thread late; again")
    for run in runs:
        assert run["misses"] <= 5 * run["stalls"] + 3, run
        assert run["xruns"] <= 5 * run["stalls"] + 3, run


@pytest.mark.parametrize("model,profile", [("passthrough", "live"), ("passthrough", "balanced"),
                                           ("passthrough", "quality"), ("dsp-center", "live")])
def test_loopback_latency_matches_report(jack_server, tmp_path, model, profile):
    """Clicks through the engine arrive after the reported latency.

    Karaoke off, so the output is the sum of the stems: the input itself for
    passthrough, and for dsp-center too (its vocals + accompaniment == input).
    """
    def run_once(attempt):
        engine = make_engine(model, profile)
        client = f"stemstream-b-{profile}-{model}-{attempt}"
        (tmp_path / str(attempt)).mkdir()
        with engine_on_jack(jack_server, engine, client) as stream:
            reported = stream.latency()
            wiring = [("probe:out_0", f"{client}:in_0"), ("probe:out_1", f"{client}:in_1"),
                      (f"{client}:out_0", "probe:in_0"), (f"{client}:out_1", "probe:in_1"),
                      ("probe:out_2", "probe:in_2")]
            result = run_probe(jack_server, tmp_path / str(attempt), wiring, inputs=3, outputs=3)
        # a miss would play the dry input at the same delay, so the lag holds either way; count them anyway
        lags = [delay(result.played[:, c], result.recorded[:, c], PERIOD // 2) for c in range(3)]
        print(f"\nengine during the loopback: {engine.stats.misses} misses, {engine.stats.xruns} xruns; "
              f"clicks matched (engine left, right, reference): {[round(q, 3) for _, q in lags]}")
        return min(q for _, q in lags), engine.stats.xruns == 0, (engine, reported, lags)

    engine, reported, lags = best_of_three(run_once)
    reference, quality = lags[2]
    assert quality > CLICKS_BACK, f"reference loop lost the clicks ({quality:.2f})"
    round_trips = [lag for lag, _ in lags[:2]]
    for lag, q in lags[:2]:
        assert q > CLICKS_BACK, f"clicks did not come back through the engine at one lag (match {q:.2f})"
    assert round_trips[0] == round_trips[1]
    measured = round_trips[0] - reference
    print(f"\nloopback {model} {profile}: round trip {round_trips[0]} samples, probe reference loop {reference}, "
          f"engine port to port {measured} samples = {ms(measured):.2f} ms; reported {reported.samples} samples = "
          f"{reported.ms:.2f} ms ({reported.describe()}); difference {measured - reported.samples} samples; "
          f"engine alone (no device) {engine.latency().samples} samples")
    assert abs(measured - reported.samples) <= BLOCK
    # Sharper, and measured the same in every profile: port to port is the engine's own latency plus
    # one JACK period that PortAudio's JACK stream adds; PortAudio's reported output latency (512)
    # also counts the dummy driver's playback latency (256), which a loop between clients bypasses.
    assert measured - engine.latency().samples == BLOCK


def test_routing_stems_to_their_ports(jack_server, tmp_path):
    """--route vocals=3,4 accompaniment=1,2: passthrough puts the input on 3,4 and silence on 1,2."""
    from stream_engine.mixer import parse_route

    routes = dict(parse_route(r) for r in ("vocals=3,4", "accompaniment=1,2"))

    def run_once(attempt):
        engine = make_engine("passthrough", "live", routes=routes)
        assert engine.out_channels == 4
        client = f"stemstream-c-{attempt}"
        (tmp_path / str(attempt)).mkdir()
        with engine_on_jack(jack_server, engine, client) as stream:
            reported = stream.latency()
            wiring = [("probe:out_0", f"{client}:in_0"), ("probe:out_1", f"{client}:in_1"),
                      ("probe:out_2", "probe:in_4")]
            wiring += [(f"{client}:out_{k}", f"probe:in_{k}") for k in range(4)]
            result = run_probe(jack_server, tmp_path / str(attempt), wiring, inputs=5, outputs=3)
        rec, played = result.recorded, result.played
        matched = min(delay(played[:, c], rec[:, port], PERIOD // 2)[1] for c, port in ((0, 2), (1, 3), (2, 4)))
        return matched, engine.stats.xruns == 0, (reported, rec, played)

    reported, rec, played = best_of_three(run_once)
    reference, q_ref = delay(played[:, 2], rec[:, 4], PERIOD // 2)
    assert q_ref > CLICKS_BACK
    # accompaniment (ports 1, 2) is silence; vocals (ports 3, 4) carry left and right, in order
    silence = float(np.max(np.abs(rec[:, :2])))
    left, q_left = delay(played[:, 0], rec[:, 2], PERIOD // 2)
    right, q_right = delay(played[:, 1], rec[:, 3], PERIOD // 2)
    print(f"\nrouting: ports 1-2 (accompaniment) peak {silence:.2e}; port 3 <- left at {left - reference} samples "
          f"(match {q_left:.3f}), port 4 <- right at {right - reference} samples (match {q_right:.3f}); "
          f"reported {reported.samples}")
    assert silence < 1e-6
    assert q_left > CLICKS_BACK and q_right > CLICKS_BACK
    assert left == right
    assert abs((left - reference) - reported.samples) <= BLOCK
    # the left clicks are only on port 3 and the right clicks only on port 4 (each where its own
    # input put it; one lost to an xrun is allowed for, as above)
    for port, other in ((2, 1), (3, 0)):
        clicks = set(np.flatnonzero(np.abs(rec[:, port]) > 0.25).tolist())
        expected = np.flatnonzero(played[:, port - 2]) + left
        expected = set(expected[expected < len(rec)].tolist())
        assert clicks <= expected, f"port {port + 1} carries clicks of input {other + 1} too"
        assert len(clicks) > CLICKS_BACK * len(expected)


def _mic_gain(inp, out):
    """A mic effect chain stand-in: the clicks stay clicks, the timing is the lane's."""
    np.multiply(inp, 0.8, out=out)


@pytest.mark.parametrize("fx", [None, "thread", "callback"])
def test_microphone_latency_is_one_block_raw_and_two_with_threaded_effects(jack_server, tmp_path, fx):
    """The mic bypasses the separator: one device block raw. Its effect chain runs on its own
    thread (MicLane), one block behind the callback: two blocks; run in the callback (the
    user's choice, ``--mic-fx-in-callback``), one block again."""
    def run_once(attempt):
        engine = make_engine("passthrough", "live", mic=2, mic_processor=_mic_gain if fx else None,
                             mic_fx_in_callback=fx == "callback")
        client = f"stemstream-d-{fx or 'raw'}-{attempt}"
        (tmp_path / str(attempt)).mkdir()
        with engine_on_jack(jack_server, engine, client, inputs=3) as stream:
            reported = stream.latency()
            wiring = [("probe:out_0", f"{client}:in_0"), ("probe:out_1", f"{client}:in_1"),
                      ("probe:out_2", f"{client}:in_2"), ("probe:out_3", "probe:in_2"),
                      (f"{client}:out_0", "probe:in_0"), (f"{client}:out_1", "probe:in_1")]
            # clicks on the mic (probe out 3) and the reference loop (out 4) only; the music inputs stay silent
            result = run_probe(jack_server, tmp_path / str(attempt), wiring, inputs=3, outputs=4,
                               click_channels=[3, 4])
        rec, played = result.recorded, result.played
        lags = [delay(played[:, 3], rec[:, 2], PERIOD // 2), delay(played[:, 2], rec[:, 0], PERIOD // 2),
                delay(played[:, 2], rec[:, 1], PERIOD // 2)]
        matched = min(lags[0][1], lags[1][1] / gain, lags[2][1] / gain)
        return matched, engine.stats.xruns == 0, (engine, stream, reported, lags)

    gain = 0.8 if fx else 1.0  # the clicks arrive whole, through the chain
    engine, stream, reported, lags = best_of_three(run_once)
    (reference, q_ref), (mic_left, q_left), (mic_right, q_right) = lags
    measured = mic_left - reference
    late = engine.mic_lane.late if fx == "thread" else 0
    print(f"\nmicrophone ({fx or 'raw'}): mic to output {measured} samples = "
          f"{ms(measured):.2f} ms (device block {BLOCK} = {ms(BLOCK):.2f} ms; PortAudio reports "
          f"{round(sum(stream.device_latency) * RATE)} samples of device latency); late mic blocks {late}; "
          f"music path reported {reported.samples} samples = {reported.ms:.2f} ms")
    assert q_ref > CLICKS_BACK and q_left > CLICKS_BACK * gain and q_right > CLICKS_BACK * gain
    assert mic_left == mic_right
    assert measured == (2 if fx == "thread" else 1) * BLOCK
    if fx == "thread":
        assert engine.mic_lane.latency == BLOCK  # what the lane adds to the device block
    assert measured < reported.samples - BLOCK  # far below the separated music's latency


def _cli(args, env, timeout=60):
    cmd = [sys.executable, "-m", "stream_engine.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def test_cli_live_writes_stats(jack_server, tmp_path):
    stats_file = tmp_path / "stats.json"
    r = _cli(["live", "--input", "system", "--output", "system", "--host-api", "jack", "--model", "dsp-center",
              "--profile", "live", "--block", str(BLOCK), "--duration", "3", "--stats-json", str(stats_file),
              "--jack-name", "stemstream-e", "--osc-port", "0", "--mic", "3", "--mic-fx", "mic-vocal"], jack_server.env)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "latency:" in r.stdout
    assert "OSC on 127.0.0.1:" in r.stdout
    stats = json.loads(stats_file.read_text())
    for key in ("callbacks", "xruns", "misses", "dropped_frames", "cpu_percent", "compute_ms", "latency",
                "callback_ms"):
        assert key in stats, key
    assert stats["callbacks"] > 0.5 * 3 * RATE / BLOCK
    assert set(stats["compute_ms"]) >= {"p50", "p95", "p99", "max"}
    assert stats["compute_ms"]["max"] is not None
    lat = stats["latency"]
    assert lat["total_samples"] == sum(p["samples"] for p in lat["parts"].values())
    assert abs(lat["total_ms"] - 1000.0 * lat["total_samples"] / RATE) < 0.01
    assert stats["exit"]["code"] == 0
    assert stats["mic_fx"]["latency_samples"] == BLOCK and stats["mic_fx"]["error"] is None
    assert not (tmp_path / "stats.json.tmp").exists()


def test_cli_devices_lists_jack(jack_server):
    r = _cli(["devices", "--json"], jack_server.env)
    assert r.returncode == 0, r.stderr
    devices = json.loads(r.stdout)
    jack = [d for d in devices if "jack" in d["hostapi"].lower()]
    assert jack and jack[0]["inputs"] >= 2 and jack[0]["outputs"] >= 2
    assert _cli(["devices"], jack_server.env).stdout.count("JACK") >= 1


@pytest.mark.parametrize("flag", ["--input", "--output"])
def test_cli_missing_device_is_a_clear_error(jack_server, flag):
    args = {"--input": "system", "--output": "system"}
    args[flag] = "no-such-device"
    r = _cli(["live", "--input", args["--input"], "--output", args["--output"], "--duration", "1"], jack_server.env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "no-such-device" in r.stderr and "stemstream devices" in r.stderr


def test_cli_too_many_channels_is_a_clear_error(jack_server):
    r = _cli(["live", "--input", "system", "--output", "system", "--host-api", "jack", "--route", "main=1,2",
              "vocals=15,16", "--duration", "1"], jack_server.env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "16 needed" in r.stderr


def test_cli_vanishing_server_is_a_clear_error(jack_server, tmp_path):
    """jackd quits under a running `stemstream live`: a message and exit code 1, no traceback, no hang."""
    from stream_engine.tools.jack import JackServer

    private = JackServer(name=f"stemstream-vanish-{os.getpid()}", realtime=False, ports=2)
    private.start()
    env = dict(private.env)
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "stream_engine.cli", "live", "--input", "system", "--output",
                                 "system", "--host-api", "jack", "--model", "passthrough", "--duration", "30",
                                 "--stats-json", str(tmp_path / "s.json"), "--jack-name", "vanish"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        private.wait_for_ports("vanish", 4, timeout=30)
        time.sleep(1.0)
        # The server quits under the client. (SIGTERM, not SIGKILL: a killed jackd keeps its entry in
        # JACK's shared registry of 8 servers, and after 8 of them no jackd starts on the machine.)
        private.proc.terminate()
        private.proc.wait(timeout=10)
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        private.stop()
        for leftover in Path("/dev/shm").glob(f"jack_sem.*_{private.name}_*"):  # the abandoned client's
            leftover.unlink(missing_ok=True)
    print(out, err, f"exited {took:.2f} s after jackd quit")
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err
    assert "audio device stopped" in err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["exit"]["code"] == 1


def test_cli_interrupt_stops_cleanly(jack_server, tmp_path):
    """Ctrl-C (SIGINT) ends a run without --duration: stats written, exit 0, no traceback."""
    import signal

    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen([sys.executable, "-m", "stream_engine.cli", "live", "--input", "system", "--output",
                             "system", "--host-api", "jack", "--model", "passthrough", "--stats-json",
                             str(stats_file), "--jack-name", "stemstream-int"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=jack_server.env, cwd=REPO)
    try:
        jack_server.wait_for_ports("stemstream-int", 4, timeout=30)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(out, err)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped by SIGINT" in out
    stats = json.loads(stats_file.read_text())
    assert stats["callbacks"] > 0 and stats["exit"]["reason"] == "stopped by SIGINT"
    assert "stemstream-int:in_0" not in jack_server.ports_list()  # the JACK client is gone


def test_routes_file(tmp_path):
    """--routes FILE: JSON or BUS=CH,CH lines, channels counted from 1 (no device needed)."""
    (tmp_path / "r.json").write_text('{"karaoke": [1, 2], "vocals": [3, 4], "mic": 5}')
    (tmp_path / "r.txt").write_text("# stems to a DAW\nvocals=3,4\naccompaniment=1,2  # the band\n")
    (tmp_path / "bad.txt").write_text("vocals=three\n")
    assert live.load_routes(tmp_path / "r.json") == {"karaoke": [0, 1], "vocals": [2, 3], "mic": [4]}
    assert live.load_routes(tmp_path / "r.txt") == {"vocals": [2, 3], "accompaniment": [0, 1]}
    with pytest.raises(live.LiveError, match="bad route"):
        live.load_routes(tmp_path / "bad.txt")
    with pytest.raises(live.LiveError, match="No such file"):
        live.load_routes(tmp_path / "missing.txt")


def test_cli_live_mirrors_faders_to_a_daw(jack_server):
    """--daw reaper: the stems' faders arrive on a real UDP server standing in for REAPER."""
    import socket

    daw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daw.bind(("127.0.0.1", 0))
    daw.settimeout(0.2)
    r = _cli(["live", "--input", "system", "--output", "system", "--host-api", "jack", "--model", "passthrough",
              "--duration", "1", "--jack-name", "stemstream-daw", "--daw", "reaper",
              "--daw-port", str(daw.getsockname()[1]), "--daw-tracks", "vocals=3", "accompaniment=4"],
             jack_server.env)
    received = []
    try:
        while True:
            received.append(daw.recv(65536))
    except socket.timeout:
        pass
    finally:
        daw.close()
    assert r.returncode == 0, r.stderr
    assert "mirroring stem faders to reaper" in r.stdout
    assert any(b"/track/3/volume" in m for m in received) and any(b"/track/4/volume" in m for m in received)


FOUR_STEM_ROUTES = ["vocals=1,2", "drums=3,4", "bass=5,6", "other=7,8"]


def _live_four_stems(jack_server, folder: Path, model: str, client: str):
    """`stemstream live` with ``model`` and FOUR_STEM_ROUTES; the probe clicks into its two
    inputs and records its eight outputs. Returns (stats, recorded, played)."""
    import signal

    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_engine.cli", "live", "--input", "system", "--output", "system",
         "--host-api", "jack", "--model", model, "--profile", "live", "--block", str(BLOCK),
         "--duration", "60", "--jack-name", client, "--stats-json", str(folder / "stats.json"),
         "--route", *FOUR_STEM_ROUTES],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=jack_server.env, cwd=REPO)
    try:
        jack_server.wait_for_ports(client, 2 + 8, timeout=30)
        wiring = [("probe:out_0", f"{client}:in_0"), ("probe:out_1", f"{client}:in_1")]
        wiring += [(f"{client}:out_{k}", f"probe:in_{k}") for k in range(8)]
        result = run_probe(jack_server, folder, wiring, inputs=8, outputs=2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["routes"] == {"vocals": [1, 2], "drums": [3, 4], "bass": [5, 6], "other": [7, 8]}
    assert stats["channels"]["out"] == 8
    return stats, result.recorded, result.played


def test_cli_live_puts_each_of_four_stems_on_its_own_ports(jack_server, tmp_path):
    """`stemstream live` with a four-stem ONNX model (stem k = input x gain k) and
    --route vocals=1,2 drums=3,4 bass=5,6 other=7,8: every stem arrives on its own pair of
    JACK ports, left on the odd port and right on the even one, at its own level (which
    names the stem), all at the same delay, and nothing else arrives there."""
    from conftest import FOUR_STEM_GAINS, write_gain_model

    model = write_gain_model(tmp_path)
    amplitude = 0.5  # the probe's clicks

    def run_once(attempt):
        stats, rec, played = _live_four_stems(jack_server, tmp_path / str(attempt), str(model),
                                              f"stemstream-4s-{attempt}")
        # the match at the best lag is the stem's gain when every click came back
        lags = [delay(played[:, port % 2], rec[:, port], PERIOD // 2) for port in range(8)]
        matched = min(q / FOUR_STEM_GAINS[port // 2] for port, (_, q) in enumerate(lags))
        return matched, stats["xruns"] == 0, (stats, rec, played, lags)

    stats, rec, played, lags = best_of_three(run_once)
    print(f"\nfour stems on JACK: lags {[lag for lag, _ in lags]}, matches {[round(q, 3) for _, q in lags]}, "
          f"{stats['xruns']} xruns, {stats['misses']} misses; model {stats['model']}")
    assert stats["model"] == "gains-4stem"
    lag = lags[0][0]
    assert all(lg == lag for lg, _ in lags), "the stems arrived at different delays"
    for port in range(8):
        gain = FOUR_STEM_GAINS[port // 2]
        source = port % 2  # odd ports (1, 3, ...) carry the left input, even ones the right
        assert CLICKS_BACK < lags[port][1] / gain < 1.02, (port, lags[port])
        clicks = np.flatnonzero(np.abs(rec[:, port]) > 0.5 * amplitude * min(FOUR_STEM_GAINS))
        expected = np.flatnonzero(played[:, source]) + lag
        assert set(clicks.tolist()) <= set(expected.tolist()), f"port {port + 1} carries other clicks too"
        # each click at this stem's level: the port carries this stem and no other
        np.testing.assert_allclose(rec[clicks, port], amplitude * gain, atol=1e-3)


def test_cli_live_dsp_4stem_stems_on_their_ports_sum_to_the_input(jack_server, tmp_path):
    """The baseline live on JACK, each stem on its own ports: the four left ports add up to
    the left input (and the right ones to the right) at the reported latency, and a click,
    the most percussive sound there is, lands mostly on the drums' ports."""
    def run_once(attempt):
        stats, rec, played = _live_four_stems(jack_server, tmp_path / str(attempt), "dsp-4stem",
                                              f"stemstream-4b-{attempt}")
        sums = [rec[:, side::2].sum(axis=1) for side in (0, 1)]
        lags = [delay(played[:, side], sums[side], PERIOD // 2) for side in (0, 1)]
        return min(q for _, q in lags), stats["xruns"] == 0, (stats, rec, lags)

    stats, rec, lags = best_of_three(run_once)
    energy = {stem: float(np.sum(rec[:, 2 * k : 2 * k + 2] ** 2)) for k, stem in
              enumerate(("vocals", "drums", "bass", "other"))}
    print(f"\ndsp-4stem on JACK: sum of the stems' ports at lags {lags}; click energy per stem {energy}; "
          f"{stats['xruns']} xruns, {stats['misses']} misses")
    assert stats["model"] == "dsp-4stem"
    (left, q_left), (right, q_right) = lags
    assert left == right
    assert CLICKS_BACK < q_left < 1.02 and CLICKS_BACK < q_right < 1.02
    assert abs(left - stats["latency"]["total_samples"]) <= 2 * BLOCK
    assert max(energy, key=energy.get) == "drums"
