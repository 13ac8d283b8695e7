"""Settings keys the window and its parts share, and the default of the ``files_out`` setting."""

from __future__ import annotations

from pathlib import Path

from .settings import data_dir

MASTER_SETTING = "master"  # {"gain": linear, "limiter": bool}
JACK_CONNECTIONS_SETTING = "jack_connections"  # {port name: [peers]}: restored on the next Start


def default_output_folder() -> Path:
    """Where separated files go unless the user chose: a folder they can find (``~/Music/stemstream``,
    or ``~/stemstream`` without a Music folder), not the hidden data folder. Under
    ``$STEMSTREAM_CONFIG_DIR`` (tests, portable set-ups) it stays beside the rest."""
    import os

    if os.environ.get("STEMSTREAM_CONFIG_DIR"):
        return data_dir() / "separated"
    music = Path.home() / "Music"
    return (music if music.is_dir() else Path.home()) / "stemstream"
