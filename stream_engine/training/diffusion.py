"""The counterfactual diffusion separator: "what would this song sound like without its voice?"

A conditional denoising diffusion model over magnitude spectrograms. Given a
mixture, it generates the accompaniment magnitude (the counterfactual song in
which nobody sings); the separator (``separators/diffusion.py``) turns that
into a mask on the mixture, so the vocals are what the mixture has and the
counterfactual lacks, and the two stems sum to the mixture.

Representation (one channel at a time, 44.1 kHz full band):
- STFT 2048 / hop 512 (Hann), bins 0..1023 (the Nyquist bin takes bin 1023's mask);
- the generated quantity is the accompaniment magnitude in the mixture's units: x0 = 2 r - 1 with
  r = clip(|A| / |M|, 0, 1) (the counterfactual never exceeds the mixture in a bin). A first run that
  generated an absolute compressed magnitude, 2 sqrt(|A| / max|M|) - 1, failed: those values sit
  at -0.94 +- 0.09, so the unit-variance noise swamps them and after 1200 steps the model was
  worse than copying the mixture (docs/experiments.md);
- conditioning: the mixture's compressed magnitude sqrt(|M| / max|M|) and log-magnitude (a window
  is scaled by its largest mixture magnitude) and a frequency coordinate (a convolution alone does
  not know where in the spectrum it is);
- the loss is weighted per bin by the compressed mixture magnitude (the ratios of near-silent bins
  carry nothing a listener or SDR notices).

Network: a small U-Net. The 1024 bins are folded 8:1 into channels first (128 rows), then
four levels (stride-2 down in frequency and time), one residual block per level each way,
a sinusoidal timestep embedding added in every block, self-attention at the coarsest level.

Diffusion: continuous time t in [0, 1], cosine schedule (alpha = cos(pi t / 2), sigma = sin),
v-prediction, EMA weights. Sampler: deterministic DDIM (eta = 0) with a handful of steps;
several samples (different seeds) can be averaged.

Training (``python3 -m stream_engine.training.diffusion train``) runs on one thread with a
wall-clock budget, writes ``last.pt`` (model + EMA + optimiser + step + data RNG) every few
minutes and resumes from it when started again with the same ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..separators.diffusion_net import (  # noqa: F401 - the network and sampler, shared with the separator
    KIND, SAMPLE_RATE, N_FFT, HOP, BINS, EPS, DEFAULT_CFG, _torch, build_model, param_count, stft_mag, features, x0_to_ratio, alpha_sigma, diffusion_loss, ddim_sample, load_weights, widen_for_refine, input_channels)


# --------------------------------------------------------------------------- data

class Pool:
    """Training audio in memory, drawn as excerpts of one channel at 44.1 kHz.

    Each source is (kind, share, tracks); a track is (vocals, accompaniment) float16 arrays
    (C, N) at their file's rate (MIR-1K stays at 16 kHz; excerpts are resampled as drawn).
    """

    def __init__(self, sources: list[tuple[str, float, list]], seed: int = 0):
        self.sources = [s for s in sources if s[2]]
        shares = np.array([s[1] for s in self.sources], dtype=np.float64)
        self.p = shares / shares.sum()
        self.rng = np.random.default_rng(seed)
        self.vocal_tracks = [(k, t) for k, _, ts in self.sources for t in ts if t["has_vocals"]]

    def _track(self):
        """(source kind, track): a source by its share, then one of its tracks."""
        kind, _, tracks = self.sources[int(self.rng.choice(len(self.sources), p=self.p))]
        return kind, tracks[int(self.rng.integers(0, len(tracks)))]

    def _cut(self, track, n44: int, key: str):
        rate = track["rate"]
        n = int(math.ceil(n44 * rate / SAMPLE_RATE)) + 64
        arr = track[key]
        total = arr.shape[-1]
        if total <= n:
            start = 0
        else:
            start = int(self.rng.integers(0, total - n))
        ch = int(self.rng.integers(0, arr.shape[0]))
        x = np.asarray(arr[ch, start:start + n], dtype=np.float32)
        if x.shape[0] < n:
            x = np.pad(x, (0, n - x.shape[0]))
        return x, rate, (ch, start)

    def _fit(self, x, rate, n44):
        if rate != SAMPLE_RATE:
            import soxr

            x = soxr.resample(x, rate, SAMPLE_RATE, quality="MQ").astype(np.float32)
        if x.shape[0] < n44:
            x = np.pad(x, (0, n44 - x.shape[0]))
        return x[:n44]

    def draw_refine(self, batch: int, n44: int):
        """Refining: (vocals, accompaniment, prior accompaniment) float32 (batch, n44) and the kinds.

        Every excerpt is a track's own pair at one position with one gain (no remix, no
        per-stem gain), so the prior cached for that track (``track["prior"]``: the prior
        separator's accompaniment estimate of the track's mixture) is the estimate of this
        very mixture."""
        voc = np.zeros((batch, n44), np.float32)
        acc = np.zeros((batch, n44), np.float32)
        prior = np.zeros((batch, n44), np.float32)
        kinds = []
        for i in range(batch):
            kind, tr = self._track()
            a, rate, (ch, start) = self._cut(tr, n44, "acc")
            n = a.shape[0]

            def same_place(key):
                x = np.asarray(tr[key][ch, start:start + n], dtype=np.float32)
                return self._fit(np.pad(x, (0, n - x.shape[0])), rate, n44)

            g = 10 ** (self.rng.uniform(-12, 3) / 20)
            acc[i] = self._fit(a, rate, n44) * g
            prior[i] = same_place("prior") * g
            if tr["has_vocals"]:
                voc[i] = same_place("voc") * g
            kinds.append(kind)
        return voc, acc, prior, kinds

    def draw(self, batch: int, n44: int):
        """(vocals, accompaniment) float32 (batch, n44) and the kinds drawn."""
        voc = np.zeros((batch, n44), np.float32)
        acc = np.zeros((batch, n44), np.float32)
        kinds = []
        for i in range(batch):
            kind, tr = self._track()
            a, rate, (ch, start) = self._cut(tr, n44, "acc")
            a = self._fit(a, rate, n44)
            if tr["has_vocals"] and self.rng.random() < 0.6:
                n = a.shape[0]
                v = np.asarray(tr["voc"][ch, start:start + int(math.ceil(n44 * rate / SAMPLE_RATE)) + 64],
                               dtype=np.float32)
                v = self._fit(v, rate, n44)
            elif self.vocal_tracks and self.rng.random() < 0.75:
                # remix: someone else's voice over this accompaniment (instrumental pieces included)
                _, vt = self.vocal_tracks[int(self.rng.integers(0, len(self.vocal_tracks)))]
                v, vrate, _ = self._cut(vt, n44, "voc")
                v = self._fit(v, vrate, n44)
            else:
                v = np.zeros(n44, np.float32)  # no voice: the counterfactual is the mixture itself
            g_v = 10 ** (self.rng.uniform(-9, 4) / 20)
            g = 10 ** (self.rng.uniform(-12, 3) / 20)
            voc[i], acc[i] = v * g_v * g, a * g
            kinds.append(kind)
        return voc, acc, kinds


def load_pool(data_root: Path, labels: Path | None, seed: int, log=print,
              hold_out: tuple[str, ...] = (), priors: Path | None = None) -> tuple[Pool, dict]:
    """The training sources and their shares. Held out (never read here): eif/valid, mir1k/valid,
    musdb-excerpts. ``hold_out`` names whole sources to leave out as well ("eif/train",
    "instrumental", "mir1k/train", "songs"): the instrument-independence test trains without one
    family and measures on it; the other shares are renormalised by ``Pool``.

    ``priors`` (refining): a folder written by ``stemstream label --model spleeter`` per source
    (``priors/eif/train/<track>/accompaniment.flac``, ``priors/instrumental/...``,
    ``priors/mir1k/train/...``); each track gets its estimate as ``track["prior"]``, and a track
    without one is an error. The Spleeter-labelled songs are left out when refining: their
    targets are Spleeter's own estimate, so they would only teach the model to copy its prior."""
    import soundfile as sf

    def read(p):
        x, sr = sf.read(str(p), dtype="float32", always_2d=True)
        return x.T, sr

    def folder_tracks(root: Path, voc_name="vocals", silent_vocals=False):
        tracks = []
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            files = {f.stem: f for f in d.iterdir() if f.suffix.lower() in (".ogg", ".flac", ".wav", ".mp3")}
            if silent_vocals:
                src = files.get("mixture") or next(iter(files.values()), None)
                if src is None:
                    continue
                a, sr = read(src)
                tracks.append({"name": d.name, "acc": a.astype(np.float16), "voc": None, "rate": sr,
                               "has_vocals": False, "seconds": a.shape[1] / sr})
                continue
            if voc_name not in files:
                continue
            v, sr = read(files[voc_name])
            if "accompaniment" in files:
                a, sr2 = read(files["accompaniment"])
            else:
                parts = [read(files[k]) for k in ("drums", "bass", "other") if k in files]
                n = min(p[0].shape[1] for p in parts)
                a, sr2 = np.sum([p[0][:, :n] for p in parts], axis=0), parts[0][1]
            assert sr == sr2, d
            n = min(v.shape[1], a.shape[1])
            tracks.append({"name": d.name, "voc": v[:, :n].astype(np.float16), "acc": a[:, :n].astype(np.float16),
                           "rate": sr, "has_vocals": True, "seconds": n / sr})
        return tracks

    def attach_priors(rel: str, tracks: list) -> list:
        for t in tracks:
            f = priors / rel / t["name"] / "accompaniment.flac"
            if not f.is_file():
                raise FileNotFoundError(f"{f}: no prior for {rel}/{t['name']} (run `stemstream label "
                                        f"{data_root / rel} --model spleeter --out {priors / Path(rel).parent}`)")
            p, sr = read(f)
            if sr != t["rate"] or p.shape[0] != t["acc"].shape[0]:
                raise ValueError(f"{f}: {sr} Hz x {p.shape[0]} channels, the track is {t['rate']} Hz x "
                                 f"{t['acc'].shape[0]}")
            n = min(p.shape[1], t["acc"].shape[1])
            t["prior"] = p[:, :n].astype(np.float16)
            t["acc"] = t["acc"][:, :n]
            if t["voc"] is not None:
                t["voc"] = t["voc"][:, :n]
        return tracks

    if priors is not None:
        labels = None  # see the docstring

    known = ("eif/train", "instrumental", "mir1k/train", "songs")
    unknown = [h for h in hold_out if h not in known]
    if unknown:
        raise ValueError(f"--hold-out {unknown[0]!r}: not a training source (one of {', '.join(known)})")
    sources = []
    if "eif/train" not in hold_out:
        sources.append(("eif/train", 0.35, folder_tracks(data_root / "eif" / "train")))
    if "instrumental" not in hold_out:
        sources.append(("instrumental", 0.15, folder_tracks(data_root / "instrumental", silent_vocals=True)))
    if "mir1k/train" not in hold_out:
        sources.append(("mir1k/train", 0.3, folder_tracks(data_root / "mir1k" / "train")))
    if labels is not None and (labels / "songs").is_dir() and "songs" not in hold_out:
        sources.append(("songs (Spleeter labels)", 0.2, folder_tracks(labels / "songs")))
    if hold_out:
        log(f"held out for this run: {', '.join(hold_out)}")
    if priors is not None:
        sources = [(k, sh, attach_priors(k, ts)) for k, sh, ts in sources]
        log(f"refining: priors from {priors}")
    info = {k: {"tracks": len(ts), "minutes": round(sum(t["seconds"] for t in ts) / 60, 2), "share": sh}
            for k, sh, ts in sources}
    log(f"data: {json.dumps(info)}")
    return Pool(sources, seed), info


def batch_tensors(voc, acc, prior=None):
    """Waveforms -> (cond, weight, x0) tensors; ``prior`` (refining): the prior's accompaniment waveforms."""
    import torch

    v = torch.from_numpy(voc)
    a = torch.from_numpy(acc)
    mix_spec = stft_mag(v + a)
    acc_spec = stft_mag(a)
    prior_mag = None if prior is None else stft_mag(torch.from_numpy(prior)).abs()[:, :BINS]
    return features(mix_spec.abs()[:, :BINS], acc_spec.abs()[:, :BINS], prior_mag)


def excerpt_samples(frames: int) -> int:
    return (frames - 1) * HOP + N_FFT


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, payload: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- training

def train(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "train.log", "a", buffering=1)

    def log(msg):
        line = f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}"
        print(line, file=log_file)
        if args.verbose:
            print(line, file=sys.stderr)

    deadline = None
    if args.until:
        hh, mm = (int(x) for x in args.until.split(":"))
        now = time.gmtime()
        deadline = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    if args.minutes:
        d2 = time.time() + args.minutes * 60
        deadline = min(deadline, d2) if deadline else d2

    torch.manual_seed(args.seed)
    cfg = dict(DEFAULT_CFG)
    if args.cfg:
        cfg.update(json.loads(args.cfg))
    init_state = None
    if args.refine_from and not (out / "last.pt").exists():
        # refining: start from an unrefined model's (EMA) weights, the prior's input weights at zero
        base, base_ck = load_weights(args.refine_from)
        init_state, cfg = widen_for_refine(base.state_dict(), base_ck["model_cfg"], residual=args.residual)
        cfg = dict(DEFAULT_CFG, **cfg)
        log(f"refining model from {args.refine_from} (step {int(base_ck.get('step', 0))})")
    elif args.refine_from:
        cfg = dict(DEFAULT_CFG, **torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model_cfg"])
    if args.priors and not cfg.get("refine"):
        raise SystemExit("--priors trains a refining model: give --refine-from CHECKPOINT (or --cfg '{\"refine\": true}')")
    if cfg.get("refine") and not args.priors:
        raise SystemExit("a refining model needs --priors (the prior separator's estimates of the training tracks)")
    model = build_model(cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    ema = build_model(cfg)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, seen = 0, {}
    history = []
    last = out / "last.pt"
    pool, info = load_pool(Path(args.data), Path(args.labels) if args.labels else None, args.seed, log,
                           hold_out=tuple(args.hold_out), priors=Path(args.priors) if args.priors else None)
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optim"])
        step = int(ck["step"])
        seen = json.loads(ck.get("seen", "{}"))
        history = json.loads(ck.get("history", "[]"))
        pool.rng = np.random.default_rng([args.seed, step])  # a fresh, reproducible stream after resuming
        log(f"resumed from {last} at step {step}")
    n_params = param_count(model)
    log(f"model {json.dumps(cfg)}: {n_params} parameters; batch {args.batch}, lr {args.lr}, threads {args.threads}")
    gen = torch.Generator().manual_seed(args.seed * 1000 + step)
    n44 = excerpt_samples(cfg["frames"])

    def checkpoint(tag=""):
        payload = {"kind": KIND, "model_cfg": cfg, "model": model.state_dict(), "ema": ema.state_dict(),
                   "optim": opt.state_dict(), "step": step, "seen": json.dumps(seen),
                   "history": json.dumps(history), "data": json.dumps(info),
                   "config": json.dumps({k: v for k, v in vars(args).items() if k != "func"})}
        save_checkpoint(last, payload)
        if tag:
            save_checkpoint(out / f"step{step:06d}.pt", payload)
        log(f"checkpoint step {step}{' ' + tag if tag else ''}")

    t_start = time.time()
    t_ck = time.time()
    t_snap = time.time()
    losses = []
    while True:
        if deadline and time.time() >= deadline:
            break
        if args.steps and step >= args.steps:
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        if cfg.get("refine"):
            voc, acc, prior, kinds = pool.draw_refine(args.batch, n44)
        else:
            (voc, acc, kinds), prior = pool.draw(args.batch, n44), None
        for k in kinds:
            seen[k] = seen.get(k, 0.0) + n44 / SAMPLE_RATE / 60
        cond, weight, x0 = batch_tensors(voc, acc, prior)
        model.train()
        loss = diffusion_loss(model, cond, x0, gen, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        step += 1
        losses.append(float(loss.detach()))
        if step % args.log_every == 0:
            el = time.time() - t_start
            mean = float(np.mean(losses[-args.log_every:]))
            history.append({"step": step, "loss": round(mean, 5), "lr": lr})
            log(f"step {step} loss {mean:.5f} lr {lr:.2e} ({el / 60:.1f} min, "
                f"seen {json.dumps({k: round(v, 1) for k, v in seen.items()})} min)")
        if time.time() - t_ck >= args.checkpoint_minutes * 60:
            tag = ""
            if time.time() - t_snap >= args.snapshot_minutes * 60:
                tag, t_snap = "snapshot", time.time()
            checkpoint(tag)
            t_ck = time.time()
    checkpoint("final")
    log(f"stopped at step {step} after {(time.time() - t_start) / 60:.1f} min")
    return 0


def export(args) -> int:
    """Bundle a checkpoint's EMA weights (float16 halves the file) for the separator."""
    import torch

    model, ck = load_weights(args.checkpoint, prefer_ema=not args.raw)
    state = {k: (v.half() if args.half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"kind": KIND, "model_cfg": ck["model_cfg"], "model": state, "step": int(ck.get("step", 0)),
               "seen": ck.get("seen", "{}") if isinstance(ck.get("seen"), str) else json.dumps(ck.get("seen")),
               "data": ck.get("data", "{}") if isinstance(ck.get("data"), str) else json.dumps(ck.get("data"))}
    save_checkpoint(Path(args.out), payload)
    print(f"wrote {args.out}: step {payload['step']}, {param_count(model)} parameters")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m stream_engine.training.diffusion")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (or resume) the counterfactual diffusion model")
    t.add_argument("--data", default="../shared/data")
    t.add_argument("--labels", default=None, help="folder written by `stemstream label` (songs/...)")
    t.add_argument("--out", required=True)
    t.add_argument("--hold-out", action="append", default=[], metavar="SOURCE",
                   help="leave a training source out (eif/train, instrumental, mir1k/train, songs): "
                        "the instrument-independence test")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=4e-4)
    t.add_argument("--warmup", type=int, default=100)
    t.add_argument("--ema", type=float, default=0.999)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: no limit)")
    t.add_argument("--minutes", type=float, default=0, help="wall-clock budget in minutes")
    t.add_argument("--until", default="", help="stop at this UTC time, HH:MM")
    t.add_argument("--checkpoint-minutes", type=float, default=4.0)
    t.add_argument("--snapshot-minutes", type=float, default=15.0)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cfg", default="", help="JSON overrides of the model settings")
    t.add_argument("--refine-from", default="", metavar="CHECKPOINT",
                   help="train the refining variant: start from this unrefined checkpoint's EMA weights, "
                        "with a zero-weighted input for the prior")
    t.add_argument("--residual", action="store_true",
                   help="refining: the output is a correction to the prior (x0 = prior + output, trained on x0's "
                        "error), the output layer starting at zero: the model starts as its prior")
    t.add_argument("--priors", default="", metavar="DIR",
                   help="refining: the prior separator's estimates of the training tracks (`stemstream label "
                        "--model spleeter` output per source: DIR/eif/train, DIR/instrumental, DIR/mir1k/train)")
    t.add_argument("--verbose", action="store_true")
    t.set_defaults(func=train)
    e = sub.add_parser("export", help="write a checkpoint's EMA weights as a small bundle")
    e.add_argument("checkpoint")
    e.add_argument("--out", required=True)
    e.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA")
    e.add_argument("--half", action="store_true", help="store float16")
    e.set_defaults(func=export)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
