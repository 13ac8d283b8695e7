"""Bad input and faults, tried as a hostile user would (issue 16): real files, real
disk-full, real signals, real UDP, real JACK. Each test names the point it covers."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_engine.cli import main

REPO = Path(__file__).resolve().parent.parent
STEMS = ("vocals", "accompaniment", "instrumental", "karaoke")


def noise(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.partial")] if folder.exists() else []


def cli(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream_engine.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, **kw)


# -- 1. output names ---------------------------------------------------------------
def test_same_named_inputs_each_get_their_own_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "a").mkdir(parents=True)
    inputs = {"a/x.wav": "WAV", "a/x.ogg": "OGG", "a/x.flac": "FLAC", "b/a/x.wav": "WAV"}
    for seed, (name, fmt) in enumerate(inputs.items()):
        sf.write(name, noise(0.5, seed=seed), 44100, format=fmt)
    sf.write("x.wav", noise(0.5, seed=9), 44100)
    code = main(["separate", *inputs, "x.wav", "x.wav", "--out", "O", "--model", "passthrough", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    expected = {"a/x.wav": "O/a/x.wav", "a/x.ogg": "O/a/x.ogg", "a/x.flac": "O/a/x.flac", "b/a/x.wav": "O/b/a/x",
                "x.wav": "O/x"}
    for src, folder in expected.items():
        x, _ = sf.read(src, dtype="float32", always_2d=True)
        y, _ = sf.read(Path(folder) / "vocals.wav", dtype="float32", always_2d=True)
        np.testing.assert_allclose(y, x, atol=1e-6, err_msg=src)  # passthrough: vocals = that input
        assert f"{folder}/" in out, folder  # the summary says where each went
    assert (tmp_path / "O" / "x-2" / "vocals.wav").exists()  # the same file twice: numbered, not overwritten
    assert not (tmp_path / "O" / "-x").exists() and not (tmp_path / "O" / "a-x").exists()


# -- 2. non-finite model output ------------------------------------------------------
@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A real exported ONNX model (with its card) whose weights are NaN: it outputs NaN."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from stream_engine.training.export import export_model
    from stream_engine.training.fixtures import fake_checkpoint, tiny_student

    m = tiny_student()
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(float("nan"))
    out = tmp_path_factory.mktemp("nanmodel")
    export_model(m, fake_checkpoint(m, "student"), out, "nanny", formats=("onnx",))
    return out / "nanny.onnx"


def test_nan_model_output_fails_the_file_offline_naming_the_model(tmp_path, nan_model, capsys):
    src = tmp_path / "song.wav"
    sf.write(src, noise(1.0), 44100)
    code = main(["separate", str(src), "--out", str(tmp_path / "O"), "--model", str(nan_model), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1  # one input failed
    assert "nanny" in err and "NaN" in err and "Traceback" not in err
    assert not list((tmp_path / "O").rglob("*.wav")) and not partials(tmp_path / "O")


def test_nan_model_output_is_played_dry_live_and_counted(nan_model):
    from stream_engine.pipeline import Pipeline
    from stream_engine.profiles import get_profile
    from stream_engine.realtime import RealtimeEngine, run_paced
    from stream_engine.separators.registry import load_separator

    rate, block = 48000, 256
    sep = load_separator(str(nan_model), "live", sample_rate=rate)
    engine = RealtimeEngine(Pipeline(sep, rate, 2, get_profile("live")), block, budget=block)
    source = noise(1.0, rate)
    played = run_paced(engine, source, realtime=False)
    assert np.isfinite(played).all()  # nothing non-finite reaches the device
    assert engine.stats.nonfinite_windows > 0
    status = engine.status()
    assert status["stats"]["misses"] >= engine.stats.nonfinite_windows
    assert all(np.isfinite(v).all() for v in status["meters"].values())
    tail = played[rate // 2:]
    assert np.sqrt(np.mean(tail ** 2)) > 0.5 * np.sqrt(np.mean(source ** 2))  # the dry mix plays, not silence


# -- 3, 12. write errors: disk full, --out on a file, empty folders ---------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs where the test may mount one; else None (a 1 MiB file-size limit is used)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        yield mnt, None
        return
    try:
        yield mnt, "tmpfs"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _limit_file_size():  # runs in the child: the fallback when no filesystem can be mounted
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_disk_full_names_the_file_and_cause_cleans_up_and_goes_on(tmp_path, small_disk, fmt):
    mnt, kind = small_disk
    big, small = tmp_path / "big.wav", tmp_path / "small.wav"
    sf.write(big, noise(6.0), 44100, subtype="FLOAT")  # ~2 MB a stem: cannot fit
    sf.write(small, noise(0.2), 44100, subtype="FLOAT")
    out = mnt / "O"
    r = cli("separate", big, small, "--out", out, "--model", "passthrough", "--format", fmt, "--quiet",
            preexec_fn=None if kind else _limit_file_size)
    assert r.returncode == 1, r.stderr  # one input failed
    assert "Traceback" not in r.stderr
    cause = "no space left" if kind else "file too large"
    assert any(str(out / "big") in line and cause in line for line in r.stderr.splitlines()), r.stderr
    assert "1 of 2 input(s) failed" in r.stderr
    assert not (out / "big").exists()  # no partial files, no empty folder
    assert not partials(out)
    assert all((out / "small" / f"{s}.{fmt}").exists() for s in STEMS)  # the next input was still separated


def test_out_on_a_file_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "song.wav"
    sf.write(src, noise(0.2), 44100)
    blocker = tmp_path / "notafolder"
    blocker.write_text("x")
    for target in (blocker, blocker / "sub"):
        assert main(["separate", str(src), "--out", str(target), "--model", "passthrough", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{blocker} is a file, not a folder" in err and "Errno" not in err


# -- 4. signals and stale partial files ---------------------------------------------
def _start_long_run(tmp_path: Path):
    src = tmp_path / "long.wav"
    if not src.exists():
        sf.write(src, noise(120.0), 44100, subtype="PCM_16")
    out = tmp_path / "O"
    proc = subprocess.Popen([sys.executable, "-m", "stream_engine.cli", "separate", str(src), "--out", str(out),
                             "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not partials(out):  # the default model: several seconds of writing
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it wrote"
        time.sleep(0.005)
    return proc, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_remove_partial_files(tmp_path, sig):
    proc, out = _start_long_run(tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err  # exited by itself, not killed by the signal
    assert "Traceback" not in err and f"stopped by {sig.name}" in err
    assert not partials(out)
    assert not (out / "long").exists()


def test_partials_of_a_killed_run_are_removed_by_the_next_run(tmp_path):
    proc, out = _start_long_run(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    assert partials(out)  # SIGKILL cannot be caught: the temporaries stay...
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # ...while a temporary of a writer that is still running must survive the clean-up
        running = out / "long" / f".vocals.{sleeper.pid}.0123abcd.wav.partial"
        running.write_bytes(b"in progress")
        src = tmp_path / "long.wav"
        sf.write(src, noise(0.5), 44100)
        r = cli("separate", src, "--out", out, "--model", "passthrough", "--quiet")
        assert r.returncode == 0, r.stderr
        assert partials(out) == [running]  # the killed run's are gone when the next run writes there
        assert all((out / "long" / f"{s}.wav").exists() for s in STEMS)
    finally:
        sleeper.kill()
        sleeper.wait()


# -- 5. permissions --------------------------------------------------------------------
def test_stems_are_written_with_the_umask(tmp_path):
    src = tmp_path / "song.wav"
    sf.write(src, noise(0.2), 44100)
    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        out = tmp_path / f"O{umask:o}"
        old = os.umask(umask)
        try:
            assert main(["separate", str(src), "--out", str(out), "--model", "passthrough", "--quiet"]) == 0
        finally:
            os.umask(old)
        for s in STEMS:
            assert (out / "song" / f"{s}.wav").stat().st_mode & 0o777 == mode, (oct(umask), s)


# -- 6. truncated input ----------------------------------------------------------------
def test_truncated_wav_is_reported(tmp_path, capsys):
    whole = tmp_path / "whole.wav"
    sf.write(whole, noise(5.0), 44100, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    code = main(["separate", str(cut), "--out", str(tmp_path / "O"), "--model", "passthrough", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0
    assert f"{cut}: the file is truncated" in err and "5.0 s" in err and "1.7 s" in err


# -- 7. eval: skipped and failed tracks -------------------------------------------------
def _eval_folder(root: Path) -> Path:
    def put(rel, x, rate=16000):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, x, rate, subtype="FLOAT")

    for i, track in enumerate(("good1", "good2")):
        put(f"{track}/vocals.wav", noise(1, 16000, seed=2 * i))
        put(f"{track}/accompaniment.wav", noise(1, 16000, seed=2 * i + 1))
    put("acc_only/accompaniment.wav", noise(1, 16000, seed=5))
    put("mix_only/mixture.wav", noise(1, 16000, seed=6))
    put("channels/vocals.wav", noise(1, 16000, 2, seed=7))
    put("channels/drums.wav", noise(1, 16000, 6, seed=8))
    put("rates/vocals.wav", noise(1, 16000, seed=9))
    put("rates/drums.wav", noise(1, 22050, seed=10), 22050)
    put("empty/vocals.wav", noise(1, 16000, seed=11))
    (root / "empty" / "drums.wav").write_bytes(b"")
    return root


def test_eval_lists_skipped_and_failed_tracks_and_keeps_them_out_of_the_mean(tmp_path, capsys):
    from stream_engine.evaluate import evaluate
    from stream_engine.separators.registry import load_separator

    root = _eval_folder(tmp_path / "data")
    good = evaluate(root, lambda rate: load_separator("passthrough", "live"), "live", progress=False)
    assert set(good["tracks"]) == {"good1", "good2"} and good["scored"] == 2
    assert set(good["skipped"]) == {"acc_only", "mix_only"}
    assert set(good["failed"]) == {"channels", "rates", "empty"}
    assert "different channel counts" in good["failed"]["channels"]
    assert "different sample rates" in good["failed"]["rates"]
    assert "empty" in good["failed"]["empty"]
    assert good["mean"]["vocals"] == pytest.approx(np.mean([good["tracks"][t]["vocals"] for t in ("good1", "good2")]))

    report = tmp_path / "report"
    code = main(["eval", str(root), "--model", "passthrough", "--quiet", "--json", str(tmp_path / "r.json"),
                 "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 2  # some tracks failed
    assert "Traceback" not in captured.err
    assert "2 scored, 2 skipped, 3 failed" in captured.out
    saved = json.loads((tmp_path / "r.json").read_text())
    assert set(saved["failed"]) == {"channels", "rates", "empty"} and set(saved["skipped"]) == {"acc_only", "mix_only"}
    md = next(report.glob("*.md")).read_text()
    assert "skipped: mix_only" in md and "failed: rates" in md


# -- 8. export of things that are not checkpoints -------------------------------------
def test_export_refuses_non_checkpoints_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    files = {"random.pt": os.urandom(4096), "text.pt": b"hello world\n" * 40}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "nokind.pt")
    torch.save({"kind": "student", "obj": logging.getLogger("x")}, tmp_path / "code.pt")  # needs code to load
    for name in ("random.pt", "text.pt", "nokind.pt", "code.pt"):
        r = cli("export", tmp_path / name, "--out", tmp_path / "exp", timeout=120)
        assert r.returncode == 2, (name, r.stderr)
        assert "Traceback" not in r.stderr and str(tmp_path / name) in r.stderr, (name, r.stderr)
        assert "weights_only=False" not in r.stderr and "weights_only` set to `False" not in r.stderr, name
    assert "refused" in cli("export", tmp_path / "code.pt", timeout=120).stderr
    assert "not a stemstream checkpoint" in cli("export", tmp_path / "nokind.pt", timeout=120).stderr


# -- 9. OSC ------------------------------------------------------------------------------
@pytest.fixture
def osc_rig():
    from stream_engine.osc import OscServer
    from stream_engine.params import ParamStore, Params

    stems = ["vocals", "accompaniment"]
    store = ParamStore(Params.for_stems(stems))
    status = lambda: {"meters": {}, "latency_ms": 0.0, "stats": {}}  # noqa: E731
    server = OscServer(store, stems, status, port=0, meter_hz=0)  # no effect chains loaded
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)

    def recv(want):
        from pythonosc.osc_message import OscMessage

        while True:
            msg = OscMessage(sock.recvfrom(65536)[0])
            if msg.address == want:
                return list(msg.params)

    yield store, server, sock, recv
    sock.close()
    server.close()


def test_osc_undecodable_datagrams_are_counted_not_traced(osc_rig, caplog):
    store, server, sock, recv = osc_rig
    rng = np.random.default_rng(0)
    n = 300
    with caplog.at_level(logging.DEBUG, logger="stemstream.osc"):
        for _ in range(n):  # an address that is not UTF-8, as a broken or hostile client sends
            sock.sendto(b"/\xff\xfe" + rng.integers(0, 256, 13, dtype=np.uint8).tobytes(), ("127.0.0.1", server.port))
        deadline = time.monotonic() + 10
        while server.counters["malformed"] < n and time.monotonic() < deadline:
            time.sleep(0.01)
    assert server.counters["malformed"] == n
    assert not any(r.exc_info for r in caplog.records)  # no traceback per packet
    assert len(caplog.records) <= 1
    from pythonosc.osc_message_builder import build_msg

    # still serving. UDP may drop a datagram even on loopback (a full receive buffer right after the
    # burst, on a busy machine): ask up to three times, as an OSC client would
    for attempt in range(3):
        sock.sendto(build_msg("/stemstream/get/stem/vocals/gain", []).dgram, ("127.0.0.1", server.port))
        try:
            assert recv("/stemstream/stem/vocals/gain") == [1.0]
            break
        except socket.timeout:
            if attempt == 2:
                raise


def test_osc_double_out_of_float_range_is_clamped_and_reported(osc_rig):
    from pythonosc.osc_message_builder import OscMessageBuilder

    store, server, sock, recv = osc_rig
    b = OscMessageBuilder("/stemstream/mic/gain")
    b.add_arg(1e300, OscMessageBuilder.ARG_TYPE_DOUBLE)
    sock.sendto(b.build().dgram, ("127.0.0.1", server.port))
    assert recv("/stemstream/clamped") == ["/stemstream/mic/gain", 1e300, 2.0]
    assert store.current.mic_gain == 2.0


def test_osc_effect_parameter_without_a_chain_is_refused(osc_rig):
    from pythonosc.osc_message_builder import build_msg

    store, server, sock, recv = osc_rig
    sock.sendto(build_msg("/stemstream/fx/vocals/999999999999/x", [0.5]).dgram, ("127.0.0.1", server.port))
    address, message = recv("/stemstream/error")
    assert address == "/stemstream/fx/vocals/999999999999/x" and "no effect chain" in message
    assert store.current.fx == {} or not dict(store.current.fx)


# -- 10. model cards ----------------------------------------------------------------------
@pytest.mark.parametrize("field,value,words", [("sample_rate", 1, "sample_rate 1 Hz"),
                                               ("lookahead", 10 ** 6, "exceed the window")])
def test_implausible_model_card_is_refused(tmp_path, nan_model, capsys, field, value, words):
    import shutil

    model = tmp_path / "odd.onnx"
    shutil.copy(nan_model, model)
    card = json.loads(nan_model.with_suffix(".json").read_text())
    card[field] = value
    model.with_suffix(".json").write_text(json.dumps(card))
    src = tmp_path / "song.wav"
    sf.write(src, noise(0.2), 44100)
    assert main(["separate", str(src), "--out", str(tmp_path / "O"), "--model", str(model), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "odd.json" in err and words in err


# -- 11. a host API's name picks its default device -----------------------------------
def test_jack_as_device_name_picks_the_jack_default(jack_server, tmp_path):
    from stream_engine import devices

    for kind in ("input", "output"):
        assert "jack" in devices.find_device("jack", kind)["hostapi"].lower()
    stats = tmp_path / "stats.json"
    r = cli("live", "--input", "jack", "--output", "jack", "--model", "passthrough", "--duration", "1.5",
            "--jack-name", "stemstream-h", "--stats-json", stats, timeout=120, env=jack_server.env)
    assert r.returncode == 0, r.stderr
    assert json.loads(stats.read_text())["input_device"]["hostapi"].lower().find("jack") >= 0
