"""Find a separator by name (built-in or bundled model) or by model path."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Separator, SeparatorError

BUILTINS = ("passthrough", "dsp-center", "dsp-4stem")
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BUNDLED_SUFFIX = {"diffusion": ".pt"}  # a bundled card's weights file by its format (default .onnx)
MODEL_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def bundled_models() -> dict[str, dict]:
    """{name: card} for every model card shipped in ``stream_engine/models``."""
    models = {}
    for card_path in sorted(MODELS_DIR.glob("*.json")):
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError):
            continue  # a broken bundled card surfaces when that model is asked for by path
        name = card.get("name", card_path.stem)
        model_file = card_path.with_suffix(BUNDLED_SUFFIX.get(card.get("format"), ".onnx"))
        if model_file.exists():
            models[name] = dict(card, path=str(model_file))
    return models


def third_party_models() -> dict[str, dict]:
    """{name: card} for models whose weights come from another installed package."""
    from . import hybrid, spleeter

    models = {"spleeter": spleeter.load_card()} if spleeter.available() else {}
    if hybrid.available():
        models[hybrid.NAME] = hybrid.load_card()
    return models


def default_model(profile: str) -> str:
    """The first model whose card names this profile (third-party first), else dsp-center.

    Third-party models come first: they are the default only where their
    card says so and only once the user has installed their weights.
    """
    for name, card in {**third_party_models(), **bundled_models()}.items():
        if profile in card.get("default_for", []):
            return name
    if profile == "offline":  # no model claims it: the quality profile's choice
        return default_model("quality")
    return "dsp-center"


def available() -> list[str]:
    return list(BUILTINS) + list(third_party_models()) + list(bundled_models())


def model_stems(model: str | None, profile: str = "live") -> tuple[str, ...]:
    """The stems ``model`` produces, without loading its weights (front ends build their strips from it).

    Built-ins are cheap to construct and say so themselves; other models by
    their card (bundled, third-party, or the JSON beside a model file).
    """
    name = model or default_model(profile)
    if name in BUILTINS:
        return tuple(load_separator(name, profile).spec.stems)
    card = {**third_party_models(), **bundled_models()}.get(name)
    if card is None:
        try:
            card = json.loads(Path(name).with_suffix(".json").read_text())
        except (OSError, ValueError):
            card = {}
    stems = card.get("stems") if isinstance(card, dict) else None
    if not (isinstance(stems, list) and stems and all(isinstance(s, str) for s in stems)):
        raise SeparatorError(f"model {name!r}: no stems known (no readable model card with a 'stems' list)")
    return tuple(stems)


def load_separator(
    model: str | None,
    profile: str = "balanced",
    sample_rate: int = 48000,
    device: str = "cpu",
    threads: int | None = None,
) -> Separator:
    """Build the separator named ``model`` (None: the profile's default)."""
    name = model or default_model(profile)
    if name == "passthrough":
        from .passthrough import Passthrough

        return Passthrough(profile)
    if name == "dsp-center":
        from .dsp_center import DspCenter

        return DspCenter(profile, sample_rate=sample_rate)
    if name == "dsp-4stem":
        from .dsp_4stem import Dsp4Stem

        return Dsp4Stem(profile, sample_rate=sample_rate)
    if name == "spleeter":
        from .spleeter import SpleeterSeparator

        return SpleeterSeparator(profile, threads=threads, device=device)
    if name == "hybrid-4stem":
        from .hybrid import HybridFourStem

        return HybridFourStem(profile, threads=threads, device=device)
    bundled = bundled_models()
    path = Path(bundled[name]["path"]) if name in bundled else Path(name)
    if not path.exists():
        raise SeparatorError(
            f"model {name!r} not found: not a built-in ({', '.join(BUILTINS)}), "
            f"not a bundled model ({', '.join(bundled) or 'none'}), and no such file"
        )
    kind = MODEL_SUFFIXES.get(path.suffix.lower())
    if path.suffix.lower() == ".pt" and _card_format(path) == "diffusion":
        from .diffusion import DiffusionSeparator

        return DiffusionSeparator.from_path(path, profile=profile, device=device, threads=threads)
    if kind == "onnx":
        from .onnx_backend import OnnxSeparator

        return OnnxSeparator.from_path(path, profile=profile, device=device, threads=threads)
    if kind == "torchscript":
        from .torchscript_backend import TorchScriptSeparator

        return TorchScriptSeparator.from_path(path, profile=profile, device=device, threads=threads)
    raise SeparatorError(
        f"{path}: unknown model format {path.suffix!r}; expected one of {', '.join(MODEL_SUFFIXES)}"
    )


def _card_format(model_path: Path) -> str | None:
    """The ``format`` the card beside a model file names (None: no readable card)."""
    try:
        card = json.loads(model_path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return card.get("format") if isinstance(card, dict) else None
