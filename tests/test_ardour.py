"""The producer's workflow against a real DAW: Ardour 7, headless, on a JACK dummy server.

Every part is the real one: a fresh ``jackd -d dummy`` per test, an Ardour
session made by ``ardour7-lua`` on Ardour's Dummy backend
(``stream_engine.tools.ardour``), the headless ``hardour`` recording it,
``stemstream live`` as its own process and JACK client, a player
(``jack_probe --play``, a second PortAudio JACK client) that plays a song into
stemstream and, as the timing reference, straight into an Ardour track too,
and OSC over UDP on 127.0.0.1:

    player:out_0,1 -> stemstream:in_0,1      stemstream:out_0,1 -> ardour:vocals/audio_in 1,2
    player:out_0,1 -> ardour:dry/audio_in      stemstream:out_2,3 -> ardour:accompaniment/audio_in 1,2

Ardour records all three tracks on one clock, so the stems' offset from the
dry track is stemstream's port-to-port latency, whatever Ardour's own
capture alignment does (the same for every track fed by a non-physical port).

About 1 Ardour start in 10 on a dummy server is dropped by JACK ("JACK
HALTED") and leaves that server damaged: such a start is retried (up to ATTEMPTS starts) on a
fresh jackd, and the retry is counted and printed. Nothing else is retried.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from stream_engine.tools.ardour import ArdourHalted, ArdourInstall, HeadlessArdour, OscClient, create_session
from stream_engine.tools.jack import JackServer
from stream_engine.tools.jack_probe import Probe, delay

RATE = 48000
BLOCK = 256  # the JACK period and stemstream's device block
SONG_SECONDS = 6.0
REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "stream_engine" / "demo" / "demo_song.flac"
MODEL, PROFILE = "dsp-center", "live"
STEM_PORTS = {"vocals": (0, 1), "accompaniment": (2, 3)}  # stemstream:out_N, from --route below
ROUTES = ["vocals=1,2", "accompaniment=3,4"]
ATTEMPTS = 3  # Ardour starts per test (see rig)
RETRIES = {"halted": 0}  # JACK-HALTED starts retried in this session (printed by each test)

INSTALL = ArdourInstall.find()
pytestmark = [
    pytest.mark.skipif(INSTALL is None, reason="Ardour is not installed (Debian: apt-get install "
                       "--no-install-recommends ardour; scripts/setup.sh test does it)"),
    pytest.mark.skipif(not JackServer.available(), reason="jackd2 is not installed"),
]


def env_for(jack: JackServer) -> dict:
    # subprocesses import this checkout's stream_engine, whatever is installed
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(jack.env, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def song_file(folder: Path) -> Path:
    """The first SONG_SECONDS of the bundled demo song, at the JACK server's rate (float WAV)."""
    import soundfile as sf
    import soxr

    data, rate = sf.read(DEMO, frames=int(SONG_SECONDS * 44100), dtype="float32", always_2d=True)
    path = folder / "song.wav"
    sf.write(path, soxr.resample(data, rate, RATE).astype(np.float32), RATE, subtype="FLOAT")
    return path


class Live:
    """``stemstream live`` as a child process, on JACK, stopped by SIGINT (as a user's Ctrl-C)."""

    def __init__(self, jack: JackServer, *extra: str, ports: int, name: str = "stemstream"):
        self.name = name
        cmd = [sys.executable, "-m", "stream_engine.cli", "live", "--input", "system", "--output", "system",
               "--host-api", "jack", "--model", MODEL, "--profile", PROFILE, "--block", str(BLOCK),
               "--jack-name", name, "--osc-port", "0", "--quiet", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env_for(jack), cwd=REPO)
        self.lines = []
        self.osc_port = None
        # "OSC on 127.0.0.1:PORT" comes once the stream is open; a reader thread, so a process that
        # hangs without a word cannot hang the test
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.match(r"OSC on 127\.0\.0\.1:(\d+)", line)
                if m:
                    self.osc_port = int(m.group(1))
                    found.set()
                    return
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60) or self.osc_port is None:
            self.proc.kill()
            raise AssertionError(f"stemstream live did not start: {''.join(self.lines)} {self.proc.stderr.read()}")
        jack.wait_for_ports(name, ports, timeout=20)  # 2 in + the routing's outputs

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, "".join(self.lines) + out, err


def osc_get(port: int, path: str, timeout: float = 2.0):
    """``/stemstream/get/<path>`` over UDP; the value stemstream replies with."""
    client = OscClient(port=port)
    try:
        client.send(f"/stemstream/get/{path}")
        for address, args in client.receive(timeout):
            if address == f"/stemstream/{path}":
                return args[0] if len(args) == 1 else args
    finally:
        client.close()
    raise AssertionError(f"no reply to /stemstream/get/{path}")


def start_ardour(tmp_path: Path, jack: JackServer, tracks, inputs, osc: OscClient, attempt: int,
                 address_only: bool = True) -> HeadlessArdour:
    home = tmp_path / f"home{attempt}"
    home.mkdir()
    folder = create_session(INSTALL, tmp_path / f"session{attempt}", "stems", tracks, home=str(home),
                            jack_env=jack.env, osc_reply_port=osc.reply_port,
                            inputs=inputs, address_only=address_only)
    ardour = HeadlessArdour(INSTALL, folder, home=str(home), jack_env=jack.env).start()
    n_inputs = sum(channels for _, channels in tracks)
    try:
        ardour.wait_ready(osc, lambda: sum("/audio_in " in p for p in jack.client_ports("ardour")) >= n_inputs + 2)
    except BaseException:
        # a halted Ardour still holds UDP 3819: left running, it would answer the retry's OSC
        # (measured: the retry's Ardour moved to another port and the old one took the messages)
        ardour.stop()
        raise
    osc.send("/transport_stop")  # headless Ardour starts rolling on load (measured)
    time.sleep(0.5)  # a locate while the stop still declicks is refused ("bad transition", measured)
    osc.send("/goto_start")
    time.sleep(0.5)
    ardour._check_alive()  # a halt in these first seconds is still the start-up flake
    return ardour


def expect(osc: OscClient, wanted: list, timeout: float = 5.0) -> None:
    """Wait for Ardour's feedback to confirm each (address, args) in ``wanted``."""
    missing, seen = set(wanted), []
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        got = osc.receive(0.2)
        seen += got
        missing -= set(got)
    assert not missing, f"Ardour did not confirm {sorted(missing)} within {timeout} s; it said {seen}"


def rig(tmp_path: Path, body):
    """Run ``body(stack, jack, attempt)`` on a fresh jackd; again on a fresh one if JACK halted Ardour.

    Up to ATTEMPTS starts: at the measured 10-15% HALTED rate on a loaded 2-core machine, two starts
    fail together in about 2% of runs, three in about 0.3% (one red CI run sinks a whole submission)."""
    for attempt in range(ATTEMPTS):
        (tmp_path / f"session{attempt}").mkdir()
        with ExitStack() as stack:
            # the log stays in tmp_path, for the next one who has to read what jackd said
            jack = JackServer(name=f"stemstream-ardour-{os.getpid()}-{attempt}", rate=RATE, period=BLOCK,
                              ports=8, realtime=None, log_path=str(tmp_path / f"jackd{attempt}.log"))
            jack.start()
            stack.callback(jack.stop)
            try:
                return body(stack, jack, attempt)
            except ArdourHalted as exc:
                if attempt == ATTEMPTS - 1:
                    raise
                RETRIES["halted"] += 1
                print(f"\nJACK HALTED at Ardour's start (the documented dummy-server flake); retrying on a "
                      f"fresh jackd: {exc}")


def unwire_system(jack: JackServer, *clients: str) -> None:
    """PortAudio connects its clients to system:* on its own: take those connections away."""
    for port, peers in jack.connections().items():
        if port.split(":", 1)[0] in clients:
            for peer in peers:
                if peer.startswith("system:"):
                    if peer.startswith("system:capture"):
                        jack.disconnect(peer, port)
                    else:
                        jack.disconnect(port, peer)


def recorded(ardour: HeadlessArdour, track: str, channels: int) -> np.ndarray:
    """Ardour's capture files of one track, (frames, channels)."""
    import soundfile as sf

    # "Take1_vocals-1%L.wav": take name (Ardour 7's default), track, take number, channel
    files = [f for f in ardour.recorded_files() if re.fullmatch(rf"(.*_)?{track}-\d+%[LR]\.wav", f.name)]
    assert len(files) == channels, (track, [f.name for f in ardour.recorded_files()])
    cols = [sf.read(f, dtype="float32")[0] for f in sorted(files)]  # %L sorts before %R
    n = min(len(c) for c in cols)
    return np.stack([c[:n] for c in cols], axis=1)


# A 256-frame block of a recorded stem "matches" the offline stem when no sample differs by more
# than this. Measured: recordings are bit-exact (0.0) where nothing glitched: the live path runs
# the offline path's framer and separator, and Ardour records 32-bit float untouched. The
# tolerance leaves room for float rounding only (-100 dBFS); a stem on the wrong track, a sample
# of misalignment or a gain in the path costs orders of magnitude more.
TOLERANCE = 1e-5
SLIP = 8  # a glitch (a dropped or repeated JACK period) may shift the rest of a take by whole periods
GAP = 8  # damaged blocks closer than this belong to one damaged stretch (one glitch)


def separator_memory_blocks() -> int:
    """How many blocks one glitch may spoil: dsp-center's window plus its spectral smoothing
    (exponential, its CentreMask's ``smoothing_ms``) decaying below TOLERANCE. Measured: one lost period in the
    input spoiled 64 consecutive blocks of the stems (about 0.34 s) and none after."""
    from stream_engine.separators.registry import load_separator

    sep = load_separator(MODEL, PROFILE, sample_rate=RATE)
    decay = math.log(1 / TOLERANCE) * sep.centre.smoothing_ms / 1000 * RATE
    return math.ceil((sep.spec.window + decay) / BLOCK) + GAP


def compare_blocks(rec: np.ndarray, want: np.ndarray, at: int) -> dict:
    """Block by block, ``want`` against ``rec`` from ``at`` on: exact in place, exact a few whole
    periods away (after a dropped or repeated period), or damaged; and the damaged stretches
    (first block, length in blocks)."""
    counts = {"exact": 0, "slipped": 0, "damaged": 0}
    damaged = []
    for b, start in enumerate(range(0, len(want) - BLOCK + 1, BLOCK)):
        block = want[start : start + BLOCK]
        where = [at + start + k * BLOCK for k in (0, *range(-SLIP, 0), *range(1, SLIP + 1))]
        fits = [w for w in where if 0 <= w <= len(rec) - BLOCK
                and np.max(np.abs(rec[w : w + BLOCK] - block)) <= TOLERANCE]
        kind = "exact" if fits and fits[0] == at + start else "slipped" if fits else "damaged"
        counts[kind] += 1
        if kind == "damaged":
            damaged.append(b)
    stretches = []
    for b in damaged:
        if stretches and b - (stretches[-1][0] + stretches[-1][1]) < GAP:
            stretches[-1][1] = b - stretches[-1][0] + 1
        else:
            stretches.append([b, 1])
    return {**counts, "stretches": [tuple(x) for x in stretches]}


def test_stems_recorded_in_ardour_line_up_with_offline_stems_by_the_reported_latency(tmp_path):
    """The producer's workflow, end to end: song -> stemstream live -> JACK -> Ardour records a track
    per stem; shifted by the latency stemstream reports over OSC, the recordings equal what
    ``stemstream separate`` writes for the same song, model and profile.

    On a loaded machine a real-time chain glitches now and then: the separator's worker is late
    (a miss, counted by stemstream) or a JACK client misses a cycle (counted by jackd, or by the
    player's PortAudio stream). A take with no glitch counted anywhere must be exact, every block;
    a take with counted glitches may have that many spoiled blocks (and the rest of the take
    shifted by whole periods), no more. A glitch nobody counted fails the test.
    """
    import json

    import soundfile as sf

    started = time.monotonic()
    song = song_file(tmp_path)
    offline_dir = tmp_path / "offline"
    r = subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", str(song), "--model", MODEL,
                        "--profile", PROFILE, "--out", str(offline_dir), "--quiet"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    want = {stem: sf.read(offline_dir / "song" / f"{stem}.wav", dtype="float32")[0] for stem in STEM_PORTS}
    want["dry"] = sf.read(song, dtype="float32")[0]
    tracks = [("dry", 2), ("vocals", 2), ("accompaniment", 2)]

    def body(stack, jack, attempt):
        stats_file = tmp_path / f"stats{attempt}.json"
        # --budget: the worker runs 2048 frames ahead, so a loaded machine's stalls rarely cost a
        # miss; the reported latency includes it (it is what a DAW must compensate)
        live = Live(jack, "--no-karaoke", "--route", *ROUTES, "--budget", "2048", "--stats-json", str(stats_file),
                    ports=6)
        stack.callback(live.stop)
        latency_ms = float(osc_get(live.osc_port, "latency"))
        osc = OscClient()
        stack.callback(osc.close)
        player = Probe("player", inputs=1, outputs=2, seconds=SONG_SECONDS + 1.0, play=str(song))
        # the session names the ports its tracks record: Ardour connects them when it loads
        inputs = {"dry": ["player:out_0", "player:out_1"]}
        inputs.update({stem: [f"stemstream:out_{k}" for k in ports] for stem, ports in STEM_PORTS.items()})
        state = {}

        def wire():  # the player is up and waits: start Ardour, wire, arm, roll
            ardour = start_ardour(tmp_path, jack, tracks, inputs, osc, attempt)
            state["ardour"] = ardour
            stack.callback(ardour.stop)
            unwire_system(jack, "stemstream", "player")
            jack.connect("player:out_0", "stemstream:in_0")
            jack.connect("player:out_1", "stemstream:in_1")
            conns = jack.connections()
            for track, ports in inputs.items():  # what the session file asked for, and nothing else
                for channel, port in enumerate(ports, start=1):
                    assert conns[f"ardour:{track}/audio_in {channel}"] == [port], conns
            osc.set_surface(feedback=3 | 16)  # 16: transport and record state too
            osc.drain()
            for ssid in range(1, len(tracks) + 1):
                osc.send("/strip/recenable", ssid, 1)
            osc.send("/rec_enable_toggle")
            expect(osc, [("/strip/recenable", (ssid, 1.0)) for ssid in range(1, len(tracks) + 1)]
                   + [("/rec_enable_toggle", (1.0,))])
            osc.send("/transport_play")
            expect(osc, [("/transport_play", (1.0,))])
            time.sleep(0.5)  # the transport rolls before the song starts
            state["jackd_before"] = jack.xrun_counts()

        played = player.run(str(tmp_path / f"player{attempt}.npz"), wire, env=env_for(jack))
        time.sleep(latency_ms / 1000 + 0.5)  # the stems' tail reaches Ardour
        ardour = state["ardour"]
        osc.send("/transport_stop")
        osc.send("/save_state")
        jackd = {k: v - state["jackd_before"][k] for k, v in jack.xrun_counts().items()}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ardour.recorded_files()) < 2 * len(tracks):
            time.sleep(0.1)
        time.sleep(1.0)  # Ardour finishes writing the files after the transport stopped
        ardour.stop()
        code, out, err = live.stop()
        assert code == 0, err
        stats = json.loads(stats_file.read_text())
        glitches = {"jackd: server late": jackd["server_late"], "jackd: client late": jackd["client_late"],
                    "player xruns": played.xruns_playing, "stemstream misses": stats["misses"],
                    "stemstream dropped blocks": -(-stats["dropped_frames"] // BLOCK)}
        return latency_ms, glitches, stats, {t: recorded(ardour, t, c) for t, c in tracks}

    latency_ms, glitches, stats, rec = rig(tmp_path, body)
    reported = round(latency_ms * RATE / 1000)
    n = len(want["dry"])
    at = {track: delay(want[track][:, 0], rec[track][:, 0], len(rec[track]) - n)[0] for track in rec}
    blocks = {(track, c): compare_blocks(rec[track][:, c], want[track][:, c], at[track])
              for track in rec for c in range(2)}
    counted = sum(glitches.values())
    offset = at["vocals"] - at["dry"]
    print(f"\nArdour: song on the dry track at {at['dry']}; stems at {at['vocals']}, {at['accompaniment']}: offset "
          f"{offset} samples; stemstream reported {latency_ms:.3f} ms = {reported} samples over OSC; difference "
          f"{offset - reported} samples (reported: {stats['algorithmic_latency']['parts']}); blocks of {BLOCK} "
          f"(exact, slipped by whole periods, damaged, damaged stretches as (first block, length)): "
          f"{ {f'{t}/{c}': tuple(v.values()) for (t, c), v in blocks.items()} }; glitches counted {glitches}; "
          f"stemstream PortAudio status flags {stats['xruns']}; JACK-HALTED retries so far {RETRIES['halted']}; "
          f"{time.monotonic() - started:.1f} s")
    assert at["vocals"] == at["accompaniment"], at  # both stems on one clock
    # The target: the reported latency lines the stems up to within one device block.
    assert abs(offset - reported) <= BLOCK, (offset, reported)
    # Sharper, as measured (and as test_live_jack measures port to port): what OSC reports is the
    # engine's latency; PortAudio's JACK stream adds exactly one period on top.
    assert offset - reported == BLOCK, (offset, reported)
    memory = separator_memory_blocks()
    for key, counts in blocks.items():
        if counted == 0:
            assert counts["exact"] == n // BLOCK, (key, counts, "nothing glitched, yet the take differs")
        else:
            # each counted glitch may spoil one stretch as long as the separator's memory (glitches
            # close together make one longer stretch: measured up to 95 blocks from a burst of them)
            assert len(counts["stretches"]) <= counted, (key, counts, glitches)
            assert sum(length for _, length in counts["stretches"]) <= memory * counted, (key, counts, memory)
            # and the comparison still means something: most of the take is exact in place
            assert counts["exact"] >= 0.5 * (n // BLOCK), (key, counts, glitches)


def test_daw_ardour_preset_moves_the_right_strips_of_a_real_ardour(tmp_path):
    """``stemstream live --daw ardour``: fader, mute and solo changes sent to stemstream over OSC arrive
    on the Ardour strips named by --daw-tracks, in dB, read back through Ardour's own feedback."""
    tracks = [("dry", 2), ("vocals", 2), ("accompaniment", 2)]  # a dry track first: ssid != stem index

    def body(stack, jack, attempt):
        osc = OscClient()
        stack.callback(osc.close)
        # Ardour's "Auto" port mode: stemstream's mirror is a surface of its own, with Ardour's
        # defaults (it never sends /set_surface), while this test's surface asks for feedback
        ardour = start_ardour(tmp_path, jack, tracks, {}, osc, attempt, address_only=False)
        stack.callback(ardour.stop)
        osc.send("/strip/gain", 2, -20.0)  # away from 0 dB, so stemstream's first sync must show
        assert ("/strip/gain", (2, -20.0)) in osc.receive(0.5)
        live = Live(jack, "--daw", "ardour", "--daw-tracks", "vocals=2", "accompaniment=3", ports=4)
        stack.callback(live.stop)
        feedback = {"start": osc.receive(1.0)}
        ctl = OscClient(port=live.osc_port)
        stack.callback(ctl.close)
        steps = [("vocals/gain", 0.5), ("accompaniment/gain", 2.0), ("accompaniment/mute", 1),
                 ("vocals/solo", 1), ("vocals/gain", 0.0), ("accompaniment/mute", 0)]
        for path, value in steps:
            ctl.send(f"/stemstream/stem/{path}", value)
            feedback[path, value] = osc.receive(0.5)
        code, out, err = live.stop()
        assert code == 0, err
        return feedback

    fb = rig(tmp_path, body)
    for key, messages in fb.items():
        print(key, [m for m in messages if m[0] in ("/strip/gain", "/strip/mute", "/strip/solo")])

    def strip(messages, address):
        return [args for a, args in messages if a == address]

    assert (2, 0.0) in strip(fb["start"], "/strip/gain")  # the initial sync: vocals at unity
    assert strip(fb["vocals/gain", 0.5], "/strip/gain") == [(2, pytest.approx(20 * np.log10(0.5), abs=0.01))]
    assert strip(fb["accompaniment/gain", 2.0], "/strip/gain") == [(3, pytest.approx(6.02, abs=0.01))]
    assert strip(fb["accompaniment/mute", 1], "/strip/mute") == [(3, 1.0)]
    assert strip(fb["vocals/solo", 1], "/strip/solo") == [(2, 1.0)]
    assert strip(fb["accompaniment/mute", 0], "/strip/mute") == [(3, 0.0)]
    gains = strip(fb["vocals/gain", 0.0], "/strip/gain")
    assert len(gains) == 1 and gains[0][0] == 2 and gains[0][1] < -190, gains  # -inf
    for messages in fb.values():  # the dry strip is never touched
        assert all(args[0] != 1 for a, args in messages if a in ("/strip/gain", "/strip/mute"))


def test_daw_session_cli_makes_one_track_per_stem_wired_to_stemstream(tmp_path):
    """``stemstream daw-session``: Ardour's own Lua tool writes a session whose tracks take their
    inputs from stemstream's ports for each routed bus, with the OSC surface on, without a JACK
    server. (That Ardour makes such connections on load is what the end-to-end test asserts.)"""
    import xml.etree.ElementTree as ET

    home = tmp_path / "home"
    home.mkdir()
    # no JACK server: the session is made on Ardour's Dummy backend (and may not start one)
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(home), JACK_NO_START_SERVER="1",
               JACK_DEFAULT_SERVER=f"no-such-server-{os.getpid()}")
    r = subprocess.run([sys.executable, "-m", "stream_engine.cli", "daw-session", str(tmp_path / "mix"),
                        "--route", "vocals=1,2", "accompaniment=3,4", "mic=5", "--jack-name", "stems"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    print(r.stdout, r.stderr[-2000:])
    assert r.returncode == 0, r.stderr
    assert "--daw ardour --daw-tracks vocals=1 accompaniment=2\n" in r.stdout  # the mic is no stem
    root = ET.parse(tmp_path / "mix" / "mix.ardour").getroot()
    wired = {}
    for route in root.iter("Route"):
        io = next((io for io in route.iter("IO") if io.get("direction") == "Input"), None)
        if io is not None and route.get("name") != "Master":
            wired[route.get("name")] = [[c.get("other") for c in port.findall("Connection")]
                                        for port in io.findall("Port")]
    assert wired == {"vocals": [["stems:out_0"], ["stems:out_1"]], "accompaniment": [["stems:out_2"], ["stems:out_3"]],
                     "mic": [["stems:out_4"]]}
    osc = next(p for p in root.iter("Protocol") if p.get("name") == "Open Sound Control (OSC)")
    assert osc.get("active") == "1"
    r = subprocess.run([sys.executable, "-m", "stream_engine.cli", "daw-session", str(tmp_path / "bad"),
                        "--route", "vocals=1,2,3"], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 2 and "one or two channels" in r.stderr and "Traceback" not in r.stderr
