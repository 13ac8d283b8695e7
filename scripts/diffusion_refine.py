"""The refining diffusion variant (issue 28, item 6): its card, and the copy-the-prior control.

    # a card beside exported refining weights (the diffusion card's fields, framing for the prior)
    PYTHONPATH=$PWD python3 scripts/diffusion_refine.py card runs/refine/stemstream-diffusion-refine.pt \
        --checkpoint runs/refine/run1/last.pt

    # the control: a model that only copied its prior (generated ratio = the prior's ratio), through
    # the engine like `stemstream eval`: the separator then returns Spleeter's estimate run on its
    # own windows (what refining starts from; differs from `--model spleeter` by the windowing only)
    PYTHONPATH=$PWD python3 scripts/diffusion_refine.py control runs/refine/stemstream-diffusion-refine.pt \
        ../shared/data/musdb-excerpts --json out.json

One thread throughout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_CARD = ROOT / "stream_engine" / "models" / "stemstream-diffusion.json"
NAME = "stemstream-diffusion-refine"

# Spleeter on the window runs with zeros beyond it; a longer lookahead and past context than the
# unrefined model's (24 / 24 frames) keep the kept segment further from those edges.
FRAMING = {"frames": 512, "hop_frames": 416, "fade_frames": 16, "lookahead_frames": 40, "chunk_overlap": 16}


def write_card(weights: Path, checkpoint: Path | None, extra: dict | None = None) -> Path:
    import torch

    from stream_engine.separators.card import sha256_of
    from stream_engine.separators import diffusion_net as D

    base = json.loads(BASE_CARD.read_text())
    ck = torch.load(weights, map_location="cpu", weights_only=True)
    if not ck["model_cfg"].get("refine"):
        raise SystemExit(f"{weights}: not a refining model")
    hop = D.HOP
    window = (FRAMING["frames"] - 1) * hop + D.N_FFT
    fr = dict(FRAMING, window=window, hop=FRAMING["hop_frames"] * hop,
              lookahead=FRAMING["lookahead_frames"] * hop, fade=FRAMING["fade_frames"] * hop)
    card = {k: base[k] for k in ("format", "sample_rate", "stems", "stateful", "output_span", "sampler", "stft",
                                 "licence")}
    model = D.build_model(ck["model_cfg"])
    card.update(name=NAME, channels=2, refine="spleeter", parameters=D.param_count(model),
                window=fr["window"], hop=fr["hop"], lookahead=fr["lookahead"], fade=fr["fade"],
                profiles={"offline": fr}, default_for=[])
    card["architecture"] = dict(base["architecture"], conditioning=(
        base["architecture"]["conditioning"] + "; refining: Spleeter's accompaniment ratio "
        "2 clip(|M - V_spleeter| / |M|, 0, 1) - 1 (Spleeter offline U-Nets run on the same window)"))
    training = {"init": "stemstream-diffusion run 2 EMA weights, the prior's input weights added at zero",
                "step": int(ck.get("step", 0)),
                "data": json.loads(ck.get("data", "{}")), "minutes_seen": json.loads(ck.get("seen", "{}")),
                "examples": "each track's own vocals and accompaniment at one position with one gain (no remix); "
                            "the prior is Spleeter's offline estimate of that track, cached by `stemstream label`",
                "held_out": base["training"]["held_out"]}
    if checkpoint is not None:
        full = torch.load(checkpoint, map_location="cpu", weights_only=True)
        cfg = json.loads(full.get("config", "{}"))
        training.update(batch=cfg.get("batch"), lr=cfg.get("lr"), ema=cfg.get("ema"))
    card["training"] = training
    card["licence"] = base["licence"] + "; the prior is Spleeter (MIT), run at separation time"
    card.update(extra or {})
    card["sha256"] = sha256_of(weights)
    path = weights.with_suffix(".json")
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def control(weights: Path, folder: Path, out: Path | None) -> dict:
    """`stemstream eval`-style SDR with the prior's ratio as the generated ratio (the model not run)."""
    import torch

    torch.set_num_threads(1)
    from stream_engine.evaluate import evaluate
    from stream_engine.separators.registry import load_separator

    class PriorOnly:
        def __init__(self, sep):
            self.sep = sep

        def __call__(self, mag, prior_mag=None):
            return (prior_mag / (mag + 1e-8)).clamp(0.0, 1.0)

    def make(rate):
        sep = load_separator(str(weights), "offline", sample_rate=rate)
        sep.accompaniment_mask = PriorOnly(sep)
        return sep

    res = evaluate(folder, make, "offline", progress=False)
    res["model"] = "prior ratio as the mask (control)"
    if out:
        out.write_text(json.dumps(res, indent=1))
    print(json.dumps({"tracks": res["tracks"], "mean": res["mean"]}, indent=1))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("card")
    c.add_argument("weights", type=Path)
    c.add_argument("--checkpoint", type=Path)
    c.add_argument("--extra", default="", help="JSON merged into the card (metrics, latency, command)")
    k = sub.add_parser("control")
    k.add_argument("weights", type=Path)
    k.add_argument("folder", type=Path)
    k.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "card":
        print(write_card(args.weights, args.checkpoint, json.loads(args.extra) if args.extra else None))
    else:
        control(args.weights, args.folder, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
