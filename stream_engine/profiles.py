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


PROFILES = {
    "live": Profile("live", 256, "QQ", 20.0, "a singer monitoring, a streamer"),
    "balanced": Profile("balanced", 512, "HQ", 100.0, "karaoke from a player"),
    "quality": Profile("quality", 1024, "HQ", 1000.0, "DAW work with latency compensation"),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
