"""Settings and the last session, as JSON in ``user_config_dir("stemstream")``.

``$STEMSTREAM_CONFIG_DIR`` overrides the folder (tests, portable installs).
"""

from __future__ import annotations

import json
import logging
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

# The type each known setting must have (None: may be unset). A value of another type is treated
# like a corrupt file: warned about, the file kept as gui.json.broken, the default used instead.
SCHEMA: dict[str, tuple] = {
    "geometry": (str,), "tab": (str,), "input": (str, type(None)), "output": (str, type(None)),
    "model": (str, type(None)), "profile": (str,), "key_stage": (bool,), "mic_channel": (int, str, type(None)),
    "fx": (dict,), "params": (dict,), "files_out": (str,), "files_model": (str, type(None)),
    "files_profile": (str,), "osc_port": (int,), "routes": (dict, type(None)), "mic_device": (str, type(None)),
    # the app's own later keys (issue 26): master bus, JACK connections, the player's queue
    "master": (dict,), "jack_connections": (dict,), "queue": (list,), "songs": (dict,), "loop_song": (bool,),
}


def _fits(key: str, value) -> bool:
    kinds = SCHEMA.get(key)
    if kinds is None:
        return True
    if isinstance(value, bool) and bool not in kinds:  # True is an int to Python, not a port
        return False
    if not isinstance(value, kinds):
        return False
    if key == "osc_port":
        return -1 <= value <= 65535
    if key == "fx":  # stem -> list of effect specs (objects)
        return all(isinstance(k, str) and isinstance(v, list) and all(isinstance(e, dict) for e in v)
                   for k, v in value.items())
    return True


def _set_aside(path: Path) -> None:
    """Keep a copy of a file we could not use as ``<name>.broken`` (the user's data is never lost)."""
    import shutil

    from stream_engine.untrusted import is_regular_file

    broken = path.with_suffix(path.suffix + ".broken")
    try:
        if is_regular_file(path) and not path.is_symlink():
            shutil.copyfile(path, broken)
        else:  # a FIFO, a device or a link: moved aside as it is (copying /dev/zero would never end)
            os.replace(path, broken)
    except OSError:
        pass


def _read(path: Path):
    from stream_engine.untrusted import read_json

    return read_json(path, "settings file", 4 * 1024 * 1024)  # a regular file, size and depth limited


class Settings:
    """A dict saved atomically to ``gui.json``; a broken file, or a value of the wrong type, is set
    aside (``gui.json.broken``) and the default used: never fatal."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else config_dir() / "gui.json"
        self.data: dict = {}
        self.problem: str | None = None
        if os.path.lexists(self.path):
            try:
                loaded = _read(self.path)
            except ValueError as exc:  # UntrustedInputError: not JSON, a FIFO, too big, too deep
                self.problem = f"{exc}; starting with defaults (the file is kept as {self.path.name}.broken)"
                _set_aside(self.path)
                return
            if not isinstance(loaded, dict):
                self.problem = (f"settings file {self.path} holds a {type(loaded).__name__}, not an object; starting "
                                f"with defaults (the file is kept as {self.path.name}.broken)")
                _set_aside(self.path)
                return
            bad = [k for k, v in loaded.items() if not _fits(k, v)]
            if bad:
                self.problem = (f"settings file {self.path}: wrong type for {', '.join(bad)} "
                                f"({', '.join(f'{k}={loaded[k]!r}'[:60] for k in bad)}); using the default for "
                                f"{'it' if len(bad) == 1 else 'them'} (the file is kept as {self.path.name}.broken)")
                _set_aside(self.path)
            self.data = {k: v for k, v in loaded.items() if k not in bad}

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
        self.problem: str | None = None
        loaded = []
        if os.path.lexists(self.path):
            try:
                loaded = _read(self.path)
            except ValueError as exc:
                loaded = None
                self.problem = f"{exc}"
            if not isinstance(loaded, list):
                # set aside before the next save overwrites it: the list is the user's work
                self.problem = self.problem or f"{self.path} holds a {type(loaded).__name__}, not a list"
                self.problem += f"; the list of results starts empty (the file is kept as {self.path.name}.broken)"
                _set_aside(self.path)
                logging.getLogger("stemstream.gui").warning("%s", self.problem)
                loaded = []
        for entry in loaded:
            files = entry.get("files") if isinstance(entry, dict) else None
            if isinstance(files, dict) and files and all(isinstance(f, str) and Path(f).exists()
                                                         for f in files.values()) \
                    and isinstance(entry.get("folder", ""), str):
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
