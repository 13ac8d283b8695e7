"""Mixer parameters as an immutable snapshot, swapped whole.

Controls (GUI, OSC, CLI) never mutate what the audio side reads: they build a
new ``Params`` with ``replace``-style helpers and hand it to
``ParamStore.set``. The worker reads ``ParamStore.current`` once per block;
replacing a reference is atomic in CPython, so no lock is shared with the
audio path. Listeners (OSC feedback, GUI) are told after each change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Mapping

GAIN_RANGE = (0.0, 2.0)
GUIDE_RANGE = (0.0, 1.0)
KEY_RANGE = (-12, 12)
MIC_GAIN_RANGE = (0.0, 2.0)
DEFAULT_GUIDE = 0.15  # a quiet guide vocal in the karaoke mix
# What the main bus plays (the listen selector). ``karaoke`` keeps the vocals at the guide level.
LISTEN_MODES = ("full", "instrumental", "acappella", "karaoke")
LISTEN_LABELS = {"full": "Full mix", "instrumental": "Instrumental", "acappella": "A cappella",
                 "karaoke": "Karaoke (guide vocal)"}


def listen_mode(text: str) -> str:
    """A listen mode from a user's spelling (``A cappella``, ``a_cappella``, ``full mix``) or ValueError."""
    key = "".join(ch for ch in str(text).lower() if ch.isalnum())
    aliases = {"full": "full", "fullmix": "full", "all": "full", "instrumental": "instrumental",
               "acappella": "acappella", "vocals": "acappella", "karaoke": "karaoke"}
    if key not in aliases:
        raise ValueError(f"unknown listen mode {text!r}; choose one of {', '.join(LISTEN_MODES)}")
    return aliases[key]


def clamp(value, lo, hi):
    """Clamp and say whether clamping happened."""
    clamped = min(max(value, lo), hi)
    return clamped, clamped != value


@dataclass(frozen=True)
class StemParams:
    gain: float = 1.0
    mute: bool = False
    solo: bool = False


@dataclass(frozen=True)
class Params:
    stems: Mapping[str, StemParams] = field(default_factory=lambda: MappingProxyType({}))
    karaoke: bool = True  # main mix: vocals reduced to the guide level (same as listen == "karaoke")
    guide: float = DEFAULT_GUIDE
    key: int = 0  # semitones applied to the accompaniment
    mic_gain: float = 1.0
    mic_mute: bool = False  # the mic strip's mute (the app): silent without losing its level
    # effect parameters: (stem, chain index, param name) -> value
    fx: Mapping[tuple[str, int, str], float] = field(default_factory=lambda: MappingProxyType({}))
    # The main bus (LISTEN_MODES); None: from ``karaoke`` (older callers set only that flag).
    listen: str | None = None

    def __post_init__(self):
        # ``karaoke`` and ``listen`` say the same thing twice; keep them agreeing whichever was given
        if self.listen is None:
            object.__setattr__(self, "listen", "karaoke" if self.karaoke else "full")
        elif self.listen not in LISTEN_MODES:
            object.__setattr__(self, "listen", listen_mode(self.listen))
        object.__setattr__(self, "karaoke", self.listen == "karaoke")

    @classmethod
    def for_stems(cls, stems, **kw) -> "Params":
        return cls(stems=MappingProxyType({s: StemParams() for s in stems}), **kw)

    def stem(self, name: str) -> StemParams:
        return self.stems.get(name, StemParams())

    def with_stem(self, name: str, **changes) -> "Params":
        stems = dict(self.stems)
        stems[name] = replace(self.stem(name), **changes)
        return replace(self, stems=MappingProxyType(stems))

    def with_fx(self, stem: str, index: int, param: str, value: float) -> "Params":
        fx = dict(self.fx)
        fx[(stem, index, param)] = value
        return replace(self, fx=MappingProxyType(fx))

    def with_(self, **changes) -> "Params":
        if "karaoke" in changes and "listen" not in changes:  # the KARAOKE toggle: karaoke or the full mix
            changes["listen"] = "karaoke" if changes["karaoke"] else "full"
        elif "listen" in changes:
            changes["karaoke"] = changes["listen"] == "karaoke"
        return replace(self, **changes)

    def carried_to(self, stems) -> "Params":
        """This snapshot for another model's ``stems``: shared stems keep their fader, new ones start at unity."""
        kept = {s: self.stems[s] for s in stems if s in self.stems}
        return replace(self, stems=MappingProxyType({s: kept.get(s, StemParams()) for s in stems}),
                       fx=MappingProxyType({k: v for k, v in self.fx.items() if k[0] in stems}))

    def listen_weights(self, names) -> list[float]:
        """How much of each stem the main bus plays in this listen mode (before faders)."""
        vocal = {"full": 1.0, "instrumental": 0.0, "acappella": 1.0, "karaoke": self.guide}[self.listen]
        other = 0.0 if self.listen == "acappella" else 1.0
        return [vocal if n == "vocals" else other for n in names]

    def stem_gains(self, names) -> list[float]:
        """Effective linear gain per stem: gain, mute and solo applied."""
        any_solo = any(self.stem(n).solo for n in names)
        gains = []
        for n in names:
            p = self.stem(n)
            audible = not p.mute and (p.solo or not any_solo)
            gains.append(p.gain if audible else 0.0)
        return gains


Listener = Callable[[Params, Params], None]


class ParamStore:
    """Holds the current snapshot; writers serialise among themselves only."""

    def __init__(self, params: Params):
        self.current = params
        self._write_lock = threading.Lock()  # never taken by the audio side
        self._listeners: list[Listener] = []

    def set(self, params: Params) -> None:
        self.update(lambda _old: params)

    def update(self, change: Callable[[Params], Params]) -> Params:
        with self._write_lock:
            old = self.current
            new = change(old)
            self.current = new
            listeners = list(self._listeners)
        for listener in listeners:
            listener(old, new)
        return new

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._write_lock:
            self._listeners.append(listener)

        def unsubscribe():
            with self._write_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe
