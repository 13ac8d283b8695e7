"""The app its users can trust (issue 26): nothing changes by accident, nothing is lost, the mic is
a channel, the ports keep their names. Real widgets (Qt offscreen), a real JACK dummy server
(8 ports) where sound or ports matter, real files on disk.
"""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401
from test_gui import _start, _stop  # noqa: E402
from gui_windows import window_factory  # noqa: E402

SWITCH_TIMEOUT_MS = 30000


@pytest.fixture
def jack8(jack_server):
    from stream_engine import live

    jack_server.activate()
    live.rescan()
    return jack_server


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    yield from window_factory(qtbot)


def _wheel(widget, notches: int = -1):
    """A mouse-wheel event over ``widget``, delivered as Qt delivers one (application filters first)."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * notches),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def _has_key_stage(session) -> bool:
    return any(type(s).__name__ == "KeyShift" for s in session.engine.pipeline.stages)


# ----------------------------------------------------------------------------------------- 1. the wheel
def test_wheel_over_the_left_panel_changes_nothing_unless_the_control_has_focus(qtbot, make_window):
    """A wheel notch over the listen mode, the key, the model or profile box in the scrolling left
    panel leaves them as they are (the panel scrolls instead); a focused control takes the wheel."""
    from PySide6.QtCore import Qt

    w = make_window("--model", "dsp-center", "--profile", "live", "--no-key-shift")
    w.resize(1024, 700)
    lt = w.live
    qtbot.wait(50)
    listen0 = w.store.current.listen
    before = (lt.listen_box.currentIndex(), lt.key.value(), lt.profile_box.currentIndex(),
              lt.model_box.currentIndex(), lt.guide.value(), lt.mic.value())
    for control in (lt.listen_box, lt.key, lt.profile_box, lt.model_box, lt.guide, lt.mic):
        assert control.focusPolicy() == Qt.StrongFocus  # the wheel never gives them the focus
        _wheel(control, -1)
        _wheel(control, +1)
        _wheel(control, -1)
    after = (lt.listen_box.currentIndex(), lt.key.value(), lt.profile_box.currentIndex(),
             lt.model_box.currentIndex(), lt.guide.value(), lt.mic.value())
    assert after == before
    assert w.store.current.listen == listen0 and w.store.current.key == 0
    assert w.wheel_guard.blocked >= 18
    # the user clicks (focus) the listen box: then the wheel is theirs
    lt.listen_box.setFocus(Qt.MouseFocusReason)
    qtbot.waitUntil(lt.listen_box.hasFocus, timeout=2000)
    _wheel(lt.listen_box, 1 if before[0] > 0 else -1)
    assert lt.listen_box.currentIndex() != before[0]
    assert w.store.current.listen == lt.listen_box.currentData()


def test_key_stage_leaves_the_chain_when_the_key_is_back_at_zero(qtbot, jack8, make_window):
    """On JACK: the key to -1 brings the key stage in (+2048 samples); back at 0 it leaves again,
    and the latency is what it was before (not 43 ms more for good)."""
    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    lt = w.live
    _start(qtbot, w)
    session = w.session
    delay0, latency0 = session.engine.chain.delay, session.latency_report.ms
    assert not _has_key_stage(session)
    lt.key.setValue(-1)
    qtbot.waitUntil(lambda: _has_key_stage(session), timeout=SWITCH_TIMEOUT_MS)
    assert session.engine.chain.delay - delay0 >= 2048
    lt.key.setValue(0)
    qtbot.waitUntil(lambda: not _has_key_stage(session), timeout=SWITCH_TIMEOUT_MS)
    qtbot.waitUntil(lambda: not lt.key_stage.isChecked(), timeout=2000)
    assert session.engine.chain.delay == delay0
    qtbot.waitUntil(lambda: abs(session.latency_report.ms - latency0) < 0.5, timeout=5000)
    # a stage the user ticked by hand stays when the key returns to 0
    lt.key_stage.setChecked(True)
    qtbot.waitUntil(lambda: _has_key_stage(session), timeout=SWITCH_TIMEOUT_MS)
    lt.key.setValue(2)
    lt.key.setValue(0)
    qtbot.wait(300)
    assert lt.key_stage.isChecked() and _has_key_stage(session)
    _stop(qtbot, w)
    assert w.errors == []
