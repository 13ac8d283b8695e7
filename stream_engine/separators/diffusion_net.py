"""The counterfactual diffusion network and its sampler: what the separator runs
(``separators/diffusion.py``) and what training fits (``training/diffusion.py``, whose
docstring says what the model generates and why).

torch is imported inside the functions that need it, so listing models stays torch-free.
"""

from __future__ import annotations

import math
import os


KIND = "counterfactual-diffusion"
SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 512
BINS = 1024  # 0..1023; the Nyquist bin (1024) reuses bin 1023's mask
EPS = 1e-8

DEFAULT_CFG = {
    "fold": 8,  # frequency bins folded into channels at the input (1024 bins -> 128 rows)
    "channels": [32, 64, 96, 112],
    "t_dim": 128,
    "heads": 4,
    "frames": 64,  # STFT frames per training window (0.74 s at 44.1 kHz)
    "refine": False,  # True: one more conditioning channel, another separator's accompaniment estimate
    # refining only: the network's output is a correction to the prior in x0's units (x0 = prior + output),
    # trained on x0's error, instead of v; with the output layer at zero it starts as the prior itself
    "residual": False,
}


# --------------------------------------------------------------------------- network

def _torch():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    return torch, nn, F


def build_model(cfg: dict | None = None):
    """The denoiser U-Net; ``cfg`` overrides DEFAULT_CFG."""
    torch, nn, F = _torch()
    c = dict(DEFAULT_CFG, **(cfg or {}))

    def norm(ch):
        return nn.GroupNorm(min(8, ch), ch)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout, t_dim):
            super().__init__()
            self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.t = nn.Linear(t_dim, cout)
            self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, temb):
            h = self.c1(F.silu(self.n1(x)))
            h = h + self.t(temb)[:, :, None, None]
            h = self.c2(F.silu(self.n2(h)))
            return h + self.skip(x)

    class Attention(nn.Module):
        def __init__(self, ch, heads):
            super().__init__()
            self.n, self.heads = norm(ch), heads
            self.qkv, self.out = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

        def forward(self, x):
            b, ch, f, t = x.shape
            q, k, v = self.qkv(self.n(x)).reshape(b, 3, self.heads, ch // self.heads, f * t).unbind(1)
            h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
            return x + self.out(h.transpose(-1, -2).reshape(b, ch, f, t))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = c
            fold, chs, t_dim = c["fold"], list(c["channels"]), c["t_dim"]
            self.fold = fold
            # inputs per bin: noisy x_t, mixture (same form), mixture log-magnitude, frequency coordinate
            # (and, refining, the prior separator's accompaniment ratio, last)
            self.n_in = input_channels(c)
            self.inp = nn.Conv2d(self.n_in * fold, chs[0], 3, padding=1)
            self.temb = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
            self.down = nn.ModuleList()
            self.pool = nn.ModuleList()
            for i, ch in enumerate(chs):
                self.down.append(ResBlock(chs[i - 1] if i else chs[0], ch, t_dim))
                if i < len(chs) - 1:
                    self.pool.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            self.mid1 = ResBlock(chs[-1], chs[-1], t_dim)
            self.attn = Attention(chs[-1], c["heads"])
            self.mid2 = ResBlock(chs[-1], chs[-1], t_dim)
            self.up = nn.ModuleList()
            self.unpool = nn.ModuleList()
            for i in reversed(range(len(chs))):
                cin = chs[-1] if i == len(chs) - 1 else chs[i]
                self.up.append(ResBlock(cin + chs[i], chs[i], t_dim))
                if i:
                    self.unpool.append(nn.ConvTranspose2d(chs[i], chs[i - 1], 4, stride=2, padding=1))
            self.out_norm = norm(chs[0])
            self.out = nn.Conv2d(chs[0], fold, 3, padding=1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def time_embedding(self, t):
            half = c["t_dim"] // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            ang = (t.float()[:, None] * 1000.0) * freqs[None]
            return self.temb(torch.cat([torch.sin(ang), torch.cos(ang)], dim=1))

        def forward(self, x_t, cond, t):
            """x_t: (B, 1, BINS, T) noisy target; cond: (B, 3 or 4 refining, BINS, T); t: (B,) in [0, 1]
            -> v (B, 1, BINS, T)."""
            b, _, nb, nt = x_t.shape
            if cond.shape[1] != self.n_in - 1:
                raise ValueError(f"the model takes {self.n_in - 1} conditioning channels, got {cond.shape[1]} "
                                 f"({'a refining model needs the prior' if self.n_in == 5 else 'no prior here'})")
            h = torch.cat([x_t, cond], dim=1)  # (B, n_in, BINS, T)
            h = h.reshape(b, self.n_in, nb // self.fold, self.fold, nt).permute(0, 1, 3, 2, 4)
            h = self.inp(h.reshape(b, self.n_in * self.fold, nb // self.fold, nt))
            temb = self.time_embedding(t)
            skips = []
            for i, block in enumerate(self.down):
                h = block(h, temb)
                skips.append(h)
                if i < len(self.pool):
                    h = self.pool[i](h)
            h = self.mid2(self.attn(self.mid1(h, temb)), temb)
            for j, block in enumerate(self.up):
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
                if j < len(self.unpool):
                    h = self.unpool[j](h)
            h = self.out(F.silu(self.out_norm(h)))  # (B, fold, BINS / fold, T)
            return h.reshape(b, self.fold, nb // self.fold, nt).permute(0, 2, 1, 3).reshape(b, 1, nb, nt)

    return UNet()


def input_channels(cfg: dict) -> int:
    """Input planes per bin: x_t and the three conditioning planes, plus the prior when refining."""
    return 5 if cfg.get("refine") else 4


def widen_for_refine(state: dict, cfg: dict, residual: bool = False) -> tuple[dict, dict]:
    """An unrefined model's state dict and settings -> a refining model's, same function at first.

    The first convolution's input is (plane, fold position) flattened plane-major, so the prior's
    ``fold`` new input channels are appended at the end, with zero weights: until training moves
    them the refining model computes exactly what the unrefined one did, whatever the prior.

    ``residual``: the output is read as a correction to the prior (cfg "residual"); the output
    layer is zeroed, so the refining model starts as the prior itself (and the trunk keeps the
    unrefined model's features).
    """
    import torch

    if cfg.get("refine"):
        raise ValueError("the model already takes a prior")
    w = state["inp.weight"]
    fold = int(cfg.get("fold", DEFAULT_CFG["fold"]))
    if w.shape[1] != 4 * fold:
        raise ValueError(f"inp.weight has {w.shape[1]} input channels, expected {4 * fold}")
    out = dict(state)
    out["inp.weight"] = torch.cat([w, torch.zeros(w.shape[0], fold, *w.shape[2:], dtype=w.dtype)], dim=1)
    if residual:
        out["out.weight"] = torch.zeros_like(state["out.weight"])
        out["out.bias"] = torch.zeros_like(state["out.bias"])
    return out, dict(cfg, refine=True, residual=bool(residual))


def is_residual(model) -> bool:
    return bool(getattr(model, "cfg", {}).get("residual"))


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- features

def stft_mag(audio, torch=None):
    """(B, N) float waveform -> complex STFT (B, BINS + 1, T) (torch)."""
    import torch as _t

    win = _t.hann_window(N_FFT)
    return _t.stft(audio, N_FFT, HOP, window=win, center=False, return_complex=True)


def features(mix_mag, acc_mag=None, prior_mag=None):
    """Mixture (and accompaniment) magnitudes (B, BINS, T) -> cond (B, 3, BINS, T), weight (B, 1, BINS, T),
    x0 (B, 1, BINS, T) or None.

    ``prior_mag``: another separator's accompaniment estimate (refining): a fourth conditioning plane,
    its ratio to the mixture in x0's form (2 clip(|A_prior| / |M|, 0, 1) - 1), so a model that copied
    that plane to its output would reproduce the prior separator's accompaniment.

    The generated quantity is the accompaniment's magnitude in the mixture's units: its ratio to
    the mixture, clipped to [0, 1], as x0 = 2 * ratio - 1 (about half the bins near 1: the
    counterfactual keeps what the mixture has there). ``weight`` (compressed mixture magnitude,
    mean 1 per window) makes the loss care about the bins that carry the signal, not the
    ratios of near-silent ones.
    """
    import torch

    ref = mix_mag.flatten(1).amax(dim=1).clamp_min(1e-5)
    m = mix_mag / ref[:, None, None]
    mix_c = 2.0 * m.clamp_min(0).sqrt() - 1.0
    logm = (torch.log(m + 1e-4) + 4.6) / 4.6  # log(1e-4) = -9.2: about [-1, 1]
    freq = torch.linspace(-1.0, 1.0, mix_mag.shape[1])[None, :, None].expand_as(mix_mag)
    planes = [mix_c, logm, freq]
    if prior_mag is not None:
        planes.append(2.0 * (prior_mag / (mix_mag + EPS)).clamp(0.0, 1.0) - 1.0)
    cond = torch.stack(planes, dim=1)
    w = m.clamp_min(0).sqrt() + 0.02
    weight = (w / w.mean(dim=(1, 2), keepdim=True))[:, None]
    x0 = None
    if acc_mag is not None:
        ratio = (acc_mag / (mix_mag + EPS)).clamp(0.0, 1.0)
        x0 = (2.0 * ratio - 1.0)[:, None]
    return cond, weight, x0


def x0_to_ratio(x0):
    """Inverse of the target form: (B, 1, BINS, T) -> the accompaniment's ratio to the mixture (B, BINS, T)."""
    return ((x0[:, 0] + 1.0) * 0.5).clamp(0.0, 1.0)


def alpha_sigma(t):
    import torch

    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


T_MIN, T_MAX = 1e-3, 0.999


def diffusion_loss(model, cond, x0, gen=None, weight=None):
    """v-prediction MSE at uniformly drawn t (cosine schedule), weighted per bin if ``weight``."""
    import torch

    b = x0.shape[0]
    t = torch.rand(b, generator=gen) * (T_MAX - T_MIN) + T_MIN
    eps = torch.randn(x0.shape, generator=gen)
    a, s = alpha_sigma(t)
    a, s = a[:, None, None, None], s[:, None, None, None]
    z = a * x0 + s * eps
    if is_residual(model):  # x0 = the prior (the last conditioning plane) + the output; x0's error
        err = (cond[:, -1:] + model(z, cond, t) - x0) ** 2
    else:
        v = a * eps - s * x0
        err = (model(z, cond, t) - v) ** 2
    return torch.mean(err if weight is None else err * weight)


def ddim_sample(model, cond, steps: int = 4, seed: int = 0):
    """Deterministic DDIM (eta = 0) from t = T_MAX to 0 in ``steps`` steps; returns x0 (B, 1, BINS, T).

    The starting noise comes from a generator seeded with ``seed``: the same seed, the same output.
    """
    import torch

    b, _, nb, nt = cond.shape
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn((b, 1, nb, nt), generator=gen)
    ts = torch.linspace(T_MAX, 0.0, steps + 1)
    x0 = z
    residual = is_residual(model)
    with torch.no_grad():
        for i in range(steps):
            t, t_next = ts[i], ts[i + 1]
            a, s = alpha_sigma(t)
            out = model(z, cond, t.expand(b))
            if residual:  # (s > 0: t never reaches 0 before the last step's end)
                x0 = (cond[:, -1:] + out).clamp(-1.0, 1.0)
                eps = (z - a * x0) / s
            else:
                x0 = (a * z - s * out).clamp(-1.0, 1.0)
                eps = s * z + a * out
            a_n, s_n = alpha_sigma(t_next)
            z = a_n * x0 + s_n * eps
    return x0


def load_weights(path: str | os.PathLike, prefer_ema: bool = True):
    """A model from a training checkpoint or a bundled weights file (weights_only load); eval mode."""
    from .weights import read_checkpoint

    ck = read_checkpoint(path)
    if ck.get("kind") != KIND:
        raise ValueError(f"{path}: a {ck.get('kind')!r} checkpoint, not a {KIND!r} one")
    model = build_model(ck["model_cfg"])
    state = ck.get("ema") if prefer_ema and ck.get("ema") else ck["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{path}: the weights do not fit the model settings ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model, ck
