"""Preset folders shared by effect chains and DAW surfaces: bundled JSON files,
shadowed by the user's own of the same name."""

from __future__ import annotations

import os
from pathlib import Path


def user_preset_dir(kind: str, env_var: str) -> Path:
    """``$env_var``, else ``$XDG_CONFIG_HOME/stemstream/presets/<kind>`` (``~/.config`` by default)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stemstream" / "presets" / kind


def list_preset_files(package_dir: Path, user_dir: Path) -> dict[str, Path]:
    """Preset name -> JSON file; a user preset shadows a bundled one of the same name."""
    found: dict[str, Path] = {}
    for folder in (package_dir, user_dir):
        if folder.is_dir():
            for f in sorted(folder.glob("*.json")):
                found[f.stem] = f
    return found
