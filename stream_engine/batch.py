"""Separate a library: inputs, output names, the manifest, resume, progress, summary.

``stemstream separate`` always runs through here. Where the tracks are
separated is an *executor*'s business: ``run_in_process`` (no flags: one
track after another in this process, no Ray import) or
``cluster.RayExecutor`` (``--workers`` / ``--ray-address``). Both hand each
track to a ``Separation``, which loads the model once and calls
``offline.separate_file``, the one offline code path.

Inputs: audio files, folders (searched recursively, audio by extension,
hidden files and the output folder skipped) and list files (``.txt``,
``.lst``, ``.m3u``, ``.m3u8``: one path a line, ``#`` comments, relative to
the list's folder). A file found in a folder is named by its path inside
that folder, so the output mirrors the input tree (``offline.track_names``).

Resume: ``OUT/stemstream-manifest.jsonl`` gets one JSON line per event
(``running`` when a track is handed to a worker, then ``done`` or
``failed``); the last line of a track wins. A track is skipped when its last
line is ``done`` for the same input path, size and content hash (the stored
hash is trusted while size and mtime are unchanged, so a rerun over a large
library does not reread it), the same recipe (model card hash, profile,
format, effects, key) and its stem files are still there. ``--force`` redoes
everything. Stems are committed (atomically, per track) before their
``done`` line is written, so a stop at any moment costs at most the tracks
in flight.
"""
# Long module (over 500 lines): inputs, manifest, resume and summary of one library run, each small, kept
# with the resume rules they share

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import stat
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import StemstreamError
from .separators.card import sha256_of

AUDIO_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                    ".au", ".snd", ".w64", ".rf64", ".caf"}
# Audio that libsndfile cannot read: skipped in folders, but said so.
UNREADABLE_AUDIO = {".m4a", ".aac", ".alac", ".wma", ".mp4", ".ape"}
LIST_EXTENSIONS = {".txt", ".lst", ".m3u", ".m3u8"}
MANIFEST = "stemstream-manifest.jsonl"
LOCK = ".stemstream-manifest.lock"
EXIT_FAILED_CAP = 100  # exit status = tracks failed, at most this


class BatchError(StemstreamError, RuntimeError):
    """The batch cannot start (a list file cannot be read, the output folder is busy)."""


# -- inputs ---------------------------------------------------------------------------------
@dataclass
class Job:
    path: str  # as the user gave it (messages)
    root: str | None  # the folder it was found in, None for a file given by itself
    track: str = ""  # output folder under OUT, from offline.track_names
    seconds: float = 0.0  # audio length from the header (0 when unreadable): the progress bar's unit

    @property
    def key(self) -> str:
        return os.path.abspath(self.path)


def _walk(folder: Path, out: Path, skipped: Counter) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() != out)
        for name in sorted(filenames):
            ext = Path(name).suffix.lower()
            if name.startswith("."):  # ._song.wav (macOS), .song.wav.partial
                continue
            if ext in AUDIO_EXTENSIONS:
                found.append(here / name)
            elif ext in UNREADABLE_AUDIO:
                skipped[ext] += 1
    return found


def collect_inputs(args: list[str | Path], out: Path, notes: list[str] | None = None) -> list[Job]:
    """Expand files, folders and list files into jobs, in the order given; names set later."""
    out = Path(out).resolve()
    notes = notes if notes is not None else []
    jobs: list[Job] = []

    def add(item: Path, via_list: Path | None = None):
        if item.is_dir():
            skipped: Counter = Counter()
            found = _walk(item, out, skipped)
            if skipped:
                notes.append(f"{item}: skipped {sum(skipped.values())} file(s) libsndfile cannot read "
                             f"({', '.join(f'{n} {e}' for e, n in sorted(skipped.items()))}); convert them to FLAC")
            if not found:
                notes.append(f"{item}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
            jobs.extend(Job(str(p), str(item)) for p in found)
        elif item.suffix.lower() in LIST_EXTENSIONS and item.is_file() and via_list is None:
            try:
                raw = item.read_bytes()
            except OSError as exc:
                raise BatchError(f"{item}: cannot read this list of inputs ({exc.strerror})") from None
            try:
                lines = raw.decode("utf-8-sig").splitlines()
            except UnicodeDecodeError:  # an old .m3u: Latin-1
                lines = raw.decode("latin-1").splitlines()
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if "\0" in line:  # no file name holds one; a binary file read as a list
                    notes.append(f"{item}: line {number} holds a NUL byte; skipped (is this a list of paths?)")
                    continue
                if line and not line.startswith("#"):
                    try:
                        entry = Path(line).expanduser()
                    except RuntimeError:  # ~nosuchuser/...: kept as written, it fails as a track by name
                        entry = Path(line)
                    add(entry if entry.is_absolute() else item.parent / entry, via_list=item)
        else:  # a file (or a missing path: it fails as a track, with an error naming it)
            jobs.append(Job(str(item), None))

    for a in args:
        add(Path(a))
    return jobs


def name_jobs(jobs: list[Job]) -> None:
    from .offline import track_names

    for job, name in zip(jobs, track_names([Path(j.path) for j in jobs], [j.root for j in jobs])):
        job.track = name


def audio_seconds(path: str) -> float:
    import soundfile as sf

    from .untrusted import is_regular_file

    if not is_regular_file(path):  # a FIFO would block sf.info; the track fails with a message later
        return 0.0
    try:
        info = sf.info(path)
        return info.frames / info.samplerate if info.samplerate else 0.0
    except Exception:  # noqa: BLE001 - unreadable files fail properly when separated
        return 0.0


# -- what is made, and how ------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to separate a track; sent to Ray workers as is."""

    out: str
    model: str | None
    profile: str
    device: str = "cpu"
    fmt: str = "wav"
    fx: tuple = ()
    key: int = 0


def make_factory(model: str | None, profile: str, device: str = "cpu", threads: int | None = None):
    """rate -> separator, built once per rate and reset between tracks (the model loads once)."""
    from .separators.registry import load_separator

    cache = {}

    def make(rate: int):
        if rate not in cache:
            cache[rate] = load_separator(model, profile, sample_rate=rate, device=device, threads=threads)
        else:
            cache[rate].reset(1)
        return cache[rate]

    return make


def model_hash(separator) -> str:
    """The separator's identity: its model card (with the weights' sha256 where exported) and framing."""
    spec = {f.name: getattr(separator.spec, f.name) for f in fields(separator.spec) if f.name != "card"}
    if spec.get("fade_shape") == "sin2":  # the default: left out, so hashes made before the field stay valid
        del spec["fade_shape"]
    blob = json.dumps({"spec": spec, "card": separator.spec.card}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Separation:
    """One worker's state: the model, loaded once, and the per-track call.

    The in-process run holds one; every Ray actor holds one. ``run`` never
    raises for a bad track: it returns a record with ``status`` ``failed``
    and the error, so the batch goes on.
    """

    def __init__(self, settings: Settings, threads: int | None = None):
        from .params import KEY_RANGE, clamp
        from .stages import parse_fx

        self.settings = settings
        self.threads = threads
        self.make = make_factory(settings.model, settings.profile, settings.device, threads)
        self.spec = self.make(44100).spec  # a broken model fails here, before any file is touched
        self.model_hash = model_hash(self.make(44100))
        self.fx = parse_fx(list(settings.fx))
        unknown = sorted(set(self.fx) - set(self.spec.stems))
        if unknown:  # the same words as stages.build_stages, but before any track
            raise ValueError(f"effects for unknown stem(s) {', '.join(unknown)}; "
                             f"this model's stems: {', '.join(self.spec.stems)}")
        for stem, preset in self.fx.items():  # an unknown or broken preset fails here, before any track
            from plugins.effects import load_preset

            try:
                load_preset(preset)
            except ValueError as exc:
                raise ValueError(f"--fx {stem}={preset}: {exc}") from None
        self.key = clamp(settings.key, *KEY_RANGE)[0]
        self.worker = worker_id()

    def identity(self) -> dict:
        from . import __version__

        return {"worker": self.worker, "model": self.spec.name, "model_hash": self.model_hash,
                "threads": self.threads, "version": __version__}

    def run(self, job: Job) -> dict:
        from .audio_io import AudioFileError, OutputError
        from .offline import separate_file
        from .params import Params
        from .separators.base import SeparatorError
        from .stages import build_stages

        s = self.settings
        record = {"worker": self.worker, "threads": self.threads or 1, "started": time.time()}
        t0 = time.perf_counter()
        try:
            st = os.stat(job.path)
            if not stat.S_ISREG(st.st_mode):  # hashing a FIFO or /dev/zero would never end
                from .untrusted import describe_kind

                raise ValueError(f"{job.path}: is {describe_kind(job.path)}, not a regular file; refused")
            record.update(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256_of(job.path))

            def stages_for(rate, channels):
                return build_stages(self.make(rate).spec.stems, rate, channels, self.fx, key_change=self.key != 0)

            params = Params.for_stems(self.spec.stems, key=self.key)
            r = separate_file(Path(job.path), Path(s.out), self.make, s.profile, fmt=s.fmt, progress=False,
                              track=job.track, params=params, stages=stages_for)
        except (AudioFileError, SeparatorError, ValueError, OSError) as exc:
            msg = str(exc)  # names the input (reading) or the output file (writing), or gets the input's name
            msg = msg if job.path in msg or isinstance(exc, OutputError) else f"{job.path}: {msg}"
            record.update(status="failed", error=msg, elapsed=time.perf_counter() - t0)
            return record
        warnings = []
        if r.nonfinite:
            warnings.append(f"{job.path}: {r.nonfinite} NaN/inf samples were replaced by silence")
        if r.truncated:
            promised, present = r.truncated
            if promised:
                warnings.append(f"{job.path}: the file is truncated: its header promises "
                                f"{promised * r.seconds / present:.1f} s, it holds {r.seconds:.1f} s "
                                f"({present} of {promised} frames); separated what is there")
            else:
                warnings.append(f"{job.path}: the file is truncated (it ends without its end marker); "
                                f"separated the {r.seconds:.1f} s that are there")
        record.update(status="done", seconds=r.seconds, elapsed=time.perf_counter() - t0,
                      files=sorted(p.name for p in r.files.values()), warnings=warnings,
                      speed=r.speed, latency=r.latency.describe())
        return record


# -- the manifest -----------------------------------------------------------------------------
class Manifest:
    """``OUT/stemstream-manifest.jsonl``: one JSON object a line, the last line of a track wins.

    Held under an exclusive lock (``OUT/.stemstream-manifest.lock``) for the
    whole batch: a second batch into the same folder is refused, not mixed in.
    A torn last line (a run killed while writing it) is ignored.
    """

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / MANIFEST
        self.entries: dict[str, dict] = {}
        self._lock = self._file = None

    def open(self) -> "Manifest":
        try:
            return self._open()
        except OSError as exc:
            from .audio_io import describe_os_error

            self.close()
            raise BatchError(f"{self.out}: cannot keep the batch's manifest there: {describe_os_error(exc)}") \
                from None

    def _open(self) -> "Manifest":
        from .untrusted import describe_kind, is_regular_file

        self.out.mkdir(parents=True, exist_ok=True)
        for path in (self.out / LOCK, self.path):  # a FIFO here would block the open or the read for ever
            if os.path.lexists(path) and not is_regular_file(path):
                raise BatchError(f"{self.out}: {path.name} is {describe_kind(path)}, not a regular file; "
                                 f"remove it, or choose another --out")
        fd = os.open(self.out / LOCK, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o644)
        self._lock = os.fdopen(fd, "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise BatchError(f"{self.out}: another stemstream separate is writing into this folder "
                             f"(its manifest is locked); wait for it or choose another --out") from None
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if isinstance(e, dict) and isinstance(e.get("track"), str):
                    self.entries[e["track"]] = {**self.entries.get(e["track"], {}), **e} \
                        if e.get("status") == "running" else e
        # Rewritten compact (one line per track) so it does not grow with every rerun. We hold the
        # lock: any temporary file here is a leftover of a run that died (or hit a full disk).
        for stale in self.out.glob(f".{MANIFEST}.*.tmp"):
            stale.unlink(missing_ok=True)
        tmp = self.path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        try:
            tmp.write_text("".join(json.dumps(e) + "\n" for e in self.entries.values()), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # the old manifest is untouched
            raise
        self._file = open(self.path, "ab", buffering=0)  # one os.write per line: all of it or none
        return self

    def record(self, entry: dict) -> None:
        self.entries[entry["track"]] = entry
        line = (json.dumps(entry) + "\n").encode("utf-8")
        fd = self._file.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(line)
            while view:  # a short write is followed by the one that says why (ENOSPC, EFBIG, EDQUOT)
                view = view[os.write(fd, view):]
        except OSError as exc:  # without its record a track would be redone, or skipped wrongly: stop
            from .audio_io import describe_os_error

            try:
                os.ftruncate(fd, end)  # no torn line for the next run to trip over
            except OSError:
                pass
            raise BatchError(f"{self.out}: cannot write the batch's manifest ({MANIFEST}): "
                             f"{describe_os_error(exc)}; the batch stops (stems already written are kept, "
                             f"and a rerun redoes only what is not recorded as done)") from None

    def close(self) -> None:
        if self._file:
            try:
                os.fsync(self._file.fileno())
            except OSError:  # already reported by record(); the lines it kept are whole
                pass
            self._file.close()
        if self._lock:
            self._lock.close()  # releases the lock
        self._file = self._lock = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False


def recipe_of(settings: Settings, model_hash_: str) -> str:
    blob = json.dumps({"model_hash": model_hash_, "profile": settings.profile, "format": settings.fmt,
                       "fx": list(settings.fx), "key": settings.key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def already_done(job: Job, entry: dict | None, recipe: str, out: Path) -> bool:
    if not entry or entry.get("status") != "done" or entry.get("input") != job.key or entry.get("recipe") != recipe:
        return False
    try:
        st = os.stat(job.path)
    except OSError:
        return False
    if st.st_size != entry.get("size"):
        return False
    if not all((out / job.track / f).is_file() for f in entry.get("files") or ["?"]):
        return False
    if st.st_mtime_ns == entry.get("mtime_ns"):
        return True
    return sha256_of(job.path) == entry.get("sha256")  # touched or copied: same bytes still count


# -- the batch ----------------------------------------------------------------------------------
@dataclass
class Summary:
    total: int = 0
    skipped: int = 0
    done: list = field(default_factory=list)  # records
    failed: list = field(default_factory=list)  # (job, record)
    wall: float = 0.0
    workers: int = 1
    in_flight_before: int = 0  # tracks a stopped earlier run left running
    redone: int = 0  # of those, redone now
    deaths: int = 0  # worker processes that died (their tracks were retried)

    def audio_seconds(self) -> float:
        return sum(r.get("seconds", 0.0) for r in self.done)

    @property
    def exit_status(self) -> int:
        return min(len(self.failed), EXIT_FAILED_CAP)

    def describe(self) -> str:
        audio = self.audio_seconds()
        rate = audio / self.wall if self.wall > 0 else 0.0
        lines = [f"batch: {self.total} track(s): {len(self.done)} separated, {self.skipped} already done "
                 f"(skipped), {len(self.failed)} failed; {audio / 60:.1f} audio min in {self.wall:.1f} s wall = "
                 f"{rate:.1f} audio h per wall h with {self.workers} worker(s)"]
        if self.in_flight_before:
            lines.append(f"  resumed: {self.in_flight_before} track(s) were in flight when the last run stopped; "
                         f"{self.redone} of them redone now")
        if self.deaths:
            lines.append(f"  {self.deaths} worker process(es) died; their tracks were retried on other workers")
        per: dict[str, list] = {}
        for r in self.done:
            per.setdefault(r["worker"], []).append(r)
        for w, rs in sorted(per.items()):
            a, busy = sum(r["seconds"] for r in rs), sum(r["elapsed"] for r in rs)
            lines.append(f"  worker {w}: {len(rs)} track(s), {a / 60:.1f} audio min, busy {busy:.1f} s, "
                         f"{a / self.wall if self.wall else 0:.1f} audio h per wall h "
                         f"({a / busy if busy else 0:.1f}x real time while busy)")
        if self.failed:
            lines.append(f"failed ({len(self.failed)}):")
            lines.extend(f"  {rec.get('error')}" for _job, rec in self.failed)  # errors name their file
        return "\n".join(lines)


def run_batch(jobs: list[Job], settings: Settings, executor, *, force: bool = False, progress: bool = True,
              out_stream=None) -> Summary:
    """Plan (skip what is done), hand the rest to ``executor``, record every outcome, summarise.

    ``executor(pending, start, finish)`` separates every job of ``pending``,
    calling ``start(job, worker)`` when it hands one out and
    ``finish(job, record)`` with the record ``Separation.run`` returned.
    ``executor.model_hash`` and ``executor.workers`` describe it.
    """
    from tqdm import tqdm

    out_stream = out_stream or sys.stdout
    out = Path(settings.out)
    recipe = recipe_of(settings, executor.model_hash)
    summary = Summary(total=len(jobs), workers=executor.workers)
    with Manifest(out) as manifest:
        was_running = {t for t, e in manifest.entries.items() if e.get("status") == "running"}
        pending = []
        for job in jobs:
            if not force and already_done(job, manifest.entries.get(job.track), recipe, out):
                summary.skipped += 1
            else:
                job.seconds = audio_seconds(job.path)
                pending.append(job)
        summary.in_flight_before = len(was_running)
        total_min = sum(j.seconds for j in pending) / 60
        bar = tqdm(total=round(total_min, 2), disable=not progress, file=sys.stderr, dynamic_ncols=True,
                   bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} audio min "
                              "[{elapsed}<{remaining}]{postfix}")
        counts = Counter()

        def show():
            bar.set_description_str(f"tracks {counts['done'] + counts['failed']}/{len(pending)}", refresh=False)
            bar.set_postfix_str(f"failed {counts['failed']}, {len(running)} running" if counts["failed"]
                                else f"{len(running)} running")

        running: dict[str, float] = {}

        def start(job: Job, worker: str):
            running[job.track] = time.time()
            manifest.record({"track": job.track, "input": job.key, "status": "running", "worker": worker,
                             "dispatched": running[job.track], "recipe": recipe})
            show()

        def finish(job: Job, rec: dict):
            running.pop(job.track, None)
            entry = {"track": job.track, "input": job.key, "recipe": recipe, "model": executor.model,
                     "model_hash": executor.model_hash, "profile": settings.profile, **rec}
            manifest.record(entry)
            counts[rec["status"]] += 1
            if job.track in was_running:
                summary.redone += 1
            if rec["status"] == "done":
                summary.done.append(entry)
                for w in rec.get("warnings", []):
                    bar.write(f"warning: {w}", file=sys.stderr)
                bar.write(f"{job.track} ({executor.model}, {settings.profile}): {rec['seconds']:.1f} s in "
                          f"{rec['elapsed']:.2f} s ({rec['speed']:.1f}x real time) -> {out / job.track}/ "
                          f"[{', '.join(rec['files'])}]\n  pipeline latency: {rec['latency']} "
                          f"(removed: the stems line up with the input)", file=out_stream)
            else:
                summary.failed.append((job, rec))
                _clean_up(out, [job.track], wait=5.0)  # a worker that died mid-track left its partial files
                bar.write(f"stemstream: error: {rec['error']}", file=sys.stderr)
            bar.update(round(job.seconds / 60, 2))
            show()

        started = time.perf_counter()
        try:
            show()
            if pending:
                executor(pending, start, finish)
        finally:
            summary.wall = time.perf_counter() - started
            bar.close()
            summary.deaths = getattr(executor, "deaths", 0)
            if running:  # stopped: the tracks in flight stay "running" in the manifest and are redone next time
                stop = getattr(executor, "close", None)
                if stop:
                    stop()  # the workers go first, so their partial files can be removed now
                _clean_up(out, list(running))
    return summary


def _clean_up(out: Path, tracks: list[str], wait: float = 10.0) -> None:
    """Remove the partial files (and empty folders) of tracks whose workers were stopped."""
    from .audio_io import remove_stale_partials

    deadline = time.monotonic() + wait
    for track in tracks:
        folder = out / track
        while True:  # a stopped worker process may take a moment to exit
            remove_stale_partials(folder)
            if not folder.is_dir() or not any(p.name.endswith(".partial") for p in folder.iterdir()) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        d = folder
        while d != out and out in d.parents:
            try:
                d.rmdir()  # only when empty: earlier results stay
            except OSError:
                break
            d = d.parent


def run_in_process(settings: Settings, separation: Separation | None = None):
    """The executor without Ray: one track after another in this process."""
    sep = separation or Separation(settings)

    def execute(pending, start, finish):
        for job in pending:
            start(job, sep.worker)
            finish(job, sep.run(job))

    execute.model = sep.spec.name
    execute.model_hash = sep.model_hash
    execute.workers = 1
    return execute
