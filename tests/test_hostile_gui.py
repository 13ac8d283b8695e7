"""Issue 24, item 10: the app's own files written wrong (valid JSON, wrong types; a corrupt results
list; a FIFO) never stop the app from starting: each is warned about, kept as ``.broken``, and the
default used. Real windows (Qt offscreen), the config folder in a temporary directory."""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import json  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401 - pins None for PySide6 6.12 on CPython 3.11
from gui_windows import window_factory  # noqa: E402


@pytest.fixture
def config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(folder))
    monkeypatch.delenv("STEMSTREAM_FX_PRESETS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return folder


@pytest.fixture
def make_window(qtbot, config):
    yield from window_factory(qtbot)


@pytest.mark.parametrize("settings", [{"model": 5}, {"fx": "str"}, {"geometry": 5}, {"osc_port": "x"},
                                      {"params": [1]}, {"key_stage": "yes"}, {"fx": {"vocals": [5]}},
                                      {"osc_port": 10 ** 9}, {"profile": None},
                                      {"master": 5}, {"jack_connections": "x"}, {"queue": "x"},
                                      {"songs": [1]}, {"loop_song": "yes"}])
def test_wrong_types_in_gui_json_do_not_stop_the_app(qtbot, make_window, config, settings):
    text = json.dumps({**settings, "tab": "live"})
    (config / "gui.json").write_text(text)
    w = make_window()
    key = next(iter(settings))
    assert w.settings.problem and key in w.settings.problem, w.settings.problem
    assert (config / "gui.json.broken").read_text() == text  # the user's file kept as it was
    assert key not in w.settings.data and w.settings.get("tab") == "live"  # the rest still used


def test_gui_json_that_is_a_fifo_or_deeply_nested(qtbot, make_window, config):
    (config / "gui.json").write_text("[" * 100000 + "]" * 100000)
    w = make_window()
    assert "nested" in w.settings.problem
    (config / "gui.json").unlink()
    os.mkfifo(config / "gui.json")
    w = make_window()  # would block reading the FIFO for ever
    assert "FIFO" in w.settings.problem


def test_corrupt_results_json_is_kept_not_overwritten(qtbot, make_window, config, tmp_path):
    from gui.settings import ResultHistory

    (config / "results.json").write_text('[{"folder": "x", "files": {"vocals": 5}}, ')  # cut short
    w = make_window()
    assert w.files.history.entries == []
    assert "results" in w.files.history.problem and ".broken" in w.files.history.problem
    assert (config / "results.json.broken").read_text().startswith('[{"folder"')
    (config / "results.json").write_text('{"not": "a list"}')
    assert ResultHistory().problem and json.loads((config / "results.json.broken").read_text()) == {"not": "a list"}
    (config / "results.json").write_text('[{"folder": 3, "files": {"vocals": 7}}, "x", 5]')  # wrong types inside
    assert ResultHistory().entries == []


@pytest.mark.parametrize("port", ["70000", "-2", "x"])
def test_osc_port_out_of_range_is_a_usage_error(port):
    from gui.app import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--osc-port", port])
    assert exit_.value.code == 2
    assert build_parser().parse_args(["--osc-port", "-1"]).osc_port == -1
    assert build_parser().parse_args(["--osc-port", "0"]).osc_port == 0
