"""First launch, settings and the menu bar, with real parts: a JACK dummy server,
the app's config folder in a temporary directory, Qt offscreen."""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401 - pins None for PySide6 6.12 on CPython 3.11
from gui_windows import window_factory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_MS = 30000


@pytest.fixture
def config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(folder))
    monkeypatch.delenv("STEMSTREAM_FX_PRESETS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # where presets went before
    return folder


@pytest.fixture
def make_window(qtbot, config):
    yield from window_factory(qtbot)


def _start(qtbot, w):
    from PySide6.QtCore import Qt

    qtbot.mouseClick(w.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state == "running" or bool(w.errors), timeout=START_TIMEOUT_MS)
    assert w.state == "running", w.errors


def _stop(qtbot, w):
    w.stop()
    qtbot.waitUntil(lambda: w.state == "idle", timeout=10000)


def test_first_launch_plays_the_demo_song_and_the_input_choice_is_restored(qtbot, jack_server, make_window):
    from gui.input_sources import DEMO_SOURCE

    w = make_window("--output", "JACK", "--model", "dsp-center", "--profile", "live", "--no-key-shift")
    assert w.live.input_box.currentData() == DEMO_SOURCE  # not a silent system input
    _start(qtbot, w)
    qtbot.waitUntil(lambda: w.live.main_strip.meter.rms > -50, timeout=10000)  # Start, and there is sound
    _stop(qtbot, w)
    jack_in = next(w.live.input_box.itemData(i) for i in range(w.live.input_box.count())
                   if "JACK" in str(w.live.input_box.itemData(i)))
    w.live.input_box.setCurrentIndex(w.live.input_box.findData(jack_in))
    w.shutdown()
    again = make_window(jack_running=True)
    assert again.live.input_box.currentData() == jack_in
    again.live.input_box.setCurrentIndex(again.live.input_box.findData(DEMO_SOURCE))
    again.shutdown()
    # `--jack-dummy` used to replace the saved choice with JACK's silent capture ports
    third = make_window(jack_running=True)
    assert third.live.input_box.currentData() == DEMO_SOURCE
    assert "JACK" in third.live.output_box.currentData()


def test_status_bar_and_indicators_say_stopped_after_stop(qtbot, jack_server, make_window):
    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    _start(qtbot, w)
    assert w.statusBar().currentMessage().startswith("running")
    qtbot.waitUntil(lambda: "ms" in w.latency_ind.text(), timeout=5000)
    _stop(qtbot, w)
    assert w.statusBar().currentMessage() == "stopped"
    assert w.state_label.text() == "stopped" and w.latency_ind.text().endswith("–")


def test_latency_pill_is_coloured_by_the_profiles_target(qtbot, jack_server, make_window):
    from gui.readouts import latency_state

    assert latency_state(18.7, 13.3, 20.0) == (False, False)  # within the live target: green
    assert latency_state(24.1, 18.8, 20.0) == (False, True)  # only the compute budget goes over: amber
    assert latency_state(61.3, 56.0, 20.0) == (True, False)  # the design itself is over: red
    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--key-shift")  # the key stage's 43 ms cannot fit the live profile's 20 ms
    _start(qtbot, w)
    qtbot.waitUntil(lambda: "ms" in w.latency_ind.text(), timeout=5000)
    assert w.session.algorithmic_ms > w.session.target_ms
    assert w.latency_ind.bad
    _stop(qtbot, w)


def test_own_jack_client_is_not_offered_as_a_device(qtbot, jack_server, make_window):
    """Another stemstream on the same JACK server shows up as a PortAudio device named after its
    client; the app's own name (`stemstream`, `stemstream-01`...) is never listed."""
    from gui.jack_ports import JACK_CLIENT

    player = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, sounddevice as sd\n"
         "from stream_engine.devices import set_jack_client_name, find_device\n"
         f"set_jack_client_name({JACK_CLIENT!r})\n"
         "dev = [d for d in sd.query_devices() if d['name'] == 'system'][0]\n"
         "s = sd.OutputStream(device=dev['index'], channels=2, samplerate=48000); s.start()\n"
         "print('up', flush=True); sys.stdin.read()"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert player.stdout.readline().strip() == "up"
        w = make_window("--output", "JACK")
        from stream_engine.devices import list_devices

        raw = [d["name"] for d in list_devices() if "JACK" in d["hostapi"]]
        assert any(n.startswith(JACK_CLIENT) for n in raw), raw  # PortAudio does list it
        shown = [w.live.input_box.itemText(i) for i in range(w.live.input_box.count())]
        assert not any(t.startswith(JACK_CLIENT) for t in shown), shown
        assert any(t.startswith("system") for t in shown)
    finally:
        player.stdin.close()
        player.wait(10)


def test_effect_presets_are_saved_under_the_config_folder(qtbot, make_window, config, tmp_path):
    w = make_window("--model", "passthrough")
    fx = w.live.fx
    fx.type_box.setCurrentText("Gain")
    fx._add_builtin()
    path = fx.save_preset_as("my gain")
    assert path == config / "presets" / "effects" / "my gain.json"
    assert json.loads(path.read_text())["effects"][0]["type"] == "Gain"
    assert not (tmp_path / "xdg").exists()  # nothing written outside STEMSTREAM_CONFIG_DIR
    w.shutdown()
    again = make_window("--model", "passthrough")
    presets = [again.live.fx.preset_box.itemText(i) for i in range(again.live.fx.preset_box.count())]
    assert "my gain" in presets  # listed (and loadable) again


def test_a_new_compressor_compresses_and_parameters_have_readable_names(qtbot, make_window):
    from pedalboard import Compressor
    from PySide6.QtWidgets import QFormLayout

    w = make_window("--model", "passthrough")
    fx = w.live.fx
    fx.type_box.setCurrentText("Compressor")
    fx._add_builtin()
    params = fx.chain()[-1]["params"]
    assert params["ratio"] > 1 and params["threshold_db"] < 0
    labels = [fx.params_form.itemAt(r, QFormLayout.LabelRole).widget().text()
              for r in range(fx.params_form.rowCount())]
    assert labels == ["Attack (ms)", "Ratio", "Release (ms)", "Threshold (dB)"]
    rate = 48000
    t = np.arange(rate) / rate
    loud = (0.8 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None, :]
    squeezed = Compressor(**params)(loud, rate)
    assert np.sqrt(np.mean(squeezed[:, rate // 2:] ** 2)) < 0.5 * np.sqrt(np.mean(loud[:, rate // 2:] ** 2))


def test_meters_and_faders_have_a_db_scale(qtbot, make_window):
    from PySide6.QtWidgets import QStyle, QStyleOptionSlider

    from gui.widgets import FaderScale

    w = make_window("--model", "passthrough")
    w.resize(1280, 800)
    qtbot.wait(50)
    strip = w.live.strips["vocals"]
    assert strip.meter.scale
    scale = strip.findChild(FaderScale)
    assert scale is not None and scale.isVisible()
    fader = strip.fader
    opt = QStyleOptionSlider()
    fader.initStyleOption(opt)
    for value, db in ((100, 0.0), (50, -6.0206), (200, 6.0206)):
        fader.setValue(value)
        fader.initStyleOption(opt)
        handle = fader.style().subControlRect(QStyle.CC_Slider, opt, QStyle.SC_SliderHandle, fader)
        centre = scale.mapFromGlobal(fader.mapToGlobal(handle.center())).y()
        assert abs(scale.mark_y(db) - centre) <= 1.5, (db, scale.mark_y(db), centre)


def test_menus_and_shortcuts(qtbot, jack_server, make_window):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QKeySequence

    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    menus = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert menus == ["File", "Transport", "Help"]
    assert w.open_action.shortcut().toString() == "Ctrl+O" and w.quit_action.shortcut().toString() == "Ctrl+Q"
    assert QKeySequence("Ctrl+Space") in w.start_action.shortcuts()
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    w.tabs.setCurrentWidget(w.files)
    w.files.out_edit.setFocus()
    w.files.out_edit.setText("my folder")
    qtbot.keyClick(w.files.out_edit, Qt.Key_Space)
    assert w.files.out_edit.text() == "my folder " and w.state == "idle"  # Space stays in the text field
    qtbot.keyClick(w.files.out_edit, Qt.Key_Space, Qt.ControlModifier)  # Ctrl+Space works anywhere
    qtbot.waitUntil(lambda: w.state == "running" or bool(w.errors), timeout=START_TIMEOUT_MS)
    assert w.state == "running", w.errors
    w.tabs.setCurrentWidget(w.live)
    w.start_button.setFocus()
    qtbot.keyClick(w.start_button, Qt.Key_Space)  # Space: the transport
    qtbot.waitUntil(lambda: w.state == "idle", timeout=10000)
    box = w.show_about()
    from stream_engine import __version__

    assert box.isVisible() and __version__ in box.text()
    box.close()
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    qtbot.keyClick(w, Qt.Key_Q, Qt.ControlModifier)
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)


def test_screenshot_takes_a_size(tmp_path):
    shot = tmp_path / "files.png"
    env = dict(os.environ, STEMSTREAM_CONFIG_DIR=str(tmp_path / "config"), PYTHONPATH=str(REPO),
               QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "gui.app", "--screenshot", str(shot), "--tab", "files",
                           "--size", "1024x700", "--after", "0", "--osc-port", "-1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert struct.unpack(">II", data[16:24]) == (1024, 700)
