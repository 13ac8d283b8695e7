"""Small synthetic stems and tiny exported models, for tests and smoke runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synth_track(rng: np.random.Generator, seconds: float, sr: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """A 'vocal' (gliding harmonic tone with an envelope) and an 'accompaniment' (chord + noise bursts)."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(180, 400) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voc = sum(np.sin(k * phase) / k for k in range(1, 6))
    voc *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t) ** 2
    acc = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(60, 150, 3))
    acc += rng.standard_normal(n) * (np.sin(2 * np.pi * 4 * t) > 0.6) * 0.5
    voc = 0.2 * voc / np.sqrt(np.mean(voc ** 2))
    acc = 0.2 * acc / np.sqrt(np.mean(acc ** 2))
    return voc.astype(np.float32), acc.astype(np.float32)


def make_stem_folder(root: str | Path, tracks: int = 4, seconds: float = 2.0, sr: int = 16000, seed: int = 0,
                     fmt: str = "wav", ragged: bool = True) -> Path:
    """Write ``root/<track>/{vocals,accompaniment}.<fmt>``; with ``ragged`` the stems differ in length."""
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(seed)
    for i in range(tracks):
        d = root / f"track{i:02d}"
        d.mkdir(parents=True, exist_ok=True)
        voc, acc = synth_track(rng, seconds, sr)
        if ragged:
            acc = acc[: len(acc) - 37 * (i + 1)]
        sf.write(d / f"vocals.{fmt}", voc, sr)
        sf.write(d / f"accompaniment.{fmt}", acc, sr)
    return root


def tiny_student(seed: int = 0, **kw):
    import torch

    from .models import StreamingStudent

    torch.manual_seed(seed)
    cfg = dict(n_fft=64, hop=16, ctx_fft=128, hidden=24, layers=2)
    cfg.update(kw)
    m = StreamingStudent(**cfg).eval()
    with torch.no_grad():  # random weights that give a non-trivial mask
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


def tiny_teacher(seed: int = 0):
    import torch

    from .models import TFCTDFNet

    torch.manual_seed(seed)
    return TFCTDFNet(n_fft=256, hop=64, channels=4, growth=4, levels=2, tfc_layers=1, bottleneck=4).eval()


def fake_checkpoint(model, kind: str) -> dict:
    return {"kind": kind, "step": 0, "history": [],
            "config": {"sample_rate": 16000, "data": "synthetic", "preset": "test", "seed": 0}}
