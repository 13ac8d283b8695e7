"""From separated stems to named buses, and from buses to device channels.

Buses (each ``(channels, n)``):
- ``<stem>``: the stem after its fader (gain, mute, solo);
- ``main``: what the listen mode plays (``Params.listen``): every faded
  stem (full), all but the vocals (instrumental), the vocals alone
  (acappella), or instrumental plus the vocals at the guide level (karaoke):
  what the performer hears;
- ``instrumental``: every faded stem but the vocals;
- ``karaoke``: instrumental plus the vocals at the guide level.
Gain changes ramp linearly across one block (no zipper noise).
"""

from __future__ import annotations

import numpy as np

from .params import Params

VOCALS = "vocals"
MIX_BUSES = ("main", "instrumental", "karaoke")


class Mixer:
    """Faders and the listen mode: stems in, named buses out, meters of what is heard."""

    def __init__(self, stems: tuple[str, ...], channels: int):
        self.stems = tuple(stems)
        self.channels = channels
        self._gains = None  # gains applied at the end of the previous block
        # per stem + main: peak, rms (linear). A stem's row meters what it adds to main (after the
        # listen mode), so a strip never shows a level the main output does not play.
        self.meters = np.full((len(self.stems) + 1, 2), 0.0)

    @property
    def bus_names(self) -> tuple[str, ...]:
        return self.stems + MIX_BUSES

    def _target_gains(self, params: Params) -> np.ndarray:
        """Fader gains per stem, then each stem's weight in main (fader x listen mode)."""
        gains = params.stem_gains(self.stems)
        in_main = [g * w for g, w in zip(gains, params.listen_weights(self.stems))]
        return np.array(gains + in_main, dtype=np.float32)

    def _curves(self, params: Params, n: int) -> np.ndarray:
        """(2 x stems, n or 1): gains ramped linearly across the block from where the last one ended."""
        target = self._target_gains(params)
        start = target if self._gains is None else self._gains
        self._gains = target
        if n and not np.array_equal(start, target):
            ramp = (np.arange(1, n + 1, dtype=np.float32) / n)[None, :]
            return start[:, None] + (target - start)[:, None] * ramp
        return target[:, None]

    def mix(self, stems: np.ndarray, params: Params) -> dict[str, np.ndarray]:
        n = stems.shape[2]
        count = len(self.stems)
        curves = self._curves(params, n)
        buses = {name: stems[i] * curves[i] for i, name in enumerate(self.stems)}
        heard = [stems[i] * curves[count + i] for i in range(count)]  # each stem's part of main
        others = [buses[s] for s in self.stems if s != VOCALS]
        instrumental = np.sum(others, axis=0) if others else np.zeros((self.channels, n), np.float32)
        vocals = buses.get(VOCALS)
        karaoke = instrumental if vocals is None else instrumental + vocals * params.guide
        main = np.sum(heard, axis=0) if heard else np.zeros((self.channels, n), np.float32)
        buses.update(main=main, instrumental=instrumental, karaoke=karaoke)
        self._meter(heard + [main])
        return buses

    def _meter(self, signals: list[np.ndarray]) -> None:
        for i, bus in enumerate(signals):
            if bus.size:
                self.meters[i, 0] = float(np.max(np.abs(bus)))
                self.meters[i, 1] = float(np.sqrt(np.mean(np.square(bus, dtype=np.float64))))

    def meters_db(self) -> dict[str, tuple[float, float]]:
        """{bus: (peak dBFS, rms dBFS)} of the last block, -120 for silence; a stem's is its part of main."""
        db = 20.0 * np.log10(np.maximum(self.meters, 1e-6))
        return {name: (float(db[i, 0]), float(db[i, 1])) for i, name in enumerate(self.stems + ("main",))}


def parse_route(text: str) -> tuple[str, list[int]]:
    """``vocals=3,4`` -> ("vocals", [2, 3]) (channels given 1-based)."""
    name, sep, channels = text.partition("=")
    try:
        chans = [int(c) - 1 for c in channels.split(",")] if sep else []
    except ValueError:
        chans = []
    if not name or not chans or min(chans) < 0:
        raise ValueError(f"bad route {text!r}: write BUS=CH[,CH...], channels counted from 1, e.g. vocals=3,4")
    return name, chans


class Router:
    """Places buses on device output channels; also says what plays on a miss.

    A bus with as many channels as the music goes channel for channel; a
    stereo bus on one channel is summed to mono (halved); a mono bus on
    several channels is copied.
    """

    def __init__(self, routes: dict[str, list[int]], bus_names, channels: int, out_channels: int | None = None):
        unknown = [b for b in routes if b not in bus_names and b != "mic"]
        if unknown:
            raise ValueError(f"unknown bus {unknown[0]!r} in routing; buses are: {', '.join(bus_names)}, mic")
        self.routes = dict(routes)
        self.channels = channels
        used = [c for chans in routes.values() for c in chans]
        self.out_channels = max([out_channels or 0] + [c + 1 for c in used])
        self.matrix = {bus: self._matrix(chans) for bus, chans in self.routes.items() if bus != "mic"}

    def _matrix(self, chans: list[int]) -> np.ndarray:
        m = np.zeros((self.out_channels, self.channels), np.float32)
        if len(chans) == self.channels:
            for c, out in enumerate(chans):
                m[out, c] = 1.0
        elif len(chans) == 1:
            m[chans[0], :] = 1.0 / self.channels
        else:
            for k, out in enumerate(chans):
                m[out, k % self.channels] = 1.0
        return m

    def route(self, buses: dict[str, np.ndarray]) -> np.ndarray:
        """(frames, out_channels) for the output ring."""
        n = next(iter(buses.values())).shape[1]
        out = np.zeros((self.out_channels, n), np.float32)
        for bus, m in self.matrix.items():
            out += m @ buses[bus]
        return np.ascontiguousarray(out.T)

    def dry_matrix(self) -> np.ndarray:
        """(out_channels, channels): the dry input on channels carrying a mix.

        Channels carrying a single stem fall silent during a miss; the mix
        channels play the unseparated input (DESIGN.md, deadline policy).
        """
        dry = np.zeros((self.out_channels, self.channels), np.float32)
        for bus, m in self.matrix.items():
            if bus in MIX_BUSES:
                dry += m
        return dry

    def mic_channels(self) -> list[int]:
        return list(self.routes.get("mic", []))
