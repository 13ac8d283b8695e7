"""Model cards: the JSON file beside a model (``model.onnx`` + ``model.json``).

A card says how to run the model (sample rate, stems, framing, state) and
where it came from (training data, licence, metrics, the command that made
it). ``load_card`` reads and validates one; every problem raises
``SeparatorError`` naming the file.

Required fields::

    name, format ("onnx" | "torchscript" | "diffusion"), sample_rate, stems, channels,
    window, hop, lookahead, fade, stateful

Optional but written by ``stemstream export``::

    inputs / outputs      graph tensor names: audio first, then states
    state                 [{"name", "shape" (without batch)}]; batch is axis 0
    output_span           "segment" (model returns hop+fade samples) or "window"
    profiles              {profile: {window, hop, lookahead, fade}} (stateless models)
    default_for           profiles this model is the default of
    stft, latency, parameters, training, licence, metrics, command, sha256, full_band
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..profiles import pick_framing
from ..untrusted import UntrustedInputError, plain_name, read_json
from .base import SeparatorError, SeparatorSpec

REQUIRED = ("name", "format", "sample_rate", "stems", "channels", "window", "hop", "lookahead", "fade", "stateful")
FORMATS = ("onnx", "torchscript", "diffusion")  # diffusion: a state dict run by separators/diffusion.py
FRAMING = ("window", "hop", "lookahead", "fade")
SAMPLE_RATES = (8000, 384000)  # plausible model rates; a card outside them is a typo
MAX_FRAMING = 1 << 23  # samples: ~3 min at 48 kHz, far beyond any model's window
MAX_STATE_VALUES = 1 << 26  # per state tensor (256 MiB of float32)
MAX_STEMS = 16
RESERVED_STEMS = ("main", "instrumental", "karaoke", "mixture", "mix", "mic")
MAX_CARD_BYTES = 4 * 1024 * 1024


def card_path_for(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_suffix(".json")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def validate_card(card: dict, where: str = "card") -> dict:
    if not isinstance(card, dict):
        raise SeparatorError(f"{where}: a model card must be a JSON object, not {type(card).__name__}")
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise SeparatorError(f"{where}: model card lacks required field(s): {', '.join(missing)}")
    if card["format"] not in FORMATS:
        raise SeparatorError(f"{where}: format {card['format']!r} is not one of {', '.join(FORMATS)}")
    for k in ("sample_rate", "window", "hop", "lookahead", "fade"):
        v = card[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SeparatorError(f"{where}: {k} must be a non-negative integer, not {v!r}")
        if k != "sample_rate" and v > MAX_FRAMING:
            raise SeparatorError(f"{where}: {k} {v} is larger than {MAX_FRAMING} samples (a typo? buffers of that "
                                 f"size would not fit in memory)")
    if card["sample_rate"] <= 0 or card["hop"] <= 0:
        raise SeparatorError(f"{where}: sample_rate and hop must be positive")
    lo, hi = SAMPLE_RATES
    if not lo <= card["sample_rate"] <= hi:
        raise SeparatorError(f"{where}: sample_rate {card['sample_rate']} Hz is outside {lo}..{hi} Hz")
    _check_framing(card, where)
    check_stem_names(card["stems"], where)
    if card["channels"] not in (None, 1, 2):
        raise SeparatorError(f"{where}: channels must be 1, 2 or null, not {card['channels']!r}")
    if not isinstance(card["stateful"], bool):
        raise SeparatorError(f"{where}: stateful must be true or false")
    states = card.get("state", [])
    if card["stateful"] and not states:
        raise SeparatorError(f"{where}: a stateful model's card must list its state tensors under 'state'")
    for st in states:
        if not isinstance(st, dict) or "name" not in st or "shape" not in st:
            raise SeparatorError(f"{where}: each state entry needs a name and a shape, got {st!r}")
        if not isinstance(st["shape"], list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                          for d in st["shape"]):
            raise SeparatorError(f"{where}: state {st['name']!r} shape must be positive integers, got {st['shape']}")
        if math.prod(st["shape"]) > MAX_STATE_VALUES:
            raise SeparatorError(f"{where}: state {st['name']!r} shape {st['shape']} holds more than "
                                 f"{MAX_STATE_VALUES} values")
    if card.get("output_span", "segment") not in ("segment", "window"):
        raise SeparatorError(f"{where}: output_span must be 'segment' or 'window'")
    profiles = card.get("profiles") or {}
    if not isinstance(profiles, dict) or not all(isinstance(fr, dict) for fr in profiles.values()):
        raise SeparatorError(f"{where}: profiles must be an object of profile -> framing object")
    for prof, fr in profiles.items():
        for k in ("window", "hop"):
            if k not in fr:
                raise SeparatorError(f"{where}: profile {prof!r} framing lacks {k!r}")
        merged = {**card, **{k: v for k, v in fr.items() if k in FRAMING}}
        for k in FRAMING:
            v = merged[k]
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if k in ("window", "hop") else 0) \
                    or v > MAX_FRAMING:
                raise SeparatorError(f"{where}: profile {prof!r}: {k} must be a positive integer up to "
                                     f"{MAX_FRAMING}, not {v!r}")
        _check_framing(merged, f"{where}: profile {prof!r}")
    return card


def check_stem_names(stems, where: str) -> None:
    """Stem names become file names (``OUT/<track>/<stem>.wav``) and OSC addresses: each a plain name
    (untrusted.plain_name: no separators, no ``..``), no two alike (ignoring case: case-insensitive
    file systems), none named like a mix the engine writes beside them."""
    if not isinstance(stems, list) or not stems or len(stems) > MAX_STEMS:
        raise SeparatorError(f"{where}: stems must be a list of 1..{MAX_STEMS} names, not {stems!r}"[:300])
    seen = set()
    for s in stems:
        try:
            plain_name(s, "stem name", 32)
        except UntrustedInputError as exc:
            raise SeparatorError(f"{where}: {exc}") from None
        if s.lower() in RESERVED_STEMS:
            raise SeparatorError(f"{where}: stem name {s!r} is taken by a mix the engine makes "
                                 f"({', '.join(RESERVED_STEMS)} are reserved)")
        if s.lower() in seen:
            raise SeparatorError(f"{where}: stem name {s!r} appears twice (one stem would overwrite the other)")
        seen.add(s.lower())


def _check_framing(fr: dict, where: str) -> None:
    """The output segment (hop + fade) must lie inside the window before the lookahead."""
    window, hop, lookahead, fade = (fr[k] for k in FRAMING)
    if fade > hop:
        raise SeparatorError(f"{where}: fade {fade} must not exceed hop {hop}")
    if hop + fade + lookahead > window:
        raise SeparatorError(f"{where}: hop {hop} + fade {fade} + lookahead {lookahead} exceed the window {window}")


def load_card(model_path: str | Path, expected_format: str | None = None, check_hash: bool = True) -> dict:
    """Read and validate the card beside ``model_path``; check the model file exists and matches."""
    model_path = Path(model_path)
    cpath = card_path_for(model_path)
    if not model_path.is_file():
        raise SeparatorError(f"{model_path}: model file not found")
    if not cpath.is_file():
        raise SeparatorError(f"{model_path}: no model card beside it (expected {cpath.name})")
    try:
        card = read_json(cpath, "model card", MAX_CARD_BYTES)
    except UntrustedInputError as e:
        raise SeparatorError(str(e)) from None
    validate_card(card, str(cpath))
    if expected_format and card["format"] != expected_format:
        raise SeparatorError(
            f"{cpath}: card says format {card['format']!r} but {model_path.name} is loaded as {expected_format!r}")
    digest = card.get("sha256")
    if check_hash and digest:
        actual = sha256_of(model_path)
        if actual != digest:
            raise SeparatorError(
                f"{model_path}: model file does not match its card {cpath.name} (sha256 {actual[:12]}..., card "
                f"says {digest[:12]}...): the file is corrupt or belongs to another card")
    return card


def spec_from_card(card: dict, profile: str | None = None) -> SeparatorSpec:
    fr = dict(window=card["window"], hop=card["hop"], lookahead=card["lookahead"], fade=card["fade"])
    profiles = card.get("profiles") or {}
    if profile and profiles and not card["stateful"]:
        try:
            fr.update({k: int(v) for k, v in pick_framing(profiles, profile).items() if k in fr})
        except ValueError:
            pass  # the card's own framing
    return SeparatorSpec(
        name=card["name"],
        stems=tuple(card["stems"]),
        window=fr["window"],
        hop=fr["hop"],
        lookahead=fr["lookahead"],
        fade=fr["fade"],
        sample_rate=card["sample_rate"],
        channels=card["channels"],
        stateful=card["stateful"],
        card=card,
    )
