"""Settings and the last session, as JSON in ``user_config_dir("stemstream")``.

``$STEMSTREAM_CONFIG_DIR`` overrides the folder (tests, portable installs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "STEMSTREAM_CONFIG_DIR"


def config_dir() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("stemstream"))


def data_dir() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser() / "data"
    from platformdirs import user_data_dir

    return Path(user_data_dir("stemstream"))



def write_json(path: Path, data, what: str) -> str | None:
    """Write ``data`` to ``path`` through a temporary file (a crash leaves the old file whole);
    returns an error message naming ``what`` and the path, or None."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        return f"could not save {what} to {path}: {exc}"
    return None

class Settings:
    """A dict saved atomically to ``gui.json``; a broken file is set aside, not fatal."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else config_dir() / "gui.json"
        self.data: dict = {}
        self.problem: str | None = None
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.data = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError) as exc:
                self.problem = f"settings file {self.path} could not be read ({exc}); starting with defaults"
                try:
                    self.path.replace(self.path.with_suffix(".json.broken"))
                except OSError:
                    pass

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def set(self, key: str, value) -> None:
        self.data[key] = value

    def save(self) -> str | None:
        return write_json(self.path, self.data, "settings")


class ResultHistory:
    """The Files tab's separated tracks, kept in ``results.json`` beside the settings so they
    are listed again after a restart; entries whose files are gone are dropped on load."""

    LIMIT = 200

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else config_dir() / "results.json"
        self.entries: list[dict] = []
        try:
            loaded = json.loads(self.path.read_text()) if self.path.exists() else []
        except (OSError, ValueError):
            loaded = []
        for entry in loaded if isinstance(loaded, list) else []:
            files = entry.get("files") if isinstance(entry, dict) else None
            if isinstance(files, dict) and files and all(Path(f).exists() for f in files.values()):
                self.entries.append(entry)

    def add(self, entry: dict) -> None:
        """Newest first; a track separated again into the same folder replaces its old entry."""
        folder = entry.get("folder")
        self.entries = [e for e in self.entries if e.get("folder") != folder]
        self.entries.insert(0, entry)
        del self.entries[self.LIMIT:]

    def remove(self, folder: str) -> None:
        self.entries = [e for e in self.entries if e.get("folder") != folder]

    def save(self) -> str | None:
        return write_json(self.path, self.entries, "the list of results")
