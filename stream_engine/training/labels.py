"""Teacher labels for music without stems: the distillation data of student v2.

``stemstream label SRC... --out DIR`` runs a separator (Spleeter by default)
through the engine's offline path on every track folder under SRC and writes
``DIR/<SRC name>/<track>/{vocals,accompaniment}.flac``, a stem folder that
``stemstream train`` reads like ground truth.

What the labels hold above the teacher's band: Spleeter masks 0-11 kHz and
leaves both stems empty above. The label writes ``accompaniment = mixture -
vocals``, so the two stems still sum to the mixture and everything above
11 kHz (cymbals, air, and the sibilance of the voice) is accompaniment.
That is what the teacher says, and the student sees it only on labelled
songs; above 11 kHz the ground-truth stems (``eif/train``) teach it where
the voice's top end goes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def label_folder(src: Path, out: Path, make_separator, profile: str = "offline", progress=print) -> list[Path]:
    """Label every track folder under ``src``; skip tracks whose labels exist. Returns the written folders."""
    from stream_engine.audio_io import AtomicStemWriter
    from stream_engine.evaluate import base_stems, find_tracks, load_track
    from stream_engine.offline import separate_array

    written = []
    for folder in find_tracks(src):
        dest = out / src.name / folder.name
        if (dest / "vocals.flac").is_file() and (dest / "accompaniment.flac").is_file():
            continue
        stems, rate = load_track(folder)
        mixture = stems.get("mixture")
        if mixture is None:
            mixture = np.sum(list(base_stems(stems).values()), axis=0)
        separator = make_separator(rate)
        vocals = separate_array(separator, mixture.astype(np.float32), rate, profile)["vocals"]
        with AtomicStemWriter(dest, ("vocals", "accompaniment"), rate, mixture.shape[0], "flac") as w:
            w.write("vocals", vocals)
            w.write("accompaniment", mixture - vocals)
            w.commit()
        progress(f"labelled {folder} -> {dest} ({mixture.shape[1] / rate / 60:.1f} min, {separator.spec.name})")
        written.append(dest)
    return written


def cmd_label(args) -> int:
    from stream_engine.separators.registry import load_separator

    cache = {}

    def make(rate):
        if rate not in cache:
            cache[rate] = load_separator(args.model, args.profile, sample_rate=rate)
        cache[rate].reset(1)
        return cache[rate]

    out = Path(args.out)
    for src in args.sources:
        label_folder(Path(src), out, make, args.profile, progress=lambda m: print(m, file=sys.stderr))
    return 0
