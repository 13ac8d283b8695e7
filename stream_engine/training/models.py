"""Models: a TFC-TDF U-Net teacher (non-causal) and a streaming student.

Both take waveforms and return waveforms. What is exported holds no complex
tensors: the teacher's STFT and iSTFT are real ``conv1d`` / ``conv_transpose1d``,
the student's ``step`` uses matmuls with cos/sin bases (its training-only
``forward`` uses FFTs for speed).

Shapes: audio ``(B, C, N)`` -> stems ``(B, S, C, N)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _dft_bases(n_fft: int, window: np.ndarray, n_bins: int):
    """Analysis basis (2*n_bins, n_fft): rows cos then -sin, windowed.
    Synthesis basis (2*n_bins, n_fft): inverse real DFT rows times the synthesis window."""
    n = np.arange(n_fft)
    k = np.arange(n_bins)[:, None]
    ang = 2 * np.pi * k * n / n_fft
    ana = np.concatenate([np.cos(ang) * window, -np.sin(ang) * window], 0)
    # inverse rDFT: x[n] = 1/N * sum_k c_k (Re X_k cos - Im X_k sin), c_k = 1 for DC/Nyquist else 2
    c = np.full((n_bins, 1), 2.0)
    c[0] = 1.0
    if n_fft % 2 == 0 and n_bins == n_fft // 2 + 1:
        c[-1] = 1.0
    syn = np.concatenate([c * np.cos(ang), -c * np.sin(ang)], 0) / n_fft
    return ana.astype(np.float32), syn.astype(np.float32)


def periodic_hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


def asymmetric_windows(n: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Low-latency analysis / synthesis pair of length ``n`` (Mauler and Martin, 2007).

    Analysis: a sqrt-hann rising over ``n - hop`` samples, falling over the last ``hop``.
    Synthesis: zero but for the last ``2 * hop`` samples, where analysis * synthesis is a
    periodic hann of ``2 * hop``; at hop ``hop`` those sum to one (perfect reconstruction)."""
    wa = np.zeros(n)
    wa[: n - hop] = np.sqrt(periodic_hann(2 * (n - hop))[: n - hop])
    wa[n - hop:] = np.sqrt(periodic_hann(2 * hop)[hop:])
    ws = np.zeros(n)
    tail = wa[n - 2 * hop:]
    ws[n - 2 * hop:] = periodic_hann(2 * hop) / np.maximum(tail, 1e-8)
    return wa, ws


class ConvSTFT(nn.Module):
    """STFT / iSTFT as conv1d / conv_transpose1d. Spectra are (B, 2, F, T): re, im."""

    def __init__(self, n_fft: int, hop: int, n_bins: int | None = None, window: str = "hann", center: bool = True):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.n_bins = n_bins or n_fft // 2 + 1
        self.center = center
        if window == "hann":
            wa = periodic_hann(n_fft)
            ws = wa
        else:  # sqrt-hann for both
            wa = np.sqrt(periodic_hann(n_fft))
            ws = wa
        ana, syn = _dft_bases(n_fft, wa, self.n_bins)
        syn = syn * ws[None, :]
        self.register_buffer("ana", torch.from_numpy(ana)[:, None, :], persistent=False)
        self.register_buffer("syn", torch.from_numpy(syn.astype(np.float32))[:, None, :], persistent=False)
        self.wsq = (wa * ws).astype(np.float64)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, N) -> (B, 2, F, T)
        B = x.shape[0]
        x = x[:, None, :]
        if self.center:
            p = self.n_fft // 2
            x = F.pad(x, (p, p), mode="reflect")
        y = F.conv1d(x, self.ana, stride=self.hop)  # (B, 2F, T)
        return y.reshape(B, 2, self.n_bins, -1)

    def envelope(self, frames: int, device=None) -> torch.Tensor:
        n = self.n_fft + self.hop * (frames - 1)
        env = np.zeros(n)
        for i in range(frames):
            env[i * self.hop: i * self.hop + self.n_fft] += self.wsq
        return torch.from_numpy(np.maximum(env, 1e-8).astype(np.float32)).to(device)

    def istft(self, spec: torch.Tensor, length: int, env: torch.Tensor | None = None) -> torch.Tensor:
        # spec (B, 2, F, T) -> (B, length)
        B, _, Fb, T = spec.shape
        y = F.conv_transpose1d(spec.reshape(B, 2 * Fb, T), self.syn, stride=self.hop)[:, 0]
        if env is None:
            env = self.envelope(T, spec.device)
        y = y / env
        if self.center:
            p = self.n_fft // 2
            y = y[:, p: p + length]
        else:
            y = y[:, :length]
        return y


# ---------------------------------------------------------------------- teacher


class TFC(nn.Module):
    """Time-frequency convolutions: a few 3x3 conv + BN + ReLU layers (densely connected)."""

    def __init__(self, c_in: int, growth: int, layers: int):
        super().__init__()
        self.convs = nn.ModuleList()
        c = c_in
        for _ in range(layers):
            self.convs.append(nn.Sequential(nn.Conv2d(c, growth, 3, padding=1, bias=False), nn.BatchNorm2d(growth),
                                            nn.ReLU()))
            c += growth
        self.out_channels = growth

    def forward(self, x):
        feats = [x]
        for conv in self.convs:
            y = conv(torch.cat(feats, 1) if len(feats) > 1 else feats[0])
            feats.append(y)
        return feats[-1]


class TDF(nn.Module):
    """Time-distributed fully connected layers over the frequency axis (shared over channels and time)."""

    def __init__(self, channels: int, bins: int, bottleneck: int):
        super().__init__()
        hid = max(bins // bottleneck, 16)
        self.net = nn.Sequential(nn.Linear(bins, hid, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                                 nn.Linear(hid, bins, bias=False), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x):
        # x (B, C, T, F): Linear acts on F
        return self.net(x)


class TFCTDF(nn.Module):
    def __init__(self, c_in: int, c_out: int, bins: int, layers: int, bottleneck: int):
        super().__init__()
        self.tfc = TFC(c_in, c_out, layers)
        self.tdf = TDF(c_out, bins, bottleneck)

    def forward(self, x):
        x = self.tfc(x)
        return x + self.tdf(x)


class TFCTDFNet(nn.Module):
    """TFC-TDF U-Net (Choi et al., ISMIR 2020), mono, predicts the vocals' complex spectrogram.

    The accompaniment is the mixture minus the vocals, so the stems always sum
    to the input. Non-causal: sees the whole input window.
    Layout inside: (B, C, T, F), frequency last so the TDF Linear acts on it.
    """

    stems = ("vocals", "accompaniment")

    def __init__(self, n_fft: int = 1024, hop: int = 256, channels: int = 16, growth: int = 16, levels: int = 4,
                 tfc_layers: int = 2, bottleneck: int = 8, bins: int | None = None):
        super().__init__()
        self.cfg = dict(n_fft=n_fft, hop=hop, channels=channels, growth=growth, levels=levels, tfc_layers=tfc_layers,
                        bottleneck=bottleneck, bins=bins)
        self.n_fft, self.hop = n_fft, hop
        self.bins = bins or n_fft // 2  # drop the Nyquist bin (multiple of 2**levels)
        self.stft_mod = ConvSTFT(n_fft, hop, n_bins=n_fft // 2 + 1)
        self.levels = levels
        self.first = nn.Sequential(nn.Conv2d(2, channels, 1), nn.BatchNorm2d(channels), nn.ReLU())
        self.enc = nn.ModuleList()
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        c, f = channels, self.bins
        chans = []
        for _ in range(levels):
            self.enc.append(TFCTDF(c, c, f, tfc_layers, bottleneck))
            chans.append((c, f))
            self.down.append(nn.Sequential(nn.Conv2d(c, c + growth, 2, stride=2, bias=False),
                                           nn.BatchNorm2d(c + growth), nn.ReLU()))
            c, f = c + growth, f // 2
        self.mid = TFCTDF(c, c, f, tfc_layers, bottleneck)
        for cs, fs in reversed(chans):
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c, cs, 2, stride=2, bias=False), nn.BatchNorm2d(cs),
                                         nn.ReLU()))
            self.dec.append(TFCTDF(2 * cs, cs, fs, tfc_layers, bottleneck))
            c = cs
        self.last = nn.Conv2d(c, 2, 1)

    def pad_length(self, n: int) -> int:
        """Frames must be a multiple of 2**levels: the padded sample count for n input samples."""
        m = 2 ** self.levels
        frames = -(-n // self.hop) + 1
        frames = int(math.ceil(frames / m) * m)
        return (frames - 1) * self.hop

    def spec_forward(self, X: torch.Tensor) -> torch.Tensor:
        """X (B, 2, F+1, T) mixture spectrum -> vocals spectrum, same shape."""
        x = X[:, :, : self.bins].transpose(2, 3)  # (B, 2, T, F)
        x = self.first(x)
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = up(x)
            x = dec(torch.cat([x, skip], 1))
        v = self.last(x).transpose(2, 3)  # (B, 2, F, T)
        return F.pad(v, (0, 0, 0, X.shape[2] - self.bins))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        B, C, N = audio.shape
        Np = self.pad_length(N)
        x = audio.reshape(B * C, N)
        if Np > N:
            x = F.pad(x, (0, Np - N))
        X = self.stft_mod.stft(x)
        V = self.spec_forward(X)
        v = self.stft_mod.istft(V, Np)[:, :N]
        v = v.reshape(B, C, N)
        return torch.stack([v, audio - v], 1)


# ---------------------------------------------------------------------- student


class StreamingStudent(nn.Module):
    """Low-latency streaming separator: per-hop STFT frame -> GRU -> complex mask -> iSTFT frame, overlap-added.

    Analysis frame: ``n_fft`` samples, sqrt-Hann; hop ``hop``. A second, longer
    analysis window (``ctx_fft`` samples ending at the same sample) gives finer
    frequency resolution to the features without adding latency. Output segment
    of a call: the ``hop`` samples that end ``latency`` samples before the
    newest input sample (``n_fft - hop``; ``hop`` with ``asym``).

    With ``asym`` (Mauler and Martin, 2007; Wang et al., 2022) the analysis
    window is ``n_fft`` long and falls to zero over its last ``hop`` samples, and
    the synthesis window spans only the last ``2 * hop`` samples: the mask gets
    the frequency resolution of ``n_fft`` while the latency stays ``hop``
    (oracle ratio mask on mir1k/valid: 10.1 dB for 1024/128 asymmetric against
    8.7 dB for the symmetric 256/128 grid, at the same 8 ms).

    Two equivalent modes:
    - ``forward(audio)``: whole signal at once (training), FFT-based STFT, GRU over time;
    - ``step(window, h, ola)``: one hop (export/streaming), state in and out.
    ``window`` holds the last ``ctx_fft`` input samples (``window`` of the spec).
    """

    stems = ("vocals", "accompaniment")

    def __init__(self, n_fft: int = 256, hop: int = 128, ctx_fft: int = 512, hidden: int = 256, layers: int = 2,
                 asym: bool = False, channels: int = 1, stems: tuple[str, ...] | list[str] | None = None):
        super().__init__()
        self.cfg = dict(n_fft=n_fft, hop=hop, ctx_fft=ctx_fft, hidden=hidden, layers=layers)
        if asym:  # only when set, so the configs of symmetric checkpoints stay as they were
            self.cfg["asym"] = True
        if channels != 1:  # joint channels: one GRU sees every channel's spectrum, one mask per channel
            self.cfg["channels"] = channels
        if stems is not None and tuple(stems) != type(self).stems:
            # a mask for every stem but the last; the last is the mixture minus the others, so the
            # stems always sum to the mixture (two stems: vocals, and accompaniment = the rest)
            if len(stems) < 2:
                raise ValueError(f"a student separates at least two stems, not {list(stems)}")
            self.stems = tuple(stems)
            self.cfg["stems"] = list(stems)
        self.n_masks = len(self.stems) - 1
        self.channels = channels
        self.n_fft, self.hop, self.ctx_fft = n_fft, hop, ctx_fft
        self.asym = asym
        self.hidden, self.layers = hidden, layers
        self.n_bins = n_fft // 2 + 1
        self.ctx_bins = ctx_fft // 2 + 1 if ctx_fft else 0
        # synthesis frames span syn_len samples: all of n_fft, or the last 2 * hop with asymmetric windows
        self.syn_len = 2 * hop if asym else n_fft
        if asym:
            w, ws = asymmetric_windows(n_fft, hop)
            ana, syn = _dft_bases(n_fft, w, self.n_bins)
            syn = (syn * ws[None, :])[:, n_fft - self.syn_len:]  # the product of the windows is a 2*hop hann
        else:
            w = np.sqrt(periodic_hann(n_fft))
            ana, syn = _dft_bases(n_fft, w, self.n_bins)
            # synthesis: window, and 1/sum(w^2 over overlapping frames) = hop / (n_fft/2) for sqrt-hann
            norm = 1.0 / (n_fft / (2 * hop))
            syn = syn * w[None, :] * norm
        self.register_buffer("ana", torch.from_numpy(ana), persistent=False)  # (2F, n_fft)
        self.register_buffer("syn", torch.from_numpy(syn.astype(np.float32)), persistent=False)  # (2F, syn_len)
        # the same windows for forward()'s FFTs (training speed: a 1024-point matmul per hop is 8x redundant)
        self.register_buffer("win_ana", torch.from_numpy(w.astype(np.float32)), persistent=False)
        wsyn = ws[n_fft - self.syn_len:] if asym else w * norm
        self.register_buffer("win_syn", torch.from_numpy(wsyn.astype(np.float32)), persistent=False)
        if ctx_fft:
            wc = periodic_hann(ctx_fft)
            anc, _ = _dft_bases(ctx_fft, wc, self.ctx_bins)
            self.register_buffer("anc", torch.from_numpy(anc), persistent=False)
            self.register_buffer("win_ctx", torch.from_numpy(wc.astype(np.float32)), persistent=False)
        n_feat = (self.n_bins + self.ctx_bins) * channels
        self.inp = nn.Sequential(nn.Linear(n_feat, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, self.n_masks * 2 * self.n_bins * channels)
        self.feat_scale = nn.Parameter(torch.ones(n_feat))
        self.feat_bias = nn.Parameter(torch.zeros(n_feat))

    # geometry
    @property
    def window(self) -> int:
        return max(self.n_fft, self.ctx_fft)

    @property
    def latency(self) -> int:
        return self.syn_len - self.hop

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """State tensors per call, without the batch axis (batch is axis 1 for h, 0 for ola)."""
        S = len(self.stems)
        ola = (S, self.syn_len - self.hop) if self.channels == 1 else (S, self.channels, self.syn_len - self.hop)
        return {"h": (self.layers, self.hidden), "ola": ola}

    def _features(self, re, im, cre, cim):
        f = torch.log(re * re + im * im + 1e-8)
        if self.ctx_fft:
            f = torch.cat([f, torch.log(cre * cre + cim * cim + 1e-8)], -1)
        return (self._joint(f) + 6.0) * 0.1 * self.feat_scale + self.feat_bias

    def _joint(self, f):
        """(B*C, [T,] F) per channel -> (B, [T,] C*F): every channel's features side by side."""
        if self.channels == 1:
            return f
        f = f.reshape((-1, self.channels) + tuple(f.shape[1:]))  # (B, C, [T,] F)
        if f.dim() == 4:
            f = f.permute(0, 2, 1, 3)  # (B, T, C, F)
        return f.flatten(-2)

    def _split(self, z):
        """(B, [T,] K*C*2F) -> (B*C, [T,] K, 2F): the inverse of _joint, for the K masks."""
        z = z.reshape(tuple(z.shape[:-1]) + (self.n_masks, self.channels, 2 * self.n_bins))
        if z.dim() == 5:
            z = z.permute(0, 3, 1, 2, 4)  # (B, C, T, K, 2F)
        else:
            z = z.permute(0, 2, 1, 3)  # (B, C, K, 2F)
        return z.flatten(0, 1)

    def _mask(self, z):
        """Complex masks (re, im), each (B*C, [T,] K, F), magnitude below 1."""
        z = self._split(z)
        mr, mi = z[..., : self.n_bins], z[..., self.n_bins:]
        mag = torch.sqrt(mr * mr + mi * mi + 1e-8)
        g = torch.tanh(mag) / mag
        return mr * g, mi * g

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Whole signal (B, C, N) -> (B, S, C, N), output delayed by ``latency`` like streaming:
        out[..., t] estimates audio[..., t - latency]. Left context before t=0 is zeros."""
        B, C, N = audio.shape
        x = audio.reshape(B * C, 1, N)
        W = self.window
        pad_left = W - self.hop  # first frame: the window ending at the first hop of input
        xp = F.pad(x, (pad_left, 0))
        n_frames = N // self.hop
        re, im = self._frames_spectrum(xp[:, 0, W - self.n_fft:], self.n_fft, self.win_ana, n_frames)
        if self.ctx_fft:
            cre, cim = self._frames_spectrum(xp[:, 0, W - self.ctx_fft:], self.ctx_fft, self.win_ctx, n_frames)
        else:
            cre = cim = None
        h = self.inp(self._features(re, im, cre, cim))
        h, _ = self.gru(h)
        mr, mi = self._mask(self.out(h))  # (BC, T, K, F)
        re, im = re.unsqueeze(-2), im.unsqueeze(-2)
        vr = mr * re - mi * im
        vi = mr * im + mi * re
        rr, ri = re - vr.sum(-2, keepdim=True), im - vi.sum(-2, keepdim=True)  # the last stem: the rest
        # synthesis of every stem: inverse FFT, the synthesis span, its window, overlap-add
        S = torch.cat([torch.complex(vr, vi), torch.complex(rr, ri)], -2).transpose(1, 2)  # (BC, S, T, F)
        n_stems = S.shape[1]
        frames = torch.fft.irfft(S, n=self.n_fft)[..., self.n_fft - self.syn_len:] * self.win_syn
        frames = frames.reshape(B * C * n_stems, n_frames, self.syn_len).transpose(1, 2)  # (BCS, syn_len, T)
        L = (n_frames - 1) * self.hop + self.syn_len
        y = F.fold(frames, (1, L), (1, self.syn_len), stride=(1, self.hop))[:, 0, 0]  # (BCS, L)
        y = y[:, :N]
        if y.shape[-1] < N:
            y = F.pad(y, (0, N - y.shape[-1]))
        return y.reshape(B, C, n_stems, N).transpose(1, 2)

    def _frames_spectrum(self, x, n_fft: int, window, n_frames: int):
        """Frames of ``n_fft`` samples every hop, the first starting at x[0]: (re, im), each (BC, T, F)."""
        X = torch.stft(x, n_fft, self.hop, window=window, center=False, return_complex=True)[..., :n_frames]
        X = X.transpose(1, 2)
        return X.real, X.imag

    def _gru_cell(self, x, h, layer: int):
        """One step of layer ``layer`` of ``self.gru`` written with matmuls (quantizable in ONNX)."""
        w_ih = getattr(self.gru, f"weight_ih_l{layer}")
        w_hh = getattr(self.gru, f"weight_hh_l{layer}")
        b_ih = getattr(self.gru, f"bias_ih_l{layer}")
        b_hh = getattr(self.gru, f"bias_hh_l{layer}")
        H = self.hidden
        gi = x @ w_ih.t() + b_ih
        gh = h @ w_hh.t() + b_hh
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1 - z) * n + z * h

    def step(self, window: torch.Tensor, h: torch.Tensor, ola: torch.Tensor):
        """window (B, C, W) newest samples last; h (B, layers, hidden); ola (B, S, [C,] syn_len-hop).
        Returns stems (B, S, C, hop), h', ola'."""
        B = window.shape[0]
        w = window.reshape(B * self.channels, self.window)
        fr = w[:, self.window - self.n_fft:]
        spec = fr @ self.ana.t()  # (BC, 2F)
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins:]
        if self.ctx_fft:
            cs = w[:, self.window - self.ctx_fft:] @ self.anc.t()
            cre, cim = cs[:, : self.ctx_bins], cs[:, self.ctx_bins:]
        else:
            cre = cim = None
        z = self.inp(self._features(re, im, cre, cim))
        hs = []
        for layer in range(self.layers):
            z = self._gru_cell(z, h[:, layer], layer)
            hs.append(z)
        h2 = torch.stack(hs, 1)
        mr, mi = self._mask(self.out(z))  # (BC, K, F) each
        re, im = re.unsqueeze(1), im.unsqueeze(1)
        vr = mr * re - mi * im
        vi = mr * im + mi * re
        rest = torch.cat([re - vr.sum(1, keepdim=True), im - vi.sum(1, keepdim=True)], -1)  # the last stem
        S = torch.cat([torch.cat([vr, vi], -1), rest], 1)  # (BC, S, 2F)
        n_stems = S.shape[1]
        y = (S @ self.syn).reshape(B, self.channels, n_stems, self.syn_len).transpose(1, 2)  # (B, S, C, syn_len)
        if self.channels == 1:  # mono keeps its state without a channel axis (the bundled models' cards)
            y = y[:, :, 0]
        acc = y + F.pad(ola, (0, self.hop))
        out = acc[..., : self.hop]
        return (out[:, :, None] if self.channels == 1 else out), h2, acc[..., self.hop:]


class StudentStep(nn.Module):
    """Export wrapper: forward(audio, h, ola) -> (stems, h, ola); states have the batch on axis 0."""

    def __init__(self, student: StreamingStudent):
        super().__init__()
        self.m = student

    def forward(self, audio: torch.Tensor, h: torch.Tensor, ola: torch.Tensor):
        return self.m.step(audio, h, ola)


def build_model(kind: str, cfg: dict) -> nn.Module:
    if kind == "teacher":
        return TFCTDFNet(**cfg)
    if kind == "student":
        return StreamingStudent(**cfg)
    raise ValueError(f"unknown model kind {kind!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
