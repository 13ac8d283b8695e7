"""The Files tab as a user meets it: real files separated by the real engine,
a JACK dummy server to play them on, Qt offscreen."""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import gui  # noqa: E402,F401 - pins None for PySide6 6.12 on CPython 3.11
import soundfile as sf  # noqa: E402
from gui_windows import window_factory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEPARATE_TIMEOUT_MS = 60000


@pytest.fixture
def config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    monkeypatch.setenv("STEMSTREAM_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def make_window(qtbot, config):
    yield from window_factory(qtbot)


def _separate_demo(qtbot, w, model, out):
    files = w.files
    files.out_edit.setText(str(out))
    files.model_box.setCurrentIndex(files.model_box.findData(model))
    files.add_demo()
    files.separate_all()
    qtbot.waitUntil(lambda: files.job is None, timeout=SEPARATE_TIMEOUT_MS)
    assert w.errors == []
    return files


def _load(qtbot, files, track="demo_song"):
    top = next(files.tree.topLevelItem(i) for i in range(files.tree.topLevelItemCount())
               if files.tree.topLevelItem(i).text(0) == track)
    files.tree.setCurrentItem(top)
    qtbot.waitUntil(lambda: files._loaded == track and bool(files.rows), timeout=20000)


def test_separate_is_disabled_until_there_is_something_to_separate(qtbot, make_window, tmp_path):
    w = make_window()
    files = w.files
    assert not files.separate_button.isEnabled() and not files.clear_button.isEnabled()
    files.add_demo()
    assert files.separate_button.isEnabled()
    files.model_box.setCurrentIndex(files.model_box.findData("passthrough"))
    files.out_edit.setText(str(tmp_path / "out"))
    files.separate_all()
    assert not files.separate_button.isEnabled() and files.cancel_button.isEnabled()  # while it runs
    qtbot.waitUntil(lambda: files.job is None, timeout=SEPARATE_TIMEOUT_MS)
    assert files.separate_button.isEnabled() and not files.cancel_button.isEnabled()
    files.clear_button.click()
    assert not files.separate_button.isEnabled()
    assert not files.export_button.isEnabled() and not w.export_action.isEnabled()  # no track loaded


def test_dropping_files_and_folders_lists_the_audio_in_them(qtbot, make_window, tmp_path):
    from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    folder = tmp_path / "album"
    (folder / "cd2").mkdir(parents=True)
    for name in ("a.wav", "cd2/b.flac"):
        sf.write(str(folder / name), np.zeros((480, 2), np.float32), 48000)
    (folder / "cover.jpg").write_bytes(b"not audio")
    single = tmp_path / "single.wav"
    sf.write(str(single), np.zeros((480, 2), np.float32), 48000)
    w = make_window()
    target = w.files.files
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder)), QUrl.fromLocalFile(str(single))])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(target.viewport(), enter)  # as Qt delivers a drag: to the list's viewport
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(target.viewport(), drop)
    assert w.files.queue == [folder / "a.wav", folder / "cd2" / "b.flac", single]
    assert target.count() == 3 and w.files.separate_button.isEnabled()


def test_results_are_listed_again_after_a_restart(qtbot, make_window, config, tmp_path):
    w = make_window()
    _separate_demo(qtbot, w, "passthrough", tmp_path / "out")
    first = dict(w.files.results["demo_song"])
    w.shutdown()
    assert (config / "results.json").exists()  # under STEMSTREAM_CONFIG_DIR, nowhere else
    again = make_window()
    assert again.files.results["demo_song"] == first
    assert again.files.stems_of("demo_song") == ["vocals", "accompaniment", "instrumental", "karaoke"]
    assert again.files.levels["demo_song"]["vocals"][0] > -40  # the levels came back too
    assert "from demo_song.flac with passthrough" in again.files.tree.topLevelItem(0).toolTip(0)
    _load(qtbot, again.files)  # and the track opens in the preview
    assert list(again.files.rows) == ["vocals", "accompaniment", "instrumental", "karaoke"]
    again.files.tree.setCurrentItem(again.files.tree.topLevelItem(0))
    again.files.forget_button.click()  # forgotten: gone from the list and from the next start
    assert again.files.tree.topLevelItemCount() == 0
    again.shutdown()
    assert make_window().files.results == {}


def test_outputs_are_what_their_descriptions_say(qtbot, make_window, tmp_path):
    """The GUI's words for instrumental and karaoke hold for the files written (the same names
    and contents as ``stemstream separate``)."""
    from stream_engine.params import DEFAULT_GUIDE

    w = make_window()
    files = _separate_demo(qtbot, w, "dsp-center", tmp_path / "gui")
    out = {name: sf.read(str(path), dtype="float32")[0] for name, path in files.results["demo_song"].items()}
    _load(qtbot, files)
    words = {name: row.what.text() for name, row in files.rows.items()}
    assert "same audio as accompaniment" in words["instrumental"]
    np.testing.assert_array_equal(out["instrumental"], out["accompaniment"])
    assert f"vocals at {DEFAULT_GUIDE * 100:.0f} %" in words["karaoke"]
    np.testing.assert_allclose(out["karaoke"], out["instrumental"] + DEFAULT_GUIDE * out["vocals"], atol=1e-4)
    from stream_engine.demo import DEMO_SONG

    cli = subprocess.run([sys.executable, "-m", "stream_engine.cli", "separate", str(DEMO_SONG), "--out",
                          str(tmp_path / "cli"), "--model", "dsp-center"], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "cli" / "demo_song").iterdir()) == \
        sorted(p.name for p in files.results["demo_song"].values())


def test_four_stem_result_gets_a_preview_row_per_output(qtbot, make_window, tmp_path):
    w = make_window()
    files = _separate_demo(qtbot, w, "dsp-4stem", tmp_path / "out")
    _load(qtbot, files)
    assert list(files.rows) == ["vocals", "drums", "bass", "other", "instrumental", "karaoke"]
    assert "drums + bass + other" in files.rows["instrumental"].what.text()
    assert all(row.wave.envelope.shape[1] > 100 for row in files.rows.values())  # a waveform each
    assert files.player.audible() == ["vocals", "drums", "bass", "other"]  # the mixes only when soloed


def test_preview_plays_on_jack_with_playhead_time_and_a_mixer(qtbot, jack_server, make_window, tmp_path):
    from PySide6.QtCore import QPoint, Qt

    w = make_window("--output", "JACK")
    files = _separate_demo(qtbot, w, "dsp-center", tmp_path / "out")
    _load(qtbot, files)
    start_text = files.time_label.text()
    assert start_text.startswith("0:00.0 / 0:2")  # the demo song is 20-odd seconds

    def columns():
        parts = [files.play_button, files.stop_button, files.position, files.time_label,
                 *(r.wave for r in files.rows.values()), *(r.level for r in files.rows.values())]
        return [(x.mapTo(w, x.rect().topLeft()).x(), x.width()) for x in parts]

    before = columns()
    qtbot.mouseClick(files.play_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: files.player.position > files.player.rate // 2, timeout=10000)  # the JACK clock runs it
    qtbot.waitUntil(lambda: files.time_label.text() != start_text, timeout=2000)
    assert all(row.wave.fraction > 0 for row in files.rows.values())  # the playheads move
    assert columns() == before  # nothing moves sideways when playback starts
    wave = files.rows["vocals"].wave
    qtbot.mouseClick(wave, Qt.LeftButton, pos=QPoint(wave.width() * 3 // 4, wave.height() // 2))
    assert abs(files.player.position / files.player.length - 0.75) < 0.05  # a click seeks there
    qtbot.mouseClick(files.play_button, Qt.LeftButton)  # pause
    assert not files.player.playing and files.play_button.text().endswith("Play")

    tracks = files.player.tracks
    p = files.player.position

    def heard():
        buf = np.zeros((1024, 2), np.float32)
        files.player.paused = False
        files.player._callback(buf, 1024, None, None)  # the stream's own callback, one block
        files.player.paused, files.player.position = True, p
        return buf

    np.testing.assert_allclose(heard(), tracks["vocals"][p:p + 1024] + tracks["accompaniment"][p:p + 1024],
                               atol=1e-6)  # the stems, not the mixes
    files.rows["vocals"].mute.click()
    np.testing.assert_allclose(heard(), tracks["accompaniment"][p:p + 1024], atol=1e-6)
    files.rows["accompaniment"].level.setValue(50)
    np.testing.assert_allclose(heard(), 0.5 * tracks["accompaniment"][p:p + 1024], atol=1e-6)
    files.rows["karaoke"].solo.click()
    np.testing.assert_allclose(heard(), tracks["karaoke"][p:p + 1024], atol=1e-6)
    assert files.rows["vocals"].wave.dimmed and not files.rows["karaoke"].wave.dimmed
    files.stop_playback()
    assert files.player.stream is None and w.errors == []


def test_export_writes_the_ticked_outputs_in_the_chosen_format(qtbot, make_window, tmp_path):
    w = make_window()
    files = _separate_demo(qtbot, w, "dsp-center", tmp_path / "out")
    _load(qtbot, files)
    assert w.export_action.isEnabled()
    for name, row in files.rows.items():
        row.export.setChecked(name in ("vocals", "karaoke"))
    files.export_format.setCurrentText("flac")
    assert [files.export_depth.itemText(i) for i in range(files.export_depth.count())] == ["16-bit", "24-bit"]
    files.export_depth.setCurrentText("16-bit")
    files.export_chosen(tmp_path / "flac16")
    qtbot.waitUntil(lambda: getattr(files, "exported", None) is not None, timeout=20000)
    assert sorted(p.name for p in (tmp_path / "flac16").iterdir()) == ["demo_song-karaoke.flac",
                                                                         "demo_song-vocals.flac"]
    info = sf.info(str(tmp_path / "flac16" / "demo_song-vocals.flac"))
    assert (info.format, info.subtype) == ("FLAC", "PCM_16")
    source, _ = sf.read(str(files.results["demo_song"]["vocals"]), dtype="float32")
    exported, _ = sf.read(str(tmp_path / "flac16" / "demo_song-vocals.flac"), dtype="float32")
    np.testing.assert_allclose(exported, source, atol=1.0 / 32768 + 1e-6)  # 16-bit rounding only
    files.exported = None
    files.export_format.setCurrentText("wav")
    files.export_depth.setCurrentText("32-bit float")
    files.export_chosen(tmp_path / "float")
    qtbot.waitUntil(lambda: files.exported is not None, timeout=20000)
    assert sf.info(str(tmp_path / "float" / "demo_song-karaoke.wav")).subtype == "FLOAT"
    for row in files.rows.values():
        row.export.setChecked(False)
    assert not files.export_button.isEnabled() and not w.export_action.isEnabled()
    assert not list(tmp_path.rglob(".*.partial"))
