"""The Files tab's preview: a track's outputs as waveforms with a playhead, mixed (level,
mute, solo) while they play (``FilesPreview``, a part of ``FilesTab``; the player is ``gui.preview``)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from .jobs import run_job
from .preview import is_mix, load_track, output_description
from .widgets import Waveform, time_text

IDLE_HINT = "Select a track to preview it; double-click a stem to hear it alone."
ROW_COLORS = ["#5aaae6", "#e6a04a", "#7ccf6a", "#c77ce0", "#e66a6a", "#d8d060", "#6ad8c8", "#a0a0ff"]


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


class FilesPreview:
    """``FilesTab``'s preview (a mixin: it uses the tab's rows, player and widgets)."""

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
        self.loading_bar.setVisible(True)
        run_job(load_track, self.results[track], self.output_rate, name="stemstream-load-stems",
                on_done=lambda result: self._loaded_track(track, result),
                on_error=lambda message: self._load_failed(track, message))

    def _load_failed(self, track: str, message: str) -> None:
        self._loading = None
        self.loading_bar.setVisible(False)
        self.now_playing.setText(IDLE_HINT)
        self.error.emit(f"Cannot load {track}: {message}")

    def _loaded_track(self, track: str, result) -> None:
        if self._loading != track:
            return  # another track was chosen meanwhile
        self._loading, then = None, self._then
        self.loading_bar.setVisible(False)
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
        from .widgets import gain_text

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

