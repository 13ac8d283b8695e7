"""The Files tab's batch runner: the list of files to separate and its separation, one file
at a time off the UI thread, with "file N of M", an ETA and every failure kept (``FilesBatch``,
a part of ``FilesTab``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QListWidgetItem

from stream_engine.separators.registry import licence_note

from .files_results import _origin
from .jobs import Job
from .preview import is_mix
from .separate import separate_one
from .widgets import time_text


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


class FilesBatch:
    """``FilesTab``'s list and separation (a mixin: it uses the tab's widgets, history and signals)."""

    # -- the list -------------------------------------------------------------
    def add_files(self, paths) -> None:
        """Files and folders (their audio, as `stemstream separate` finds it: stream_engine.batch)."""
        from stream_engine.batch import BatchError, collect_inputs

        notes: list[str] = []
        try:
            jobs = collect_inputs([Path(p) for p in paths], Path(self.out_edit.text()).expanduser(), notes)
        except BatchError as exc:
            self.error.emit(str(exc))
            return
        for note in notes:
            self.message.emit(note)
        for job in jobs:
            p = Path(job.path)
            if p not in self.queue:
                self.queue.append(p)
                self.roots[p] = Path(job.root) if job.root else None
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
            self.roots.clear()
            self.files.clear()
            self._update_actions()

    def _remove_selected(self) -> None:
        if self.job is not None:
            return
        for item in self.files.selectedItems():
            self.queue.remove(Path(item.data(Qt.UserRole)))
            self.files.takeItem(self.files.row(item))
        self._update_actions()

    # -- separation ------------------------------------------------------------
    def separate_all(self) -> None:
        if self.job is not None:
            return
        if not self.queue:
            self.error.emit("Add files first: drop them on the list, or use Add files / Add demo song.")
            return
        self._todo = list(self.queue)
        self._names = self.track_names(self._todo)
        self._total = len(self._todo)
        self._errors = []
        self._started_at = __import__("time").monotonic()
        self.progress.setToolTip("")
        self._next()

    def track_names(self, paths: list[Path]) -> dict[Path, str]:
        """Each file's output folder name, from the CLI's naming code (``stream_engine.batch.name_jobs``):
        same-named songs in different folders get their folder in the name (``a/mixture``,
        ``b/mixture``), never one folder for two songs. A name an earlier result from another file
        holds in the same output folder is told apart the same way (that file named alongside)."""
        from stream_engine.batch import Job as BatchJob, name_jobs

        jobs = [BatchJob(str(p), str(self.roots[p]) if self.roots.get(p) else None) for p in paths]
        name_jobs(jobs)
        out = Path(self.out_edit.text()).expanduser().resolve()
        earlier = {}  # track name -> source of a result already in this output folder
        for entry in self.history.entries:
            folder, source, name = entry.get("folder"), entry.get("source"), entry.get("track")
            if folder and source and name and Path(folder).resolve() == out / name:
                earlier[name] = source
        taken = {name.casefold() for name in earlier}
        for job in jobs:
            source = earlier.get(job.track)
            if source is None or Path(source).resolve() == Path(job.path).resolve():
                taken.add(job.track.casefold())
                continue
            pair = [BatchJob(source, None), BatchJob(job.path, job.root)]
            name_jobs(pair)  # told apart from the earlier file as two inputs of one batch would be
            name, k = pair[1].track, 2
            while name.casefold() in taken:
                name, k = f"{pair[1].track}-{k}", k + 1
            job.track = name
            taken.add(name.casefold())
        return {Path(j.path): j.track for j in jobs}

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
        track = self._names.get(path, path.stem)
        self._track = track
        model = self.model_box.currentData()
        profile = self.profile_box.currentData()
        out = Path(self.out_edit.text()).expanduser()
        fmt = self.format_box.currentText()
        self.progress.setFormat(f"file {self._done_files + 1} of {self._total}: {path.name}: %p%")
        self.message.emit(f"separating {path.name} with {model or 'the default model'} ({profile})…"
                          + licence_note(model))

        holder: list = []

        def work():
            job = holder[0]
            files = separate_one(path, out, model, profile, fmt, progress=job.progress.emit, cancel=job.cancel,
                                 track=track)
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
        import time

        done = (self._done_files + fraction) / max(1, self._total)
        self.progress.setValue(int(1000 * done))
        elapsed = time.monotonic() - self._started_at
        eta = f" · about {time_text(elapsed * (1 - done) / done).split('.')[0]} left" if done > 0.02 else ""
        self.progress.setFormat(f"file {self._done_files + 1} of {self._total}: {self._current.name}: %p%{eta}")

    def _one_done(self, result) -> None:
        import time

        files, levels, stems = result
        track = self._track
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
        self._mark(self._current, "✓", f"outputs in {next(iter(files.values())).parent}")
        self.message.emit(f"{self._current.name}: {len(files)} files in {next(iter(files.values())).parent}")
        self.separated.emit(track)
        self._next()

    def _one_failed(self, message: str) -> None:
        self._mark(self._current, "✗", message)
        if "cancelled" in message:
            self._todo = []
            self.message.emit(f"{self._current.name}: cancelled; nothing of it was written")
        else:
            self._errors.append(f"{self._current.name}: {message.splitlines()[0]}")
            # every failure of the batch stays listed (a dialog that showed only the last one lost the rest)
            self.error.emit(f"{len(self._errors)} of {self._total} file(s) failed:\n" + "\n".join(self._errors)
                            if len(self._errors) > 1 else f"Separation of {self._current.name} failed: {message}")
        self._next()

    def _mark(self, path: Path, sign: str, why: str = "") -> None:
        for i in range(self.files.count()):
            item = self.files.item(i)
            if item.data(Qt.UserRole) == str(path):
                item.setText(f"{sign}  {path}")
                item.setToolTip(f"{path}\n{why}".strip())

    def _cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

