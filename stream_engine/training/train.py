"""Training loop: presets, distillation, validation SDR, checkpoints, resume."""
# Long module (over 500 lines): the teacher's and the students' training loops share data, validation and
# checkpoint handling

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import AugmentConfig, StemSampler, load_sources, load_tracks, validation_set
from .models import build_model, count_parameters

STEMS = ("vocals", "accompaniment")

_BASE = {
    "sample_rate": 16000,
    "channels": 1,
    "stems": list(STEMS),
    "data": "../shared/data/mir1k/train",
    "valid": "../shared/data/mir1k/valid",
    "seed": 0,
    "threads": 2,
    "lr": 1e-3,
    "lr_final": 0.05,  # cosine decay to lr * lr_final
    "warmup": 50,
    "grad_clip": 5.0,
    "val_every": 200,
    "val_tracks": None,  # None: the whole validation folder
    "log_every": 10,
    "augment": {"gain_db": [-6.0, 3.0], "polarity": 0.5, "remix": 0.5, "eq": 0.2, "eq_db": 4.0, "pitch": 0.0},
    "clean_frac": 0.5,  # share of each batch with stem-consistent augmentation (distillation targets exist)
    # {"teacher": checkpoint path, "weight": soft-target weight in [0, 1], optional "weight_end",
    #  "online" (label each augmented batch), "items" (how many of it), "confidence_db" (teacher_confidence)}
    "distill": None,
    "loss": "l1",  # "l1": L1 on waveforms + 0.1 L1 on magnitudes; "sdr": negative SDR (the metric itself)
    "init": None,  # a checkpoint to start the weights from (fine-tuning: fresh optimizer and LR schedule)
    "ema": None,  # a decay per step (e.g. 0.999): validate and keep an exponential moving average of the weights
}

PRESETS: dict[str, dict] = {
    "teacher": {
        **_BASE,
        "model": "teacher",
        "model_cfg": {"n_fft": 1024, "hop": 256, "channels": 16, "growth": 16, "levels": 4, "tfc_layers": 2,
                      "bottleneck": 8},
        "steps": 3000,
        "minutes": 55,  # the bundled teacher: 55 min of training on a shared 2-core CPU
        "batch": 6,
        "val_every": 300,
        "seconds": 2.0,
        "lr": 1e-3,
    },
    "student": {
        **_BASE,
        "model": "student",
        "model_cfg": {"n_fft": 256, "hop": 128, "ctx_fft": 512, "hidden": 256, "layers": 2},
        "steps": 2700,
        "minutes": 30,  # the bundled student: 30 min of training, 1 thread, beside its ablation
        "batch": 16,
        "seconds": 2.0,
        "lr": 2e-3,
        "threads": 1,
        "distill": {"teacher": "runs/teacher/best.pt", "weight": 0.5},
    },
    "student-nodistill": {},  # filled below: the student without the teacher (ablation)
    # the same latency (8 ms at 16 kHz) with asymmetric windows: a 1024-point mask instead of 256
    "student-asym": {},  # filled below
    # tiny presets for tests and smoke runs
    "tiny-teacher": {
        **_BASE,
        "model": "teacher",
        "model_cfg": {"n_fft": 256, "hop": 64, "channels": 4, "growth": 4, "levels": 2, "tfc_layers": 1,
                      "bottleneck": 4},
        "steps": 20, "batch": 4, "seconds": 0.5, "lr": 3e-3, "val_every": 10, "warmup": 0, "clean_frac": 1.0,
    },
    "tiny-student": {
        **_BASE,
        "model": "student",
        "model_cfg": {"n_fft": 64, "hop": 16, "ctx_fft": 128, "hidden": 32, "layers": 1},
        "steps": 20, "batch": 4, "seconds": 0.5, "lr": 3e-3, "val_every": 10, "warmup": 0, "clean_frac": 1.0,
    },
}
PRESETS["student-nodistill"] = {**copy.deepcopy(PRESETS["student"]), "distill": None}
PRESETS["student-asym"] = {**copy.deepcopy(PRESETS["student"]), "distill": None, "loss": "sdr",
                           "model_cfg": {"n_fft": 1024, "hop": 128, "ctx_fft": 0, "hidden": 256, "layers": 2,
                                         "asym": True}}


def load_config(name_or_path: str, overrides: dict | None = None, _chain: tuple = ()) -> dict:
    """A preset name or a JSON file (which may name a ``base`` preset, or another JSON file beside it,
    and override keys)."""
    if name_or_path in PRESETS:
        cfg = copy.deepcopy(PRESETS[name_or_path])
        cfg["preset"] = name_or_path
    else:
        p = Path(name_or_path)
        if not p.is_file():
            raise FileNotFoundError(f"{name_or_path}: neither a preset ({', '.join(PRESETS)}) nor a config file")
        user = json.loads(p.read_text())
        base = user.get("base", "student")
        if base in PRESETS:
            cfg = copy.deepcopy(PRESETS[base])
        else:  # another recipe file, beside this one: a variant names what it changes
            if p.resolve() in _chain:
                raise ValueError(f"{name_or_path}: its chain of base recipes loops back to itself")
            cfg = load_config(str(p.parent / base), _chain=_chain + (p.resolve(),))
        for k, v in user.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        cfg["preset"] = str(p)
    for k, v in (overrides or {}).items():
        if v is not None:
            cfg[k] = v
    return cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------- metrics


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(sum s^2 / sum (s - s_hat)^2) over the whole signal (MDX definition)."""
    try:  # the engine's shared implementation, when present
        from stream_engine.metrics import sdr as _sdr

        return float(_sdr(reference, estimate))
    except ImportError:
        pass
    s = np.asarray(reference, np.float64)
    e = np.asarray(estimate, np.float64)
    num = np.sum(s * s) + 1e-10
    den = np.sum((s - e) ** 2) + 1e-10
    return float(10 * np.log10(num / den))


def model_latency(model) -> int:
    return int(getattr(model, "latency", 0))


def forward_aligned(model, x: torch.Tensor) -> torch.Tensor:
    """mix (B, C, N) -> stems (B, S, C, N) lined up with the input: the model's latency removed."""
    lat = model_latency(model)
    y = model(F.pad(x, (0, lat)) if lat else x)
    return y[..., lat:] if lat else y


@torch.no_grad()
def separate_full(model, mix: np.ndarray) -> np.ndarray:
    """Whole-track separation in training mode layout: mix (C, N) -> (S, C, N), latency removed."""
    model.eval()
    return forward_aligned(model, torch.from_numpy(np.ascontiguousarray(mix))[None])[0].numpy()


def evaluate(model, val, stems=STEMS) -> dict:
    """SDR per track and stem, and per stem their mean and median. A stem whose reference is
    silence (eif/valid's bass) is not scored: None in ``tracks``, left out of the mean; a stem
    with no scored track at all is left out of ``mean`` and ``median``."""
    from stream_engine.evaluate import is_silent

    tracks = {}
    for name, mix, ref in val:
        est = separate_full(model, mix)
        tracks[name] = {s: None if is_silent(ref[i]) else sdr(ref[i], est[i]) for i, s in enumerate(stems)}
    scored = {s: [t[s] for t in tracks.values() if t[s] is not None] for s in stems}
    mean = {s: float(np.mean(v)) for s, v in scored.items() if v}
    median = {s: float(np.median(v)) for s, v in scored.items() if v}
    return {"tracks": tracks, "mean": mean, "median": median}


# ---------------------------------------------------------------------- losses


def _stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device)
    X = torch.stft(x, n_fft, n_fft // 4, window=win, return_complex=True)
    return X.abs()


def separation_loss(est: torch.Tensor, ref: torch.Tensor, spec_ffts=(512,), per_item: bool = False) -> torch.Tensor:
    """L1 on waveforms plus L1 on STFT magnitudes; est/ref (B, S, C, N). ``per_item``: one value per excerpt (B,)."""
    B = est.shape[0]
    loss = (est - ref).abs().reshape(B, -1).mean(1)
    if spec_ffts:
        e = est.reshape(-1, est.shape[-1])
        r = ref.reshape(-1, ref.shape[-1])
        for n in spec_ffts:
            loss = loss + 0.1 * (_stft_mag(e, n) - _stft_mag(r, n)).abs().reshape(B, -1).mean(1)
    return loss if per_item else loss.mean()


def sdr_loss(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-7, per_item: bool = False) -> torch.Tensor:
    """Negative SDR (the MDX definition ``evaluate`` scores) per excerpt and stem, averaged; est/ref (B, S, C, N).
    ``eps`` keeps an excerpt whose stem is silent from dominating (its SDR is then near 0 dB, not -inf).
    ``per_item``: one value per excerpt (B,), averaged over stems."""
    num = ref.pow(2).sum((-2, -1)) + eps
    den = (ref - est).pow(2).sum((-2, -1)) + eps
    loss = -(10 * torch.log10(num / den)).mean(1)
    return loss if per_item else loss.mean()


def make_loss(kind: str):
    if kind == "l1":
        return separation_loss
    if kind == "sdr":
        return sdr_loss
    raise ValueError(f"unknown loss {kind!r} (l1 or sdr)")


# ---------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, model, opt, step: int, cfg: dict, best: float, history: list, rng: dict,
                    ema=None) -> None:
    tmp = Path(str(path) + ".tmp")
    extra = {"ema": ema.state_dict()} if ema is not None else {}
    torch.save({
        **extra,
        "model": model.state_dict(),
        "optimizer": opt.state_dict() if opt is not None else {},
        "step": step,
        "config": json.dumps(cfg),
        "kind": cfg["model"],
        "model_cfg": json.dumps(model.cfg),
        "best": best,
        "history": json.dumps(history),
        "rng": json.dumps(rng),
        "torch_rng": torch.get_rng_state(),
    }, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load with weights_only=True (no code from the file runs); ``ValueError`` naming the file
    for anything that is not a stemstream checkpoint."""
    from .checkpoint import read_checkpoint

    return read_checkpoint(path)


def model_from_checkpoint(path: str | os.PathLike):
    from .checkpoint import build_from_checkpoint

    ck = load_checkpoint(path)
    return build_from_checkpoint(ck, path), ck


def _rng_state(sampler: StemSampler) -> dict:
    return {"sampler": sampler.rng.bit_generator.state, "python": None}


def distill_weight(distill: dict, progress: float) -> float:
    """The soft-target weight at ``progress`` (0..1 of the run): ``weight``, moving linearly to
    ``weight_end`` when that is given (a curriculum: the teacher's easier targets first, the
    ground truth by the end)."""
    w0 = float(distill["weight"])
    w1 = distill.get("weight_end")
    return w0 if w1 is None else w0 + (float(w1) - w0) * progress


@torch.no_grad()
def teacher_confidence(student: torch.Tensor, teacher: torch.Tensor, truth: torch.Tensor,
                       margin_db: float) -> torch.Tensor:
    """How far to trust the teacher on each excerpt, in [0, 1]: its SDR against the ground truth
    minus the student's, over ``margin_db`` (0: trust it only where it is ahead). On the excerpts
    where the teacher is no better than the student, its target would pull the student down
    (the per-clip results of the plain blend), so its share goes back to the ground truth."""
    gap = sdr_loss(student, truth, per_item=True) - sdr_loss(teacher, truth, per_item=True)  # dB teacher ahead
    if margin_db <= 0:
        return (gap > 0).to(student.dtype)
    return (gap / float(margin_db)).clamp(0.0, 1.0)


# ---------------------------------------------------------------------- teacher targets


@torch.no_grad()
def teacher_targets(teacher, tracks, log=print, chunk_seconds: float = 12.0) -> dict[str, np.ndarray]:
    """Run the teacher once over every training track; returns name -> vocals estimate (C, N)."""
    teacher.eval()
    out = {}
    t0 = time.time()
    total = sum(t.length for t in tracks)
    done = 0
    for i, t in enumerate(tracks):
        mix = t.mix()
        sr = t.sample_rate
        n = mix.shape[-1]
        chunk = int(chunk_seconds * sr)
        if n <= chunk * 1.5:
            est = separate_full(teacher, mix)[0]
        else:  # long tracks: overlapping chunks, linear crossfade
            ov = sr
            est = np.zeros_like(mix)
            wsum = np.zeros(n, np.float32)
            pos = 0
            while pos < n:
                end = min(n, pos + chunk)
                seg = separate_full(teacher, mix[:, pos:end])[0]
                w = np.ones(end - pos, np.float32)
                r = min(ov, (end - pos) // 2)
                if pos > 0:
                    w[:r] = np.linspace(0, 1, r)
                if end < n:
                    w[-r:] = np.linspace(1, 0, r)
                est[:, pos:end] += seg * w
                wsum[pos:end] += w
                if end == n:
                    break
                pos = end - ov
            est /= np.maximum(wsum, 1e-6)
        out[t.name] = est.astype(np.float32)
        done += n
        if (i + 1) % 100 == 0:
            log(f"teacher targets: {i + 1}/{len(tracks)} tracks, {time.time() - t0:.0f} s")
    return out


def make_ema(model, decay):
    """An exponential moving average of the weights (buffers too), or None. Late in a run the
    validation SDR of the raw weights swings by 0.2-0.3 dB between checks; the average does not."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    if not 0.0 < float(decay) < 1.0:
        raise ValueError(f"ema: a decay per step in (0, 1), not {decay!r}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)


@torch.no_grad()
def online_targets(teacher, mix: torch.Tensor) -> torch.Tensor:
    """The teacher's soft targets for a batch (B, C, N) -> (B, 2, C, N): its vocals, and the
    mixture minus them, so the two targets add up to the mixture as the ground truth does."""
    vocals = forward_aligned(teacher, mix)[:, 0]
    return torch.stack([vocals, mix - vocals], dim=1)


# ---------------------------------------------------------------------- training


def _same_but_stems(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "stems"} == {k: v for k, v in b.items() if k != "stems"}


def widen_stems(model, state: dict, init_stems) -> None:
    """Start a student for more stems from one trained for fewer (a two-stem student -> four stems).

    Everything but the mask layer has the same shape and is copied. The mask layer holds one
    block of rows per masked stem (every stem but the last); a stem the old model masked keeps
    its block (vocals), the new stems start from the new layer's random rows."""
    own = model.state_dict()
    block = own["out.weight"].shape[0] // model.n_masks
    old_masked = list(init_stems)[:-1]
    for key, value in state.items():
        if key.startswith("out."):
            for i, name in enumerate(old_masked):
                if name in model.stems[:-1]:
                    j = model.stems.index(name)
                    own[key][j * block:(j + 1) * block] = value[i * block:(i + 1) * block]
        elif key in own and own[key].shape == value.shape:
            own[key] = value
        else:
            raise ValueError(f"{key}: shape {tuple(value.shape)} does not fit this model's {tuple(own[key].shape)}")
    model.load_state_dict(own)


def train(cfg: dict, out_dir: str | os.PathLike, resume: bool = False, log=print, progress: bool = True) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.get("threads") or 1))
    seed_everything(int(cfg["seed"]))
    sr = int(cfg["sample_rate"])
    stems = tuple(cfg["stems"])
    t_load = time.time()
    tracks = load_sources(cfg["data"], stems=stems, sample_rate=sr, channels=cfg["channels"],
                          limit=cfg.get("train_tracks"))
    val_tracks = load_tracks(cfg["valid"], stems=stems, sample_rate=sr, channels=cfg["channels"])
    val = validation_set(val_tracks, max_tracks=cfg.get("val_tracks"), max_seconds=cfg.get("val_seconds"))
    log(f"data: {len(tracks)} training tracks ({sum(t.length for t in tracks) / sr / 60:.1f} min), "
        f"{len(val)} validation tracks, loaded in {time.time() - t_load:.1f} s")

    model_cfg = dict(cfg["model_cfg"])
    if cfg["model"] == "student" and stems != STEMS:
        model_cfg.setdefault("stems", list(stems))  # a mask per stem but the last
    model = build_model(cfg["model"], model_cfg)
    if tuple(getattr(model, "stems", stems)) != stems:
        raise ValueError(f"the {cfg['model']} model separates {list(model.stems)}, the config asks for {list(stems)}")
    n_params = count_parameters(model)
    log(f"model: {cfg['model']} {model.cfg}, {n_params} parameters")
    if cfg.get("init") and not resume:
        ck = load_checkpoint(cfg["init"])
        init_cfg = build_model(ck["kind"], ck["model_cfg"]).cfg if ck["kind"] == cfg["model"] else None
        if init_cfg == model.cfg:
            model.load_state_dict(ck["model"])
        elif init_cfg is not None and _same_but_stems(init_cfg, model.cfg):
            widen_stems(model, ck["model"], ck["model_cfg"].get("stems") or list(STEMS))
        else:
            raise ValueError(f"{cfg['init']}: a {ck['kind']} {ck['model_cfg']}, not the {cfg['model']} {model.cfg} "
                             "this config trains")
        log(f"weights from {cfg['init']} (its step {ck['step']}, best {float(ck['best']):.2f} dB)")
    loss_fn = make_loss(cfg.get("loss", "l1"))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=1e-5)
    length = int(cfg["seconds"] * sr)
    lat = model_latency(model)
    sampler = StemSampler(tracks, stems, length + lat, AugmentConfig(**{
        k: tuple(v) if isinstance(v, list) else v for k, v in cfg["augment"].items()}), seed=int(cfg["seed"]))

    distill = cfg.get("distill")
    targets = online_teacher = None
    if distill and float(distill.get("weight", 0)) > 0 and distill.get("online"):
        # Online: the teacher separates each augmented batch as it is drawn. It costs a teacher
        # forward pass per step, but its targets are for mixtures it never trained on (cached
        # targets are for its own training tracks, which it has nearly memorised).
        online_teacher, _ = model_from_checkpoint(distill["teacher"])
        log(f"teacher {distill['teacher']}: online soft targets for every batch")
    elif distill and float(distill.get("weight", 0)) > 0:
        tpath = Path(distill["teacher"])
        cache = out / "teacher_targets.npz"
        if cache.is_file():
            z = np.load(cache)
            targets = {k: z[k] for k in z.files}
            log(f"teacher targets loaded from {cache}")
        else:
            teacher, _ = model_from_checkpoint(tpath)
            t0 = time.time()
            targets = teacher_targets(teacher, tracks, log=log)
            log(f"teacher targets computed in {time.time() - t0:.0f} s")
            np.savez(cache, **targets)
            del teacher
        name_index = [t.name for t in sampler.tracks]

    ema = make_ema(model, cfg.get("ema"))
    step, best, history = 0, -math.inf, []
    last = out / "last.pt"
    if resume and last.is_file():
        ck = load_checkpoint(last)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        step, best, history = int(ck["step"]), float(ck["best"]), list(ck["history"])
        st = ck["rng"]["sampler"]
        sampler.rng.bit_generator.state = st
        torch.set_rng_state(ck["torch_rng"])
        log(f"resumed from {last} at step {step} (best {best:.2f} dB)")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))

    steps = int(cfg["steps"])
    warm = int(cfg.get("warmup", 0))
    budget = float(cfg.get("minutes") or 0) * 60.0  # optional training-time budget (validation excluded)

    def progress_at(s, elapsed):
        p = (s - warm) / max(1, steps - warm)
        if budget:
            p = max(p, elapsed / budget)
        return min(1.0, max(0.0, p))

    def lr_at(s, elapsed=0.0):
        if s < warm:
            return cfg["lr"] * (s + 1) / warm
        p = progress_at(s, elapsed)
        return cfg["lr"] * (cfg["lr_final"] + (1 - cfg["lr_final"]) * 0.5 * (1 + math.cos(math.pi * p)))

    try:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, disable=not progress, dynamic_ncols=True, mininterval=2.0,
                   file=sys.stderr)
    except ImportError:  # pragma: no cover
        bar = None
    train_time = float(history[-1]["train_seconds"]) if history else 0.0
    run_loss = run_trust = None  # running means: the loss, the teacher's share where confidence-weighted
    finished = False
    while not finished:
        t_step = time.time()
        model.train()
        mix_np, ref_np, index = sampler.draw(cfg["batch"], augment=True, return_index=True,
                                             clean_frac=cfg.get("clean_frac", 0.5))
        mix = torch.from_numpy(mix_np)
        ref = torch.from_numpy(ref_np)
        est = model(mix)
        if lat:  # output delayed by the model's latency: compare est[t] with ref[t - lat]
            est = est[..., lat:]
            ref = ref[..., :-lat]
        truth_loss = loss_fn(est, ref, per_item=True)  # per excerpt, for the confidence blend below
        loss = truth_loss.mean()
        soft_t = picked = None  # soft targets, and which batch items they are for
        if online_teacher is not None:
            # The teacher costs ~8x a student step per item, so it labels only the first `items`
            # of each batch (random excerpts: the sampler shuffles and augments every item).
            picked = torch.arange(min(int(distill.get("items") or len(mix)), len(mix)))
            soft_t = online_targets(online_teacher, mix[picked])
        elif targets is not None:
            sel = np.nonzero(index[:, 0] >= 0)[0]
            if len(sel):
                soft = np.zeros((len(sel),) + ref_np.shape[1:], np.float32)
                for j, b in enumerate(sel):
                    ti, start, g = int(index[b, 0]), int(index[b, 1]), float(index[b, 2])
                    v = targets[name_index[ti]][:, start:start + ref_np.shape[-1]] * g
                    soft[j, 0, :, : v.shape[-1]] = v
                    soft[j, 1] = mix_np[b] - soft[j, 0]
                picked, soft_t = torch.from_numpy(sel), torch.from_numpy(soft)
        if soft_t is not None:
            if lat:
                soft_t = soft_t[..., :-lat]
            w = distill_weight(distill, progress_at(step, train_time))
            if distill.get("confidence_db") is None:
                loss = (1 - w) * loss + w * loss_fn(est[picked], soft_t)
            else:  # per excerpt: the teacher's share, scaled by its confidence; the rest stays on the truth
                trust = teacher_confidence(est[picked], soft_t, ref[picked], float(distill["confidence_db"]))
                item = trust * loss_fn(est[picked], soft_t, per_item=True) \
                    + (1 - trust) * truth_loss[picked]
                loss = (1 - w) * loss + w * item.mean()
                run_trust = float(trust.mean()) if run_trust is None else 0.9 * run_trust + 0.1 * float(trust.mean())
        lr_now = lr_at(step, train_time)
        for g in opt.param_groups:
            g["lr"] = lr_now
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        train_time += time.time() - t_step
        finished = step >= steps or (budget and train_time >= budget)
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss:.4f}", lr=f"{lr_now:.1e}")
        if step % int(cfg.get("log_every", 10)) == 0 and not progress:
            log(f"step {step}/{steps} loss {run_loss:.4f}")
        if step % int(cfg["val_every"]) == 0 or finished:
            elapsed = train_time
            t_val = time.time()
            validated = ema.module if ema is not None else model  # the weights best.pt will hold
            res = evaluate(validated, val, stems)
            score = float(np.mean(list(res["mean"].values())))
            entry = {"step": step, "loss": run_loss, "train_seconds": elapsed, "val_seconds": time.time() - t_val,
                     "mean": res["mean"], "median": res["median"]}
            if run_trust is not None:
                entry["teacher_trust"] = run_trust
            history.append(entry)
            msg = (f"step {step}: loss {run_loss:.4f}; validation SDR "
                   + ", ".join(f"{s} {res['mean'][s]:.2f} (median {res['median'][s]:.2f})" for s in res["mean"])
                   + f" dB; {elapsed / 60:.1f} min")
            log(msg) if bar is None else bar.write(msg)
            if score > best:
                best = score
                save_checkpoint(out / "best.pt", validated, None, step, cfg, best, history, _rng_state(sampler))
                (out / "best_metrics.json").write_text(json.dumps({"step": step, **res}, indent=1))
            save_checkpoint(last, model, opt, step, cfg, best, history, _rng_state(sampler), ema=ema)
            (out / "history.json").write_text(json.dumps(history, indent=1))
    if bar is not None:
        bar.close()
    log(f"done: {step} steps, {train_time / 60:.1f} min of training, best mean validation SDR {best:.2f} dB")
    return {"best": best, "history": history, "parameters": n_params, "out": str(out), "steps": step}
