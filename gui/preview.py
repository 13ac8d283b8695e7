"""The Files tab's preview: a separated track's outputs mixed like a small mixer.

``MixPlayer`` plays the sum of the track's stems, each at its level, muted or
soloed; the mixes ``stemstream separate`` also writes (``instrumental``,
``karaoke``) are heard only when soloed, since they already contain the
stems. Soloing one output and then another switches at the same position
(A/B compare). Nothing here touches Qt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream_engine import devices
from stream_engine.offline import OFFLINE_BUSES
from stream_engine.params import DEFAULT_GUIDE

STEM_DESCRIPTIONS = {
    "vocals": "the voice",
    "accompaniment": "everything but the voice",
    "drums": "drums and percussion",
    "bass": "bass",
    "other": "guitars, keys and the rest",
}


def output_description(name: str, stems) -> str:
    """What an output file holds, in a few words (the GUI shows it beside the name)."""
    stems = list(stems)
    if name == "instrumental":
        others = [s for s in stems if s != "vocals"]
        if others == ["accompaniment"]:
            return "mix: all but the vocals (same audio as accompaniment)"
        return "mix: all but the vocals (" + " + ".join(others) + ")"
    if name == "karaoke":
        return f"mix: instrumental + vocals at {DEFAULT_GUIDE * 100:.0f} % (a guide to sing along with)"
    return "stem: " + STEM_DESCRIPTIONS.get(name, "separated by the model")


def is_mix(name: str) -> bool:
    return name in OFFLINE_BUSES


def read_outputs(files: dict[str, Path], device_rate: int | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Read a track's outputs as (frames, 2) float32, resampled to ``device_rate`` if given."""
    from stream_engine.audio_io import read_audio

    tracks, rate = {}, None
    for name, path in files.items():
        data, rate = read_audio(path)
        if device_rate and rate != device_rate:
            import soxr

            data = soxr.resample(data.T, rate, device_rate, "HQ").T
            rate = device_rate
        if data.shape[0] == 1:
            data = np.repeat(data, 2, axis=0)
        tracks[name] = np.ascontiguousarray(data[:2].T)
    return tracks, rate or 44100


def load_track(files: dict[str, Path], device_rate: int | None, columns: int = 1200):
    """Read a track's outputs (resampled to the device) and their waveforms: slow, call it off the UI thread.

    Returns (tracks {name: (frames, 2) float32}, rate, envelopes {name: (2, columns)}).
    """
    from .widgets import envelope

    tracks, rate = read_outputs(files, device_rate)
    envelopes = {name: envelope(data, columns) for name, data in tracks.items()}
    # drawn relative to the track's loudest output: quiet stems stay visible, levels stay comparable
    loudest = max((float(np.abs(e).max()) for e in envelopes.values() if e.size), default=0.0)
    if loudest > 1e-4:
        envelopes = {name: e / loudest for name, e in envelopes.items()}
    return tracks, rate, envelopes


class MixPlayer:
    """Plays a track's outputs through one PortAudio stream, mixed by level, mute and solo."""

    def __init__(self):
        self.tracks: dict[str, np.ndarray] = {}
        self.gains: dict[str, float] = {}
        self.mutes: set[str] = set()
        self.solos: set[str] = set()
        self.position = 0
        self.length = 0
        self.rate = 44100
        self.stream = None
        self.paused = False
        self._plan: tuple = ()  # ((samples, gain), ...) heard now; replaced whole, read once per callback
        self._scratch = np.zeros((8192, 2), np.float32)

    # -- what is heard ---------------------------------------------------------
    def set_tracks(self, tracks: dict[str, np.ndarray], rate: int) -> None:
        self.close()
        self.tracks, self.rate = tracks, rate
        self.length = min(len(t) for t in tracks.values()) if tracks else 0
        self.position = 0
        self.gains = {name: self.gains.get(name, 1.0) for name in tracks}
        self.mutes &= set(tracks)
        self.solos &= set(tracks)
        self._replan()

    def audible(self) -> list[str]:
        """Soloed outputs if any are, else every stem (not the mixes); muted ones never."""
        if self.solos:
            return [n for n in self.tracks if n in self.solos and n not in self.mutes]
        return [n for n in self.tracks if not is_mix(n) and n not in self.mutes]

    def _replan(self) -> None:
        self._plan = tuple((self.tracks[n], float(self.gains.get(n, 1.0))) for n in self.audible())

    def set_gain(self, name: str, gain: float) -> None:
        self.gains[name] = float(gain)
        self._replan()

    def set_mute(self, name: str, on: bool) -> None:
        (self.mutes.add if on else self.mutes.discard)(name)
        self._replan()

    def set_solo(self, name: str, on: bool) -> None:
        (self.solos.add if on else self.solos.discard)(name)
        self._replan()

    @property
    def current(self) -> str | None:
        """The one soloed output (what a click on a stem plays), else None (the mix)."""
        return next(iter(self.solos)) if len(self.solos) == 1 else None

    @current.setter
    def current(self, name: str | None) -> None:
        self.solos = {name} if name else set()
        self._replan()

    # -- transport ---------------------------------------------------------------
    def play(self, name: str | None = None, device=None) -> None:
        """Start (or resume) playing; ``name`` solos that output alone."""
        if name is not None:
            if name not in self.tracks:
                raise KeyError(f"no output {name!r} loaded")
            self.current = name
        self.paused = False
        if self.position >= self.length:
            self.position = 0
        if self.stream is None:
            sd = devices.portaudio()
            self.stream = sd.OutputStream(device=device, samplerate=self.rate, channels=2, dtype="float32",
                                          callback=self._callback)
            self.stream.start()

    def pause(self) -> None:
        self.paused = True

    def seek(self, fraction: float) -> None:
        self.position = int(max(0.0, min(1.0, fraction)) * self.length)

    @property
    def playing(self) -> bool:
        return self.stream is not None and not self.paused and self.position < self.length

    def _callback(self, outdata, frames, time_info, status):
        outdata[:] = 0
        p = self.position
        if self.paused or p >= self.length:
            return
        n = min(frames, self.length - p)
        if n > len(self._scratch):  # a larger device block than expected: grow once
            self._scratch = np.zeros((n, 2), np.float32)
        scratch = self._scratch[:n]
        for samples, gain in self._plan:
            np.multiply(samples[p:p + n], gain, out=scratch)
            outdata[:n] += scratch
        self.position = p + n

    def stop(self) -> None:
        self.close()
        self.position = 0

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - closing a broken stream: nothing left to do
                pass
