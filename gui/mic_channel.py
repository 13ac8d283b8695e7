"""The microphone's channel: its effect chain (run on the engine's ``MicLane``) and its level."""

from __future__ import annotations

import numpy as np


class MicChannel:
    """The microphone's effect chain, run by the engine's ``MicLane`` on a thread of its own (effect
    hosts allocate: never in the callback), and the mic's level after it.

    ``set_chain`` builds a new chain off the audio threads and swaps the reference (the lane picks
    it up on its next chunk); the mic's gain and mute are applied after it, in the callback
    (``Params.mic_gain``, ``Params.mic_mute``).
    """

    def __init__(self, rate: int):
        self.rate = rate
        self.chain = None
        self.latency = 0  # samples the chain adds (MicLane reads it)
        self.errors: list[str] = []
        self.peak = 0.0  # after the chain: the recent peak, falling 20 dB/s (any reader, nothing taken)
        self.mean_square = 0.0  # smoothed over about 300 ms

    def set_chain(self, specs) -> None:
        from plugins.effects import EffectChain

        active = [dict(s) for s in (specs or []) if not s.get("bypass")]
        chain = EffectChain(active, self.rate, channels=1, name="mic") if active else None
        self.errors = list(chain.errors) if chain is not None else []
        self.chain = chain
        self.latency = chain.latency if chain is not None else 0

    def __call__(self, mic_in: np.ndarray, mic_out: np.ndarray) -> None:
        chain = self.chain  # one read: the UI may swap it
        if chain is not None:
            mic_out[:, 0] = chain.process(mic_in.T)[0]
        elif mic_out is not mic_in:
            mic_out[:] = mic_in
        x = mic_out[:, 0]
        n = len(x)
        if n:
            fall = 10.0 ** (-1.0 * n / self.rate)  # 20 dB/s
            self.peak = max(float(np.max(np.abs(x))), self.peak * fall)
            keep = float(np.exp(-n / (0.3 * self.rate)))
            self.mean_square = keep * self.mean_square + (1.0 - keep) * float(np.dot(x, x)) / n

    def levels(self) -> tuple[float, float]:
        """Linear (peak, rms) of the mic after its chain (before gain and mute)."""
        return self.peak, self.mean_square ** 0.5
