"""Scenes: the whole mixer as JSON (listen mode, faders, mutes, solos, guide, key, mic level,
effect chains and their parameters), saved and loaded by the GUI and over OSC.

A scene names stems, not a model: loading it onto a model with other stems
sets the stems both have and leaves the others at unity. Effect chains are
the editor's specs (``{stem: [effect spec, ...]}``); applying them rebuilds the
pipeline, which a running engine does as a switch (a crossfade).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType

from .untrusted import UntrustedInputError, check_plugin_path, child_path, plain_name, read_json
from .params import GUIDE_RANGE, KEY_RANGE, MIC_GAIN_RANGE, GAIN_RANGE, Params, clamp, listen_mode

SCENE_VERSION = 1
MAX_SCENE_BYTES = 1024 * 1024


def scenes_dir() -> Path:
    """``$STEMSTREAM_CONFIG_DIR/scenes``, else ``$XDG_CONFIG_HOME/stemstream/scenes`` (``~/.config``)."""
    env = os.environ.get("STEMSTREAM_CONFIG_DIR")
    if env:
        return Path(env).expanduser() / "scenes"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stemstream" / "scenes"


def scene_path(name: str) -> Path:
    """A scene's file: ``scenes_dir()/<name>.json``. A scene is named, never given as a path (OSC
    clients name scenes: a path would let them read or write any JSON file; SECURITY.md)."""
    text = name.strip() if isinstance(name, str) else name
    if isinstance(text, str) and text.endswith(".json"):
        text = text[:-5]  # "live set.json" names the scene "live set"
    try:
        return child_path(scenes_dir(), text, ".json", "scene name")
    except UntrustedInputError as exc:
        raise ValueError(f"{exc} (scenes live in {scenes_dir()})") from None


def list_scenes() -> list[str]:
    folder = scenes_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def scene_of(params: Params, chains: dict | None = None) -> dict:
    """The mixer as a JSON-ready dict."""
    return {
        "stemstream_scene": SCENE_VERSION,
        "listen": params.listen,
        "guide": float(params.guide),
        "key": int(params.key),
        "mic_gain": float(params.mic_gain),
        "stems": {s: {"gain": float(p.gain), "mute": bool(p.mute), "solo": bool(p.solo)}
                  for s, p in params.stems.items()},
        "fx_params": [[stem, int(i), name, float(v)] for (stem, i, name), v in params.fx.items()],
        "fx": chains if chains is not None else None,
    }


def params_from_scene(scene: dict, params: Params) -> Params:
    """``params`` with the scene's mixer applied (values clamped to their ranges; unknown stems ignored).
    A value of the wrong type is a ValueError naming it, never a traceback."""
    if not isinstance(scene, dict) or scene.get("stemstream_scene") != SCENE_VERSION:
        raise ValueError("not a stemstream scene (version 1)")
    try:
        return _params_from_scene(scene, params)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValueError(f"scene has a value of the wrong type or range: {exc}") from None


def _params_from_scene(scene: dict, params: Params) -> Params:
    p = params.with_(listen=listen_mode(scene.get("listen", params.listen)),
                     guide=clamp(float(scene.get("guide", params.guide)), *GUIDE_RANGE)[0],
                     key=int(clamp(int(scene.get("key", params.key)), *KEY_RANGE)[0]),
                     mic_gain=clamp(float(scene.get("mic_gain", params.mic_gain)), *MIC_GAIN_RANGE)[0])
    for stem, sp in (scene.get("stems") or {}).items():
        if stem in p.stems:
            p = p.with_stem(stem, gain=clamp(float(sp.get("gain", 1.0)), *GAIN_RANGE)[0],
                            mute=bool(sp.get("mute", False)), solo=bool(sp.get("solo", False)))
    fx = {(str(stem), int(i), str(name)): float(v) for stem, i, name, v in scene.get("fx_params") or []
          if stem in p.stems}
    return p.with_(fx=MappingProxyType(fx))


def save_scene(name: str, params: Params, chains: dict | None = None) -> Path:
    """Write the scene atomically; returns its path."""
    path = scene_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(scene_of(params, chains), indent=1))
    os.replace(tmp, path)
    return path


def load_scene(name: str) -> dict:
    """The scene named ``name`` from the scenes folder, checked: a regular file of at most
    ``MAX_SCENE_BYTES``, JSON nested at most 64 deep, a version-1 scene whose effect chains name
    presets by name and plugins only from the plugin folders (``check_chains``)."""
    path = scene_path(name)
    try:
        scene = read_json(path, "scene", MAX_SCENE_BYTES)
    except UntrustedInputError as exc:
        raise ValueError(f"scene {name!r}: {exc}") from None
    if not isinstance(scene, dict) or scene.get("stemstream_scene") != SCENE_VERSION:
        raise ValueError(f"scene {name!r}: {path} is not a stemstream scene")
    check_chains(scene.get("fx"), f"scene {name!r} ({path})")
    try:
        params_from_scene(scene, Params.for_stems(list(scene.get("stems") or {}) if isinstance(
            scene.get("stems"), dict) else []))  # wrong types fail now, with the file's name
    except ValueError as exc:
        raise ValueError(f"scene {name!r} ({path}): {exc}") from None
    return scene


def check_chains(chains, where: str) -> None:
    """Effect chains from a file (``{stem: preset name | [effect spec, ...]}``): presets by plain
    name only, plugins only from the plugin folders (untrusted.check_plugin_path); else ValueError."""
    if chains is None:
        return
    if not isinstance(chains, dict):
        raise ValueError(f"{where}: 'fx' must be an object of stem -> effect chain, not {type(chains).__name__}")
    for stem, chain in chains.items():
        try:
            if isinstance(chain, str):
                plain_name(chain, f"effect preset for {stem!r}")
                continue
            if not isinstance(chain, list):
                raise ValueError(f"effect chain for {stem!r} must be a preset name or a list of effects")
            for i, effect in enumerate(chain):
                if not isinstance(effect, dict) or not isinstance(effect.get("type", ""), str):
                    raise ValueError(f"effect {i} on {stem!r} must be an object with a 'type' name")
                if not isinstance(effect.get("params", {}), dict):
                    raise ValueError(f"effect {i} on {stem!r}: 'params' must be an object")
                if "path" in effect or effect.get("type", "").lower() in EXTERNAL_TYPES:
                    check_plugin_path(effect.get("path"), f"effect {i} on {stem!r}")
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


EXTERNAL_TYPES = ("vst3", "vst", "plugin", "au", "external")
