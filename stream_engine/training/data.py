"""Stem datasets for training: folders of ``<track>/<stem>.<ext>`` and MUSDB18.

Everything is decoded once into memory as float32 numpy (MIR-1K's 109 minutes
of 16 kHz mono are about 420 MB for two stems), then excerpts are drawn and
augmented on the fly with numpy only; torch tensors are made per batch.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


@dataclass
class Track:
    name: str
    stems: dict[str, np.ndarray]  # stem -> (channels, samples) float32
    sample_rate: int
    mixture: np.ndarray | None = None  # (channels, samples); None: sum of stems
    source: str = ""  # the data source it came from (a training config may list several)
    share: float | None = None  # that source's share of the excerpts drawn; None: by length alone
    trusted: frozenset[str] | None = None  # stems that are true references here; None: all of them

    @property
    def length(self) -> int:
        return next(iter(self.stems.values())).shape[-1]

    def trusts(self, stem: str) -> bool:
        return self.trusted is None or stem in self.trusted

    def mix(self) -> np.ndarray:
        if self.mixture is not None:
            return self.mixture
        return np.sum([s for s in self.stems.values()], axis=0).astype(np.float32)


def _to_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    x = x[None, :] if x.ndim == 1 else x.T  # (C, N)
    if channels is None or x.shape[0] == channels:
        return np.ascontiguousarray(x)
    if channels == 1:
        return x.mean(axis=0, keepdims=True)
    if x.shape[0] == 1:
        return np.repeat(x, channels, axis=0)
    return np.ascontiguousarray(x[:channels])


def _resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x
    import soxr

    return np.ascontiguousarray(soxr.resample(x.T, sr, target, quality="HQ").T.astype(np.float32))


def load_stem_folder(
    root: str | os.PathLike,
    stems: tuple[str, ...] = ("vocals", "accompaniment"),
    sample_rate: int | None = None,
    channels: int | None = 1,
    limit: int | None = None,
    derive_accompaniment: bool = True,
    silent: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
) -> list[Track]:
    """Read every ``<root>/<track>/<stem>.<ext>`` folder.

    Stems decode to slightly different lengths (lossy codecs); all are trimmed
    to the shortest. The mixture file is used if present, else the mixture is
    the sum of the stems. With ``derive_accompaniment`` an ``accompaniment``
    stem missing from a MUSDB-style folder is made as mixture - vocals (or the
    sum of drums, bass and other). A stem named in ``silent`` that a folder
    lacks is silence (instrumental music: vocals = silence), held as a
    read-only view of one zero column so it costs no memory. ``only``: read
    just the track folders of these names.
    """
    import soundfile as sf

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such data folder: {root}")
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and (only is None or d.name in only))
    tracks: list[Track] = []
    for d in dirs:
        files = {p.stem: p for p in d.iterdir() if p.suffix.lower() in AUDIO_EXTS}
        if not files:
            continue
        audio: dict[str, np.ndarray] = {}
        rate = None
        for name, p in files.items():
            if name not in stems and name not in ("mixture", "drums", "bass", "other"):
                continue
            x, sr = sf.read(str(p), dtype="float32", always_2d=False)
            x = _to_channels(x, channels)
            if sample_rate:
                x = _resample(x, sr, sample_rate)
                sr = sample_rate
            if rate is not None and sr != rate:
                raise ValueError(f"{d}: stems at different sample rates ({rate}, {sr})")
            rate = sr
            audio[name] = x
        if derive_accompaniment and "accompaniment" in stems and "accompaniment" not in audio:
            parts = [audio[k] for k in ("drums", "bass", "other") if k in audio]
            if len(parts) == 3:
                n = min(p.shape[-1] for p in parts)
                audio["accompaniment"] = np.sum([p[..., :n] for p in parts], axis=0)
            elif "mixture" in audio and "vocals" in audio:
                n = min(audio["mixture"].shape[-1], audio["vocals"].shape[-1])
                audio["accompaniment"] = audio["mixture"][..., :n] - audio["vocals"][..., :n]
        present = [a for k, a in audio.items() if k in stems or k == "mixture"]
        for name in silent:
            if name in stems and name not in audio and present:
                audio[name] = np.broadcast_to(np.zeros((present[0].shape[0], 1), np.float32), present[0].shape)
        if not all(s in audio for s in stems):
            continue
        n = min(audio[k].shape[-1] for k in list(stems) + (["mixture"] if "mixture" in audio else []))
        st = {s: audio[s][..., :n] if audio[s].strides[-1] == 0 else np.ascontiguousarray(audio[s][..., :n])
              for s in stems}
        mix = audio["mixture"][..., :n] if "mixture" in audio else None
        tracks.append(Track(d.name, st, rate, mix))
        if limit and len(tracks) >= limit:
            break
    if not tracks:
        raise FileNotFoundError(f"{root}: no track folders with stems {', '.join(stems)}")
    return tracks


def load_musdb(
    root: str | os.PathLike | None,
    subset: str = "train",
    split: str | None = None,
    is_wav: bool = False,
    stems: tuple[str, ...] = ("vocals", "accompaniment"),
    sample_rate: int | None = None,
    channels: int | None = 1,
    limit: int | None = None,
) -> list[Track]:
    """MUSDB18 (stems.mp4) or MUSDB18-HQ (is_wav) through the ``musdb`` package."""
    try:
        import musdb  # noqa: F401
    except (ImportError, RuntimeError) as e:  # musdb's stempeg raises RuntimeError without ffmpeg
        raise ImportError(
            "reading MUSDB18 needs the 'musdb' package and ffmpeg: pip install musdb, apt-get install ffmpeg "
            f"(or pass a folder of <track>/<stem>.wav, e.g. MUSDB18-HQ, with --data) [{e}]"
        ) from e
    db = musdb.DB(root=root, subsets=subset, split=split, is_wav=is_wav)
    tracks = []
    for t in db.tracks:
        audio = {s: _to_channels(t.targets[s].audio, channels) for s in stems if s in t.targets}
        mix = _to_channels(t.audio, channels)
        sr = int(t.rate)
        if sample_rate:
            audio = {k: _resample(v, sr, sample_rate) for k, v in audio.items()}
            mix = _resample(mix, sr, sample_rate)
            sr = sample_rate
        tracks.append(Track(t.name, audio, sr, mix))
        if limit and len(tracks) >= limit:
            break
    return tracks


def load_sources(data, **kw) -> list[Track]:
    """A training config's ``data``: one spec (see load_tracks), or a list of sources, each a spec or
    ``{"path": spec, "share": fraction of the excerpts, "limit": tracks, "silent": [stems],
    "tracks": [folder names], "stems": [stems]}``.

    ``stems`` lists the stems a source holds true references for (eif songs whose bass notes
    sit in ``other``: vocals and drums only). The others are never used from it: the sampler
    takes them from sources that trust them, and they need no file (silence stands in)."""
    if isinstance(data, (str, os.PathLike)):
        return load_tracks(data, **kw)
    tracks = []
    for src in data:
        src = {"path": src} if isinstance(src, (str, os.PathLike)) else dict(src)
        opts = dict(kw)
        if src.get("limit"):
            opts["limit"] = int(src["limit"])
        if src.get("silent"):
            opts["silent"] = tuple(src["silent"])
        trusted = None
        if src.get("stems"):
            trusted = frozenset(src["stems"])
            unknown = trusted - set(opts.get("stems", trusted))
            if unknown:
                raise ValueError(f"{src['path']}: 'stems' names {sorted(unknown)}, which this model does not separate")
            opts["silent"] = tuple(set(opts.get("silent", ())) | (set(opts.get("stems", ())) - trusted))
        if src.get("tracks"):
            opts["only"] = tuple(src["tracks"])
        # two entries may read one folder (different tracks or trust): each is its own source
        key = str(src["path"]) + (":" + ",".join(src["tracks"]) if src.get("tracks") else "")
        for t in load_tracks(src["path"], **opts):
            t.source, t.share, t.trusted = key, src.get("share"), trusted
            tracks.append(t)
    return tracks


def load_tracks(spec: str | os.PathLike, **kw) -> list[Track]:
    """``musdb:ROOT[:subset]`` uses the musdb package; anything else is a stem folder."""
    s = str(spec)
    if s.startswith("musdb:"):
        parts = s.split(":")
        root = parts[1] or None
        subset = parts[2] if len(parts) > 2 else "train"
        return load_musdb(root, subset=subset, is_wav=bool(root and "hq" in root.lower()), **kw)
    return load_stem_folder(spec, **kw)


def _file_digest(tracks: list[Track]) -> str:
    h = hashlib.sha1()
    for t in tracks:
        h.update(t.name.encode())
        h.update(str(t.length).encode())
    return h.hexdigest()[:12]


@dataclass
class AugmentConfig:
    gain_db: tuple[float, float] = (-6.0, 3.0)  # random gain per stem
    polarity: float = 0.5  # probability of flipping a stem's sign
    remix: float = 0.5  # probability that each stem comes from a random other track
    eq: float = 0.0  # probability of a random smooth EQ curve per stem
    eq_db: float = 6.0
    pitch: float = 0.0  # probability of a speed/pitch change (resample, +-pitch_semitones)
    pitch_semitones: float = 1.0
    silent_ok: bool = False  # keep excerpts where a stem is silent


class StemSampler:
    """Draws random, augmented excerpts as (mixture, stems) numpy batches.

    ``mixture``: (B, C, N); ``stems``: (B, S, C, N). Mixture is always the sum
    of the (augmented) stems, so the sum constraint holds exactly.
    """

    def __init__(self, tracks: list[Track], stems: tuple[str, ...], length: int, aug: AugmentConfig | None = None,
                 seed: int = 0):
        self.tracks = [t for t in tracks if t.length >= length // 2]
        if not self.tracks:
            raise ValueError("no training track is long enough for one excerpt")
        self.stems = stems
        self.length = length
        self.aug = aug or AugmentConfig()
        self.rng = np.random.default_rng(seed)
        w = np.array([t.length for t in self.tracks], dtype=np.float64)
        if any(t.share is not None for t in self.tracks):  # each source gets its share, by length within it
            totals: dict[str, float] = {}
            for t in self.tracks:
                totals[t.source] = totals.get(t.source, 0.0) + t.length
            w = np.array([t.length / totals[t.source] * (t.share if t.share is not None else 0.0)
                          for t in self.tracks])
        self.weights = w / w.sum()
        # per stem, the tracks that hold a true reference for it, and their weights among themselves
        self.pools = {}
        for name in stems:
            idx = np.array([i for i, t in enumerate(self.tracks) if t.trusts(name)], dtype=np.int64)
            if not len(idx) or self.weights[idx].sum() <= 0:
                raise ValueError(f"no training source holds a true '{name}' stem (see 'stems' in the data sources)")
            self.pools[name] = (idx, self.weights[idx] / self.weights[idx].sum())

    def _pick(self, stem: str) -> int:
        """A random track that holds a true reference for ``stem``."""
        idx, p = self.pools[stem]
        return int(idx[self.rng.choice(len(idx), p=p)])

    def _excerpt(self, track: Track, stem: str, n: int) -> np.ndarray:
        x = track.stems[stem]
        if x.shape[-1] <= n:
            out = np.zeros((x.shape[0], n), np.float32)
            off = self.rng.integers(0, n - x.shape[-1] + 1)
            out[:, off:off + x.shape[-1]] = x
            return out
        start = self.rng.integers(0, x.shape[-1] - n + 1)
        return x[:, start:start + n]

    def _eq(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[-1]
        spec = np.fft.rfft(x, axis=-1)
        k = spec.shape[-1]
        # smooth random curve: a few random gains interpolated over log-frequency
        pts = self.rng.uniform(-self.aug.eq_db, self.aug.eq_db, 5)
        f = np.log1p(np.arange(k) / k * 100) / math.log1p(100) * 4
        g = 10 ** (np.interp(f, np.arange(5), pts) / 20)
        return np.fft.irfft(spec * g, n=n, axis=-1).astype(np.float32)

    def _pitch(self, x: np.ndarray, factor: float) -> np.ndarray:
        n = x.shape[-1]
        pos = np.arange(n) * factor
        pos = pos[pos <= n - 1]
        out = np.zeros_like(x)
        for c in range(x.shape[0]):
            out[c, : len(pos)] = np.interp(pos, np.arange(n), x[c])
        return out

    def draw(self, batch: int, augment: bool = True, return_index: bool = False, clean_frac: float = 0.0):
        """A batch of excerpts. With ``clean_frac``, that share of the examples gets only
        stem-consistent augmentation (same track and position for every stem, one gain and
        polarity for all stems, no EQ): ``index`` then holds (track, start, gain) for them, so
        a precomputed teacher estimate scaled by gain is a valid soft target. Others: (-1, -1, 0)."""
        a = self.aug
        S, n = len(self.stems), self.length
        C = self.tracks[0].stems[self.stems[0]].shape[0]
        stems = np.zeros((batch, S, C, n), np.float32)
        index = np.full((batch, 3), -1.0, np.float64)
        n_clean = int(round(batch * clean_frac))
        for b in range(batch):
            ti = int(self.rng.choice(len(self.tracks), p=self.weights))
            base = self.tracks[ti]
            clean = b < n_clean and base.trusted is None
            if clean or not augment or self.rng.random() >= a.remix:
                start = int(self.rng.integers(0, max(1, base.length - n + 1)))
                for s, name in enumerate(self.stems):
                    if base.trusts(name):
                        seg = base.stems[name][:, start:start + n]
                        stems[b, s, :, : seg.shape[-1]] = seg
                    else:  # not a true reference here: that stem comes from a track that has one
                        stems[b, s] = self._excerpt(self.tracks[self._pick(name)], name, n)
                if clean:
                    g = 1.0
                    if augment:
                        g = 10 ** (self.rng.uniform(*a.gain_db) / 20)
                        if self.rng.random() < a.polarity:
                            g = -g
                        stems[b] *= g
                    index[b] = (ti, start, g)
                    continue
            else:
                for s, name in enumerate(self.stems):
                    tj = ti if base.trusts(name) and self.rng.random() < 0.5 else self._pick(name)
                    stems[b, s] = self._excerpt(self.tracks[tj], name, n)
            if augment:
                for s in range(S):
                    g = 10 ** (self.rng.uniform(*a.gain_db) / 20)
                    if self.rng.random() < a.polarity:
                        g = -g
                    stems[b, s] *= g
                    if a.eq and self.rng.random() < a.eq:
                        stems[b, s] = self._eq(stems[b, s])
                if a.pitch and self.rng.random() < a.pitch:
                    factor = 2 ** (self.rng.uniform(-a.pitch_semitones, a.pitch_semitones) / 12)
                    for s in range(S):
                        stems[b, s] = self._pitch(stems[b, s], factor)
        mixture = stems.sum(axis=1)
        if return_index:
            return mixture, stems, index
        return mixture, stems


def validation_set(tracks: list[Track], max_tracks: int | None = None, max_seconds: float | None = None):
    """A fixed list of (name, mixture (C,N), stems (S,C,N)): whole tracks, in name order."""
    out = []
    for t in sorted(tracks, key=lambda t: t.name)[: max_tracks or None]:
        n = t.length
        if max_seconds:
            n = min(n, int(max_seconds * t.sample_rate))
        st = np.stack([t.stems[s][:, :n] for s in t.stems])
        mix = t.mix()[:, :n]
        out.append((t.name, mix, st))
    return out
