"""Export of a separated track's outputs: the file writing (no Qt, run in a worker) and the
Files tab's Export panel (``FilesExport``, a part of ``FilesTab``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from .jobs import run_job

EXPORT_FORMATS = {"wav": ("16-bit", "24-bit", "32-bit float"), "flac": ("16-bit", "24-bit")}
SUBTYPES = {"16-bit": "PCM_16", "24-bit": "PCM_24", "32-bit float": "FLOAT"}

INTEGER_SUBTYPES = {"PCM_16": 32767 / 32768, "PCM_24": (2 ** 23 - 1) / 2 ** 23}  # the largest value each holds


def export_targets(files: dict[str, Path], folder: Path, track: str, fmt: str | None = None) -> list[Path]:
    """Where ``write_export`` puts each output: ``folder/<track>-<name>.<fmt>``."""
    return [Path(folder) / f"{track.replace('/', '-')}-{name}.{fmt or Path(source).suffix.lstrip('.')}"
            for name, source in files.items()]


def export_gain(files: dict[str, Path], subtype: str | None) -> tuple[float, float]:
    """(gain, peak): the one gain that keeps every output below full scale in an integer format.

    A separated stem (or a mix of them) may peak above 0 dBFS; 16- and 24-bit files clip there.
    Never clipped silently: all outputs of the track are scaled by the same gain (so they still add
    up to the mix), and the caller says by how much. Float exports keep the levels (gain 1).
    """
    import numpy as np
    import soundfile as sf

    limit = INTEGER_SUBTYPES.get(SUBTYPES.get(subtype or "24-bit", ""))
    peak = 0.0
    if limit is None:
        return 1.0, peak
    for source in files.values():
        with sf.SoundFile(str(source)) as src:
            for block in src.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                if block.size:
                    peak = max(peak, float(np.max(np.abs(block))))
    return (limit / peak if peak > limit else 1.0), peak


def write_export(files: dict[str, Path], folder: Path, track: str, fmt: str | None = None,
                 subtype: str | None = None, gain: float = 1.0) -> list[Path]:
    """Copy (no ``fmt``) or convert the outputs to ``folder/<track>-<name>.<fmt>``; returns the files.

    ``gain`` scales every sample (``export_gain``: what keeps an integer format from clipping).
    Written block by block to a hidden partial file, then renamed, so a failed
    export leaves nothing half-written. Runs in a worker for the Export button.
    """
    import os

    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    done = []
    for (name, source), target in zip(files.items(), export_targets(files, folder, track, fmt)):
        source = Path(source)
        partial = folder / f".{target.name}.partial"
        try:
            if fmt is None:
                shutil.copy2(source, partial)
            else:
                with sf.SoundFile(str(source)) as src, sf.SoundFile(
                        str(partial), "w", src.samplerate, src.channels, subtype=SUBTYPES[subtype or "24-bit"],
                        format=fmt.upper()) as dst:
                    for block in src.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                        dst.write(block * gain if gain != 1.0 else block)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        done.append(target)
    return done


def export_scaled(files: dict[str, Path], folder: Path, track: str, fmt: str, subtype: str) -> tuple[list, float]:
    """``write_export`` at the gain ``export_gain`` chooses; returns (files, gain in dB)."""
    import math

    gain, _peak = export_gain(files, subtype)
    return write_export(files, folder, track, fmt, subtype, gain), 20.0 * math.log10(gain)


class FilesExport:
    """``FilesTab``'s export (a mixin: it uses the tab's rows, results and signals)."""

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

    def export_chosen(self, folder: Path, overwrite: bool = False) -> None:
        """Convert the ticked outputs into ``folder`` in the background, in the chosen format.

        Files already there are not replaced without asking (a question box: Replace / Cancel).
        An integer format never clips: the outputs are scaled together below full scale and the
        status says by how much (32-bit float keeps the level)."""
        from PySide6.QtWidgets import QMessageBox

        files, track = self.chosen_outputs(), self._loaded
        fmt, depth = self.export_format.currentText(), self.export_depth.currentText()
        existing = [t for t in export_targets(files, Path(folder), track, fmt) if t.exists()]
        if existing and not overwrite:
            names = "\n".join(t.name for t in existing[:8]) + ("\n…" if len(existing) > 8 else "")
            box = QMessageBox(QMessageBox.Question, "Replace files?",
                              f"{len(existing)} file(s) already in {folder}:\n{names}\n\nReplace them?",
                              QMessageBox.Yes | QMessageBox.Cancel, self)
            box.button(QMessageBox.Yes).setText("Replace")
            box.setDefaultButton(QMessageBox.Cancel)
            box.finished.connect(lambda result: self.export_chosen(folder, overwrite=True)
                                 if result == QMessageBox.Yes else self.message.emit("export cancelled: nothing replaced"))
            self.overwrite_box = box  # tests answer it; kept alive while open
            box.open()
            return
        self.export_button.setEnabled(False)
        self.message.emit(f"exporting {len(files)} output(s) of {track} as {fmt} {depth}…")

        def done(result):
            paths, gain_db = result
            self._update_actions()
            self.exported = paths
            self.export_gain_db = gain_db
            scaled = (f"; scaled by {gain_db:.2f} dB so the {depth} files do not clip (the outputs peak "
                      f"above 0 dBFS; 32-bit float keeps the level)") if gain_db < -0.005 else ""
            self.message.emit(f"exported {len(paths)} file(s) to {folder}{scaled}")
            if scaled:
                self.now_playing.setText(f"Exported {depth}{scaled}.")

        def failed(message):
            self._update_actions()
            self.error.emit(f"Export failed: {message}")

        run_job(export_scaled, files, Path(folder), track, fmt, depth, on_done=done, on_error=failed,
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
