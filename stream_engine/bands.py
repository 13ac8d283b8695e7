"""The band above a model's Nyquist frequency, separated by the stereo image.

A model trained on 16 kHz data hears nothing above 8 kHz, yet a 44.1/48 kHz
stream carries cymbals, air and vocal sibilance there. Dropping that band
would dull every stem; giving it all to the accompaniment would leak the
singer's "s" into the karaoke mix. Instead the pipeline splits the stream:

    high = x - up(down(x))          what the model cannot hear
    high -> dsp-center              centre (vocals) vs sides (accompaniment)

and adds the result to the model's stems, delayed so both bands line up.
``HighBand`` produces that second set of stems.
"""

from __future__ import annotations

import numpy as np

from .separators.framer import Framer
from .resample import StreamResampler
from .separators.dsp_center import DspCenter


class HighBand:
    """Stream in, (stems, channels, n) of the high band out."""

    def __init__(self, stems, stream_rate: int, model_rate: int, channels: int, profile, trim: bool):
        self.stems = tuple(stems)
        self.channels = channels
        quality = profile.resample_quality
        self.down = StreamResampler(stream_rate, model_rate, channels, quality)
        self.up = StreamResampler(model_rate, stream_rate, channels, quality)
        self.centre = DspCenter(profile.name, sample_rate=stream_rate, band_hz=(0.0, stream_rate / 2))
        self.framer = Framer(self.centre, channels, trim=trim)
        # which model stem receives the centre and which the sides
        self.vocal_index = self.stems.index("vocals") if "vocals" in self.stems else None
        rest = [s for s in ("accompaniment", "instrumental", "other") if s in self.stems]
        self.side_index = self.stems.index(rest[0]) if rest else None
        self.reset()

    @property
    def latency(self) -> int:
        return self.framer.latency

    def reset(self) -> None:
        self.down.reset()
        self.up.reset()
        self.framer.reset()
        self._pending = np.zeros((self.channels, 0), np.float32)  # input waiting for its low band

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        self._pending = np.concatenate([self._pending, x], axis=1)
        low = self.up.process(self.down.process(x, last=last), last=last)
        n = min(low.shape[1], self._pending.shape[1])
        high = self._pending[:, :n] - low[:, :n]
        self._pending = self._pending[:, n:]
        return self._assign(self.framer.push(high))

    def flush(self) -> np.ndarray:
        head = self.process(np.zeros((self.channels, 0), np.float32), last=True)
        if self._pending.shape[1]:  # resampler rounding: treat the rest as high band
            head = np.concatenate([head, self._assign(self.framer.push(self._pending))], axis=2)
            self._pending = self._pending[:, :0]
        return np.concatenate([head, self._assign(self.framer.flush())], axis=2)

    def _assign(self, centre_sides: np.ndarray) -> np.ndarray:
        """Centre -> vocals, sides -> accompaniment (or the nearest stems there are)."""
        last = len(self.stems) - 1
        side = self.side_index if self.side_index is not None else last
        centre = self.vocal_index if self.vocal_index is not None else side
        out = np.zeros((len(self.stems), self.channels, centre_sides.shape[2]), np.float32)
        out[centre] += centre_sides[0]
        out[side] += centre_sides[1]
        return out
