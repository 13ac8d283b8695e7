"""Teacher labels for music without stems: the distillation data of student v2.

``stemstream label SRC... --out DIR`` runs a separator (Spleeter by default)
through the engine's offline path on every track folder under SRC and writes
``DIR/<SRC name>/<track>/{vocals,accompaniment}.flac``, a stem folder that
``stemstream train`` reads like ground truth. ``--teacher htdemucs`` writes
four stems (vocals, drums, bass, other) instead. Labels are the cache: a
track whose files are there is skipped.

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
    """Label every track folder under ``src``; skip tracks whose labels exist. Returns the written folders.

    A two-stem teacher writes vocals and accompaniment = mixture - vocals. A teacher of more stems
    (``--teacher htdemucs``: vocals, drums, bass, other) writes each of its stems, the last one as
    the mixture less the others, so the labels sum to the mixture as ground truth does (HTDemucs's
    own stems miss it by about -33 dB). ``labels.json`` beside them names the teacher and its
    licence: labels, and a student trained on them, inherit it.
    """
    import json

    from stream_engine.audio_io import AtomicStemWriter
    from stream_engine.evaluate import base_stems, find_tracks, load_track
    from stream_engine.offline import separate_array

    written = []
    for folder in find_tracks(src):
        dest = out / src.name / folder.name
        # the teacher's stems name the files; the factory builds it once per rate (cmd_label caches)
        names = tuple(make_separator(44100).spec.stems)
        if set(names) == {"vocals", "accompaniment"}:
            names = ("vocals", "accompaniment")
        if all((dest / f"{name}.flac").is_file() for name in names):
            continue
        stems, rate = load_track(folder)
        mixture = stems.get("mixture")
        if mixture is None:
            mixture = np.sum(list(base_stems(stems).values()), axis=0)
        separator = make_separator(rate)
        est = separate_array(separator, mixture.astype(np.float32), rate, profile)
        with AtomicStemWriter(dest, names, rate, mixture.shape[0], "flac") as w:
            rest = mixture.astype(np.float32)
            for name in names[:-1]:
                w.write(name, est[name])
                rest = rest - est[name]
            w.write(names[-1], rest)
            w.commit()
        card = separator.spec.card or {}
        (dest / "labels.json").write_text(json.dumps(
            {"teacher": separator.spec.name, "profile": profile, "stems": list(names),
             "licence": card.get("licence", "see the teacher's model card"), "source": str(folder)}, indent=1))
        progress(f"labelled {folder} -> {dest} ({mixture.shape[1] / rate / 60:.1f} min, {separator.spec.name})")
        written.append(dest)
    return written


def cmd_label(args) -> int:
    from stream_engine.separators.registry import load_separator

    cache = {}

    def make(rate):
        if rate not in cache:
            cache[rate] = load_separator(args.teacher or args.model, args.profile, sample_rate=rate)
        cache[rate].reset(1)
        return cache[rate]

    out = Path(args.out)
    for src in args.sources:
        label_folder(Path(src), out, make, args.profile, progress=lambda m: print(m, file=sys.stderr))
    return 0
