"""The desktop app with real parts: a JACK dummy server, UDP OSC, files on disk.

Qt runs offscreen here (set before Qt is imported); one test runs the
``--screenshot`` command under a real X server (``xvfb-run``).
"""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import json
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401 - pins None for PySide6 6.12 on CPython 3.11 (see gui/__init__.py)
from pythonosc.osc_message_builder import build_msg  # noqa: E402
from pythonosc.osc_packet import OscPacket  # noqa: E402
from gui_windows import window_factory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_MS = 30000  # model warm-up on a busy 2-core machine


@pytest.fixture(scope="module")
def jack():
    """A private JACK dummy server (own name, so parallel runs do not meet);
    PortAudio is (re)initialised after it is up and let go before it stops."""
    from stream_engine.devices import rescan
    from stream_engine.errors import LiveError
    from stream_engine.tools.jack import JackServer

    if not shutil.which("jackd") or not JackServer.available():
        pytest.skip("jackd (and the JACK tools) not installed")
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    server = JackServer(name=f"stemstream-gui-test-{os.getpid()}", ports=2)
    server.start()
    try:
        rescan()
    except (OSError, LiveError) as exc:
        server.stop()
        pytest.skip(f"PortAudio unavailable: {exc}")
    yield server
    import sounddevice as sd

    sd._terminate()
    server.stop()
    if previous is None:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
    else:
        os.environ["JACK_DEFAULT_SERVER"] = previous
    sd._initialize()


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    yield from window_factory(qtbot, dialogs=True)


def _start(qtbot, w):
    from PySide6.QtCore import Qt

    errors = len(w.errors)
    qtbot.mouseClick(w.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state == "running" or len(w.errors) > errors, timeout=START_TIMEOUT_MS)
    assert w.state == "running", w.errors


def _stop(qtbot, w):
    from PySide6.QtCore import Qt

    qtbot.mouseClick(w.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state == "idle", timeout=10000)


class OscClient:
    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = ("127.0.0.1", port)

    def send(self, address, *args):
        self.sock.sendto(build_msg(address, list(args)).dgram, self.server)

    def wait_for(self, address, qtbot, timeout=5.0, value=None):
        """Next value sent to ``address`` (the Qt loop keeps running meanwhile).

        With ``value``, earlier messages to the address carrying other values
        (e.g. the initial state sent on subscribe) are skipped.
        """
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.05)
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                qtbot.wait(10)
                continue
            for m in OscPacket(data).messages:
                if m.message.address == address and (value is None or list(m.message.params) == value):
                    return list(m.message.params)
        raise TimeoutError(f"no {address}{'' if value is None else f' = {value}'} within {timeout}s")

    def close(self):
        self.sock.close()


def test_start_and_stop_on_jack_dummy(qtbot, jack, make_window):
    w = make_window("--input", "JACK", "--output", "JACK", "--model", "passthrough", "--profile", "live",
                    "--no-key-shift")
    assert "JACK" in w.live.input_box.currentData() and "JACK" in w.live.output_box.currentData()
    _start(qtbot, w)
    session = w.session
    qtbot.waitUntil(lambda: session.stats()["callbacks"] > 20, timeout=10000)  # the JACK clock drives it
    assert w.start_button.text().endswith("Stop")
    qtbot.waitUntil(lambda: "ms" in w.latency_ind.text(), timeout=2000)
    assert w.live.model_box.isEnabled()  # the model can change while running (a crossfade, test_gui_live.py)
    _stop(qtbot, w)
    assert w.session is None and session.stream is None
    assert w.live.model_box.isEnabled()
    assert w.errors == []


def test_meters_move_when_audio_flows(qtbot, jack, make_window):
    """The demo song played through the engine on the JACK clock (the dummy's
    capture ports are silent) lights the stem meters and the spectrogram."""
    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    silent = w.live.spectrogram.image.copy()
    _start(qtbot, w)
    strips = w.live.strips
    qtbot.waitUntil(lambda: all(s.meter.peak > -40 for s in strips.values()), timeout=10000)
    qtbot.waitUntil(lambda: w.live.main_strip.meter.rms > -50, timeout=5000)
    assert w.meter_frames() > 0
    w.live.spec_source.setCurrentIndex(w.live.spec_source.findData("vocals"))
    qtbot.wait(300)
    assert (w.live.spectrogram.image != silent).any()
    _stop(qtbot, w)


def test_fader_changes_the_engine_parameter_and_reaches_osc_subscribers(qtbot, make_window):
    w = make_window("--model", "passthrough")
    client = OscClient(w.osc.port)
    try:
        client.send("/stemstream/subscribe", "127.0.0.1", client.port)
        client.wait_for("/stemstream/stem/vocals/gain", qtbot)  # the initial state
        w.live.strips["vocals"].fader.setValue(50)
        assert w.store.current.stem("vocals").gain == pytest.approx(0.5)
        assert client.wait_for("/stemstream/stem/vocals/gain", qtbot, value=[0.5]) == [pytest.approx(0.5)]
        w.live.strips["accompaniment"].mute.click()
        assert w.store.current.stem("accompaniment").mute is True
        w.nudge_key(+1)
        assert w.store.current.key == 1
        assert client.wait_for("/stemstream/karaoke/key", qtbot, value=[1]) == [1]
    finally:
        client.close()


def test_osc_message_moves_the_fader(qtbot, make_window):
    w = make_window("--model", "passthrough")
    client = OscClient(w.osc.port)
    try:
        client.send("/stemstream/stem/accompaniment/gain", 1.5)
        qtbot.waitUntil(lambda: w.live.strips["accompaniment"].fader.value() == 150, timeout=5000)
        client.send("/stemstream/karaoke/key", -3)
        qtbot.waitUntil(lambda: w.live.key.value() == -3, timeout=5000)
        client.send("/stemstream/karaoke/on", 0)
        qtbot.waitUntil(lambda: not w.karaoke.isChecked(), timeout=5000)
        client.send("/stemstream/stem/vocals/solo", 1)
        qtbot.waitUntil(lambda: w.live.strips["vocals"].solo.isChecked(), timeout=5000)
    finally:
        client.close()
    assert w.store.current.stem("accompaniment").gain == pytest.approx(1.5)


def test_broken_model_file_shows_an_error_and_the_app_stays_usable(qtbot, jack, make_window, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model" * 10)
    w = make_window("--input", "demo", "--output", "JACK", "--model", str(broken), "--profile", "live",
                    "--no-key-shift")
    from PySide6.QtCore import Qt

    qtbot.mouseClick(w.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: bool(w.errors) and w.state == "idle", timeout=START_TIMEOUT_MS)
    assert "broken.onnx" in w.errors[-1], w.errors
    assert w._error_box is not None and w._error_box.isVisible()
    assert w.start_button.isEnabled() and w.isVisible()
    w._error_box.close()
    w.live.model_box.setCurrentIndex(w.live.model_box.findData("passthrough"))
    _start(qtbot, w)
    _stop(qtbot, w)


def _separate_demo_in_files_tab(w, model: str, out):
    """Start separating the demo song in the Files tab with ``model``; returns the tab."""
    files = w.files
    files.out_edit.setText(str(out))
    files.model_box.setCurrentIndex(files.model_box.findData(model))
    files.add_demo()
    files.separate_all()
    return files


def test_file_separated_in_the_files_tab_appears_with_its_stems(qtbot, make_window, tmp_path):
    w = make_window("--model", "passthrough")
    files = _separate_demo_in_files_tab(w, "passthrough", tmp_path / "out")
    assert files.job is not None  # separation runs in the background
    qtbot.waitUntil(lambda: files.job is None, timeout=30000)
    assert w.errors == []
    stems = files.stems_of("demo_song")
    assert set(stems) == {"vocals", "accompaniment", "instrumental", "karaoke"}
    for name, path in files.results["demo_song"].items():
        assert path.exists() and path.parent == tmp_path / "out" / "demo_song"
    assert files.progress.value() == 1000
    copied = files.export_to(list(files.results["demo_song"].values()), tmp_path / "export")
    assert len(copied) == 4 and all(p.exists() for p in copied)


@pytest.mark.skipif(not shutil.which("xvfb-run"), reason="xvfb-run not installed")
@pytest.mark.skipif(not shutil.which("jackd"), reason="jackd not installed")
def test_screenshot_command_under_xvfb(tmp_path):
    shot = tmp_path / "live.png"
    timings = tmp_path / "timings.json"
    env = dict(os.environ, STEMSTREAM_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("QT_QPA_PLATFORM", None)  # the real X server
    env.pop("JACK_DEFAULT_SERVER", None)
    cmd = ["xvfb-run", "-a", sys.executable, "-m", "gui.app", "--jack-dummy", "--screenshot", str(shot),
           "--after", "1", "--model", "passthrough", "--profile", "live", "--input", "demo", "--no-key-shift",
           "--osc-port", "0", "--timings", str(timings)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 720)
    t = json.loads(timings.read_text())
    assert t["errors"] == []
    assert t["engine"]["callbacks"] > 0 and "launch_to_first_sound_s" in t


def test_effect_chain_edits_reach_the_running_engine(qtbot, jack, make_window):
    """A parameter edit goes live through Params.fx; adding an effect rebuilds the pipeline while
    playing (a switch with a crossfade, the same session and stream)."""
    w = make_window("--input", "demo", "--output", "JACK", "--model", "passthrough", "--profile", "live",
                    "--no-key-shift", "--fx", "vocals=vocal")
    fx = w.live.fx
    assert [e["type"] for e in fx.chains["vocals"]] == ["Compressor", "Reverb"]
    _start(qtbot, w)
    chain = w.session.effects.chains["vocals"]
    fx.list.setCurrentRow(0)
    fx._param_boxes["ratio"].setValue(6.0)
    assert w.store.current.fx[("vocals", 0, "ratio")] == pytest.approx(6.0)
    qtbot.waitUntil(lambda: chain.slots[0].plugin.ratio == pytest.approx(6.0), timeout=5000)
    first = w.session
    fx.type_box.setCurrentText("Gain")
    fx._add_builtin()
    from PySide6.QtCore import Qt

    fx.list.item(1).setCheckState(Qt.Unchecked)  # bypass the reverb
    assert fx.apply_button.isEnabled()
    fx.apply_button.click()
    qtbot.waitUntil(lambda: [s.type for s in w.session.effects.chains["vocals"].slots] == ["Compressor", "Gain"],
                    timeout=START_TIMEOUT_MS)
    assert w.state == "running" and w.session is first and w.session.stats()["switches"] == 1
    labels = [s.type for s in w.session.effects.chains["vocals"].slots]
    assert labels == ["Compressor", "Gain"]  # the bypassed reverb is out, the new gain in
    assert w.session.effects.chains["vocals"].slots[0].plugin.ratio == pytest.approx(6.0)  # edit kept
    client = OscClient(w.osc.port)  # OSC edits the same slot and the editor follows
    try:
        fx.list.setCurrentRow(0)
        client.send("/stemstream/fx/vocals/0/ratio", 4.0)
        qtbot.waitUntil(lambda: fx._param_boxes["ratio"].value() == pytest.approx(4.0), timeout=5000)
        chain = w.session.effects.chains["vocals"]
        qtbot.waitUntil(lambda: chain.slots[0].plugin.ratio == pytest.approx(4.0), timeout=5000)
    finally:
        client.close()
    assert w.errors == []
    _stop(qtbot, w)


def test_settings_and_shortcuts(qtbot, make_window):
    from PySide6.QtCore import Qt

    w = make_window("--model", "passthrough")
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    karaoke = w.store.current.karaoke
    qtbot.keyClick(w, Qt.Key_K)
    assert w.store.current.karaoke is (not karaoke)
    qtbot.keyClick(w, Qt.Key_Up)
    qtbot.keyClick(w, Qt.Key_Plus)
    qtbot.keyClick(w, Qt.Key_Down)
    assert w.store.current.key == 1
    w.live.strips["vocals"].fader.setValue(40)
    w.live.guide.setValue(30)
    w.shutdown()  # saves the session
    again = make_window()
    p = again.store.current
    assert p.stem("vocals").gain == pytest.approx(0.4) and p.guide == pytest.approx(0.3) and p.key == 1
    assert again.live.model_box.currentData() == "passthrough"
    assert again.live.strips["vocals"].fader.value() == 40


def test_files_tab_plays_and_compares_stems(qtbot, jack, make_window, tmp_path):
    w = make_window("--output", "JACK", "--model", "passthrough")
    files = w.files
    files.out_edit.setText(str(tmp_path / "out"))
    files.model_box.setCurrentIndex(files.model_box.findData("passthrough"))
    files.add_demo()
    files.separate_all()
    qtbot.waitUntil(lambda: files.job is None, timeout=30000)
    top = files.tree.topLevelItem(0)
    vocals, accompaniment = top.child(0), top.child(1)
    files._play_item(vocals)  # loads off the UI thread, then plays on the JACK output
    qtbot.waitUntil(lambda: files.player.position > 4800, timeout=10000)
    assert files.player.rate == 48000  # the 44.1 kHz stems resampled to the device
    files.tree.setCurrentItem(accompaniment)
    assert files.player.current == "accompaniment" and files.player.position > 0
    files.stop_playback()
    assert files.player.stream is None and w.errors == []


def test_failed_plugin_and_missing_device_show_messages(qtbot, jack, make_window, tmp_path):
    w = make_window("--input", "demo", "--output", "no-such-device", "--model", "passthrough", "--profile", "live",
                    "--no-key-shift")
    assert any("no-such-device" in e and "not found" in e for e in w.errors), w.errors
    from PySide6.QtCore import Qt

    w.live.output_box.setCurrentIndex(w.live.output_box.findText("JACK", Qt.MatchContains))
    w.live.fx.set_stems(w.stems, {"vocals": [{"type": "vst3", "path": str(tmp_path / "Broken.vst3")},
                                             {"type": "Gain", "params": {"gain_db": -3.0}}]})
    _start(qtbot, w)  # the engine runs; the broken slot is bypassed
    assert any("could not load effect" in e for e in w.errors), w.errors
    assert w.session.effects.chains["vocals"].slots[1].plugin is not None
    _stop(qtbot, w)


def test_separation_failing_mid_stream_is_reported_and_stop_still_works(qtbot, jack, make_window):
    w = make_window("--input", "demo", "--output", "JACK", "--model", "passthrough", "--profile", "live",
                    "--no-key-shift")
    _start(qtbot, w)

    def broken(*_args, **_kw):
        raise RuntimeError("model exploded")

    w.session.engine.pipeline.process = broken  # the worker's next block fails; audio goes on dry
    qtbot.waitUntil(lambda: any("model exploded" in e for e in w.errors), timeout=5000)
    assert w.cpu_ind.bad and "dry" in w.state_label.text()
    callbacks = w.session.stats()["callbacks"]
    qtbot.waitUntil(lambda: w.session.stats()["callbacks"] > callbacks + 5, timeout=5000)  # the device goes on
    _stop(qtbot, w)


FOUR = ["vocals", "drums", "bass", "other"]


def test_four_stem_model_gets_a_strip_per_stem_with_osc_on_each(qtbot, make_window):
    """The strips, the spectrogram's sources and the effect panel come from the model's
    stems; each strip and its OSC address move together."""
    from PySide6.QtCore import Qt

    w = make_window("--model", "dsp-4stem")
    assert list(w.live.strips) == FOUR and list(w.store.current.stems) == FOUR
    assert [w.live.spec_source.itemData(i) for i in range(w.live.spec_source.count())] == [None, *FOUR]
    assert [w.live.fx.stem_box.itemText(i) for i in range(w.live.fx.stem_box.count())] == FOUR + ["mic"]
    client = OscClient(w.osc.port)
    try:
        client.send("/stemstream/stem/bass/gain", 0.5)
        qtbot.waitUntil(lambda: w.live.strips["bass"].fader.value() == 50, timeout=5000)
        qtbot.mouseClick(w.live.strips["drums"].mute, Qt.LeftButton)
        assert w.store.current.stem("drums").mute and not w.store.current.stem("other").mute
        client.send("/stemstream/subscribe", "127.0.0.1", client.port)
        assert client.wait_for("/stemstream/stem/drums/mute", qtbot, value=[1]) == [1]
    finally:
        client.close()


def test_switching_to_a_four_stem_model_rebuilds_the_mixer_and_meters_every_stem(qtbot, jack, make_window):
    """Start after choosing dsp-4stem instead of a two-stem model: four strips whose meters
    move with the demo song, the two-stem settings carried over where the stem exists."""
    w = make_window("--input", "demo", "--output", "JACK", "--model", "passthrough", "--profile", "live",
                    "--no-key-shift")
    w.live.strips["vocals"].fader.setValue(70)
    w.live.model_box.setCurrentIndex(w.live.model_box.findData("dsp-4stem"))
    _start(qtbot, w)
    assert list(w.live.strips) == FOUR and w.session.stems == tuple(FOUR)
    assert w.store.current.stem("vocals").gain == pytest.approx(0.7)
    qtbot.waitUntil(lambda: all(s.meter.peak > -60 for s in w.live.strips.values()), timeout=10000)
    _stop(qtbot, w)
    assert w.errors == []


def test_files_tab_lists_four_stems_and_the_mixes(qtbot, make_window, tmp_path):
    w = make_window("--model", "passthrough")
    files = _separate_demo_in_files_tab(w, "dsp-4stem", tmp_path / "out")
    qtbot.waitUntil(lambda: files.job is None, timeout=60000)
    assert w.errors == []
    assert files.stems_of("demo_song") == FOUR + ["instrumental", "karaoke"]
    assert all(p.exists() for p in files.results["demo_song"].values())
    assert all(files.levels["demo_song"][s][0] > -40 for s in FOUR)  # every stem has sound in it
