"""Latency accounting: every part that delays the sound, in samples and ms.

Two totals. *Algorithmic* latency is DESIGN.md's: what the design adds even
with infinitely fast compute (device block, hop and resampler buffering,
framer lookahead and crossfade, effects). The *total* adds what the live path
schedules on top of it: the compute budget the worker runs ahead by, and the
device's own input/output latency where PortAudio reports it. Profile targets
are for the algorithmic latency; DAWs are told the total (what they must
compensate).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LatencyReport:
    sample_rate: int
    parts: dict[str, int] = field(default_factory=dict)  # name -> stream-rate samples
    scheduled: set[str] = field(default_factory=set)  # names of the parts that are not algorithmic

    def add(self, name: str, samples: int, algorithmic: bool = True) -> None:
        self.parts[name] = self.parts.get(name, 0) + int(samples)
        if not algorithmic:
            self.scheduled.add(name)

    @property
    def samples(self) -> int:
        return sum(self.parts.values())

    @property
    def ms(self) -> float:
        return 1000.0 * self.samples / self.sample_rate

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    @property
    def algorithmic_samples(self) -> int:
        return sum(v for k, v in self.parts.items() if k not in self.scheduled)

    @property
    def algorithmic_ms(self) -> float:
        return 1000.0 * self.algorithmic_samples / self.sample_rate

    def as_dict(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "total_samples": self.samples,
            "total_ms": round(self.ms, 3),
            "algorithmic_samples": self.algorithmic_samples,
            "algorithmic_ms": round(self.algorithmic_ms, 3),
            "parts": {k: {"samples": v, "ms": round(1000.0 * v / self.sample_rate, 3),
                          "algorithmic": k not in self.scheduled} for k, v in self.parts.items()},
        }

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v} ({1000.0 * v / self.sample_rate:.2f} ms)" for k, v in self.parts.items())
        return (f"{self.samples} samples = {self.ms:.2f} ms at {self.sample_rate} Hz, of which algorithmic "
                f"{self.algorithmic_samples} = {self.algorithmic_ms:.2f} ms [{parts}]")
