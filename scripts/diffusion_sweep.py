"""SDR and real-time factor of the diffusion separator against sampler steps, samples and mask.

    PYTHONPATH=$PWD python3 scripts/diffusion_sweep.py --weights runs/diffusion/run1/last.pt \
        --steps 1 2 4 8 16 --samples 1 --out docs/eval/diffusion-sweep.json

A SHORT subset of the held-out sets, so that a grid fits a loaded 2-core machine: the first
``--seconds`` of both musdb excerpts, ``--seconds`` of eif/valid (Potassium, from 150 s; no voice before 75 s) and
``--mir1k`` clips spread over mir1k/valid (resampled to 44.1 kHz). Each excerpt is separated whole
by the separator's own code (``separate_full``: the same chunking, sampler and masks as in the
engine, without the engine's outer 6 s windows, whose padding would dominate on short clips);
2048 samples at each end (not fully covered by STFT frames) are left out of the score. One
thread. The baselines (--baseline) run through the engine's offline path on the same excerpts.
RTF = seconds of compute per second of audio (wall clock and this process's CPU time; the
machine is shared, so the CPU figure is the steadier one). Results are merged into --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from stream_engine.evaluate import base_stems, find_tracks, load_track, reference
from stream_engine.metrics import sdr
from stream_engine.offline import separate_array
from stream_engine.separators.diffusion import DiffusionSeparator
from stream_engine.separators.registry import bundled_models


def subset(data: Path, mir1k: int, seconds: float) -> list[tuple[str, str, np.ndarray, np.ndarray, int]]:
    """(set, track, mixture, vocals reference, rate) for the short held-out subset, at 44.1 kHz."""
    items = []
    for folder in find_tracks(data / "musdb-excerpts"):
        name, mix, voc, rate = _load(folder)
        n = int(seconds * rate)
        items.append(("musdb-excerpts", name, mix[:, :n], voc[:, :n], rate))
    for folder in find_tracks(data / "eif" / "valid"):
        name, mix, voc, rate = _load(folder)
        a, b = 150 * rate, int((150 + seconds) * rate)  # vocals start at 75 s; 150 s onward: the song's voice
        items.append(("eif/valid", f"{name} 150-{150 + seconds:g} s", mix[:, a:b], voc[:, a:b], rate))
    clips = find_tracks(data / "mir1k" / "valid")
    for folder in [clips[i] for i in np.linspace(0, len(clips) - 1, mir1k).astype(int)] if mir1k else []:
        import soxr

        name, mix, voc, rate = _load(folder)
        items.append(("mir1k/valid", name, soxr.resample(mix.T, rate, 44100).T.copy(),
                      soxr.resample(voc.T, rate, 44100).T.copy(), 44100))
    return items


def _load(folder: Path):
    stems, rate = load_track(folder)
    mix = stems.get("mixture")
    if mix is None:
        mix = np.sum(list(base_stems(stems).values()), axis=0)
    return folder.name, mix.astype(np.float32), reference("vocals", stems), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="checkpoint or bundled weights (default: the bundled model)")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--samples", type=int, nargs="+", default=[1])
    ap.add_argument("--masks", nargs="+", default=["ratio"])
    ap.add_argument("--mir1k", type=int, default=4, help="mir1k/valid clips in the subset")
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds of each musdb excerpt and of eif/valid")
    ap.add_argument("--tag", default="", help="a label for these weights in the results")
    ap.add_argument("--baseline", nargs="*", default=[], help="MODEL@PROFILE scored on the same subset")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if "stemstream-diffusion" not in bundled_models():  # opt-in (research use): installed by the user
        from stream_engine.separators.research import not_installed_error

        raise SystemExit(not_installed_error("stemstream-diffusion"))
    card = bundled_models()["stemstream-diffusion"]
    weights = args.weights or card["path"]
    items = subset(Path(args.data), args.mir1k, args.seconds)
    trim = 2048
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for item in args.baseline:
        from stream_engine.separators.registry import load_separator

        model, _, profile = item.partition("@")
        per = {}
        for kind, name, mix, voc, rate in items:
            s = load_separator(model, profile, sample_rate=rate, threads=1)
            s.reset(1)
            est = separate_array(s, mix, rate, profile)["vocals"]
            per.setdefault(kind, {})[name] = round(sdr(voc[:, trim:-trim], est[:, trim:-trim]), 3)
        results[item] = {"vocals_sdr": per, "mean": {k: round(statistics.fmean(v.values()), 3) for k, v in per.items()}}
        print(item, json.dumps(results[item]["mean"]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    for mask in args.masks:
        for samples in args.samples:
            for steps in args.steps:
                sep = DiffusionSeparator(weights, card, "offline", steps=steps, samples=samples, mask=mask)
                per = {}
                wall = cpu = audio = 0.0
                for kind, name, mix, voc, rate in items:
                    w0, c0 = time.perf_counter(), time.process_time()
                    est = sep.separate_full(mix[:, None])[:, 0]  # channels as the batch; [:, 0]: vocals (C, 1, N)
                    wall += time.perf_counter() - w0
                    cpu += time.process_time() - c0
                    audio += mix.shape[1] / rate
                    per.setdefault(kind, {})[name] = round(sdr(voc[:, trim:-trim], est[:, 0, trim:-trim]), 3)
                key = f"{args.tag or Path(weights).name}|{mask}|steps={steps}|samples={samples}"
                results[key] = {
                    "weights": str(weights), "mask": mask, "steps": steps, "samples": samples,
                    "vocals_sdr": per,
                    "mean": {k: round(statistics.fmean(v.values()), 3) for k, v in per.items()},
                    "rtf_wall": round(wall / audio, 3), "rtf_cpu": round(cpu / audio, 3),
                    "audio_seconds": round(audio, 1), "when": time.strftime("%H:%M UTC", time.gmtime())}
                print(key, json.dumps(results[key]["mean"]), "rtf wall", results[key]["rtf_wall"], "cpu",
                      results[key]["rtf_cpu"], flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
