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
import re
from pathlib import Path
from types import MappingProxyType

from .params import GUIDE_RANGE, KEY_RANGE, MIC_GAIN_RANGE, GAIN_RANGE, Params, clamp, listen_mode

SCENE_VERSION = 1
NAME = re.compile(r"^[\w][\w .-]{0,63}$")


def scenes_dir() -> Path:
    """``$STEMSTREAM_CONFIG_DIR/scenes``, else ``$XDG_CONFIG_HOME/stemstream/scenes`` (``~/.config``)."""
    env = os.environ.get("STEMSTREAM_CONFIG_DIR")
    if env:
        return Path(env).expanduser() / "scenes"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stemstream" / "scenes"


def scene_path(name: str) -> Path:
    """A scene's file: a bare name lives in ``scenes_dir()``; a path ending in .json is used as it is."""
    text = str(name).strip()
    if text.endswith(".json") and (os.sep in text or "/" in text):
        return Path(text).expanduser()
    if not NAME.match(text) or text in (".", ".."):
        raise ValueError(f"bad scene name {name!r}: letters, digits, space, '.', '-', '_' (at most 64)")
    return scenes_dir() / f"{text}.json"


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
    """``params`` with the scene's mixer applied (values clamped to their ranges; unknown stems ignored)."""
    if not isinstance(scene, dict) or scene.get("stemstream_scene") != SCENE_VERSION:
        raise ValueError("not a stemstream scene (version 1)")
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
    path = scene_path(name)
    try:
        scene = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"scene {name!r}: cannot read {path} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"scene {name!r}: {path} is not JSON ({exc})") from None
    if not isinstance(scene, dict) or scene.get("stemstream_scene") != SCENE_VERSION:
        raise ValueError(f"scene {name!r}: {path} is not a stemstream scene")
    return scene
