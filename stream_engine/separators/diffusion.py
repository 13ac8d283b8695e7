"""The counterfactual diffusion separator (issue 28): vocals = what the mixture has and the
generated voice-free version of the song lacks.

The model (``training/diffusion.py``) generates the accompaniment magnitude given the mixture
with a few deterministic DDIM steps; ``samples`` draws from different seeds are averaged (as
masks). The generated magnitude becomes a mask on the mixture's STFT:

- ``ratio``: m = clip(A / |M|, 0, 1) (default; the model generates A in the mixture's units);
- ``wiener``: with the implied vocals V = max(|M| - A, 0), m = A^2 / (A^2 + V^2).

Vocals = iSTFT(M * (1 - m)) with the mixture's phase; accompaniment = the input minus the
vocals, so the stems sum to the mixture exactly.

Framing (offline only; the sampler costs far more than the live budgets allow): the engine
hands a long window (``frames`` STFT frames, 6 s by default); inside it the model runs on
chunks of the length it was trained on (64 frames), overlapping by ``chunk_overlap`` frames,
all chunks of a window in one batch; masks are crossfaded over the overlaps. Consecutive
engine windows are crossfaded by the framer.

Refining (a card with ``"refine": "spleeter"`` and weights trained with a prior,
``training/diffusion.py --refine-from``): Spleeter runs first on the same window (its offline
U-Nets, the window zero-padded to a length Spleeter takes) and its accompaniment estimate
(the window less Spleeter's vocals) is a fourth conditioning plane; the model denoises that
estimate rather than generating from the mixture alone. Its output changes Spleeter's own
stems by what the model moves away from the prior's ratio (``separate_full``), so a model that
copied its prior would return Spleeter's estimate. The separator then takes stereo
windows (Spleeter is a stereo model; the diffusion model still runs per channel). Spleeter is
the only prior: a card naming anything else is refused.

torch is imported here only (the engine core stays numpy). The weights are a state dict read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..profiles import pick_framing
from .base import Separator, SeparatorError, SeparatorSpec

NAME = "stemstream-diffusion"
STEMS = ("vocals", "accompaniment")
MASKS = ("ratio", "wiener")
PRIORS = ("spleeter",)  # separators a refining model may be conditioned on


def framing(card: dict, profile: str) -> dict:
    try:
        return pick_framing(card.get("profiles") or {}, profile)
    except ValueError:
        raise SeparatorError(f"{card.get('name', NAME)}: no framing for profile {profile!r} (it has "
                             f"{', '.join(card.get('profiles') or {}) or 'none'}); the diffusion sampler is "
                             f"for files only: use --profile offline") from None


class DiffusionSeparator(Separator):
    def __init__(self, weights: str | Path, card: dict, profile: str = "offline", threads: int | None = None,
                 device: str = "cpu", steps: int | None = None, samples: int | None = None,
                 mask: str | None = None, seed: int | None = None, framing_override: dict | None = None):
        try:
            import torch
        except ImportError as e:  # pragma: no cover
            raise SeparatorError(f"{weights}: the diffusion separator needs torch") from e
        from . import diffusion_net as D

        if device != "cpu":
            raise SeparatorError(f"{card.get('name', NAME)}: runs on the CPU only (asked for {device!r})")
        self._torch, self._D = torch, D
        torch.set_num_threads(int(threads) if threads else 1)
        self.path = Path(weights)
        try:
            self.model, ck = D.load_weights(self.path)
        except (ValueError, FileNotFoundError) as exc:
            raise SeparatorError(str(exc)) from None
        self.model.float()
        self.refine = card.get("refine")
        trained_with_prior = bool(ck["model_cfg"].get("refine"))
        if self.refine is not None and self.refine not in PRIORS:
            raise SeparatorError(f"{card.get('name', NAME)}: refine must be one of {', '.join(PRIORS)}, "
                                 f"not {self.refine!r}")
        if trained_with_prior != (self.refine is not None):
            said = "names no prior separator" if trained_with_prior else f"names {self.refine!r} as the prior"
            raise SeparatorError(f"{self.path.name}: the weights were trained {'with' if trained_with_prior else 'without'}"
                                 f" a prior separator but the card {said} (card field 'refine')")
        self.threads = int(threads) if threads else 1
        self._priors = {}  # Spleeter separators by frame count (built on first use)
        sampler = dict(card.get("sampler") or {})
        self.steps = int(steps if steps is not None else sampler.get("steps", 4))
        self.samples = int(samples if samples is not None else sampler.get("samples", 1))
        self.mask = mask or sampler.get("mask", "ratio")
        self.seed = int(seed if seed is not None else sampler.get("seed", 0))
        if self.steps < 1 or self.samples < 1:
            raise SeparatorError(f"{self.path.name}: steps and samples must be at least 1 "
                                 f"(got {self.steps}, {self.samples})")
        if self.mask not in MASKS:
            raise SeparatorError(f"{self.path.name}: mask must be one of {', '.join(MASKS)}, not {self.mask!r}")
        fr = {**framing(card, profile), **(framing_override or {})}
        self.chunk = int(ck["model_cfg"].get("frames", 64))
        self.chunk_overlap = int(fr.get("chunk_overlap", 16))
        self.frames = int(fr["frames"])
        if not 0 <= self.chunk_overlap < self.chunk or self.frames < self.chunk:
            raise SeparatorError(f"{self.path.name}: window of {self.frames} frames and chunk overlap "
                                 f"{self.chunk_overlap} do not fit {self.chunk}-frame chunks")
        n_fft, hop = D.N_FFT, D.HOP
        window = (self.frames - 1) * hop + n_fft
        lookahead = max(int(fr["lookahead_frames"]) * hop, n_fft - hop)
        self.spec = SeparatorSpec(card.get("name", NAME), STEMS, window=window, hop=int(fr["hop_frames"]) * hop,
                                  lookahead=lookahead, fade=int(fr.get("fade_frames", 0)) * hop,
                                  sample_rate=D.SAMPLE_RATE, channels=2 if self.refine else 1, card=card)
        if window - lookahead - self.spec.segment < n_fft - hop:
            raise SeparatorError(f"{self.path.name}: profile {profile!r} leaves too little past context")
        self.window_fn = torch.hann_window(n_fft)
        # overlap-add normalisation; the edges (less than n_fft - hop from either end) lie outside every segment
        self._inv_norm = _inv_norm(self.window_fn.numpy(), self.frames, hop)
        self._starts = self._chunk_starts()
        self._weights = self._chunk_weights()

    @classmethod
    def from_path(cls, path: str | Path, profile: str = "offline", threads: int | None = None,
                  device: str = "cpu", **kw) -> "DiffusionSeparator":
        path = Path(path)
        cpath = path.with_suffix(".json")
        try:
            card = json.loads(cpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SeparatorError(f"{cpath}: cannot read the model card ({exc})") from None
        from .card import load_card

        load_card(path, expected_format="diffusion")  # validates the card and the weights' sha256
        return cls(path, card, profile=profile, threads=threads, device=device, **kw)

    def _chunk_starts(self, frames: int | None = None) -> list[int]:
        frames = frames or self.frames
        stride = self.chunk - self.chunk_overlap
        starts = list(range(0, frames - self.chunk + 1, stride))
        if starts[-1] != frames - self.chunk:
            starts.append(frames - self.chunk)
        return starts

    def _chunk_weights(self, frames: int | None = None) -> np.ndarray:
        """Per chunk, per frame: linear crossfade weights over the overlaps, normalised to sum to one."""
        frames = frames or self.frames
        starts = self._chunk_starts(frames)
        w = np.zeros((len(starts), frames), np.float32)
        ramp = np.ones(self.chunk, np.float32)
        if self.chunk_overlap:
            r = (np.arange(self.chunk_overlap, dtype=np.float32) + 0.5) / self.chunk_overlap
            ramp[: self.chunk_overlap] = r
            ramp[-self.chunk_overlap:] = r[::-1]
        for i, s in enumerate(starts):
            w[i, s : s + self.chunk] = ramp
        return w / w.sum(axis=0, keepdims=True)

    def prior_accompaniment(self, window: np.ndarray) -> np.ndarray:
        """(B, C, N) -> the prior separator's accompaniment estimate (B, C, N): the input less Spleeter's
        vocals, Spleeter run on the whole window zero-padded at both ends to a length it takes."""
        from .spleeter import FRAME_MULTIPLE, HOP as S_HOP, N_FFT as S_FFT, SpleeterSeparator

        b, c, n = window.shape
        if c not in (1, 2):
            raise SeparatorError(f"{self.spec.name}: the prior separator takes mono or stereo, not {c} channels")
        frames = -(-max(n - S_FFT, 0) // S_HOP) + 1
        frames = max(1, -(-frames // FRAME_MULTIPLE)) * FRAME_MULTIPLE
        if frames not in self._priors:
            self._priors[frames] = SpleeterSeparator(
                "offline", threads=self.threads,
                framing_override={"frames": frames, "hop_frames": frames // 2, "fade_frames": 0,
                                  "lookahead_frames": 4})
        padded_n = (frames - 1) * S_HOP + S_FFT
        left = (padded_n - n) // 2
        stereo = window if c == 2 else np.repeat(window[:, :1], 2, axis=1)  # Spleeter takes stereo
        padded = np.zeros((b, 2, padded_n), np.float32)
        padded[:, :, left:left + n] = stereo
        vocals = self._priors[frames]._separate_window(padded)[:, 0, :, left:left + n]
        return (stereo - vocals)[:, :c]

    def accompaniment_mask(self, mag, prior_mag=None):
        """Mixture magnitudes (B, BINS, frames) torch -> mask (B, BINS, frames) in [0, 1], averaged over samples.

        ``prior_mag`` (refining): the prior's accompaniment magnitudes, the same shape."""
        torch, D = self._torch, self._D
        if (prior_mag is None) != (self.refine is None):
            raise SeparatorError(f"{self.spec.name}: {'a refining model needs' if self.refine else 'no'} "
                                 f"prior accompaniment")
        b, _, frames = mag.shape
        if frames < self.chunk:
            raise SeparatorError(f"{self.spec.name}: {frames} frames is less than one {self.chunk}-frame chunk")
        starts, weights = (self._starts, self._weights) if frames == self.frames else (
            self._chunk_starts(frames), self._chunk_weights(frames))
        chunks = torch.stack([mag[:, :, s : s + self.chunk] for s in starts], dim=1)  # (B, K, F, C)
        chunks = chunks.reshape(b * len(starts), D.BINS, self.chunk)
        prior_chunks = None
        if prior_mag is not None:
            prior_chunks = torch.stack([prior_mag[:, :, s : s + self.chunk] for s in starts], dim=1).reshape(
                b * len(starts), D.BINS, self.chunk)
        cond, _, _ = D.features(chunks, prior_mag=prior_chunks)
        masks = torch.zeros_like(chunks)
        for k in range(self.samples):
            x0 = D.ddim_sample(self.model, cond, steps=self.steps, seed=self.seed + k)
            r = D.x0_to_ratio(x0)  # generated accompaniment magnitude / mixture magnitude
            if self.mask == "ratio":
                m = r
            else:  # Wiener with the implied vocals |M| - A = (1 - r) |M|
                m = r ** 2 / (r ** 2 + (1.0 - r) ** 2 + D.EPS)
            masks += m
        masks = (masks / self.samples).reshape(b, len(starts), D.BINS, self.chunk)
        w = torch.from_numpy(weights)
        full = torch.zeros_like(mag)
        for i, s in enumerate(starts):
            full[:, :, s : s + self.chunk] += masks[:, i] * w[i, s : s + self.chunk]
        return full

    def separate(self, window: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.segment_of(self.separate_full(window)))

    def separate_full(self, window: np.ndarray) -> np.ndarray:
        """(B, C, N) -> (B, stems, C, N) over the whole input; N need not be the spec's window
        (whole excerpts in scripts/diffusion_sweep.py). The first and last n_fft - hop samples are
        not fully covered by frames."""
        torch, D = self._torch, self._D
        b, c, n = window.shape
        x = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)).reshape(b * c, n)
        prior_mag = prior = None
        with torch.inference_mode():
            spec = torch.stft(x, D.N_FFT, D.HOP, window=self.window_fn, center=False, return_complex=True)
            if self.refine:
                prior = self.prior_accompaniment(window.astype(np.float32))
                prior_mag = torch.stft(torch.from_numpy(prior.reshape(b * c, n)), D.N_FFT, D.HOP,
                                       window=self.window_fn, center=False, return_complex=True).abs()[:, : D.BINS]
            mask = self.accompaniment_mask(spec.abs()[:, : D.BINS], prior_mag)
            mask = torch.cat([mask, mask[:, -1:]], dim=1)  # the Nyquist bin takes bin 1023's mask
            if self.refine:
                # Refining changes the prior's own estimate by what the model moves: vocals = Spleeter's
                # vocals + the mixture under (prior ratio - generated ratio). A model that copies its
                # prior returns Spleeter's stems exactly; masking the mixture with the copied ratio
                # instead cost 0.4 dB (a 2048-point ratio with the mixture's phase is not Spleeter's
                # 4096-point masks).
                ratio = (prior_mag / (spec.abs()[:, : D.BINS] + D.EPS)).clamp(0.0, 1.0)
                vocal_gain = torch.cat([ratio, ratio[:, -1:]], dim=1) - mask
            else:
                vocal_gain = 1.0 - mask
            frames = torch.fft.irfft(spec * vocal_gain, n=D.N_FFT, dim=1).transpose(1, 2) * self.window_fn
        ola = _overlap_add(frames.numpy(), D.HOP)
        norm = self._inv_norm if ola.shape[-1] == self._inv_norm.shape[-1] else _inv_norm(
            self.window_fn.numpy(), frames.shape[1], D.HOP)
        vocals = (ola * norm)[..., :n]
        vocals = np.pad(vocals, ((0, 0), (0, n - vocals.shape[-1]))).reshape(b, c, n)
        if prior is not None:
            vocals = vocals + (window - prior)
        return np.stack([vocals, window - vocals], axis=1).astype(np.float32)  # stems sum to the input

    def describe(self) -> str:
        return (super().describe() + f"; DDIM {self.steps} step(s) x {self.samples} sample(s), {self.mask} mask, "
                f"seed {self.seed}" + (f"; refines {self.refine}'s accompaniment estimate" if self.refine else ""))


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """(..., T, n_fft) frames at ``hop`` -> (..., (T - 1) * hop + n_fft) samples (n_fft a multiple of hop)."""
    n_fft = frames.shape[-1]
    per = n_fft // hop
    t = frames.shape[-2]
    blocks = frames.reshape(frames.shape[:-1] + (per, hop))
    out = np.zeros(frames.shape[:-2] + (t + per - 1, hop), np.float32)
    for j in range(per):
        out[..., j : j + t, :] += blocks[..., j, :]
    return out.reshape(frames.shape[:-2] + ((t + per - 1) * hop,))


def _inv_norm(window_fn: np.ndarray, frames: int, hop: int) -> np.ndarray:
    """1 / the overlap-added squared window; 0 where (at the edges) it nearly vanishes."""
    norm = _overlap_add(np.broadcast_to(window_fn ** 2, (frames, window_fn.shape[0])), hop)
    return np.where(norm > 1e-3, 1.0 / np.maximum(norm, 1e-3), 0.0).astype(np.float32)
