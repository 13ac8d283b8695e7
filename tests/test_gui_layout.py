"""The window at the smallest, a common and a large size, in its main states:
nothing overlaps, nothing is cut off, no text is clipped (``layout_check``);
columns stay put when the engine starts. Qt offscreen, a real JACK dummy
server for the running state, real separated files for the Files tab."""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401 - pins None for PySide6 6.12 on CPython 3.11
from layout_check import layout_problems  # noqa: E402
from gui_windows import window_factory  # noqa: E402

SIZES = [(1024, 700), (1920, 1080), (2560, 1440)]
START_TIMEOUT_MS = 30000


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    """The app's window as ``stemstream-gui`` builds it (dark theme included: it sets the sizes)."""
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(tmp_path / "config"))
    from PySide6.QtWidgets import QApplication

    from gui.app import apply_dark_theme

    apply_dark_theme(QApplication.instance())
    yield from window_factory(qtbot)


def _at(qtbot, w, size):
    w.resize(*size)
    qtbot.wait(50)  # layouts settle on the event loop
    assert (w.width(), w.height()) == size, f"the window cannot be {size}: its minimum is {w.minimumSizeHint()}"


def _check_all_sizes(qtbot, w, state):
    faults = {}
    for size in SIZES:
        _at(qtbot, w, size)
        found = layout_problems(w)
        if found:
            faults[size] = found
    assert not faults, f"{state}:\n" + "\n".join(f"{s}: {p}" for s, found in faults.items() for p in found)


def test_layout_checker_finds_overlap_and_clipped_text(qtbot):
    """The checker itself: a clipped label and two overlapping buttons are reported."""
    from PySide6.QtWidgets import QLabel, QPushButton, QWidget

    box = QWidget()
    qtbot.addWidget(box)
    box.resize(300, 100)
    label = QLabel("a label much longer than its room", box)
    label.setGeometry(0, 0, 40, 20)
    a, b = QPushButton("A", box), QPushButton("B", box)
    a.setGeometry(0, 30, 80, 30)
    b.setGeometry(60, 30, 80, 30)
    box.show()
    found = layout_problems(box)
    assert any("QLabel" in p and "room" in p for p in found), found
    assert any("overlaps" in p and "'A'" in p and "'B'" in p for p in found), found
    b.move(100, 30)
    label.resize(label.sizeHint())
    assert layout_problems(box) == []


@pytest.mark.parametrize("model", ["dsp-center", "dsp-4stem"])
def test_stopped_window_fits_every_size(qtbot, make_window, model):
    w = make_window("--model", model, "--profile", "live")
    _check_all_sizes(qtbot, w, f"stopped, {model}")
    w.tabs.setCurrentWidget(w.files)
    _check_all_sizes(qtbot, w, f"files tab empty, {model}")


def _columns(w):
    """Where each panel of the Live tab and each header item sits (x, width)."""
    from PySide6.QtWidgets import QGroupBox

    boxes = [g for g in w.live.findChildren(QGroupBox) if g.isVisible()]
    header = [w.start_button, w.karaoke, w.latency_ind, w.cpu_ind, w.miss_ind, w.xrun_ind]
    return {id(x): (x.mapTo(w, x.rect().topLeft()).x(), x.width()) for x in boxes + header}


def test_running_window_fits_and_columns_do_not_shift(qtbot, jack_server, make_window):
    from PySide6.QtCore import Qt

    w = make_window("--input", "demo", "--output", "JACK", "--model", "dsp-center", "--profile", "live",
                    "--no-key-shift")
    _at(qtbot, w, SIZES[0])
    before = _columns(w)
    qtbot.mouseClick(w.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state == "running" or bool(w.errors), timeout=START_TIMEOUT_MS)
    assert w.state == "running", w.errors
    qtbot.waitUntil(lambda: "ms" in w.latency_ind.text(), timeout=5000)
    qtbot.wait(300)
    assert _columns(w) == before, "a panel or header item moved when the engine started"
    _check_all_sizes(qtbot, w, "running")
    # the widest figures the pills show (the quality profile's latency, in bold red) still fit at 1024 px
    w.timer.stop()  # hold the figures while they are checked
    w.latency_ind.set("1276.0 ms +10.7 dev", True)
    w.cpu_ind.set("100 %", True)
    w.miss_ind.set("99999", True)
    w.xrun_ind.set("99999", True)
    _at(qtbot, w, SIZES[0])
    assert layout_problems(w) == []
    assert _columns(w) == before, "a pill grew with its figure"
    w.timer.start()
    qtbot.mouseClick(w.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.state == "idle", timeout=10000)


def test_files_tab_with_results_fits_every_size(qtbot, make_window, tmp_path):
    """Four stems and two mixes in the preview: the most rows a bundled model makes."""
    w = make_window("--model", "passthrough")
    files = w.files
    w.tabs.setCurrentWidget(files)
    files.out_edit.setText(str(tmp_path / "out"))
    files.model_box.setCurrentIndex(files.model_box.findData("dsp-4stem"))
    files.add_demo()
    files.separate_all()
    qtbot.waitUntil(lambda: files.job is None, timeout=120000)
    assert w.errors == []
    files.tree.setCurrentItem(files.tree.topLevelItem(0))
    qtbot.waitUntil(lambda: len(files.rows) == 6, timeout=20000)
    _check_all_sizes(qtbot, w, "files tab with a four-stem result")
    for size in SIZES:  # the preview's rows fit its width: no sideways scrolling
        _at(qtbot, w, size)
        assert not files.rows_scroll.horizontalScrollBar().isVisible(), size
