"""The Files tab: drop or pick files, separate them off the UI thread with a
progress bar; earlier results stay listed across restarts; a track's outputs
are previewed as waveforms with a playhead and mixed (level, mute, solo) while
they play; the chosen outputs are exported as wav or flac at 16 or 24 bits or
float.

``FilesTab`` builds the widgets and enables what can run; its parts are
``gui.files_batch`` (the list and its separation), ``gui.files_results``
(earlier results), ``gui.files_preview`` (waveforms and playback) and
``gui.files_export`` (export).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
    QListWidget, QProgressBar, QScrollArea, QSlider, QSplitter, QTreeWidget, QVBoxLayout, QWidget,
)

from stream_engine.profiles import PROFILES

from .files_batch import FilesBatch
from .files_export import EXPORT_FORMATS, FilesExport
from .files_preview import IDLE_HINT, FilesPreview, StemRow
from .files_results import FilesResults
from .preview import MixPlayer
from .settings import ResultHistory
from .widgets import button, keep_width_for, time_text

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus"}


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
        # folders are expanded by the Files tab, as `stemstream separate` expands them (stream_engine.batch)
        self.files_dropped.emit([Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()])
        event.acceptProposedAction()


class FilesTab(FilesBatch, FilesResults, FilesPreview, FilesExport, QWidget):
    message = Signal(str)  # status bar
    error = Signal(str)  # shown to the user
    separated = Signal(str)  # track name, after each file
    export_ready = Signal(bool)  # whether Export can run (a track loaded, outputs ticked)

    def __init__(self, out_dir: Path, parent=None):
        super().__init__(parent)
        self.queue: list[Path] = []
        self.roots: dict[Path, Path | None] = {}  # the folder a queued file was found in (names it, as the CLI)
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
        self.loading_bar = QProgressBar()  # busy while a track's outputs are read (long tracks take seconds)
        self.loading_bar.setRange(0, 0)
        self.loading_bar.setMaximumHeight(8)
        self.loading_bar.setTextVisible(False)
        policy = self.loading_bar.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # its room is kept: nothing below moves when it shows
        self.loading_bar.setSizePolicy(policy)
        self.loading_bar.setVisible(False)
        pv.addWidget(self.loading_bar)
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
