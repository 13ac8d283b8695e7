"""Export a checkpoint to ONNX, TorchScript and int8 ONNX, each with a model card.

Files written for ``--name NAME`` in ``--out DIR``::

    NAME.onnx + NAME.json                       float32 ONNX
    NAME-int8.onnx + NAME-int8.json             dynamic int8 weights (onnxruntime.quantization)
    NAME-torchscript.pt + NAME-torchscript.json TorchScript

Graph convention (see ``separators/onnx_backend.py``): inputs ``audio`` then
state tensors, outputs ``stems`` then the new states (``<state>_out``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .models import StreamingStudent, StudentStep, TFCTDFNet, count_parameters
from .train import model_from_checkpoint

PROVENANCE = {
    "mir1k": {
        "dataset": "MIR-1K (Hsu and Jang, 2010, MIR Lab, National Taiwan University), via the public GitHub "
                   "repository andabi/music-source-separation; 16 kHz mono; mir1k/train (819 clips, 15 singers, "
                   "about 109 min) for training, mir1k/valid (87 clips, 2 singers) for validation and model "
                   "selection",
        "licence": "research use (MIR-1K terms); the weights inherit the training data's terms",
    }
}

# Per data folder (matched by its path): what it is and its terms (../shared/data/README.md).
SOURCES = {  # the first key found in a source's path describes it (labels-htdemucs before instrumental)
    "labels-htdemucs": "HTDemucs four-stem labels (stemstream label --teacher htdemucs) of shared/data songs/ and "
                       "instrumental/ (instrumental: the teacher's vocals folded into other, vocals = silence); "
                       "HTDemucs weights: PERSONAL AND RESEARCH USE ONLY, inherited by anything trained on "
                       "their labels; the songs' own terms: CC BY, CC BY-SA, CC BY-NC(-SA/-ND) per song",
    "mir1k": PROVENANCE["mir1k"]["dataset"] + "; research use",
    "eif": "Everything is Free by Software-Entwicklungskit, released as stems (ichbinsoftware/everythingisfree); "
           "44.1 kHz stereo; CC0 1.0",
    "labels/songs": "Spleeter 2-stem labels (stemstream label) of the 10 songs in shared/data/songs "
                    "(UltraStar-Deluxe/songs, folder 'Creative Commons'): CC BY 3.0, CC BY-SA, CC BY-NC and "
                    "CC BY-NC-ND terms per song (each song's license.txt); NC: research and non-commercial use",
    "instrumental": "8 instrumental pieces in shared/data/instrumental (UltraStar-Deluxe/songs and librosa/data), "
                    "vocals = silence; CC BY, CC BY-NC-SA and Public Domain Mark per piece",
    "musdb": "MUSDB18 (Rafii et al., 2017), as given by the user; research use",
    "gm": "General MIDI renders made on the machine by stemstream render-gm: the 31 songs of Debian's "
          "openttd-openmsx (GPL-2) through FluidSynth with the FluidR3_GM (MIT) and TimGM6mb (GPL-2) soundfonts; "
          "drums, bass and other from the MIDI, vocals = silence",
}


def provenance(data) -> dict:
    """The card's training-data entry for a config's ``data`` (one path or a list of sources)."""
    items = data if isinstance(data, list) else [data]
    paths = [str(i["path"] if isinstance(i, dict) else i) for i in items]
    if len(paths) == 1 and "mir1k" in paths[0]:
        return dict(PROVENANCE["mir1k"])
    described = []
    for item, path in zip(items, paths):
        what = next((text for key, text in SOURCES.items() if key in path), "see the data's own terms")
        share = item.get("share") if isinstance(item, dict) else None
        described.append(f"{path}{f' (share {share})' if share is not None else ''}: {what}")
    non_commercial = any("NC" in d or "research" in d for d in described)
    if any("PERSONAL AND RESEARCH USE ONLY" in d for d in described):
        return {"dataset": "; ".join(described),
                "licence": ("personal and research use only: trained on HTDemucs labels (Meta's Demucs v4 weights, "
                            "personal and research use only) and research-use / CC BY-NC data; the weights "
                            "inherit the most restrictive terms")}
    return {"dataset": "; ".join(described),
            "licence": ("research and non-commercial use: some training data is research-use or CC BY-NC; "
                        "the weights inherit the most restrictive terms") if non_commercial
            else "see the training data's terms"}


FULL_BAND_NOTE = (
    "Trained on 16 kHz MIR-1K only: the model sees 0-8 kHz. Above 8 kHz it has never seen vocal sibilance or "
    "cymbals; the engine decides what happens to that band (at 44.1/48 kHz the model's output is resampled up "
    "and holds nothing above 8 kHz)."
)


class TeacherWindow(nn.Module):
    def __init__(self, m: TFCTDFNet):
        super().__init__()
        self.m = m

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.m(audio)


def teacher_window(model: TFCTDFNet, seconds: float | None = None, sample_rate: int = 16000) -> int:
    """A window needing no internal padding: (frames - 1) * hop with frames a multiple of 2**levels."""
    seconds = seconds or 3.0
    m = 2 ** model.levels
    frames = int(round((seconds * sample_rate / model.hop + 1) / m)) * m
    return (frames - 1) * model.hop


def _export_onnx(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                 dynamic: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=17,
                          dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    import onnx

    onnx.checker.check_model(str(path))


QUANTIZATION = ("onnxruntime.quantization.quantize_dynamic, int8 weights (MatMul/Gemm) with reduce_range (7-bit, "
                "exact on x86 CPUs with or without VNNI), float activations")


def _quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:
            shutil.copy(src, pre)
        # reduce_range: 7-bit weights. ONNX Runtime's u8 x s8 MatMulInteger on x86 CPUs without VNNI (AVX2,
        # AVX-512 without VNNI) adds pairs of products in int16, which saturates once weights use the full int8
        # range (255 * 127 * 2 > 32767): measured on an AVX2-only EPYC, the tiny student's output was 35-45 %
        # off float with full-range weights and 1.5-1.8 % off with 7-bit ones; with VNNI both are exact.
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         reduce_range=True)


def card_for(model, name: str, fmt: str, ck: dict, window_seconds: float | None = None) -> dict:
    from stream_engine.separators.card import sha256_of  # noqa: F401 (used by the caller)

    cfg = ck.get("config") or {}
    sr = int(cfg.get("sample_rate", 16000))
    hist = ck.get("history") or []
    best_val = None
    for h in hist:
        if h.get("step") == ck.get("step"):
            best_val = h
    prov = provenance(cfg.get("data", ""))
    card = {
        "name": name,
        "format": fmt,
        "sample_rate": sr,
        "stems": list(model.stems),
        "channels": getattr(model, "channels", 1),
        "parameters": count_parameters(model),
        "architecture": {"kind": ck["kind"], **model.cfg},
        "training": {
            **prov,
            "preset": cfg.get("preset"),
            "steps": ck.get("step"),
            "seed": cfg.get("seed"),
            "distillation": cfg.get("distill"),
            "train_seconds_to_best": best_val.get("train_seconds") if best_val else None,
            "train_seconds_total": hist[-1].get("train_seconds") if hist else None,
            "steps_total": hist[-1].get("step") if hist else None,
            "machine": "2-core CPU (AMD EPYC), shared",
        },
        "command": cfg.get("command"),
        "full_band": FULL_BAND_NOTE if sr <= 16000 else
        f"Full band: trained at {sr} Hz on full-band stems and teacher labels (the labels hold nothing above "
        f"11 kHz in the vocals: see training/labels.py).",
    }
    if isinstance(model, StreamingStudent):
        shapes = model.state_shapes()
        card.update({
            "window": model.window, "hop": model.hop, "lookahead": model.latency, "fade": 0, "stateful": True,
            "state": [{"name": k, "shape": list(v)} for k, v in shapes.items()],
            "inputs": ["audio"] + list(shapes), "outputs": ["stems"] + [k + "_out" for k in shapes],
            "output_span": "segment",
            "stft": {"n_fft": model.n_fft, "hop": model.hop,
                     "window": ("asymmetric: analysis n_fft long, falling over its last hop samples; synthesis over "
                                "the last 2 * hop samples (Mauler and Martin, 2007)") if model.asym
                     else "sqrt-hann (analysis and synthesis)",
                     "synthesis_samples": model.syn_len,
                     "context_fft": model.ctx_fft, "context_window": "hann, ending at the same sample",
                     "in_graph": "real matmuls with cos/sin bases; overlap-add carried in state 'ola'"},
            "latency": {"samples": model.latency, "ms": 1000.0 * model.latency / sr,
                        "note": "model only (synthesis span - hop); the engine adds its block, hop buffering and "
                                "resampling"},
            # a two-stem student is the live default; one for more stems is chosen by name
            "default_for": ["live", "balanced"] if tuple(model.stems) == StreamingStudent.stems else [],
        })
    else:
        W = teacher_window(model, window_seconds, sr)
        # about a third of the window is new per call; a sixth of it is lookahead (non-causal context)
        hop = W // 3
        fade = W // 24
        lookahead = W // 6
        card.update({
            "window": W, "hop": hop, "lookahead": lookahead, "fade": fade, "stateful": False, "state": [],
            "inputs": ["audio"], "outputs": ["stems"], "output_span": "window",
            "profiles": {"quality": {"window": W, "hop": hop, "lookahead": lookahead, "fade": fade}},
            "stft": {"n_fft": model.n_fft, "hop": model.hop, "window": "hann", "center": True,
                     "in_graph": "conv1d / conv_transpose1d with cos/sin bases"},
            "latency": {"samples": lookahead + fade, "ms": 1000.0 * (lookahead + fade) / sr,
                        "note": "model framing only (lookahead + fade)"},
            "default_for": ["quality"],
        })
    if best_val:
        card["metrics"] = {"validation_during_training": {
            "data": cfg.get("valid"), "step": best_val["step"], "sdr_mean_db": best_val["mean"],
            "sdr_median_db": best_val["median"],
            "how": "whole-track torch forward, SDR = 10 log10(sum s^2 / sum (s - s_hat)^2) per track"}}
    return card


def _write_card(card: dict, model_path: Path) -> Path:
    from stream_engine.separators.card import sha256_of

    card = dict(card)
    card["file"] = model_path.name
    card["size_bytes"] = model_path.stat().st_size
    card["sha256"] = sha256_of(model_path)
    p = model_path.with_suffix(".json")
    p.write_text(json.dumps(card, indent=2) + "\n")
    return p


def export_model(model, ck: dict, out_dir: str | os.PathLike, name: str, formats=("onnx", "torchscript", "int8"),
                 window_seconds: float | None = None, command: str | None = None,
                 extra_metrics: dict | None = None, export_command: str | None = None,
                 default_for: dict[str, list[str]] | None = None) -> list[Path]:
    """``default_for`` maps a variant (onnx, int8, torchscript) to the profiles whose default it becomes,
    replacing the cards' own choice (students: the float ONNX for live and balanced; teacher: quality)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    written: list[Path] = []
    if isinstance(model, StreamingStudent):
        module = StudentStep(model).eval()
        shapes = model.state_shapes()
        args = (torch.zeros(1, model.channels, model.window),) + tuple(torch.zeros((1,) + s) for s in shapes.values())
        inputs = ["audio"] + list(shapes)
        outputs = ["stems"] + [k + "_out" for k in shapes]
        dynamic = {n: {0: "batch"} for n in inputs + outputs}
    else:
        module = TeacherWindow(model).eval()
        W = teacher_window(model, window_seconds, int((ck.get("config") or {}).get("sample_rate", 16000)))
        args = (torch.zeros(1, 1, W),)
        inputs, outputs = ["audio"], ["stems"]
        dynamic = {"audio": {0: "batch"}, "stems": {0: "batch"}}

    def base_card(fmt, nm, variant):
        c = card_for(model, nm, fmt, ck, window_seconds)
        if variant != "onnx":
            c["default_for"] = []
        if command:
            c["command"] = command
        if export_command:
            c["export_command"] = export_command
        if default_for is not None:
            c["default_for"] = list(default_for.get(variant, []))
        if extra_metrics:
            c.setdefault("metrics", {}).update(extra_metrics)
        return c

    unknown = [f for f in formats if f not in ("onnx", "torchscript", "int8")]
    if unknown or not formats:
        raise ValueError(f"unknown export format(s) {unknown or formats}: onnx, torchscript, int8")
    made = [out / f"{name}{tail}" for tail in (".onnx", "-int8.onnx", "-torchscript.pt")]
    made += [p.with_suffix(".json") for p in made]
    existed = {p for p in made if p.exists()}
    try:
        return _export_files(module, args, inputs, outputs, dynamic, out, name, formats, base_card, written)
    except BaseException:
        # a model file without its card (or half a file) must not be left for the registry to find;
        # files of an earlier export that this one did not get to are kept
        for p in made:
            if p not in existed or p in written:
                p.unlink(missing_ok=True)
        raise


def _export_files(module, args, inputs, outputs, dynamic, out, name, formats, base_card, written):
    onnx_path = out / f"{name}.onnx"
    if "onnx" in formats or "int8" in formats:
        _export_onnx(module, args, onnx_path, inputs, outputs, dynamic)
        if "onnx" in formats:
            written += [onnx_path, _write_card(base_card("onnx", name, "onnx"), onnx_path)]
    if "int8" in formats:
        q = out / f"{name}-int8.onnx"
        _quantize(onnx_path, q)
        c = base_card("onnx", f"{name}-int8", "int8")
        c["quantization"] = QUANTIZATION
        written += [q, _write_card(c, q)]
        if "onnx" not in formats:
            onnx_path.unlink()
    if "torchscript" in formats:
        ts = out / f"{name}-torchscript.pt"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, args, check_trace=False)
        traced.save(str(ts))
        c = base_card("torchscript", f"{name}-torchscript", "torchscript")
        written += [ts, _write_card(c, ts)]
    return written


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, name: str | None = None,
                      formats=("onnx", "torchscript", "int8"), metrics_from: str | None = None,
                      evaluate_on: str | None = None, command: str | None = None,
                      window_seconds: float | None = None, export_command: str | None = None,
                      default_for: dict[str, list[str]] | None = None) -> list[Path]:
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    model, ck = model_from_checkpoint(checkpoint)
    name = name or ("stemstream-" + ck["kind"])
    extra = None
    if metrics_from:
        from stream_engine.untrusted import read_json

        extra = read_json(metrics_from, "--metrics file")
        if not isinstance(extra, dict):
            raise ValueError(f"{metrics_from}: metrics must be a JSON object, not a {type(extra).__name__}")
    paths = export_model(model, ck, out_dir, name, formats, window_seconds, command, extra, export_command,
                         default_for)
    if evaluate_on:
        from stream_engine.separators.onnx_backend import OnnxSeparator

        from .evaluation import engine_eval

        profile = "quality" if ck["kind"] == "teacher" else "live"
        for p in [p for p in paths if p.suffix == ".onnx"]:
            res = engine_eval(lambda rate, p=p: OnnxSeparator.from_path(p, profile=profile), evaluate_on, profile)
            cpath = p.with_suffix(".json")
            card = json.loads(cpath.read_text())
            card.setdefault("metrics", {})["engine_" + profile] = {
                "data": str(evaluate_on), "tracks": len(res["tracks"]), "sdr_mean_db": res["mean"],
                "sdr_median_db": res["median"], "eval_seconds": res["seconds"],
                "how": f"through the engine (offline.separate_array), profile {profile}, at the data's rate; "
                       f"mixture = sum of the stems"}
            cpath.write_text(json.dumps(card, indent=2) + "\n")
    return paths
