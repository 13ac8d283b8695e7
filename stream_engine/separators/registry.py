"""Find a separator by name (built-in or bundled model) or by model path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .base import Separator, SeparatorError

BUILTINS = ("passthrough", "dsp-center", "dsp-4stem")
MODEL_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}


def bundled_models() -> dict[str, dict]:
    """{name: card + ``path``} for the models shipped in ``stream_engine/models`` that may be used:
    those with an open licence, from the package, and those whose licence limits use (research
    only: the students, teacher and diffusion model) only once the user installed them
    (``stemstream install NAME --accept-licence``), from the user's model folder (research.py)."""
    from . import research

    models = {name: card for name, card in research.packaged_models().items() if not research.limited_licence(card)}
    models.update(research.installed_models())
    return models


def third_party_models() -> dict[str, dict]:
    """{name: card} for models whose weights come from another installed package."""
    from . import htdemucs, hybrid, spleeter

    models = {"spleeter": spleeter.load_card()} if spleeter.available() else {}
    if hybrid.available():
        models[hybrid.NAME] = hybrid.load_card()
    for variant in htdemucs.VARIANTS:  # opt-in, personal and research use only: see its card
        if htdemucs.available(variant):
            models[variant] = htdemucs.load_card(variant)
    return models


def default_four_stem_model(profile: str) -> str:
    """The best four-stem model installed for ``profile``: HTDemucs for files (offline) where the
    user installed it, else hybrid-4stem where Spleeter is (quality, offline), else dsp-4stem."""
    installed = third_party_models()
    if profile in installed.get("htdemucs", {}).get("default_for_four_stems", []):
        return "htdemucs"
    if profile in installed.get("hybrid-4stem", {}).get("profiles", {}):
        return "hybrid-4stem"
    return "dsp-4stem"


def restricted_licence(model: str | None) -> str | None:
    """The licence of a model whose weights may be used for research or personal use only
    (HTDemucs; the MIR-1K students and teacher, whose weights inherit MIR-1K's research terms;
    the diffusion model), installed or not, else None."""
    if model in ("htdemucs", "htdemucs-int8"):
        from .htdemucs import LICENCE

        return LICENCE
    from . import research

    card = research.opt_in_models().get(model or "")
    return research.limited_licence(card) if card else None


def licence_note(model: str | None) -> str:
    """" licence: ..." for a model whose weights' licence limits use, else "" (front ends append it
    to what they say when a run starts)."""
    licence = restricted_licence(model)
    return f" licence: {licence}" if licence else ""


_told: set[str] = set()


def _say_licence(name: str, model_file: Path | None = None) -> None:
    """Every run that uses weights with limited use says so, once per process and model (stderr);
    a model file by its path: where the card beside it names such a licence."""
    from . import research

    licence = restricted_licence(name) if model_file is None else research.file_licence(model_file)
    if licence and name not in _told:
        _told.add(name)
        print(f"{name}: licence: {licence}", file=sys.stderr)


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


def file_input_choice() -> dict:
    """Model, profile and device block for a file input: the best model that keeps up here.

    Spleeter where installed, at ``FILE_INPUT_PROFILE`` when this machine's
    stored speed measurement (``spleeter_hop``) says a call fits that
    profile's hop, else at balanced (whose hop is sized to the machine); without
    Spleeter, the quality profile's default model. ``why`` says which and why.
    """
    from ..profiles import FILE_INPUT_BLOCK, FILE_INPUT_PROFILE

    if "spleeter" in third_party_models():
        from . import spleeter

        fits, why = spleeter.keeps_up(FILE_INPUT_PROFILE)
        profile = FILE_INPUT_PROFILE if fits else "balanced"
        return {"model": "spleeter", "profile": profile, "block": FILE_INPUT_BLOCK, "why": why}
    model = default_model(FILE_INPUT_PROFILE)
    return {"model": model, "profile": FILE_INPUT_PROFILE, "block": FILE_INPUT_BLOCK,
            "why": f"Spleeter is not installed; {model} is the {FILE_INPUT_PROFILE} profile's default"}


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
        _refuse_if_not_installed(name)
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
    recalibrate: bool = False,
) -> Separator:
    """Build the separator named ``model`` (None: the profile's default).

    ``recalibrate``: a separator that sizes its hop from this machine's speed
    (Spleeter, balanced) measures again instead of using its stored figure.
    """
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

        return SpleeterSeparator(profile, threads=threads, device=device, recalibrate=recalibrate)
    if name == "hybrid-4stem":
        from .hybrid import HybridFourStem

        return HybridFourStem(profile, threads=threads, device=device)
    if name in ("htdemucs", "htdemucs-int8"):
        from .htdemucs import HTDemucsSeparator

        return HTDemucsSeparator(profile, threads=threads, device=device, variant=name)
    _refuse_if_not_installed(name)
    bundled = bundled_models()
    path = Path(bundled[name]["path"]) if name in bundled else Path(name)
    from . import research

    if name in research.installed_models():
        research.check_installed(name)  # the installed card is the packaged one: its sha256 anchors the load
    if not path.exists():
        raise SeparatorError(
            f"model {name!r} not found: not a built-in ({', '.join(BUILTINS)}), "
            f"not a bundled model ({', '.join(bundled) or 'none'}), and no such file"
        )
    if name not in bundled:
        research.refuse_packaged_path(path)  # the package's copy of an opt-in model, by path: install it first
    _say_licence(name if name in bundled else str(path), None if name in bundled else path)
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


def _refuse_if_not_installed(name: str) -> None:
    """A bundled model whose licence limits use, asked for by name before the user installed it."""
    from . import research

    message = research.not_installed_error(name)
    if message:
        raise SeparatorError(message)


def _card_format(model_path: Path) -> str | None:
    """The ``format`` the card beside a model file names (None: no readable card)."""
    try:
        card = json.loads(model_path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return card.get("format") if isinstance(card, dict) else None
