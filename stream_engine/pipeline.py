"""The one processing path shared by live and offline.

    x (stream rate) -> resample down -> Framer(separator) -> resample up
      -> stages (per-stem effects, key shift) -> stems (S, C, n)

``process`` takes any number of samples and returns whatever is finished;
``flush`` (offline) pads the end so the total output equals the total input.
Offline runs with ``trim=True``: the latency is removed and the output lines
up with the input sample for sample. Live runs untrimmed and the realtime
engine accounts for the delay.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .bands import HighBand
from .latency import LatencyReport
from .profiles import Profile
from .resample import StreamResampler
from .separators.base import Separator
from .separators.framer import Framer
from .stats import ComputeTimes

AUDIBLE_HZ = 20000.0


class Pipeline:
    def __init__(
        self,
        separator: Separator,
        stream_rate: int,
        channels: int,
        profile: Profile,
        stages: Sequence = (),
        trim: bool = False,
        full_band: bool = True,
    ):
        spec = separator.spec
        self.separator = separator
        self.stems = spec.stems
        self.stream_rate = stream_rate
        self.channels = channels
        self.profile = profile
        self.model_rate = spec.sample_rate or stream_rate
        self.stages = list(stages)
        self.trim = trim
        self.compute = ComputeTimes()
        # offline (trimmed) a model's NaN/inf output fails the file; live it is played dry and counted
        self.framer = Framer(separator, channels, trim=trim, on_call=self.compute.add,
                             nonfinite="raise" if trim else "dry")
        self.down = self.up = self.high = None
        if self.model_rate != stream_rate:
            q = profile.resample_quality
            self.down = StreamResampler(stream_rate, self.model_rate, channels, q)
            self.up = StreamResampler(self.model_rate, stream_rate, len(self.stems) * channels, q)
        # Above a model's Nyquist the stream's band is split by stereo image (bands.py), unless the
        # model already hears everything audible (44.1 kHz under a 48 kHz stream: 22-24 kHz is not).
        if self.model_rate < stream_rate and full_band and self.model_rate / 2 < AUDIBLE_HZ:
            self.high = HighBand(self.stems, stream_rate, self.model_rate, channels, profile, trim)
        self.stage_latency = sum(int(stage.latency) for stage in self.stages)
        self.reset()

    def reset(self) -> None:
        self.framer.reset()
        for resampler in (self.down, self.up):
            if resampler is not None:
                resampler.reset()
        for stage in self.stages:
            stage.reset()
        self._low_queue = self._high_queue = None
        if self.high is not None:
            self.high.reset()
            # Untrimmed (live), the faster band waits for the slower one.
            low_delay = 0 if self.trim else max(0, self.high.latency - self._model_latency)
            high_delay = 0 if self.trim else max(0, self._model_latency - self.high.latency)
            self._low_queue = np.zeros((len(self.stems), self.channels, low_delay), np.float32)
            self._high_queue = np.zeros((len(self.stems), self.channels, high_delay), np.float32)
        self._to_trim = self.stage_latency if self.trim else 0
        self.samples_in = 0
        self.samples_out = 0

    @property
    def _model_latency(self) -> int:
        return round(self.framer.latency * self.stream_rate / self.model_rate)

    @property
    def framer_latency(self) -> int:
        """The framer's latency in stream-rate samples (rounded); both bands' when split."""
        if self.high is None:
            return self._model_latency
        return max(self._model_latency, self.high.latency)

    def latency(self) -> LatencyReport:
        """Delay the signal itself carries (buffering is added by the realtime side)."""
        report = LatencyReport(self.stream_rate)
        report.add("framer (lookahead + crossfade)", self.framer_latency)
        if self.stage_latency:
            report.add("effects and key", self.stage_latency)
        return report

    def process(self, x: np.ndarray, params=None) -> np.ndarray:
        """``(channels, n)`` in, finished ``(stems, channels, m)`` out."""
        self.samples_in += x.shape[1]
        stems = self._up(self.framer.push(self._down(x)))
        if self.high is not None:
            stems = self._join_bands(stems, self.high.process(x))
        return self._after_bands(stems, params)

    def flush(self, params=None) -> np.ndarray:
        """End of the stream (offline): emit everything, total out == total in."""
        tail = []
        if self.down is not None:
            tail.append(self.framer.push(self.down.flush()))
        tail.append(self.framer.flush())
        stems = np.concatenate(tail, axis=2)
        out = [self._up(stems)]
        if self.up is not None:
            out.append(self._unflat(self.up.flush()))
        stems = np.concatenate(out, axis=2)
        if self.high is not None:
            stems = self._join_bands(stems, self.high.flush(), final=True)
        if self.stage_latency:
            pad = np.zeros((len(self.stems), self.channels, self.stage_latency), np.float32)
            stems = np.concatenate([stems, pad], axis=2)
        stems = self._stages(stems, params)
        missing = self.samples_in - self.samples_out
        if stems.shape[2] > missing:
            stems = stems[:, :, :missing]
        elif stems.shape[2] < missing:  # resampler rounding: at most a few samples
            pad = np.zeros((len(self.stems), self.channels, missing - stems.shape[2]), np.float32)
            stems = np.concatenate([stems, pad], axis=2)
        self.samples_out += stems.shape[2]
        return stems

    def _after_bands(self, stems: np.ndarray, params) -> np.ndarray:
        stems = self._stages(stems, params)
        self.samples_out += stems.shape[2]
        return stems

    def _join_bands(self, low: np.ndarray, high: np.ndarray, final: bool = False) -> np.ndarray:
        """Sum the bands sample for sample as both become available."""
        self._low_queue = np.concatenate([self._low_queue, low], axis=2)
        self._high_queue = np.concatenate([self._high_queue, high], axis=2)
        if final:  # rounding at the very end: the shorter band is padded with silence
            n = max(self._low_queue.shape[2], self._high_queue.shape[2])
            self._low_queue, self._high_queue = (
                np.pad(q, ((0, 0), (0, 0), (0, n - q.shape[2]))) for q in (self._low_queue, self._high_queue)
            )
        n = min(self._low_queue.shape[2], self._high_queue.shape[2])
        joined = self._low_queue[:, :, :n] + self._high_queue[:, :, :n]
        self._low_queue = self._low_queue[:, :, n:]
        self._high_queue = self._high_queue[:, :, n:]
        return joined

    def _down(self, x: np.ndarray) -> np.ndarray:
        return x if self.down is None else self.down.process(x)

    def _up(self, stems: np.ndarray) -> np.ndarray:
        if self.up is None:
            return stems
        flat = stems.reshape(len(self.stems) * self.channels, stems.shape[2])
        return self._unflat(self.up.process(flat))

    def _unflat(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape(len(self.stems), self.channels, -1)

    def _stages(self, stems: np.ndarray, params) -> np.ndarray:
        for stage in self.stages:
            stems = stage.process(stems, params)
        if self._to_trim and stems.shape[2]:
            cut = min(self._to_trim, stems.shape[2])
            self._to_trim -= cut
            stems = stems[:, :, cut:]
        return stems
