"""Latency / quality trade-offs (DESIGN.md, "Latency")."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    block: int  # device block at 48 kHz; the live command may override it
    resample_quality: str  # soxr quality between the stream and the model rate
    latency_target_ms: float
    description: str
    # Compute budget in device blocks: how far ahead of the callback the worker
    # runs. One block is the theoretical minimum; two absorb scheduler hiccups
    # on a busy machine (measured: 1-4 misses per 10 s with one block under
    # load, none with two).
    budget_blocks: int = 2
    # False: for files only (separate, eval); live front ends do not offer it.
    realtime: bool = True
    # A separator with no framing of its own for this profile uses this one's.
    falls_back_to: str | None = None


PROFILES = {
    "live": Profile("live", 256, "QQ", 20.0, "a singer monitoring, a streamer"),
    # 250 ms: Spleeter at hop 4 (what a quiet 2-core machine sustains) measures 232 ms (models README)
    "balanced": Profile("balanced", 512, "HQ", 250.0, "karaoke from a player"),
    "quality": Profile("quality", 1024, "HQ", 1000.0, "DAW work with latency compensation"),
    "offline": Profile("offline", 16384, "VHQ", float("inf"), "files, where latency does not matter",
                       realtime=False, falls_back_to="quality"),
}
REALTIME_PROFILES = [name for name, p in PROFILES.items() if p.realtime]

# An input the listener never hears unseparated (a file played through the engine) makes its
# input-to-output latency free: only start, seek and a song change feel it. Such inputs run the
# best model that keeps up (``registry.file_input_choice``) at this profile, with a device block
# of FILE_INPUT_BLOCK: faders, mutes and listen modes are mixed two blocks ahead of the callback
# (realtime.py), so a change is heard within about 40 ms (measured: stream_engine/tools/fader_response.py).
FILE_INPUT_PROFILE = "quality"
FILE_INPUT_BLOCK = 512


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def pick_framing(table: dict, profile: str):
    """``table[profile]``, or the entry of the profile it falls back to (offline: quality)."""
    if profile in table:
        return table[profile]
    fallback = PROFILES[profile].falls_back_to if profile in PROFILES else None
    if fallback in table:
        return table[fallback]
    raise ValueError(f"no framing for profile {profile!r} (known: {', '.join(table)})")
