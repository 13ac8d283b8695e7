"""Latency accounting: every part that delays the sound, in samples and ms."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LatencyReport:
    sample_rate: int
    parts: dict[str, int] = field(default_factory=dict)  # name -> stream-rate samples

    def add(self, name: str, samples: int) -> None:
        self.parts[name] = self.parts.get(name, 0) + int(samples)

    @property
    def samples(self) -> int:
        return sum(self.parts.values())

    @property
    def ms(self) -> float:
        return 1000.0 * self.samples / self.sample_rate

    def as_dict(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "total_samples": self.samples,
            "total_ms": round(self.ms, 3),
            "parts": {k: {"samples": v, "ms": round(1000.0 * v / self.sample_rate, 3)} for k, v in self.parts.items()},
        }

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v} ({1000.0 * v / self.sample_rate:.2f} ms)" for k, v in self.parts.items())
        return f"{self.samples} samples = {self.ms:.2f} ms at {self.sample_rate} Hz [{parts}]"
