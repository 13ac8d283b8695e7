"""The Live tab's changes while running, on a real JACK dummy server (8 ports) with Qt offscreen:
model, profile and key stage switch without a restart; the input and the microphone (a device of
its own, also under the demo song) change while playing; listen modes and scenes, also over OSC
on real UDP; routing per stem from a dialog, saved with the settings.
"""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401
from test_gui import OscClient, _start, _stop  # noqa: E402
from gui_windows import window_factory  # noqa: E402

START_TIMEOUT_MS = 30000
SWITCH_TIMEOUT_MS = 30000


@pytest.fixture
def jack8(jack_server):
    """The session's JACK dummy (8 ports in and out), PortAudio pointed at it."""
    from stream_engine import devices

    jack_server.activate()
    devices.rescan()
    return jack_server


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    yield from window_factory(qtbot)


def _select(box, data):
    index = box.findData(data)
    assert index >= 0, (data, [box.itemData(i) for i in range(box.count())])
    box.setCurrentIndex(index)


def test_model_profile_and_key_change_while_running_without_a_restart(qtbot, jack8, make_window, research_models):
    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    _start(qtbot, w)
    session, stream = w.session, w.session.stream
    lt = w.live
    for box in (lt.model_box, lt.profile_box, lt.input_box, lt.mic_box, lt.mic_device_box, lt.key_stage):
        assert box.isEnabled()  # they stay usable while running
    _select(lt.model_box, "stemstream-student-int8")
    qtbot.waitUntil(lambda: session.engine.pipeline.separator.spec.name == "stemstream-student-int8",
                    timeout=SWITCH_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "crossfade" in w.statusBar().currentMessage(), timeout=5000)
    before = session.engine.chain.delay
    lt.key.setValue(3)  # the slider alone: the key stage comes in by itself
    assert lt.key_stage.isChecked()
    qtbot.waitUntil(lambda: any(type(s).__name__ == "KeyShift" for s in session.engine.pipeline.stages),
                    timeout=SWITCH_TIMEOUT_MS)
    assert session.engine.chain.delay - before >= 2048
    assert w.session is session and session.stream is stream  # never restarted
    stats = session.stats()
    assert stats["switches"] == 2 and stats["last_switch"]["gap_ms"] == 0.0
    assert stats["last_switch"]["fade_ms"] == pytest.approx(30.0)
    qtbot.waitUntil(lambda: all(s.meter.peak > -60 for s in lt.strips.values()), timeout=10000)
    # a profile with another device block restarts the stream (it plays as a fresh Start would:
    # test_gui_trust.py); one with the same block would crossfade like the model
    _select(lt.profile_box, "balanced")
    qtbot.waitUntil(lambda: w.state == "running" and w.session is not session, timeout=SWITCH_TIMEOUT_MS)
    assert w.session.engine.pipeline.profile.name == "balanced" and w.session.engine.block == 512
    _stop(qtbot, w)
    assert w.errors == []


def test_listen_mode_selector_osc_and_scenes(qtbot, jack8, make_window, tmp_path):
    """One selector sets the main bus; the strips meter what main plays (vocals silent under
    Instrumental); OSC /stemstream/listen moves the selector; scenes save and load the mixer, from
    the buttons and over OSC."""
    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    lt = w.live
    _start(qtbot, w)
    _select(lt.listen_box, "instrumental")
    assert w.store.current.listen == "instrumental" and not w.karaoke.isChecked()
    vocals = lt.strips["vocals"]
    qtbot.waitUntil(lambda: w.session.levels()[0, 0] == 0.0, timeout=5000)  # vocals' part of main: none
    assert w.session.levels()[1, 0] > 1e-3  # the accompaniment plays
    client = OscClient(w.osc.port)
    try:
        client.send("/stemstream/subscribe", "127.0.0.1", client.port)
        client.send("/stemstream/listen", "acappella")
        client.wait_for("/stemstream/listen", qtbot, value=["acappella"])
        qtbot.waitUntil(lambda: lt.listen_box.currentData() == "acappella", timeout=2000)
        qtbot.waitUntil(lambda: w.session.levels()[1, 0] == 0.0 and w.session.levels()[0, 0] > 1e-3, timeout=5000)
        vocals.fader.setValue(50)
        lt.scene_box.setEditText("solo voice")
        lt.scene_save.click()
        saved = tmp_path / "config" / "scenes" / "solo voice.json"
        scene = json.loads(saved.read_text())
        assert scene["listen"] == "acappella" and scene["stems"]["vocals"]["gain"] == 0.5
        _select(lt.listen_box, "full")
        vocals.fader.setValue(120)
        lt.scene_load.click()
        assert lt.listen_box.currentData() == "acappella" and vocals.fader.value() == 50
        client.send("/stemstream/listen", "karaoke")
        client.wait_for("/stemstream/listen", qtbot, value=["karaoke"])
        client.send("/stemstream/scene/load", "solo voice")
        client.wait_for("/stemstream/scene/loaded", qtbot)
        qtbot.waitUntil(lambda: lt.listen_box.currentData() == "acappella", timeout=2000)
        client.send("/stemstream/model", "dsp-4stem")  # OSC switches the model of the running app
        client.wait_for("/stemstream/model", qtbot, timeout=30, value=["dsp-4stem"])
        qtbot.waitUntil(lambda: list(lt.strips) == ["vocals", "drums", "bass", "other"], timeout=5000)
    finally:
        client.close()
    _stop(qtbot, w)
    assert w.errors == []


def test_routing_dialog_and_a_microphone_of_its_own_under_the_demo_song(qtbot, jack8, make_window):
    """Vocals routed to outputs 3-4 from the dialog while running (and saved with the settings); a
    microphone on the JACK device's capture while the demo song is the input: its ports get the
    vocals from output 3, its meter moves and its latency is shown; then the input changes to the
    device while the output keeps playing."""
    from PySide6.QtWidgets import QDialogButtonBox

    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    lt = w.live
    jack_key = lt.output_box.currentData()
    qtbot.waitUntil(lambda: lt.mic_device_box.findData(jack_key) >= 0, timeout=5000)
    _select(lt.mic_device_box, jack_key)
    _select(lt.mic_box, 0)
    _start(qtbot, w)
    session = w.session
    assert session.mic_reader is not None and session.mic_ms is not None
    qtbot.waitUntil(lambda: "microphone" in lt.latency_text.text(), timeout=2000)
    lt.routing_button.click()
    dialog = w.live_wiring.dialog
    table = dialog.table
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    assert {"vocals", "accompaniment", "main", "instrumental", "karaoke", "mic"} <= set(rows)
    table.item(rows["vocals"], 1).setText("3,4")
    table.item(rows["main"], 1).setText("1,2")
    dialog.button_box.button(QDialogButtonBox.Ok).click()
    qtbot.waitUntil(lambda: session.engine.router.routes.get("vocals") == [2, 3], timeout=SWITCH_TIMEOUT_MS)
    assert w.settings.get("routes") == {"vocals": [3, 4], "main": [1, 2]}
    w.save_settings()
    assert json.loads(w.settings.path.read_text())["routes"] == {"vocals": [3, 4], "main": [1, 2]}
    # the engine's vocals leave on out 3 (its port named after them): loop them into the mic's port
    qtbot.waitUntil(lambda: "stemstream:vocals_L" in jack8.ports_list(), timeout=5000)
    mic_port = "stemstream:mic"
    for peer in jack8.connections().get(mic_port, []):
        jack8.disconnect(peer, mic_port)
    jack8.connect("stemstream:vocals_L", mic_port)
    qtbot.waitUntil(lambda: lt.mic_meter.peak > -40, timeout=10000)
    # the level at one instant follows the song (quiet between phrases): wait for a loud one
    qtbot.waitUntil(lambda: session.mic_levels()[0] > 0.01, timeout=10000)
    # the input changes to the JACK device while the output plays on (silent capture ports)
    callbacks = session.stats()["callbacks"]
    _select(lt.input_box, jack_key)
    qtbot.waitUntil(lambda: session.music_reader is not None and session.source is None, timeout=10000)
    qtbot.waitUntil(lambda: session.stats()["callbacks"] > callbacks + 50, timeout=5000)
    assert w.session is session
    assert session.stats()["xruns"] <= 2
    _stop(qtbot, w)
    assert w.errors == []
    # the next launch plays the saved routing
    w.shutdown()
    again = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                        "--no-key-shift")
    assert again.live_wiring.routes == {"vocals": [2, 3], "main": [0, 1]}
    qtbot.waitUntil(lambda: again.live.mic_device_box.currentData() == jack_key, timeout=5000)
    _start(qtbot, again)
    assert again.session.engine.router.routes == {"vocals": [2, 3], "main": [0, 1]}
    _stop(qtbot, again)


def test_input_and_mic_change_over_osc_while_playing(qtbot, jack8, make_window):
    """/stemstream/input and /stemstream/mic reach the running app: the JACK device (silent capture)
    gives way to the demo song, crossfaded in the callback, and the stems light up; the mic moves to
    a channel of the JACK device and off again; a device that does not exist is answered on /error."""
    w = make_window("--input", "JACK", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    lt = w.live
    _start(qtbot, w)
    session = w.session
    assert session.music_reader is not None and session.mic_reader is None
    client = OscClient(w.osc.port)
    try:
        client.send("/stemstream/subscribe", "127.0.0.1", client.port)
        client.send("/stemstream/input", "demo")
        client.wait_for("/stemstream/input", qtbot, timeout=20, value=["demo song"])
        qtbot.waitUntil(lambda: lt.input_box.currentData() == "demo song", timeout=5000)
        qtbot.waitUntil(lambda: all(s.meter.peak > -60 for s in lt.strips.values()), timeout=10000)
        assert session.input_switch.switches == 1 and session.music_reader is None
        client.send("/stemstream/mic", "system#2")
        client.wait_for("/stemstream/mic", qtbot, timeout=10, value=[f"{lt.output_box.currentData()} #2"])
        assert session.mic_reader is not None and session.mic_reader.columns == (1,)
        client.send("/stemstream/mic", "none")
        client.wait_for("/stemstream/mic", qtbot, timeout=10, value=["none"])
        assert session.engine.mic_source is None
        client.send("/stemstream/input", "no such device")
        error = client.wait_for("/stemstream/error", qtbot, timeout=10)
        assert error[0] == "/stemstream/input" and "no such device" in error[1]
        assert lt.input_box.currentData() == "demo song" and w.session is session
    finally:
        client.close()
    _stop(qtbot, w)
