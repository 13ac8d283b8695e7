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
    karaoke: bool = True  # main mix: vocals reduced to the guide level
    guide: float = DEFAULT_GUIDE
    key: int = 0  # semitones applied to the accompaniment
    mic_gain: float = 1.0
    # effect parameters: (stem, chain index, param name) -> value
    fx: Mapping[tuple[str, int, str], float] = field(default_factory=lambda: MappingProxyType({}))

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
        return replace(self, **changes)

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
