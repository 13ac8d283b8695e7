"""The Live tab as a player: a queue of songs (drop files or folders, reorder by dragging), each
named by its tags or its folder (not ``mixture.ogg``), a transport (previous, play/pause, next,
position with seek, once or loop) and a key and guide level kept per song.

The song plays through the live engine as its input (``gui.input_sources.PlayerSource``: pause, seek,
once or loop, read in the audio callback without allocating); changing song is an input change
(a crossfade in the callback, ``LiveSession.set_input``). ``PlayerWiring`` hooks the widgets onto
the window, as ``gui.live_control.LiveWiring`` does for the rest of the Live tab.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSlider,
    QVBoxLayout, QWidget,
)

from .widgets import time_text

QUEUE_SETTING = "queue"  # [paths]
SONG_SETTING = "songs"  # {path: {"key": int, "guide": float}}: what each song was last played with
LOOP_SETTING = "loop_song"
GENERIC_STEMS = {"mixture", "mix", "song", "track", "audio", "master", "untitled", "input", "stereo", "full"}


def song_name(path: Path, others=()) -> str:
    """What a song is called in the queue: "artist – title" from its tags, else its file name, or its
    folder's name where the file name says nothing (``mixture.wav``, or shared by several songs)."""
    path = Path(path)
    try:
        import soundfile as sf

        with sf.SoundFile(str(path)) as f:
            title, artist = (f.title or "").strip(), (f.artist or "").strip()
    except Exception:  # noqa: BLE001 - unreadable tags (mp3 without libsndfile support, ...): the names
        title = artist = ""
    if title:
        return f"{artist} – {title}" if artist else title
    shared = sum(1 for o in others if Path(o).stem.casefold() == path.stem.casefold()) > 1
    if (path.stem.casefold() in GENERIC_STEMS or shared) and path.parent.name:
        return path.parent.name
    return path.stem


class QueueList(QListWidget):
    """The songs, in order: drop files or folders from outside, drag songs to reorder."""

    files_dropped = Signal(list, int)  # paths, the row they were dropped at

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDrop)
        self.setDefaultDropAction(Qt.MoveAction)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setToolTip("The queue: drop songs or folders here, drag to reorder, double-click to play")

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event):
        if event.mimeData().hasUrls():
            row = self.indexAt(event.position().toPoint()).row()
            self.files_dropped.emit([Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()],
                                    self.count() if row < 0 else row)
            event.acceptProposedAction()
        else:
            super().dropEvent(event)  # a move inside the list

    def paintEvent(self, event):
        super().paintEvent(event)
        if self.count() == 0:
            from PySide6.QtGui import QColor, QPainter

            p = QPainter(self.viewport())
            p.setPen(QColor(130, 136, 146))
            p.drawText(self.viewport().rect(), Qt.AlignCenter | Qt.TextWordWrap,
                       "Drop songs or folders here:\nthey play through the engine, one after another")
            p.end()


class PlayerPanel(QWidget):
    """Transport and queue widgets (no logic: ``PlayerWiring`` drives them)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        from PySide6.QtWidgets import QStyle

        style = self.style()  # the style's media icons: every font draws them (not all have ⏮ ⏭)
        self.icons = {name: style.standardIcon(getattr(QStyle, f"SP_Media{name}"))
                      for name in ("SkipBackward", "Play", "Pause", "SkipForward")}
        self.prev_button = QPushButton(self.icons["SkipBackward"], "")
        self.prev_button.setToolTip("Previous song (or the start of this one after 3 s)")
        self.play_button = QPushButton(self.icons["Play"], "")
        self.play_button.setToolTip("Pause or play the song (the engine keeps running: the mic stays live)")
        self.next_button = QPushButton(self.icons["SkipForward"], "")
        self.next_button.setToolTip("Next song in the queue")
        for b in (self.prev_button, self.play_button, self.next_button):
            b.setFixedWidth(40)
        self.position = QSlider(Qt.Horizontal)
        self.position.setRange(0, 1000)
        self.position.setToolTip("Song position: drag or click to seek")
        self.time_label = QLabel(f"{time_text(0)} / {time_text(0)}")
        self.time_label.setMinimumWidth(self.time_label.fontMetrics().horizontalAdvance("00:00.0 / 00:00.0") + 8)
        self.time_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self.loop = QCheckBox("Loop")
        self.loop.setToolTip("Loop this song; off: play it once, then the next one in the queue")
        self.title = QLabel("")
        self.title.setStyleSheet("font-weight:bold;")
        self.title.setMinimumWidth(60)
        self.queue = QueueList()
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected song off the queue")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for w in (self.prev_button, self.play_button, self.next_button):
            bar.addWidget(w)
        bar.addWidget(self.title)
        bar.addWidget(self.position, 1)
        bar.addWidget(self.time_label)
        bar.addWidget(self.loop)
        self.transport = QWidget()
        self.transport.setLayout(bar)
        self.queue_box = QWidget()
        qv = QVBoxLayout(self.queue_box)
        qv.setContentsMargins(0, 0, 0, 0)
        qv.addWidget(self.queue, 1)
        row = QHBoxLayout()
        self.hint = QLabel("Key and guide are kept per song")
        self.hint.setStyleSheet("color:#8a909a; font-size:8pt;")
        row.addWidget(self.hint, 1)
        row.addWidget(self.remove_button)
        qv.addLayout(row)


class PlayerWiring(QObject):
    """The queue and transport on the window: songs in, the input box, the session's source."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel: PlayerPanel = window.live.player
        self.songs: dict[str, dict] = {}  # path -> {"key", "guide"} last used with that song
        self.current: str | None = None  # the song the input plays (a path), None: not a queued song
        s = window.settings
        saved = s.get(SONG_SETTING)
        self.songs = {str(k): dict(v) for k, v in saved.items() if isinstance(v, dict)} if isinstance(saved, dict) else {}
        p = self.panel
        p.loop.setChecked(bool(s.get(LOOP_SETTING, False)))
        queued = s.get(QUEUE_SETTING)
        if isinstance(queued, list):
            self.add([Path(q) for q in queued if isinstance(q, str) and Path(q).is_file()], save=False)
        p.queue.files_dropped.connect(lambda paths, row: self.add(paths, row))
        p.queue.itemDoubleClicked.connect(lambda item: self.play_item(p.queue.row(item)))
        p.queue.model().rowsMoved.connect(lambda *_: self._save())
        p.remove_button.clicked.connect(self._remove_selected)
        p.next_button.clicked.connect(self.next)
        p.prev_button.clicked.connect(self.previous)
        p.play_button.clicked.connect(self.toggle_pause)
        p.loop.toggled.connect(self._loop_toggled)
        p.position.sliderReleased.connect(lambda: self.seek(p.position.value() / 1000.0))
        p.position.sliderMoved.connect(self._show_drag)
        window.live.input_box.currentIndexChanged.connect(self._input_changed)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self._input_changed()

    # ------------------------------------------------------------ the queue
    def paths(self) -> list[str]:
        q = self.panel.queue
        return [q.item(i).data(Qt.UserRole) for i in range(q.count())]

    def add(self, paths, row: int | None = None, save: bool = True) -> None:
        """Songs and folders (their audio, found as `stemstream separate` finds it) into the queue."""
        from stream_engine.batch import BatchError, collect_inputs

        try:
            jobs = collect_inputs([Path(p) for p in paths], Path("/nonexistent-output"))
        except BatchError as exc:
            self.window.show_error(str(exc))
            return
        q = self.panel.queue
        row = q.count() if row is None else row
        known = set(self.paths())
        for job in jobs:
            path = str(Path(job.path).resolve())
            if path in known:
                continue
            known.add(path)
            item = QListWidgetItem()
            item.setData(Qt.UserRole, path)
            item.setToolTip(path)
            q.insertItem(row, item)
            row += 1
        self._rename()
        if save:
            self._save()

    def _rename(self) -> None:
        """Names by tags or folder (again: a second ``mixture.wav`` makes the first one's folder count)."""
        q, paths = self.panel.queue, self.paths()
        for i, path in enumerate(paths):
            name = song_name(Path(path), paths)
            q.item(i).setText(("▶  " if path == self.current else "     ") + name)
            q.item(i).setData(Qt.UserRole + 1, name)

    def _remove_selected(self) -> None:
        q = self.panel.queue
        for item in q.selectedItems():
            q.takeItem(q.row(item))
        self._save()

    def _save(self) -> None:
        s = self.window.settings
        s.set(QUEUE_SETTING, self.paths())
        s.set(SONG_SETTING, self.songs)
        s.set(LOOP_SETTING, self.panel.loop.isChecked())

    # ------------------------------------------------------------ choosing a song
    def play_item(self, row: int) -> None:
        paths = self.paths()
        if not 0 <= row < len(paths):
            return
        self._remember_song()
        self.window._add_input_file(paths[row])  # the input box: the session crossfades to it, or Start plays it
        if self.window.state == "idle":
            self.window.start()

    def next(self) -> None:
        paths = self.paths()
        if self.current in paths and paths.index(self.current) + 1 < len(paths):
            self.play_item(paths.index(self.current) + 1)
        elif paths and self.current not in paths:
            self.play_item(0)

    def previous(self) -> None:
        source = self._source()
        if source is not None and source.position > 3 * self._rate():
            self.seek(0.0)
            return
        paths = self.paths()
        if self.current in paths and paths.index(self.current) > 0:
            self.play_item(paths.index(self.current) - 1)

    def _input_changed(self, *_args) -> None:
        """The input is now this song (picked here, in the input box, or over OSC): its key and guide."""
        from .input_sources import FILE_SOURCE_PREFIX

        data = self.window.live.input_box.currentData()
        path = str(Path(data[len(FILE_SOURCE_PREFIX):]).resolve()) if isinstance(data, str) and \
            data.startswith(FILE_SOURCE_PREFIX) else None
        if path == self.current:
            return
        self._remember_song()
        self.current = path
        stored = self.songs.get(path) if path else None
        if stored:
            from stream_engine.params import GUIDE_RANGE, KEY_RANGE, clamp

            key = int(clamp(int(stored.get("key", 0)), *KEY_RANGE)[0])
            guide = float(clamp(float(stored.get("guide", 0.15)), *GUIDE_RANGE)[0])
            self.window.store.update(lambda p: p.with_(key=key, guide=guide))
        elif path and self.window.store.current.key:
            self.window.store.update(lambda p: p.with_(key=0))  # a new song starts in its own key
        self.panel.title.setText(song_name(Path(path), self.paths()) if path else "")
        self._rename()

    def _remember_song(self) -> None:
        if self.current:
            p = self.window.store.current
            self.songs[self.current] = {"key": int(p.key), "guide": float(p.guide)}
            self.window.settings.set(SONG_SETTING, self.songs)

    # ------------------------------------------------------------ transport
    def _source(self):
        session = self.window.session
        if self.window.state != "running" or session is None:
            return None
        from .input_sources import PlayerSource

        source = session.source
        return source if isinstance(source, PlayerSource) else None

    def _rate(self) -> int:
        session = self.window.session
        return session.rate if session is not None else 48000

    def toggle_pause(self) -> None:
        source = self._source()
        if source is None:
            if self.window.state == "idle":
                self.window.start()
            return
        if source.ended:  # played once to its end: from the start again
            source.seek(0.0)
            source.paused = False
        else:
            source.paused = not source.paused
        self._show()

    def seek(self, fraction: float) -> None:
        source = self._source()
        if source is not None:
            source.seek(fraction)
        self._show()

    def _loop_toggled(self, on: bool) -> None:
        session = self.window.session
        if session is not None:
            session.config.loop = on
        source = self._source()
        if source is not None:
            source.loop = on
        self.window.settings.set(LOOP_SETTING, on)

    def _show_drag(self, value: int) -> None:
        source = self._source()
        if source is not None:
            length = len(source.data) / self._rate()
            self.panel.time_label.setText(f"{time_text(length * value / 1000)} / {time_text(length)}")

    def _show(self) -> None:
        p, source = self.panel, self._source()
        playing = source is not None and not source.paused and not source.ended
        p.play_button.setIcon(p.icons["Pause" if playing else "Play"])
        p.play_button.setProperty("playing", playing)
        if source is None:
            return
        rate, length = self._rate(), max(1, len(source.data))
        if not p.position.isSliderDown():
            p.position.blockSignals(True)
            p.position.setValue(int(1000 * source.position / length))
            p.position.blockSignals(False)
            p.time_label.setText(f"{time_text(source.position / rate)} / {time_text(length / rate)}")

    def _tick(self) -> None:
        source = self._source()
        self._show()
        if source is not None and source.ended and not getattr(self, "_advancing", False):
            paths = self.paths()
            if self.current in paths and paths.index(self.current) + 1 < len(paths):
                self._advancing = True
                QTimer.singleShot(0, self._advance)

    def _advance(self) -> None:
        self._advancing = False
        self.next()
