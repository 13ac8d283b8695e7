"""Reading audio with clear errors, and writing stems atomically.

Channel rule: files are read with all their channels; the engine keeps the
layout (see separators/base.py for how channels are grouped for a model) and
writes every stem with the input's channels and sample rate.
Non-finite samples (NaN, inf) are replaced by silence and reported.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import StemstreamError

FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}


class AudioFileError(StemstreamError, ValueError):
    """An input file cannot be used; the message names the file."""


class OutputError(StemstreamError, OSError):
    """An output file cannot be written; the message names the file and the cause."""

    def __str__(self) -> str:
        return str(self.strerror)


_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EFBIG: "file too large (over the file-size limit)", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
           errno.EROFS: "read-only file system", errno.EIO: "input/output error (failing disk?)"}


SF_ERR_SYSTEM = 2  # libsndfile's "System error.": a system call failed, errno says which


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    if getattr(exc, "code", None) == SF_ERR_SYSTEM:
        return getattr(sf._ffi, "errno", 0) or None  # errno cffi saved after libsndfile's failing write(2)
    return None


def describe_os_error(exc: BaseException) -> str:
    """A short cause for a failed write; libsndfile says only "System error.", so ask errno."""
    code = _errno_of(exc)
    if code in _CAUSES:
        return _CAUSES[code]
    if code:
        return os.strerror(code)
    return str(exc)


# libsndfile's log lines for a file cut short: "<chunk> : <size> (should be <what is there>)". The data
# chunk's line (WAV "data", AIFF " SSND", AU "Data Size") gives the ratio of the lengths; a container's
# (RIFF, FORM, W64 "riff") only says it is short. Ogg says its last page is not the last.
_SHORT_CHUNK = re.compile(r"^\s*(data|SSND|Data Size|RIFF|RF64|FORM|riff)\s*:\s*(\d+)\s*\(should be (\d+)\)",
                          re.MULTILINE)
_SHORT_STREAM = ("lacks an end-of-stream bit", "Exiting parser", "not equal to frame count")


def truncation(f: sf.SoundFile) -> tuple[int | None, int] | None:
    """(frames the header promises, or None where the format cannot say; frames present) for a
    file cut short, else None.

    libsndfile shortens a truncated WAV/AIFF/AU/W64/Ogg to what is there and only
    notes it in its log ("data : 960000 (should be 319970)", " SSND : ...",
    "Ogg: Last page lacks an end-of-stream bit.").
    """
    info = f.extra_info or ""
    data_ratio, short = None, False
    for m in _SHORT_CHUNK.finditer(info):
        declared, there = int(m.group(2)), int(m.group(3))
        if declared > there + 8 and there >= 0:  # a pad byte or two is not a cut
            short = True
            if there > 0 and (m.group(1) in ("data", "SSND", "Data Size") or data_ratio is None):
                data_ratio = declared / there  # a container's ratio (W64) is close: its header is small
    if not short and not any(s in info for s in _SHORT_STREAM):
        return None
    return (round(f.frames * data_ratio) if data_ratio else None), f.frames


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    from .untrusted import describe_kind, is_regular_file

    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if not is_regular_file(path):  # a FIFO or /dev/zero would be read for ever
        raise AudioFileError(f"{path}: is {describe_kind(path)}, not a regular file; refused")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        f = sf.SoundFile(os.fsencode(path))  # bytes: a name that is not UTF-8 opens too
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from None
    if f.frames == 0:
        f.close()
        raise AudioFileError(f"{path}: the file holds no samples")
    return f


def read_blocks(f: sf.SoundFile, block: int, path: str | os.PathLike = ""):
    """Yield (channels, n) float32 blocks; counts non-finite samples in ``counter``."""
    name = path or f.name
    while True:
        try:
            data = f.read(block, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(f"{name}: reading failed part way (truncated or corrupt?): {exc}") from None
        if len(data) == 0:
            return
        yield data.T


def sanitize(block: np.ndarray) -> int:
    """Replace NaN/inf by 0 in place; return how many were replaced."""
    bad = ~np.isfinite(block)
    count = int(bad.sum())
    if count:
        block[bad] = 0.0
    return count


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The whole file as (channels, n) float32 and its sample rate."""
    with open_audio(path) as f:
        rate = f.samplerate
        blocks = list(read_blocks(f, 1 << 18, path))
    data = np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)
    sanitize(data)
    return data, rate


class AtomicStemWriter:
    """Writes several files into a folder; they appear only when all succeed.

    Each file is written beside its final name under a hidden temporary name
    (``.<stem>.<pid>.<random>.<fmt>.partial``, created with the umask's
    permissions) and renamed by ``commit``; ``abort`` (or leaving the ``with``
    block by an exception) removes the temporaries, and the folder if this
    writer created it, and leaves earlier results untouched. Temporaries of a
    killed run (its process is gone) are removed when the next writer opens
    the folder. Every write error is an ``OutputError`` naming the file and
    the cause (no space left, permission, not a folder).
    """

    def __init__(self, folder: Path, names, rate: int, channels: int, fmt: str = "wav"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.folder = Path(folder)
        self.files, self.temps = {}, {}
        self.created = []  # folders this writer made (removed again on abort when empty)
        try:
            missing = [d for d in [self.folder, *self.folder.parents] if not d.exists()]
            self.folder.mkdir(parents=True, exist_ok=True)
            self.created = missing
        except OSError as exc:
            raise OutputError(exc.errno, f"{self.folder}: cannot create the output folder: "
                                         f"{describe_os_error(exc)}") from None
        remove_stale_partials(self.folder)
        container, subtype = FORMATS[fmt]
        self.final = {n: self.folder / f"{n}.{fmt}" for n in names}
        try:
            for name in self.final:
                tmp = self.folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.{fmt}.partial"
                self.temps[name] = tmp  # recorded first: a signal right after creation still finds it
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # umask applies
                self.files[name] = sf.SoundFile(os.fsencode(tmp), "w", rate, channels, subtype=subtype,
                                                format=container)
        except (OSError, sf.SoundFileError) as exc:
            self.abort()
            raise self._error(self.final[name], exc) from None
        except BaseException:  # a signal (Ctrl-C, SIGTERM) while the files are being created
            self.abort()
            raise

    def _error(self, path: Path, exc: BaseException) -> OutputError:
        return OutputError(_errno_of(exc) or errno.EIO, f"{path}: cannot write: {describe_os_error(exc)}")

    def write(self, name: str, block: np.ndarray) -> None:
        """``block`` is (channels, n)."""
        if block.shape[-1]:
            try:
                self.files[name].write(np.ascontiguousarray(block.T))
            except (OSError, sf.SoundFileError) as exc:
                raise self._error(self.final[name], exc) from None

    def commit(self) -> dict[str, Path]:
        for name, f in self.files.items():
            try:
                f.close()
            except (OSError, sf.SoundFileError) as exc:
                raise self._error(self.final[name], exc) from None
        for name, tmp in self.temps.items():
            try:
                os.replace(tmp, self.final[name])
            except OSError as exc:
                raise self._error(self.final[name], exc) from None
        self.temps = {}
        return self.final

    def abort(self) -> None:
        for f in self.files.values():
            if not f.closed:
                try:
                    f.close()
                except (OSError, sf.SoundFileError):
                    pass  # the file is removed anyway
        for tmp in self.temps.values():
            tmp.unlink(missing_ok=True)
        self.temps = {}
        for d in self.created:  # innermost first
            try:
                d.rmdir()
            except OSError:
                break  # not empty (or not ours to remove)
        self.created = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


_PARTIAL = re.compile(r"^\.[^/]+?\.(?:(\d+)\.[0-9a-f]{8}|[^.]{8})\.[a-z0-9]+\.partial$")


def remove_stale_partials(folder: Path, legacy_age: float = 60.0) -> list[Path]:
    """Remove ``.partial`` files left in ``folder`` by a run that was killed.

    A temporary names its writer's process id; it is stale when that process
    no longer exists. Older names without a process id are stale once
    unchanged for ``legacy_age`` seconds.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except (OSError, ValueError):  # ValueError: a name no file system takes (a NUL byte)
        return removed
    for path in entries:
        m = _PARTIAL.match(path.name)
        if not m:
            continue
        if m.group(1) is not None:
            pid = int(m.group(1))
            if pid == os.getpid() or _alive(pid):
                continue
        else:
            try:
                if time.time() - path.stat().st_mtime < legacy_age:
                    continue
            except OSError:
                continue
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
