"""The Files tab: drop or pick files, separate them off the UI thread with a
progress bar, list the stems, play and compare them, export them."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
    QProgressBar, QPushButton, QSlider, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from stream_engine.profiles import PROFILES

from .audio import StemPlayer
from .jobs import Job, run_job
from .separate import separate_one
from .widgets import button

IDLE_HINT = "Double-click a stem to play it; click another stem while it plays to compare at the same position."
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus"}


def stem_levels(files: dict) -> dict[str, tuple[float, float]]:
    """{stem: (peak dBFS, rms dBFS)} of each written file (run in the worker)."""
    import numpy as np
    import soundfile as sf

    out = {}
    for name, path in files.items():
        peak = square = 0.0
        count = 0
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                peak = max(peak, float(np.max(np.abs(block))) if block.size else 0.0)
                square += float(np.sum(np.square(block, dtype=np.float64)))
                count += block.size
        rms = (square / count) ** 0.5 if count else 0.0
        out[name] = tuple(20.0 * np.log10(max(v, 1e-6)) for v in (peak, rms))
    return out


def _db_text(value) -> str:
    if value is None:
        return ""
    return "-inf" if value <= -119 else f"{value:.1f} dB"


class DropList(QListWidget):
    files_dropped = Signal(list)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DropOnly)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.setToolTip("Drop audio files here (wav, flac, ogg, mp3, ...)")

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    dragMoveEvent = dragEnterEvent

    def paintEvent(self, event):
        super().paintEvent(event)
        if self.count() == 0:
            from PySide6.QtGui import QColor, QPainter

            p = QPainter(self.viewport())
            p.setPen(QColor(130, 136, 146))
            p.drawText(self.viewport().rect(), Qt.AlignCenter, "Drop audio files or folders here\nor use Add files…")
            p.end()

    def dropEvent(self, event):
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        found = []
        for p in paths:
            if p.is_dir():
                found += sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES)
            else:
                found.append(p)
        self.files_dropped.emit(found)
        event.acceptProposedAction()


class FilesTab(QWidget):
    message = Signal(str)  # status bar
    error = Signal(str)  # shown to the user
    separated = Signal(str)  # track name, after each file

    def __init__(self, out_dir: Path, parent=None):
        super().__init__(parent)
        self.queue: list[Path] = []
        self.results: dict[str, dict[str, Path]] = {}
        self.levels: dict[str, dict[str, tuple]] = {}
        self.job = None
        self.player = StemPlayer()
        self.output_device = None  # set by the window from the Live tab's output (index)
        self.output_rate = None  # that device's rate: stems are resampled to it

        self.files = DropList()
        add = button("Add files…", "Pick audio files to separate", self._pick)
        demo = button("Add demo song", "The bundled demo song (composed for this project)", self.add_demo)
        clear = QPushButton("Clear")
        clear.clicked.connect(self._clear)
        self.files.files_dropped.connect(self.add_files)

        self.model_box = QComboBox()
        self.model_box.setToolTip("Separator for files (same models as live)")
        self.profile_box = QComboBox()
        for name in PROFILES:
            self.profile_box.addItem(name, name)
        self.profile_box.setCurrentText("offline")
        self.profile_box.setToolTip("Files: latency does not matter, offline uses the longest windows")
        self.format_box = QComboBox()
        self.format_box.addItems(["wav", "flac"])
        self.out_edit = QLineEdit(str(out_dir))
        self.out_edit.setToolTip("Stems go to <folder>/<track>/<stem>.<format>")
        browse = QPushButton("…")
        browse.setFixedWidth(32)
        browse.clicked.connect(self._pick_out)
        self.separate_button = QPushButton("Separate")
        self.separate_button.setObjectName("primary")
        self.separate_button.setToolTip("Separate the listed files in the background")
        self.separate_button.clicked.connect(self.separate_all)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)

        left = QGroupBox("Files to separate")
        lv = QVBoxLayout(left)
        row = QHBoxLayout()
        for b in (add, demo, clear):
            row.addWidget(b)
        lv.addLayout(row)
        lv.addWidget(self.files, 1)
        opts = QHBoxLayout()
        opts.addWidget(QLabel("Model"))
        opts.addWidget(self.model_box, 1)
        opts.addWidget(QLabel("Profile"))
        opts.addWidget(self.profile_box)
        opts.addWidget(self.format_box)
        lv.addLayout(opts)
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("Output"))
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        lv.addLayout(out_row)
        go = QHBoxLayout()
        go.addWidget(self.separate_button)
        go.addWidget(self.cancel_button)
        lv.addLayout(go)
        lv.addWidget(self.progress)

        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Track / stem", "Duration", "Peak", "RMS", "File"])
        self.tree.setColumnWidth(0, 190)
        for col in (1, 2, 3):
            self.tree.setColumnWidth(col, 78)
        self.tree.setToolTip("Double-click a stem to play it; while playing, clicking another stem of the same "
                             "track switches to it at the same position (compare)")
        self.tree.itemDoubleClicked.connect(self._play_item)
        self.tree.currentItemChanged.connect(self._switch_item)
        self.play_button = QPushButton("Play")
        self.play_button.setToolTip("Play the selected stem")
        self.play_button.clicked.connect(lambda: self._play_item(self.tree.currentItem()))
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_playback)
        self.position = QSlider(Qt.Horizontal)
        self.position.setRange(0, 1000)
        self.position.setToolTip("Playback position")
        self.position.sliderMoved.connect(lambda v: self.player.seek(v / 1000.0))
        self.now_playing = QLabel(IDLE_HINT)
        self.now_playing.setStyleSheet("color:#9aa0aa;")
        export = button("Export…", "Copy the selected track's stems (or the selected stem) to a folder", self._export)
        open_folder = QPushButton("Open folder")
        open_folder.clicked.connect(self._open_folder)

        right = QGroupBox("Stems")
        rv = QVBoxLayout(right)
        rv.addWidget(self.tree, 1)
        prow = QHBoxLayout()
        prow.addWidget(self.play_button)
        prow.addWidget(self.stop_button)
        prow.addWidget(self.position, 1)
        rv.addLayout(prow)
        rv.addWidget(self.now_playing)
        erow = QHBoxLayout()
        erow.addStretch(1)
        erow.addWidget(export)
        erow.addWidget(open_folder)
        rv.addLayout(erow)

        layout = QHBoxLayout(self)
        layout.addWidget(left, 1)
        layout.addWidget(right, 1)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._tick)

    # -- the list -------------------------------------------------------------
    def add_files(self, paths) -> None:
        for p in paths:
            p = Path(p)
            if p not in self.queue:
                self.queue.append(p)
                item = QListWidgetItem(str(p))
                item.setData(Qt.UserRole, str(p))
                item.setToolTip(str(p))
                self.files.addItem(item)

    def add_demo(self) -> None:
        from stream_engine.demo import DEMO_SONG

        self.add_files([DEMO_SONG])

    def _pick(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Audio files", str(Path.home()),
                                                "Audio (*.wav *.flac *.ogg *.mp3 *.aif *.aiff *.opus);;All files (*)")
        self.add_files(names)

    def _pick_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    def _clear(self) -> None:
        if self.job is None:
            self.queue.clear()
            self.files.clear()

    # -- separation ------------------------------------------------------------
    def separate_all(self) -> None:
        if self.job is not None:
            return
        if not self.queue:
            self.error.emit("Add files first: drop them on the list, or use Add files / Add demo song.")
            return
        self._todo = list(self.queue)
        self._total = len(self._todo)
        self.separate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._next()

    def _next(self) -> None:
        if not self._todo:
            self.job = None
            self.separate_button.setEnabled(True)
            self.cancel_button.setEnabled(False)
            self.progress.setValue(1000)
            self.progress.setFormat("done")
            return
        path = self._todo.pop(0)
        self._current = path
        self._done_files = self._total - len(self._todo) - 1
        model = self.model_box.currentData()
        profile = self.profile_box.currentData()
        out = Path(self.out_edit.text()).expanduser()
        self.progress.setFormat(f"{path.name}: %p%")
        self.message.emit(f"separating {path.name} with {model or 'the default model'} ({profile})…")

        holder: list = []

        def work():
            job = holder[0]
            files = separate_one(path, out, model, profile, fmt, progress=job.progress.emit, cancel=job.cancel)
            return files, stem_levels(files)

        fmt = self.format_box.currentText()
        job = Job(work, name="stemstream-separate")
        holder.append(job)
        job.finished.connect(self._one_done)
        job.failed.connect(self._one_failed)
        job.progress.connect(self._one_progress)
        job.start()
        self.job = job

    def _one_progress(self, fraction: float) -> None:
        self.progress.setValue(int(1000 * (self._done_files + fraction) / max(1, self._total)))

    def _one_done(self, result) -> None:
        files, levels = result
        track = self._current.stem
        self.results[track] = {k: Path(v) for k, v in files.items()}
        self.levels[track] = levels
        self._mark(self._current, "✓")
        self._show_result(track)
        self.message.emit(f"{self._current.name}: {len(files)} files in {Path(next(iter(files.values()))).parent}")
        self.separated.emit(track)
        self._next()

    def _one_failed(self, message: str) -> None:
        self._mark(self._current, "✗")
        self.error.emit(f"Separation of {self._current.name} failed: {message}")
        if "cancelled" in message:
            self._todo = []
        self._next()

    def _mark(self, path: Path, sign: str) -> None:
        for i in range(self.files.count()):
            item = self.files.item(i)
            if item.data(Qt.UserRole) == str(path):
                item.setText(f"{sign}  {path}")

    def _cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    def _show_result(self, track: str) -> None:
        import soundfile as sf

        for i in range(self.tree.topLevelItemCount()):
            if self.tree.topLevelItem(i).text(0) == track:
                self.tree.takeTopLevelItem(i)
                break
        top = QTreeWidgetItem([track, "", "", "", str(next(iter(self.results[track].values())).parent)])
        levels = self.levels.get(track, {})
        for name, path in self.results[track].items():
            try:
                seconds = sf.info(str(path)).duration
                dur = f"{int(seconds // 60)}:{seconds % 60:04.1f}"
            except Exception:  # noqa: BLE001
                dur = "?"
            peak, rms = levels.get(name, (None, None))
            child = QTreeWidgetItem([name, dur, _db_text(peak), _db_text(rms), path.name])
            for col in (1, 2, 3):
                child.setTextAlignment(col, Qt.AlignRight | Qt.AlignVCenter)
            child.setData(0, Qt.UserRole, (track, name))
            top.addChild(child)
        self.tree.addTopLevelItem(top)
        top.setExpanded(True)

    def stems_of(self, track: str) -> list[str]:
        """Names shown under ``track`` in the list (for tests and scripting)."""
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top.text(0) == track:
                return [top.child(k).text(0) for k in range(top.childCount())]
        return []

    # -- playback ---------------------------------------------------------------
    def _play_item(self, item) -> None:
        if item is None or item.data(0, Qt.UserRole) is None:
            return
        track, stem = item.data(0, Qt.UserRole)
        if getattr(self, "_loaded", None) == track:
            self._play(stem)
            return
        self.now_playing.setText(f"loading {track}…")
        run_job(StemPlayer.read, self.results[track], self.output_rate, name="stemstream-load-stems",
                on_done=lambda result: self._loaded_stems(track, stem, result),
                on_error=lambda message: self.error.emit(f"Cannot play {stem}: {message}"))

    def _loaded_stems(self, track: str, stem: str, result) -> None:
        self.player.set_tracks(*result)
        self._loaded = track
        self._play(stem)

    def _play(self, stem: str) -> None:
        try:
            self.player.play(stem, self.output_device)
        except Exception as exc:  # noqa: BLE001 - no device: tell, stay usable
            self.player.close()
            self.error.emit(f"Cannot play {stem}: {exc}")
            return
        self.now_playing.setText(f"▶ {self._loaded} / {stem}")
        self._timer.start()

    def _switch_item(self, item, _previous=None) -> None:
        if item is None or self.player.stream is None:
            return
        data = item.data(0, Qt.UserRole)
        if data and data[0] == getattr(self, "_loaded", None):
            self.player.current = data[1]  # same position, other stem
            self.now_playing.setText(f"▶ {data[0]} / {data[1]}")

    def stop_playback(self) -> None:
        self.player.stop()
        self._timer.stop()
        self.now_playing.setText(IDLE_HINT)

    def _tick(self) -> None:
        if self.player.length:
            if not self.position.isSliderDown():
                self.position.setValue(int(1000 * self.player.position / self.player.length))
            if self.player.position >= self.player.length:
                self.stop_playback()

    # -- export ------------------------------------------------------------------
    def _selected_files(self) -> list[Path]:
        item = self.tree.currentItem()
        if item is None:
            return []
        data = item.data(0, Qt.UserRole)
        if data:
            return [self.results[data[0]][data[1]]]
        return list(self.results.get(item.text(0), {}).values())

    def _export(self) -> None:
        files = self._selected_files()
        if not files:
            self.error.emit("Select a track or a stem to export.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export stems to", str(Path.home()))
        if folder:
            self.export_to(files, Path(folder))

    def export_to(self, files, folder: Path) -> list[Path]:
        done = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for f in files:
                target = folder / f"{f.parent.name}-{f.name}"
                shutil.copy2(f, target)
                done.append(target)
        except OSError as exc:
            self.error.emit(f"Export failed: {exc}")
        else:
            self.message.emit(f"exported {len(done)} file(s) to {folder}")
        return done

    def _open_folder(self) -> None:
        files = self._selected_files()
        folder = files[0].parent if files else Path(self.out_edit.text())
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
