"""SDR of a separator over a folder of ``<track>/<stem>.<ext>``, through the engine.

The mixture is the track's ``mixture`` file, or the sum of its stems. A stem
the model produces but the folder lacks is the sum of its parts where they
exist: ``accompaniment`` = every stem but the vocals. Stems are trimmed to the
shortest file. The separator runs through ``offline.separate_array``, the
same pipeline users hear.

A track that cannot be scored is left out of the means and listed with the
reason: ``skipped`` when there is nothing to score (only a mixture, or a
single stem without a mixture, which would be its own reference), ``failed``
when something is wrong (unreadable or empty files, mixed sample rates or
channel counts, a model error).

A stem whose reference is silence (below ``SILENT_DBFS`` RMS: the ``bass`` of
a song without one) has no SDR worth the name (any estimate scores about
-inf or +inf against nothing): it is reported as not scored (``None``) and
left out of that stem's mean and median. A model with stems beside the
vocals but no ``accompaniment`` stem (four stems) is also scored on
``accompaniment`` through its ``instrumental`` bus (every stem but the
vocals), so it compares with two-stem models.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Callable

import numpy as np

from .audio_io import AudioFileError, read_audio
from .metrics import sdr
from .offline import separate_array
from .separators.base import Separator

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}
LENGTH_SLACK = 16384  # samples (offline.BLOCK): encoders pad a little; more is a wrong or cut stem
SILENT_DBFS = -80.0  # a reference this quiet (RMS) is silence: not scored
NOT_SCORED = "not scored"


def find_tracks(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise AudioFileError(f"{root}: not a folder of <track>/<stem> files")
    # os.walk, not rglob: a track folder may be a symlink (a subset of a data set made of links);
    # each real folder is visited once, so a link back up the tree cannot loop
    folders, visited = set(), set()
    for here, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in visited:
            subdirs.clear()
            continue
        visited.add(real)
        subdirs.sort()
        if any(Path(f).suffix.lower() in AUDIO_SUFFIXES for f in files):
            folders.add(Path(here))
    folders = sorted(folders)
    if not folders:
        raise AudioFileError(f"{root}: no audio files found (expected <track>/<stem>.<ext>)")
    return folders


def load_track(folder: Path) -> tuple[dict[str, np.ndarray], int]:
    stems, rates = {}, {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in AUDIO_SUFFIXES:
            stems[path.stem], rates[path.stem] = read_audio(path)
    if len(set(rates.values())) != 1:
        listed = ", ".join(f"{k}: {v} Hz" for k, v in rates.items())
        raise AudioFileError(f"{folder}: stems have different sample rates ({listed})")
    counts = {k: v.shape[0] for k, v in stems.items()}
    channels = max(counts.values())
    if any(c not in (1, channels) for c in counts.values()):
        listed = ", ".join(f"{k}: {c}" for k, c in counts.items())
        raise AudioFileError(f"{folder}: stems have different channel counts ({listed}); only mono stems are "
                             f"spread over the others' channels")
    lengths = {k: v.shape[1] for k, v in stems.items()}
    n = min(lengths.values())
    if max(lengths.values()) - n > LENGTH_SLACK:  # scoring on the shortest would hide most of a track
        listed = ", ".join(f"{k}: {v / rates[k]:.2f} s" for k, v in lengths.items())
        raise AudioFileError(f"{folder}: stems differ in length by more than {LENGTH_SLACK} samples ({listed}); "
                             f"not scored (trim or pad them to the same length)")
    return {k: np.broadcast_to(v[:, :n], (channels, n)).copy() for k, v in stems.items()}, rates.popitem()[1]


class Unscorable(Exception):
    """A track with nothing to score (skipped, not failed)."""


def base_stems(stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stems that sum to the mixture.

    An ``accompaniment`` (or ``instrumental``) beside drums, bass and other is
    their sum and must not be counted twice; beside the vocals alone (MIR-1K)
    it is a stem of its own.
    """
    parts = {k: v for k, v in stems.items() if k != "mixture"}
    aggregates = [k for k in ("accompaniment", "instrumental") if k in parts]
    if any(k not in aggregates and k != "vocals" for k in parts):
        for k in aggregates:
            del parts[k]
    return parts


def reference(stem: str, stems: dict[str, np.ndarray]) -> np.ndarray | None:
    if stem in stems:
        return stems[stem]
    if stem in ("accompaniment", "instrumental"):
        parts = [v for k, v in stems.items() if k not in ("vocals", "mixture", "accompaniment", "instrumental")]
        return np.sum(parts, axis=0) if parts else None
    return None


def is_silent(reference: np.ndarray) -> bool:
    rms = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64)))) if reference.size else 0.0
    return rms <= 10.0 ** (SILENT_DBFS / 20.0)


def scored_stems(model_stems) -> dict[str, str]:
    """{stem scored: the bus of the engine's output that estimates it}."""
    out = {s: s for s in model_stems}
    others = [s for s in model_stems if s != "vocals"]
    if "vocals" in out and "accompaniment" not in out and "instrumental" not in out and len(others) > 1:
        out["accompaniment"] = "instrumental"
    return out


def score_track(folder: Path, make_separator: Callable[[int], Separator], profile: str,
                stream_rate: int | None) -> tuple[str, dict[str, float | None]]:
    """(model name, {stem: SDR dB, or None for a silent reference}); ``Unscorable`` when there is nothing to score."""
    stems, rate = load_track(folder)
    parts = base_stems(stems)
    mixture = stems.get("mixture")
    if mixture is None:
        if len(parts) < 2:
            raise Unscorable(f"only {', '.join(parts) or 'no stems'} and no mixture: the mixture would be that "
                             f"stem itself")
        mixture = np.sum(list(parts.values()), axis=0)
    if stream_rate and stream_rate != rate:
        import soxr

        stems = {k: soxr.resample(v.T, rate, stream_rate).T.copy() for k, v in stems.items()}
        mixture = soxr.resample(mixture.T, rate, stream_rate).T.copy()
        rate = stream_rate
    separator = make_separator(rate)
    buses = scored_stems(separator.spec.stems)
    refs = {stem: reference(stem, stems) for stem in buses}
    refs = {k: v for k, v in refs.items() if v is not None}
    if not refs:
        raise Unscorable(f"no reference for the model's stems ({', '.join(separator.spec.stems)}); the folder has "
                         f"{', '.join(stems)}")
    estimates = separate_array(separator, mixture.astype(np.float32), rate, profile)
    return separator.spec.name, {stem: None if is_silent(ref) else sdr(ref, estimates[buses[stem]])
                                 for stem, ref in refs.items()}


def evaluate(root: Path, make_separator: Callable[[int], Separator], profile: str = "balanced",
             stream_rate: int | None = None, progress: bool = True) -> dict:
    from tqdm import tqdm

    from .separators.base import SeparatorError

    tracks: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    model_name = None
    for folder in tqdm(find_tracks(root), desc="eval", unit="track", disable=not progress, leave=False):
        name = str(folder.relative_to(root)) if folder != Path(root) else folder.name
        try:
            model_name, tracks[name] = score_track(folder, make_separator, profile, stream_rate)
        except Unscorable as exc:
            skipped[name] = str(exc)
        except (AudioFileError, SeparatorError, ValueError, OSError) as exc:
            failed[name] = str(exc)
    stem_names = list(dict.fromkeys(s for t in tracks.values() for s in t))  # the model's order
    values = {s: [t[s] for t in tracks.values() if t.get(s) is not None] for s in stem_names}
    mean = {s: statistics.fmean(v) if v else None for s, v in values.items()}
    median = {s: statistics.median(v) if v else None for s, v in values.items()}
    return {"model": model_name, "profile": profile, "tracks": tracks, "mean": mean, "median": median,
            "scored": len(tracks), "skipped": skipped, "failed": failed}


def _cell(value) -> str:
    """A score, ``not scored`` (silent reference) or ``n/a`` (no reference in that track)."""
    if value is None:
        return f"{NOT_SCORED:>14}"
    return f"{value:14.2f}"


def format_results(results: dict) -> str:
    stems = list(results["mean"])
    width = max([len("track")] + [len(t) for t in results["tracks"]])
    lines = [f"model {results['model']}, profile {results['profile']}: SDR in dB",
             "track".ljust(width) + "".join(f"  {s:>14}" for s in stems)]
    for track, scores in results["tracks"].items():
        lines.append(track.ljust(width) + "".join(f"  {_cell(scores[s]) if s in scores else 'n/a':>14}"
                                                  for s in stems))
    for label in ("mean", "median"):
        lines.append(label.ljust(width) + "".join(f"  {_cell(results[label][s])}" for s in stems))
    silent = sorted({s for t in results["tracks"].values() for s, v in t.items() if v is None})
    if silent:
        lines.append(f"{NOT_SCORED}: the reference is silence ({', '.join(silent)} in some tracks); "
                     f"left out of the mean and median")
    skipped, failed = results.get("skipped", {}), results.get("failed", {})
    lines.append(f"{len(results['tracks'])} scored, {len(skipped)} skipped, {len(failed)} failed "
                 f"(only scored tracks count in the mean and median)")
    for label, items in (("skipped", skipped), ("FAILED", failed)):
        lines += [f"  {label} {track}: {reason}" for track, reason in items.items()]
    return "\n".join(lines)
