"""The bundled demo song: composed and rendered by ``song.py`` (no third-party audio)."""

from pathlib import Path

DEMO_SONG = Path(__file__).resolve().parent / "demo_song.flac"
