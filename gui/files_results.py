"""The Files tab's results list: earlier separations kept across restarts (``gui.settings.ResultHistory``),
each track with its outputs, durations and levels (``FilesResults``, a part of ``FilesTab``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QTreeWidgetItem

from .preview import is_mix, output_description
from .widgets import time_text


def _db_text(value) -> str:
    if value is None:
        return ""
    return "-inf" if value <= -119 else f"{value:.1f} dB"


def _origin(entry: dict) -> str:
    """'from song.flac with dsp-center, 2026-11-29 23:40' for a result's tooltip."""
    source = Path(entry.get("source") or "?").name
    return f"from {source} with {entry.get('model') or 'the default model'}, {entry.get('when', '')}".rstrip(", ")



class FilesResults:
    """``FilesTab``'s results (a mixin: it uses the tab's tree, history and preview)."""

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

    def _open_folder(self) -> None:
        track = self._selected_track()
        folder = next(iter(self.results[track].values())).parent if track else Path(self.out_edit.text())
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
