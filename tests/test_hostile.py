"""The second hostile probe's reliability cases (issue 24, items 5-11): each fails on the code before
the fix (a hang, a traceback, a silent loss) and is now a clear message, with nothing torn or lost.
Real files, real FIFOs, real file-size limits, real subprocess CLI runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def noise(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)


def cli(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_engine.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=kw.pop("env", ENV), **kw)


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr[-3000:]


# -- 5. the manifest on a full disk ---------------------------------------------------------------
LIMIT = 64 * 1024


def _limit_file_size():  # in the child: writes past LIMIT bytes fail with EFBIG, as a full disk fails
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _prefill_manifest(out: Path, size: int) -> None:
    """A manifest of earlier tracks' records (each line as the batch writes it) of about ``size`` bytes."""
    out.mkdir(parents=True, exist_ok=True)
    lines, total, i = [], 0, 0
    while True:
        line = json.dumps({"track": f"old-{i:05d}", "input": f"/music/old-{i:05d}.wav", "status": "done",
                           "recipe": "x" * 16, "pad": "p" * 40}) + "\n"
        if total + len(line) > size:
            break
        lines.append(line)
        total += len(line)
        i += 1
    (out / "stemstream-manifest.jsonl").write_text("".join(lines))


@pytest.mark.parametrize("where", ["rewrite", "record"])
def test_manifest_on_a_full_disk_is_a_message_and_leaves_nothing_torn(tmp_path, where):
    """The manifest cannot be written (the compact rewrite at the start, or a record line later):
    exit 2 with one message naming the folder and the cause, no traceback, no torn line, no
    .tmp left; a later run (room again) removes any leftover and finishes the track."""
    song = tmp_path / "song.wav"
    sf.write(song, noise(0.1), 44100, subtype="PCM_16")  # stems ~17 KB each: under the limit
    out = tmp_path / "O"
    _prefill_manifest(out, LIMIT + 4096 if where == "rewrite" else LIMIT - 120)
    stale = out / ".stemstream-manifest.jsonl.99999.tmp"  # a run killed mid-rewrite long ago
    stale.write_text("{}")
    before = (out / "stemstream-manifest.jsonl").read_text()
    r = cli("separate", song, "--out", out, "--model", "passthrough", "--quiet", preexec_fn=_limit_file_size)
    assert r.returncode == 2, r.stderr
    no_traceback(r)
    assert str(out) in r.stderr and "file too large" in r.stderr, r.stderr
    assert not list(out.glob(".stemstream-manifest.jsonl.*.tmp"))
    text = (out / "stemstream-manifest.jsonl").read_text()
    assert text.startswith(before[:LIMIT - 200]) and text.endswith("\n")
    for line in text.splitlines():
        json.loads(line)  # every line whole
    r = cli("separate", song, "--out", out, "--model", "passthrough", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (out / "song" / "vocals.wav").exists()


# -- 6. special files as inputs -----------------------------------------------------------------
def test_fifo_and_dev_zero_among_inputs_are_refused_and_the_rest_is_done(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    good = tmp_path / "good.wav"
    sf.write(good, noise(0.3), 44100)
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "inner.flac")
    sf.write(folder / "fine.flac", noise(0.3), 44100)
    out = tmp_path / "O"
    try:
        r = cli("separate", fifo, "/dev/zero", good, folder, "--out", out, "--model", "passthrough", "--quiet",
                timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("separate hung on a FIFO or /dev/zero")
    no_traceback(r)
    assert r.returncode == 3, r.stderr  # three inputs failed
    assert f"{fifo}: is a FIFO (named pipe), not a regular file; refused" in r.stderr
    assert "/dev/zero: is a character device, not a regular file; refused" in r.stderr
    assert (out / "good" / "vocals.wav").exists() and (out / "fine" / "vocals.wav").exists()


# -- 7. truncated files of every format libsndfile can tell -----------------------------------------
@pytest.mark.parametrize("fmt,ext,subtype", [("AIFF", "aiff", "PCM_16"), ("OGG", "ogg", "VORBIS"),
                                             ("WAV", "wav", "PCM_16"), ("AU", "au", "PCM_16"),
                                             ("W64", "w64", "PCM_16")])
def test_truncated_files_are_warned_about(tmp_path, fmt, ext, subtype):
    whole = tmp_path / f"whole.{ext}"
    sf.write(whole, noise(3.0), 44100, format=fmt, subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[:len(data) // 2])
    r = cli("separate", whole, cut, "--out", tmp_path / "O", "--model", "passthrough", "--quiet")
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "truncated" in line]
    assert len(warned) == 1 and str(cut) in warned[0], r.stderr  # the cut file, not the whole one
    if fmt != "OGG":
        assert "header promises 3.0 s" in warned[0], warned


# -- 8. tracebacks where a message belongs --------------------------------------------------------
def _checkpoint(path: Path, **cfg_changes) -> Path:
    import torch

    from stream_engine.training.fixtures import tiny_student

    model = tiny_student()
    cfg = dict(n_fft=64, hop=16, ctx_fft=128, hidden=24, layers=2)
    state = model.state_dict()
    cfg.update(cfg_changes)
    torch.save({"kind": "student", "model_cfg": cfg, "model": state, "step": 0, "history": [],
                "config": {"sample_rate": 16000, "data": "synthetic", "preset": "test", "seed": 0}}, path)
    return path


@pytest.mark.parametrize("hidden", [-4, 100000, 10 ** 12])
def test_export_with_impossible_model_settings(tmp_path, hidden):
    pytest.importorskip("torch")
    ck = _checkpoint(tmp_path / "bad.pt", hidden=hidden)
    r = cli("export", ck, "--out", tmp_path / "exp", "--formats", "onnx", timeout=240)
    assert r.returncode == 2, r.stderr
    no_traceback(r)
    assert str(ck) in r.stderr and ("out of range" in r.stderr or "parameters" in r.stderr
                                    or "do not fit" in r.stderr), r.stderr
    assert not list((tmp_path / "exp").glob("*")) if (tmp_path / "exp").exists() else True


def test_export_options_checked_before_any_work(tmp_path):
    pytest.importorskip("torch")
    ck = _checkpoint(tmp_path / "good.pt")
    (tmp_path / "metrics-dir").mkdir()
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "afile").write_text("x")
    exp = tmp_path / "exp"
    cases = [(["--metrics", tmp_path / "metrics-dir"], "folder"), (["--metrics", tmp_path / "list.json"], "list"),
             (["--formats", "bogus"], "--formats"), (["--formats", "onnx,bogus"], "--formats")]
    for extra, words in cases:
        r = cli("export", ck, "--out", exp, *extra, timeout=240)
        assert r.returncode == 2 and words in r.stderr, (extra, r.stderr)
        no_traceback(r)
        assert not exp.exists() or not list(exp.iterdir()), (extra, list(exp.iterdir()))
    r = cli("export", ck, "--out", tmp_path / "afile", "--formats", "onnx", timeout=240)
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr, r.stderr
    no_traceback(r)


def _card(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "m.onnx"
    model.write_bytes(b"not reached: the card is refused first")
    card = {"name": "m", "format": "onnx", "sample_rate": 44100, "stems": ["vocals", "accompaniment"],
            "channels": 2, "window": 4096, "hop": 2048, "lookahead": 1024, "fade": 512, "stateful": False}
    card.update(changes)
    model.with_suffix(".json").write_text(json.dumps(card))
    return model


@pytest.mark.parametrize("window", [2 ** 31, 10 ** 12])
def test_card_with_a_huge_window_is_refused(tmp_path, window):
    song = tmp_path / "s.wav"
    sf.write(song, noise(0.2), 44100)
    r = cli("separate", song, "--out", tmp_path / "O", "--model", _card(tmp_path / "m", window=window), "--quiet")
    assert r.returncode == 2 and "larger than" in r.stderr and "m.json" in r.stderr, r.stderr
    no_traceback(r)


@pytest.mark.parametrize("port", ["70000", "-5", "99999999999999999999"])
def test_osc_port_out_of_range_is_a_usage_error(port):
    r = cli("live", "--input", "x", "--output", "y", "--osc-port", port, timeout=60)
    assert r.returncode == 2 and "--osc-port" in r.stderr, r.stderr
    no_traceback(r)


def test_unknown_fx_preset_fails_before_any_track(tmp_path):
    song = tmp_path / "s.wav"
    sf.write(song, noise(0.2), 44100)
    r = cli("separate", song, "--out", tmp_path / "O", "--model", "passthrough", "--fx", "vocals=nosuchpreset",
            "--quiet")
    assert r.returncode == 2 and "unknown effect preset 'nosuchpreset'" in r.stderr, r.stderr
    no_traceback(r)
    assert not (tmp_path / "O" / "s").exists()


def test_eval_outputs_checked_before_the_evaluation(tmp_path):
    data = tmp_path / "data" / "t1"
    data.mkdir(parents=True)
    for stem in ("vocals", "accompaniment"):
        sf.write(data / f"{stem}.wav", noise(1.0, seed=len(stem)), 44100)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    for extra, words in ((["--json", tmp_path / "adir"], "is a folder"),
                         (["--json", tmp_path / "nodir" / "r.json"], "does not exist"),
                         (["--report", tmp_path / "afile"], "is a file, not a folder"),
                         (["--report", tmp_path / "afile" / "sub"], "is a file, not a folder")):
        t0 = time.monotonic()
        r = cli("eval", tmp_path / "data", "--model", "dsp-center", "--quiet", *extra)
        assert r.returncode == 2 and words in r.stderr, (extra, r.stderr)
        assert "SDR" not in r.stdout  # refused before evaluating
        no_traceback(r)


# -- 9. OSC: patterns, big datagrams, bundles, replies to the asker -------------------------------
class _Client:
    def __init__(self, port):
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.dest = ("127.0.0.1", port)
        self.got: list[tuple[str, list]] = []

    def send_raw(self, data: bytes):
        self.sock.sendto(data, self.dest)

    def send(self, address, *args):
        from pythonosc.osc_message_builder import build_msg

        self.send_raw(build_msg(address, list(args)).dgram)

    def collect(self, seconds: float):
        from pythonosc.osc_packet import OscPacket

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65536)
            except OSError:
                continue
            for m in OscPacket(data).messages:
                self.got.append((m.message.address, list(m.message.params)))
        return self.got

    def wait_for(self, address, match=lambda a: True, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a, p in self.got:
                if a == address and match(p):
                    return p
            self.collect(0.2)
        raise AssertionError(f"no {address}; got {self.got[-10:]}")


@pytest.fixture
def osc_server():
    from stream_engine.osc import OscServer
    from stream_engine.params import ParamStore, Params

    stems = ["vocals", "accompaniment"]
    store = ParamStore(Params.for_stems(stems))
    server = OscServer(store, stems, lambda: {}, port=0, meter_hz=0)
    yield server, store
    server.close()


def test_osc_bad_pattern_is_answered_and_logged_without_traceback(osc_server, caplog):
    server, store = osc_server
    client = _Client(server.port)
    with caplog.at_level("DEBUG", logger="stemstream.osc"):
        for _ in range(50):
            client.send("/stemstream/stem/[\\]/gain", 0.5)
        client.send("/stemstream/stem/[z-a]/gain", 0.5)
        client.send("/stemstream/stem/[!v]*/gain", 0.25)  # a good negated pattern: accompaniment
        client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/stem/[\\]/gain")
        client.wait_for("/stemstream/error", lambda a: a[0] == "/stemstream/stem/[z-a]/gain")
        deadline = time.monotonic() + 5
        while store.current.stem("accompaniment").gain != 0.25 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert store.current.stem("accompaniment").gain == 0.25 and store.current.stem("vocals").gain == 1.0
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) <= 2


def test_osc_big_datagrams_and_bundles_are_read_whole(osc_server):
    """A bundle of 1476 messages in one datagram of ~60 KB: every message applied (python-osc's server
    read only 8192 bytes of it)."""
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message_builder import build_msg

    server, store = osc_server
    seen = []
    store.subscribe(lambda old, new: seen.append(new.stem("vocals").gain))
    b = OscBundleBuilder(IMMEDIATELY)
    n = 1476
    for i in range(n):
        b.add_content(build_msg("/stemstream/stem/vocals/gain", [float(np.float32((i + 1) / n))]))
    dgram = b.build().dgram
    assert 50_000 < len(dgram) < 65_000
    client = _Client(server.port)
    client.send_raw(dgram)
    deadline = time.monotonic() + 10
    while len(seen) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(seen) == n and store.current.stem("vocals").gain == pytest.approx(1.0)
    # and a single message of 20 KB (a long string): read whole, answered
    client.send("/stemstream/scene/save", "x" * 20000)
    assert "plain name" in client.wait_for("/stemstream/error")[1]


def test_osc_switch_replies_go_to_the_client_that_asked(tmp_path):
    """Two clients; A asks for a model switch, then B for a key-stage switch at once: A hears about the
    model, B about the key stage, neither about the other's (neither subscribed)."""
    from stream_engine.control import ChainSpec, LiveControl
    from stream_engine.osc import OscServer
    from stream_engine.params import ParamStore, Params
    from stream_engine.pipeline import Pipeline
    from stream_engine.profiles import get_profile
    from stream_engine.realtime import RealtimeEngine
    from stream_engine.separators.registry import load_separator

    pipeline = Pipeline(load_separator("dsp-center", "live", sample_rate=48000), 48000, 2, get_profile("live"))
    engine = RealtimeEngine(pipeline, 256, store=ParamStore(Params.for_stems(pipeline.stems)))
    control = LiveControl(engine, ChainSpec("dsp-center", "live"))
    server = OscServer(engine.store, list(pipeline.stems), engine.status, port=0, meter_hz=0, controls=control)
    running = [True]
    silence, out = np.zeros((256, 2), np.float32), np.zeros((256, 2), np.float32)

    def clock():
        while running[0]:
            engine.callback(silence, out, 256, None, None)
            time.sleep(256 / 48000)

    engine.start(thread=True)
    t = threading.Thread(target=clock, daemon=True)
    t.start()
    a, b = _Client(server.port), _Client(server.port)
    try:
        a.send("/stemstream/model", "passthrough")
        b.send("/stemstream/keystage", 1)
        a.wait_for("/stemstream/switched", lambda p: p[0] == "model", timeout=60)
        b.wait_for("/stemstream/switched", lambda p: p[0] == "keystage", timeout=60)
        a.collect(0.5)
        b.collect(0.5)
        assert not [m for m in a.got if m[0] == "/stemstream/keystage" or m[1][:1] == ["keystage"]], a.got
        assert not [m for m in b.got if m[0] == "/stemstream/model" or m[1][:1] == ["model"]], b.got
        a.send("/stemstream/model", "/tmp/some/model.onnx")  # over OSC, models by name only
        assert "by path over OSC" in a.wait_for("/stemstream/error", lambda p: p[0] == "/stemstream/model")[1]
    finally:
        running[0] = False
        t.join(5)
        engine.stop()
        server.close()
        control.close()


# -- 11. eval on stems of different lengths; a Ray address with nothing behind it ---------------------
def test_eval_refuses_stems_of_very_different_lengths(tmp_path):
    data = tmp_path / "data"
    (data / "short").mkdir(parents=True)
    (data / "fine").mkdir()
    sf.write(data / "short" / "vocals.wav", noise(2.0, seed=1), 44100)
    sf.write(data / "short" / "accompaniment.wav", noise(2.0, seed=2)[:10], 44100)  # 10 samples
    sf.write(data / "fine" / "vocals.wav", noise(1.0, seed=3), 44100)
    sf.write(data / "fine" / "accompaniment.wav", noise(1.0, seed=4)[:44000], 44100)  # within a block: scored
    r = cli("eval", data, "--model", "dsp-center", "--quiet")
    no_traceback(r)
    assert r.returncode == 2 and "differ in length" in r.stdout + r.stderr and "short" in r.stderr, r.stderr
    assert "fine" in r.stdout


def test_ray_address_with_nothing_there_fails_fast(tmp_path):
    pytest.importorskip("ray")
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a port nothing listens on
    song = tmp_path / "s.wav"
    sf.write(song, noise(0.2), 44100)
    t0 = time.monotonic()
    r = cli("separate", song, "--out", tmp_path / "O", "--model", "passthrough", "--ray-address",
            f"127.0.0.1:{port}", "--quiet", timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 2 and "nothing answers there" in r.stderr, r.stderr
    no_traceback(r)
    assert took < 15, took


# -- found by scripts/hostile_probe.py ---------------------------------------------------------------
@pytest.mark.parametrize("which", ["stemstream-manifest.jsonl", ".stemstream-manifest.lock"])
def test_manifest_or_its_lock_a_fifo_is_refused_not_waited_on(tmp_path, which):
    song = tmp_path / "s.wav"
    sf.write(song, noise(0.2), 44100)
    out = tmp_path / "O"
    out.mkdir()
    os.mkfifo(out / which)
    try:
        r = cli("separate", song, "--out", out, "--model", "passthrough", "--quiet", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"separate waited on the FIFO {which}")
    assert r.returncode == 2 and f"{which} is a FIFO" in r.stderr, r.stderr
    no_traceback(r)


def test_preset_of_non_objects_is_refused_before_any_track(tmp_path):
    song = tmp_path / "s.wav"
    sf.write(song, noise(0.2), 44100)
    preset = tmp_path / "junk.json"
    for body in ("[1, 2, 3]", '{"effects": "Gain"}', '{"effects": [{"type": "Gain", "params": [1]}]}'):
        preset.write_text(body)
        r = cli("separate", song, "--out", tmp_path / "O", "--model", "passthrough", "--fx", f"vocals={preset}",
                "--quiet")
        assert r.returncode == 2 and str(preset) in r.stderr, (body, r.stderr)
        no_traceback(r)


def test_file_names_that_are_not_utf8_are_separated(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.wav"
    sf.write(raw, noise(0.2), 44100)
    out = tmp_path / "O"
    r = subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", os.fsdecode(raw), "--out", str(out),
                        "--model", "passthrough", "--quiet"], capture_output=True, cwd=REPO, env=ENV, timeout=300)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    assert os.path.exists(os.fsencode(out) + b"/caf\xe9 \xff/vocals.wav")
    assert '"done"' in (out / "stemstream-manifest.jsonl").read_text()


def test_scene_with_wrong_types_is_refused_naming_it(tmp_path, monkeypatch):
    from stream_engine.scenes import load_scene

    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path))
    (tmp_path / "scenes").mkdir()
    for body in ({"guide": "loud"}, {"stems": {"vocals": 5}}, {"fx_params": "nope"}, {"fx": {"vocals": [5]}},
                 {"fx": {"vocals": [{"type": "Gain", "params": 3}]}}, {"key": [1]}):
        (tmp_path / "scenes" / "odd.json").write_text(json.dumps({"stemstream_scene": 1, **body}))
        with pytest.raises(ValueError, match="odd"):
            load_scene("odd")


def test_list_file_with_unknown_home_and_nul_bytes(tmp_path):
    """A list naming ~nosuchuser/x.wav (expanduser raises) and a line with a NUL byte (no file system
    takes it): each is a message, the good line is separated."""
    good = tmp_path / "good.wav"
    sf.write(good, noise(0.2), 44100)
    (tmp_path / "list.m3u").write_bytes(b"~nosuchuser-24/x.wav\nnul\x00byte.wav\n" + os.fsencode(good) + b"\n")
    r = cli("separate", tmp_path / "list.m3u", "--out", tmp_path / "O", "--model", "passthrough", "--quiet")
    no_traceback(r)
    assert r.returncode == 1 and "~nosuchuser-24/x.wav" in r.stderr and "NUL byte" in r.stderr, r.stderr
    assert (tmp_path / "O" / "good" / "vocals.wav").exists()
