"""Reading audio with clear errors, and writing stems atomically.

Channel rule: files are read with all their channels; the engine keeps the
layout (see separators/base.py for how channels are grouped for a model) and
writes every stem with the input's channels and sample rate.
Non-finite samples (NaN, inf) are replaced by silence and reported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}


class AudioFileError(ValueError):
    """An input file cannot be used; the message names the file."""


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        f = sf.SoundFile(str(path))
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
    and renamed by ``commit``; ``abort`` (or leaving the ``with`` block by an
    exception) removes the temporaries and leaves earlier results untouched.
    """

    def __init__(self, folder: Path, names, rate: int, channels: int, fmt: str = "wav"):
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        container, subtype = FORMATS[fmt]
        self.final = {n: self.folder / f"{n}.{fmt}" for n in names}
        self.files, self.temps = {}, {}
        for name, final in self.final.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".{fmt}.partial", dir=self.folder)
            os.close(fd)
            self.temps[name] = Path(tmp)
            self.files[name] = sf.SoundFile(tmp, "w", rate, channels, subtype=subtype, format=container)

    def write(self, name: str, block: np.ndarray) -> None:
        """``block`` is (channels, n)."""
        if block.shape[-1]:
            self.files[name].write(np.ascontiguousarray(block.T))

    def commit(self) -> dict[str, Path]:
        for f in self.files.values():
            f.close()
        for name, tmp in self.temps.items():
            os.replace(tmp, self.final[name])
        self.temps = {}
        return self.final

    def abort(self) -> None:
        for f in self.files.values():
            if not f.closed:
                f.close()
        for tmp in self.temps.values():
            tmp.unlink(missing_ok=True)
        self.temps = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False
