"""Weights shipped in the package whose licence limits use: opt-in, installed by the user.

The students, the teacher and the diffusion model in ``stream_engine/models`` were trained on
MIR-1K (research use) and, for the diffusion model, CC BY-NC songs: their cards' licence names
"research". The package carries their files (the install's source), but nothing lists, picks
or loads them until the user runs ``stemstream install NAME --accept-licence`` (or
``research-models`` for all of them), which says the licence, copies weights and card into the
user's model folder (``user_models.models_dir()/NAME/``, beside HTDemucs) and checks the
weights' sha256 against the packaged card. The registry then lists the installed copy, and
each load checks it against the package again (``check_installed``). The package's own files,
named by their path, are refused like their names (``refuse_packaged_path``).

A card whose licence is open is listed straight from the package (``packaged_models``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .base import SeparatorError
from .card import sha256_of
from .user_models import RECORD_FILE, models_dir, remove, staged_install, swap_in

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "models"
WEIGHTS_SUFFIX = {"diffusion": ".pt"}  # a card's weights file by its format (default .onnx)
RESTRICTED_WORDS = ("research", "personal")  # a licence naming these limits use
ALL = "research-models"  # `stemstream install research-models`: every restricted bundled model


class InstallError(SeparatorError):
    """Not installed: the licence was not accepted, or the files are not the packaged ones."""


def card_licence(card: dict) -> str:
    """The weights' licence as the card states it (at the top, or with the training data)."""
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    return str(card.get("licence") or training.get("licence") or "")


def limited_licence(card: dict) -> str | None:
    """The card's licence where it limits use (research or personal only), else None."""
    licence = card_licence(card)
    return licence if any(word in licence.lower() for word in RESTRICTED_WORDS) else None


def packaged_models() -> dict[str, dict]:
    """{name: card + ``path``} for every model card shipped in ``stream_engine/models`` with its weights."""
    models = {}
    for card_path in sorted(PACKAGE_DIR.glob("*.json")):
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a broken bundled card surfaces when that model is asked for by path
        if not isinstance(card, dict):
            continue
        weights = card_path.with_suffix(WEIGHTS_SUFFIX.get(card.get("format"), ".onnx"))
        if weights.is_file():
            models[str(card.get("name", card_path.stem))] = dict(card, path=str(weights))
    return models


def opt_in_models() -> dict[str, dict]:
    """The packaged models whose licence limits use: {name: packaged card + path}."""
    return {name: card for name, card in packaged_models().items() if limited_licence(card)}


def install_dir(name: str) -> Path:
    return models_dir() / name


def installed_models() -> dict[str, dict]:
    """{name: packaged card, ``path`` = the installed weights} for each opt-in model the user installed.

    Only names the package ships are looked for (a folder in the model folder names nothing by
    itself); presence of the install record marks a finished install. Hashes are checked at load.
    """
    found = {}
    for name, card in opt_in_models().items():
        folder = install_dir(name)
        weights = folder / Path(card["path"]).name
        if weights.is_file() and (folder / RECORD_FILE).is_file():
            found[name] = dict(card, path=str(weights))
    return found


def install_command(name: str) -> str:
    return f"stemstream install {name} --accept-licence"


def not_installed_error(name: str) -> str | None:
    """What to tell someone who asked for an opt-in model that is not installed (None: not such a model)."""
    card = opt_in_models().get(name)
    if card is None or name in installed_models():
        return None
    return (f"model {name!r} is not installed: its weights ship with stemstream but their licence limits use "
            f"({limited_licence(card)}), so they are opt-in; to read the licence, accept it and install: "
            f"{install_command(name)} (or `{install_command(ALL)}` for all of "
            f"{', '.join(opt_in_models())})")


def file_licence(model_file: Path) -> str | None:
    """The limiting licence named by the card beside a model file (one a user exported or copied)."""
    try:
        card = json.loads(Path(model_file).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return limited_licence(card) if isinstance(card, dict) else None


def refuse_packaged_path(model_file: Path) -> None:
    """The package's own copy of an opt-in model, named by its path, is refused like its name."""
    try:
        inside = Path(model_file).resolve().parent == PACKAGE_DIR.resolve()
    except OSError:
        return
    for name, card in opt_in_models().items():
        if inside and Path(card["path"]).name == Path(model_file).name:
            message = not_installed_error(name)
            if message:
                raise InstallError(message)
            raise InstallError(f"{model_file}: the package's copy of {name!r} is only the install's source; "
                               f"use the installed model by its name, {name!r}")


def check_installed(name: str) -> Path:
    """The installed weights' path, once the installed card is the packaged one (so the card's sha256,
    which ``card.load_card`` checks the weights against at load, is the package's own)."""
    packaged = opt_in_models()[name]
    path = Path(installed_models()[name]["path"])
    try:
        installed_card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        installed_card = None
    if installed_card != {k: v for k, v in packaged.items() if k != "path"}:
        raise InstallError(f"{path.with_suffix('.json')}: the installed card of {name!r} is not the one in this "
                           f"package (altered, or from another version): reinstall with {install_command(name)}")
    if not packaged.get("sha256") and sha256_of(path) != sha256_of(packaged["path"]):
        raise InstallError(f"{path}: the installed weights of {name!r} are not the packaged ones: reinstall with "
                           f"{install_command(name)}")
    return path


def install(name: str, accept_licence: bool, log=print) -> Path:
    """Copy one opt-in model's weights and card from the package into ``install_dir(name)``.

    Says the licence first and last; without ``accept_licence`` raises before writing anything.
    The copy is staged beside the target and its sha256 checked against the packaged card before
    it replaces a previous install, so a failed install leaves what was there.
    """
    models = opt_in_models()
    if name not in models:
        raise InstallError(f"{name!r}: not an opt-in bundled model (those are: {', '.join(models) or 'none'})")
    card = models[name]
    licence = limited_licence(card)
    log(f"{name}: licence: {licence}")
    if not accept_licence:
        raise InstallError(f"{name}: not installed: the weights' licence must be accepted explicitly "
                           f"(--accept-licence) after reading it above")
    source = Path(card["path"])
    target = install_dir(name)
    with staged_install(target) as scratch:
        staged = scratch / "staged"
        shutil.copyfile(source, staged / source.name)
        shutil.copyfile(source.with_suffix(".json"), staged / f"{source.stem}.json")
        digest = sha256_of(staged / source.name)
        expected = card.get("sha256") or sha256_of(source)
        if digest != expected:
            raise InstallError(f"{name}: {source} has sha256 {digest}, its card says {expected}: the package's copy "
                               f"is damaged; refused, nothing installed (reinstall stemstream)")
        record = {"model": name, "source": str(source), "sha256": digest, "licence": licence}
        (staged / RECORD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        swap_in(scratch, target)
    log(f"{name}: installed {target / source.name} (sha256 {digest[:12]}...)")
    log(f"{name}: remember: licence: {licence}")
    return target / source.name


def uninstall(name: str, log=print) -> bool:
    if name not in opt_in_models():
        raise InstallError(f"{name!r}: not an opt-in bundled model")
    return remove(install_dir(name), name, log)
