"""The Files tab: drop or pick files, separate them off the UI thread with a
progress bar; earlier results stay listed across restarts; a track's outputs
are previewed as waveforms with a playhead and mixed (level, mute, solo) while
they play; the chosen outputs are exported as wav or flac at 16 or 24 bits or
float."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout,
    QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton, QScrollArea, QSlider,
    QSplitter, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from stream_engine.profiles import PROFILES
from stream_engine.separators.registry import licence_note

from .jobs import Job, run_job
from .preview import MixPlayer, is_mix, load_track, output_description
from .separate import separate_one
from .settings import ResultHistory
from .widgets import Waveform, button, keep_width_for, time_text

IDLE_HINT = "Select a track to preview it; double-click a stem to hear it alone."
EXPORT_FORMATS = {"wav": ("16-bit", "24-bit", "32-bit float"), "flac": ("16-bit", "24-bit")}
SUBTYPES = {"16-bit": "PCM_16", "24-bit": "PCM_24", "32-bit float": "FLOAT"}
ROW_COLORS = ["#5aaae6", "#e6a04a", "#7ccf6a", "#c77ce0", "#e66a6a", "#d8d060", "#6ad8c8", "#a0a0ff"]
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


def _origin(entry: dict) -> str:
    """'from song.flac with dsp-center, 2026-11-29 23:40' for a result's tooltip."""
    source = Path(entry.get("source") or "?").name
    return f"from {source} with {entry.get('model') or 'the default model'}, {entry.get('when', '')}".rstrip(", ")


def write_export(files: dict[str, Path], folder: Path, track: str, fmt: str | None = None,
                 subtype: str | None = None) -> list[Path]:
    """Copy (no ``fmt``) or convert the outputs to ``folder/<track>-<name>.<fmt>``; returns the files.

    Written block by block to a hidden partial file, then renamed, so a failed
    export leaves nothing half-written. Runs in a worker for the Export button.
    """
    import os

    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for name, source in files.items():
        source = Path(source)
        ext = fmt or source.suffix.lstrip(".")
        target = folder / f"{track.replace('/', '-')}-{name}.{ext}"
        partial = folder / f".{target.name}.partial"
        try:
            if fmt is None:
                shutil.copy2(source, partial)
            else:
                with sf.SoundFile(str(source)) as src, sf.SoundFile(
                        str(partial), "w", src.samplerate, src.channels, subtype=SUBTYPES[subtype or "24-bit"],
                        format=fmt.upper()) as dst:
                    for block in src.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                        dst.write(block)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        done.append(target)
    return done


class StemRow:
    """One output of the previewed track: export tick, name and what it is, mute, solo, level, waveform."""

    def __init__(self, name: str, stems, color: str):
        self.name = name
        self.export = QCheckBox()
        self.export.setChecked(True)
        self.export.setToolTip(f"Export {name}")
        self.title = QLabel(f"<b>{name}</b>")
        self.what = QLabel(output_description(name, stems))
        self.what.setWordWrap(True)
        self.what.setStyleSheet("color:#9aa0aa; font-size:8pt;")
        self.what.setMinimumWidth(130)
        self.what.setMaximumWidth(200)
        self.mute = QPushButton("M")
        self.mute.setObjectName("mute")
        self.mute.setCheckable(True)
        self.mute.setToolTip(f"Mute {name} in the preview")
        self.solo = QPushButton("S")
        self.solo.setObjectName("solo")
        self.solo.setCheckable(True)
        self.solo.setToolTip(f"Solo {name}: only soloed outputs play" +
                             (" (a mix: heard only when soloed)" if is_mix(name) else ""))
        for b in (self.mute, self.solo):
            b.setFixedWidth(34)
        self.level = QSlider(Qt.Horizontal)
        self.level.setRange(0, 200)
        self.level.setValue(100)
        self.level.setMinimumWidth(60)
        self.level.setToolTip(f"{name} level in the preview, 0..2 (does not change the file)")
        self.level_text = QLabel("+0.0 dB")
        self.level_text.setMinimumWidth(self.level_text.fontMetrics().horizontalAdvance("-inf dB_") + 12)
        self.level_text.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.wave = Waveform(QColor(color))
        self.wave.setToolTip(f"{name}: click to play from there")

    def widgets(self) -> list:
        names = QWidget()
        v = QVBoxLayout(names)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(0)
        v.addWidget(self.title)
        v.addWidget(self.what)
        v.addStretch(1)
        return [self.export, names, self.mute, self.solo, self.level, self.level_text, self.wave]


class FilesTab(QWidget):
    message = Signal(str)  # status bar
    error = Signal(str)  # shown to the user
    separated = Signal(str)  # track name, after each file
    export_ready = Signal(bool)  # whether Export can run (a track loaded, outputs ticked)

    def __init__(self, out_dir: Path, parent=None):
        super().__init__(parent)
        self.queue: list[Path] = []
        self.results: dict[str, dict[str, Path]] = {}
        self.levels: dict[str, dict[str, tuple]] = {}
        self.model_stems: dict[str, list[str]] = {}  # track -> the model's stems (the rest are mixes)
        self.origins: dict[str, str] = {}  # track -> where it came from, with which model, when
        self.history = ResultHistory()
        self.job = None
        self.player = MixPlayer()
        self.rows: dict[str, StemRow] = {}
        self._loaded: str | None = None  # the track in the preview
        self._loading: str | None = None  # the track being read for the preview
        self._then = None  # what to do once it is read (play it)
        self.output_device = None  # set by the window from the Live tab's output (index)
        self.output_rate = None  # that device's rate: stems are resampled to it

        # -- files to separate ----------------------------------------------------
        self.files = DropList()
        add = button("Add files…", "Pick audio files to separate (Ctrl+O)", self.pick_files)
        demo = button("Add demo song", "The bundled demo song (composed for this project)", self.add_demo)
        self.remove_button = button("Remove", "Take the selected files off the list", self._remove_selected)
        self.clear_button = button("Clear", "Empty the list", self._clear)
        self.files.files_dropped.connect(self.add_files)
        self.files.itemSelectionChanged.connect(self._update_actions)

        self.model_box = QComboBox()
        self.model_box.setToolTip("Separator for files (same models as live)")
        self.model_box.setMinimumContentsLength(10)
        self.model_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.profile_box = QComboBox()
        for name in PROFILES:
            self.profile_box.addItem(name, name)
        self.profile_box.setCurrentText("offline")
        self.profile_box.setToolTip("Files: latency does not matter, offline uses the longest windows")
        self.format_box = QComboBox()
        self.format_box.addItems(["wav", "flac"])
        self.format_box.setToolTip("Format of the separated files (as stemstream separate --format)")
        self.out_edit = QLineEdit(str(out_dir))
        self.out_edit.setToolTip("Outputs go to <folder>/<track>/<output>.<format>")
        browse = button("…", "Choose the output folder", self._pick_out)
        browse.setFixedWidth(browse.fontMetrics().horizontalAdvance("…") + 28)  # text + the style's padding
        self.separate_button = button("Separate", "Separate the listed files in the background", self.separate_all)
        self.separate_button.setObjectName("primary")
        self.cancel_button = button("Cancel", "Stop after the current block; nothing half-written is kept",
                                    self._cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)

        left = QGroupBox("Files to separate")
        lv = QVBoxLayout(left)
        row = QHBoxLayout()
        for b in (add, demo, self.remove_button, self.clear_button):
            row.addWidget(b)
        row.addStretch(1)
        lv.addLayout(row)
        lv.addWidget(self.files, 1)
        opts = QFormLayout()
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(QLabel("Profile"))
        model_row.addWidget(self.profile_box)
        opts.addRow("Model", model_row)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        out_row.addWidget(self.format_box)
        opts.addRow("Output", out_row)
        lv.addLayout(opts)
        go = QHBoxLayout()
        go.addWidget(self.separate_button)
        go.addWidget(self.cancel_button)
        go.addWidget(self.progress, 1)
        lv.addLayout(go)

        # -- results (kept across restarts) ------------------------------------------
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Track / output", "Duration", "Peak", "RMS"])
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeToContents)
        self.tree.setToolTip("Separated tracks, newest first (also those of earlier sessions). Select one to "
                             "preview it; double-click an output to hear it alone")
        self.tree.itemDoubleClicked.connect(self._play_item)
        self.tree.currentItemChanged.connect(self._switch_item)
        self.forget_button = button("Remove from list", "Forget the selected track (its files stay on disk)",
                                    self._forget_selected)
        self.open_button = button("Open folder", "Open the selected track's folder", self._open_folder)
        results = QGroupBox("Results")
        tv = QVBoxLayout(results)
        tv.addWidget(self.tree, 1)
        trow = QHBoxLayout()
        trow.addStretch(1)
        trow.addWidget(self.forget_button)
        trow.addWidget(self.open_button)
        tv.addLayout(trow)

        left_split = QSplitter(Qt.Vertical)
        left_split.addWidget(left)
        left_split.addWidget(results)
        left_split.setChildrenCollapsible(False)
        left_split.setStretchFactor(0, 1)
        left_split.setStretchFactor(1, 1)

        # -- preview mixer ------------------------------------------------------------
        self.track_title = QLabel("No track loaded")
        self.track_title.setStyleSheet("font-weight:bold; font-size:11pt;")
        self.play_button = button("▶ Play", "Play the preview mix from the playhead (double-click an output "
                                            "in Results to hear it alone)", self.toggle_play)
        self.stop_button = button("■ Stop", "Stop and return to the start", self.stop_playback)
        keep_width_for(self.play_button, ("▶ Play", "❚❚ Pause"))  # the transport row keeps its place
        self.time_label = QLabel(f"{time_text(0)} / {time_text(0)}")
        self.time_label.setMinimumWidth(self.time_label.fontMetrics().horizontalAdvance("00:00.0 / 00:00.0") + 8)
        self.time_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.time_label.setToolTip("Playback position / length")
        self.position = QSlider(Qt.Horizontal)
        self.position.setRange(0, 1000)
        self.position.setToolTip("Playback position")
        self.position.sliderMoved.connect(lambda v: self.seek(v / 1000.0))
        self.now_playing = QLabel(IDLE_HINT)
        self.now_playing.setWordWrap(True)
        self.now_playing.setStyleSheet("color:#9aa0aa;")
        self.rows_holder = QWidget()
        self.rows_grid = QGridLayout(self.rows_holder)
        self.rows_grid.setContentsMargins(0, 0, 0, 0)
        self.rows_grid.setHorizontalSpacing(6)
        self.rows_grid.setColumnStretch(6, 1)
        self.rows_scroll = rows_scroll = QScrollArea()
        rows_scroll.setWidget(self.rows_holder)
        rows_scroll.setWidgetResizable(True)
        rows_scroll.setFrameShape(QScrollArea.NoFrame)
        self.export_format = QComboBox()
        self.export_format.addItems(list(EXPORT_FORMATS))
        self.export_format.setToolTip("File format of the exported outputs")
        self.export_depth = QComboBox()
        self.export_depth.setToolTip("Sample format: 16-bit (CD), 24-bit (studio) or 32-bit float (wav only)")
        self.export_format.currentTextChanged.connect(self._fill_depths)
        self._fill_depths(self.export_format.currentText())
        self.export_depth.setCurrentText("24-bit")
        self.export_button = button("Export…", "Export the ticked outputs of this track (Ctrl+E)",
                                    self.export_dialog)

        preview = QGroupBox("Preview and export")
        pv = QVBoxLayout(preview)
        top = QHBoxLayout()
        top.addWidget(self.track_title, 1)
        top.addWidget(self.time_label)
        pv.addLayout(top)
        transport = QHBoxLayout()
        transport.addWidget(self.play_button)
        transport.addWidget(self.stop_button)
        transport.addWidget(self.position, 1)
        pv.addLayout(transport)
        pv.addWidget(self.now_playing)
        pv.addWidget(rows_scroll, 1)
        erow = QHBoxLayout()
        erow.addStretch(1)
        erow.addWidget(QLabel("Export ticked as"))
        erow.addWidget(self.export_format)
        erow.addWidget(self.export_depth)
        erow.addWidget(self.export_button)
        pv.addLayout(erow)

        split = QSplitter(Qt.Horizontal)
        split.addWidget(left_split)
        split.addWidget(preview)
        split.setChildrenCollapsible(False)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        layout = QHBoxLayout(self)
        layout.addWidget(split)

        self._timer = QTimer(self)
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)
        self._restore_history()
        self._update_actions()

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
        self._update_actions()

    def add_demo(self) -> None:
        from stream_engine.demo import DEMO_SONG

        self.add_files([DEMO_SONG])

    def pick_files(self) -> None:
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
            self._update_actions()

    def _remove_selected(self) -> None:
        if self.job is not None:
            return
        for item in self.files.selectedItems():
            self.queue.remove(Path(item.data(Qt.UserRole)))
            self.files.takeItem(self.files.row(item))
        self._update_actions()

    def _update_actions(self) -> None:
        """Enable what can run now, disable the rest."""
        idle = self.job is None
        self.separate_button.setEnabled(idle and bool(self.queue))
        self.separate_button.setToolTip("Separate the listed files in the background" if self.queue else
                                        "Add files first (drop them on the list, Add files…, Add demo song)")
        self.cancel_button.setEnabled(not idle)
        self.clear_button.setEnabled(idle and bool(self.queue))
        self.remove_button.setEnabled(idle and bool(self.files.selectedItems()))
        loaded = self._loaded is not None and bool(self.rows)
        for w in (self.play_button, self.stop_button, self.position):
            w.setEnabled(loaded)
        self.play_button.setText("❚❚ Pause" if self.player.playing else "▶ Play")
        selected = self._selected_track()
        self.forget_button.setEnabled(selected is not None and idle)
        self.open_button.setEnabled(selected is not None)
        can_export = loaded and any(r.export.isChecked() for r in self.rows.values())
        self.export_button.setEnabled(can_export)
        self.export_ready.emit(can_export)

    # -- separation ------------------------------------------------------------
    def separate_all(self) -> None:
        if self.job is not None:
            return
        if not self.queue:
            self.error.emit("Add files first: drop them on the list, or use Add files / Add demo song.")
            return
        self._todo = list(self.queue)
        self._total = len(self._todo)
        self._next()

    def _next(self) -> None:
        if not self._todo:
            self.job = None
            self.progress.setValue(1000)
            self.progress.setFormat("done")
            self._update_actions()
            return
        path = self._todo.pop(0)
        self._current = path
        self._done_files = self._total - len(self._todo) - 1
        model = self.model_box.currentData()
        profile = self.profile_box.currentData()
        out = Path(self.out_edit.text()).expanduser()
        fmt = self.format_box.currentText()
        self.progress.setFormat(f"{path.name}: %p%")
        self.message.emit(f"separating {path.name} with {model or 'the default model'} ({profile})…"
                          + licence_note(model))

        holder: list = []

        def work():
            job = holder[0]
            files = separate_one(path, out, model, profile, fmt, progress=job.progress.emit, cancel=job.cancel)
            return files, stem_levels(files), [name for name in files if not is_mix(name)]

        job = Job(work, name="stemstream-separate")
        holder.append(job)
        job.finished.connect(self._one_done)
        job.failed.connect(self._one_failed)
        job.progress.connect(self._one_progress)
        self.job = job
        self._update_actions()
        job.start()

    def _one_progress(self, fraction: float) -> None:
        self.progress.setValue(int(1000 * (self._done_files + fraction) / max(1, self._total)))

    def _one_done(self, result) -> None:
        import time

        files, levels, stems = result
        track = self._current.stem
        files = {k: Path(v) for k, v in files.items()}
        entry = {"track": track, "folder": str(next(iter(files.values())).parent),
                 "files": {k: str(v) for k, v in files.items()}, "levels": {k: list(v) for k, v in levels.items()},
                 "stems": stems, "source": str(self._current), "model": self.model_box.currentData(),
                 "when": time.strftime("%Y-%m-%d %H:%M")}
        self.origins[track] = _origin(entry)
        self._remember(track, files, levels, stems)
        self.history.add(entry)
        problem = self.history.save()
        if problem:
            self.message.emit(problem)
        self._mark(self._current, "✓")
        self.message.emit(f"{self._current.name}: {len(files)} files in {next(iter(files.values())).parent}")
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

    # -- results ------------------------------------------------------------------
    def _restore_history(self) -> None:
        for entry in reversed(self.history.entries):  # oldest first: each lands on top
            levels = {k: tuple(v) for k, v in (entry.get("levels") or {}).items()}
            stems = entry.get("stems") or [k for k in entry["files"] if not is_mix(k)]
            self.origins[entry["track"]] = _origin(entry)
            self._remember(entry["track"], {k: Path(v) for k, v in entry["files"].items()}, levels, stems)

    def _remember(self, track: str, files: dict[str, Path], levels: dict, stems) -> None:
        self.results[track] = files
        self.levels[track] = levels
        self.model_stems[track] = list(stems)
        if self._loaded == track:  # separated again: the preview reloads on its next selection
            self._unload()
        self._show_result(track)

    def _show_result(self, track: str) -> None:
        import soundfile as sf

        for i in range(self.tree.topLevelItemCount()):
            if self.tree.topLevelItem(i).text(0) == track:
                self.tree.takeTopLevelItem(i)
                break
        folder = next(iter(self.results[track].values())).parent
        top = QTreeWidgetItem([track, "", "", ""])
        top.setToolTip(0, f"{folder}\n{self.origins.get(track, '')}".strip())
        top.setData(0, Qt.UserRole, (track, None))
        levels = self.levels.get(track, {})
        stems = self.model_stems.get(track, [])
        for name, path in self.results[track].items():
            try:
                seconds = sf.info(str(path)).duration
                dur = time_text(seconds)
            except Exception:  # noqa: BLE001
                dur = "?"
            peak, rms = levels.get(name, (None, None))
            child = QTreeWidgetItem([name, dur, _db_text(peak), _db_text(rms)])
            child.setToolTip(0, f"{name}: {output_description(name, stems)}\n{path}")
            for col in (1, 2, 3):
                child.setTextAlignment(col, Qt.AlignRight | Qt.AlignVCenter)
            child.setData(0, Qt.UserRole, (track, name))
            top.addChild(child)
        self.tree.insertTopLevelItem(0, top)
        top.setExpanded(True)

    def stems_of(self, track: str) -> list[str]:
        """Names shown under ``track`` in the list (for tests and scripting)."""
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            if top.text(0) == track:
                return [top.child(k).text(0) for k in range(top.childCount())]
        return []

    def _selected_track(self) -> str | None:
        item = self.tree.currentItem()
        data = item.data(0, Qt.UserRole) if item is not None else None
        return data[0] if data else None

    def _forget_selected(self) -> None:
        track = self._selected_track()
        if track is None or self.job is not None:
            return
        folder = str(next(iter(self.results[track].values())).parent)
        if self._loaded == track:
            self._unload()
        for i in range(self.tree.topLevelItemCount()):
            if self.tree.topLevelItem(i).text(0) == track:
                self.tree.takeTopLevelItem(i)
                break
        self.results.pop(track, None)
        self.levels.pop(track, None)
        self.history.remove(folder)
        self.history.save()
        self._update_actions()

    # -- preview -------------------------------------------------------------------
    def _switch_item(self, item, _previous=None) -> None:
        """A click in Results: load that track into the preview; on an output of the
        track playing, hear that output alone from the same position (compare)."""
        self._update_actions()
        data = item.data(0, Qt.UserRole) if item is not None else None
        if not data:
            return
        track, name = data
        if track != self._loaded:
            self.load(track)
        elif name is not None and self.player.playing:
            self._solo_only(name)

    def load(self, track: str, then=None) -> None:
        """Read ``track``'s outputs off the UI thread, then show them (and call ``then``)."""
        if track not in self.results:
            return
        if self._loading == track:  # already on its way: the latest ``then`` wins
            self._then = then or self._then
            return
        self._loading, self._then = track, then
        self.now_playing.setText(f"loading {track}…")
        run_job(load_track, self.results[track], self.output_rate, name="stemstream-load-stems",
                on_done=lambda result: self._loaded_track(track, result),
                on_error=lambda message: self._load_failed(track, message))

    def _load_failed(self, track: str, message: str) -> None:
        self._loading = None
        self.now_playing.setText(IDLE_HINT)
        self.error.emit(f"Cannot load {track}: {message}")

    def _loaded_track(self, track: str, result) -> None:
        if self._loading != track:
            return  # another track was chosen meanwhile
        self._loading, then = None, self._then
        tracks, rate, envelopes = result
        self._unload()
        self.player.set_tracks(tracks, rate)
        self._loaded = track
        self._build_rows(track, envelopes)
        self.track_title.setText(track)
        self.now_playing.setText("Mute, solo and level change what you hear, not the files. "
                                 "Mixes (instrumental, karaoke) are heard only when soloed.")
        self._show_position()
        self._update_actions()
        if then is not None:
            then()

    def _unload(self) -> None:
        self.stop_playback()
        self.player.set_tracks({}, self.player.rate)
        self._loaded = None
        while self.rows_grid.count():
            item = self.rows_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.rows = {}
        self.track_title.setText("No track loaded")
        self._update_actions()

    def _build_rows(self, track: str, envelopes: dict) -> None:
        stems = self.model_stems.get(track, [])
        for c, text in ((0, "Export"), (1, "Output"), (4, "Preview level"), (6, "Waveform")):
            head = QLabel(text)
            head.setObjectName("colhead")
            self.rows_grid.addWidget(head, 0, c, 1, 2 if c == 4 else 1)
        for r, name in enumerate(self.results[track], start=1):
            row = StemRow(name, stems, ROW_COLORS[(r - 1) % len(ROW_COLORS)])
            row.wave.set_envelope(envelopes[name])
            row.export.setChecked(not is_mix(name))
            row.export.toggled.connect(lambda _on: self._update_actions())
            row.mute.toggled.connect(lambda on, n=name: self._mute(n, on))
            row.solo.toggled.connect(lambda on, n=name: self._solo(n, on))
            row.level.valueChanged.connect(lambda v, n=name: self._level(n, v))
            row.wave.seek_requested.connect(self.seek)
            for c, w in enumerate(row.widgets()):
                self.rows_grid.addWidget(w, r, c)
            self.rows_grid.setRowStretch(r, 1)
            self.rows[name] = row
        self._show_heard()

    def _mute(self, name: str, on: bool) -> None:
        self.player.set_mute(name, on)
        self._show_heard()

    def _solo(self, name: str, on: bool) -> None:
        self.player.set_solo(name, on)
        self._show_heard()

    def _level(self, name: str, value: int) -> None:
        from .live_tab import gain_text

        self.player.set_gain(name, value / 100.0)
        self.rows[name].level_text.setText(gain_text(value / 100.0))

    def _solo_only(self, name: str) -> None:
        """Hear ``name`` alone (a double-click, or a click while playing)."""
        self.player.current = name
        for n, row in self.rows.items():
            row.solo.blockSignals(True)
            row.solo.setChecked(n == name)
            row.solo.blockSignals(False)
        self._show_heard()

    def _show_heard(self) -> None:
        """Dim the waveforms of outputs not heard now (muted, or another one soloed)."""
        heard = set(self.player.audible())
        for name, row in self.rows.items():
            row.wave.set_dimmed(name not in heard)

    def play_stem(self, track: str, name: str | None = None) -> None:
        """Play ``track`` (loading it first if needed): ``name`` alone, or the mix."""
        if self._loaded != track:
            self.load(track, then=lambda: self.play_stem(track, name))
            return
        if name is not None:
            self._solo_only(name)
        self._start_player()

    def _play_item(self, item) -> None:
        data = item.data(0, Qt.UserRole) if item is not None else None
        if data:
            self.play_stem(*data)

    def toggle_play(self) -> None:
        if self.player.playing:
            self.player.pause()
            self._update_actions()
        elif self._loaded is not None:
            self._start_player()

    def _start_player(self) -> None:
        try:
            self.player.play(None, self.output_device)
        except Exception as exc:  # noqa: BLE001 - no device: tell, stay usable
            self.player.close()
            self.error.emit(f"Cannot play {self._loaded}: {exc}")
            return
        self._timer.start()
        self._update_actions()

    def seek(self, fraction: float) -> None:
        self.player.seek(fraction)
        self._show_position()

    def stop_playback(self) -> None:
        self.player.stop()
        self._timer.stop()
        self._show_position()
        self._update_actions()

    def _show_position(self) -> None:
        length = self.player.length
        fraction = self.player.position / length if length else 0.0
        rate = self.player.rate or 1
        self.time_label.setText(f"{time_text(self.player.position / rate)} / {time_text(length / rate)}")
        if not self.position.isSliderDown():
            self.position.setValue(int(1000 * fraction))
        for row in self.rows.values():
            row.wave.set_playhead(fraction)

    def _tick(self) -> None:
        self._show_position()
        if self.player.length and self.player.position >= self.player.length:
            self.stop_playback()

    def set_output(self, device_index, rate) -> None:
        """The Live tab's output changed: play there, re-reading the stems at its rate."""
        track = self._loaded
        self._unload()
        self.output_device, self.output_rate = device_index, rate
        if track is not None:
            self.load(track)

    # -- export ------------------------------------------------------------------
    def _fill_depths(self, fmt: str) -> None:
        current = self.export_depth.currentText()
        self.export_depth.clear()
        self.export_depth.addItems(list(EXPORT_FORMATS[fmt]))
        if current in EXPORT_FORMATS[fmt]:
            self.export_depth.setCurrentText(current)
        else:
            self.export_depth.setCurrentText("24-bit")

    def chosen_outputs(self) -> dict[str, Path]:
        """The previewed track's ticked outputs."""
        if self._loaded is None:
            return {}
        return {n: self.results[self._loaded][n] for n, row in self.rows.items() if row.export.isChecked()}

    def export_dialog(self) -> None:
        files = self.chosen_outputs()
        if not files:
            self.error.emit("Select a track in Results and tick the outputs to export.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export to", str(Path.home()))
        if folder:
            self.export_chosen(Path(folder))

    def export_chosen(self, folder: Path) -> None:
        """Convert the ticked outputs into ``folder`` in the background, in the chosen format."""
        files, track = self.chosen_outputs(), self._loaded
        fmt, depth = self.export_format.currentText(), self.export_depth.currentText()
        self.export_button.setEnabled(False)
        self.message.emit(f"exporting {len(files)} output(s) of {track} as {fmt} {depth}…")

        def done(paths):
            self._update_actions()
            self.exported = paths
            self.message.emit(f"exported {len(paths)} file(s) to {folder}")

        def failed(message):
            self._update_actions()
            self.error.emit(f"Export failed: {message}")

        run_job(write_export, files, folder, track, fmt, depth, on_done=done, on_error=failed,
                name="stemstream-export")

    def export_to(self, files, folder: Path) -> list[Path]:
        """Copy ``files`` (paths in the results) into ``folder`` as they are, at once."""
        by_track: dict[Path, dict[str, Path]] = {}
        for f in files:
            f = Path(f)
            by_track.setdefault(f.parent, {})[f.stem] = f
        done = []
        try:
            for parent, outputs in by_track.items():
                done += write_export(outputs, Path(folder), parent.name)
        except OSError as exc:
            self.error.emit(f"Export failed: {exc}")
        else:
            self.message.emit(f"exported {len(done)} file(s) to {folder}")
        return done

    def _open_folder(self) -> None:
        track = self._selected_track()
        folder = next(iter(self.results[track].values())).parent if track else Path(self.out_edit.text())
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
