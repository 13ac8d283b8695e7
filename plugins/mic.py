"""The singer's microphone chain.

``MicChain`` matches ``stream_engine.realtime.MicProcessor``:
``mic(inp, out)`` with frames-major ``[frames, channels]`` float32 arrays
(``out`` may be ``inp``): the chain's result is written into ``out``.

The engine runs it on its own thread (``stream_engine.realtime.MicLane``),
one device block behind the callback: Pedalboard allocates the output array
of each effect and holds the GIL while it runs (measured by ``bench_mic``),
which the audio callback must not do. It never raises: a failing effect is
bypassed (see ``EffectChain``); an unexpected error copies the input through
and is counted in ``failures``.
"""

from __future__ import annotations

import logging

import numpy as np

from .effects import EffectChain

log = logging.getLogger("stemstream.plugins")


class MicChain:
    def __init__(self, chain: EffectChain):
        self.chain = chain
        self.failures = 0
        if chain.latency:
            log.warning("mic chain %r adds %d samples of latency to the monitoring path", chain.name, chain.latency)

    @classmethod
    def from_preset(cls, preset="mic-vocal", sample_rate: int = 48000, channels: int = 1, user_dir=None) -> "MicChain":
        return cls(EffectChain.from_preset(preset, sample_rate, channels, user_dir))

    @property
    def latency(self) -> int:
        return self.chain.latency

    @property
    def errors(self) -> list[str]:
        return self.chain.errors

    def reset(self) -> None:
        self.chain.reset()

    def __call__(self, inp: np.ndarray, out: np.ndarray) -> None:
        try:
            y = self.chain.process(inp.T)
            np.copyto(out, y.T)
        except Exception:  # noqa: BLE001 - never raise into the mic thread (the raw mic would play)
            self.failures += 1
            if out is not inp:
                np.copyto(out, inp)


def bench_mic(preset="mic-vocal", sample_rate: int = 48000, block: int = 256, seconds: float = 5.0) -> dict:
    """Print and return the per-callback cost of the mic chain (mono, frames-major, in place)."""
    import time

    mic = MicChain.from_preset(preset, sample_rate, 1)
    rng = np.random.default_rng(0)
    buf = np.zeros((block, 1), np.float32)
    n_blocks = int(seconds * sample_rate / block)
    times = []
    for _ in range(n_blocks):
        buf[:, 0] = 0.1 * rng.standard_normal(block)
        t0 = time.perf_counter()
        mic(buf, buf)
        times.append(time.perf_counter() - t0)
    t = np.array(times[10:]) * 1e3
    budget = block / sample_rate * 1e3
    res = {"preset": preset, "block": block, "sample_rate": sample_rate, "latency_samples": mic.latency,
           "median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
           "budget_ms": budget, "failures": mic.failures, "errors": mic.errors}
    print(f"mic chain bench: {preset} mono at {sample_rate} Hz / {block} frames: median {res['median_ms']:.3f} ms, "
          f"p99 {res['p99_ms']:.3f} ms, max {res['max_ms']:.3f} ms per callback ({budget:.2f} ms budget); "
          f"latency {mic.latency} samples")
    return res
