"""Changing the model, profile, stages or routing while the output stream plays.

A front end calls ``RealtimeEngine.switch(build)``, where ``build()`` returns
the new Pipeline (separator loaded, stages built). Nothing of it touches the
audio callback:

    builder thread: build() -> Chain (its own mixer and router, holdback
                    measured, budget) -> primed with the input history the
                    input ring still holds -> handed over (one reference)
    worker thread:  catches the new chain up to its read position, feeds both
                    chains the same input for ``fade`` frames and writes their
                    crossfade (sin² weights that sum to one), then drops the old

Each chain plays at its own latency: output position ``o`` of a chain is its
separation of input ``o - chain.delay``. A switch between chains of different
latency therefore blends two views of the music that are that far apart (a
few ms between the live models) across the crossfade, and never leaves a gap:
the new chain was primed with enough past input that its output is already
valid where the fade begins. The callback's dry fallback follows the new
delay once the fade is over.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .mixer import Mixer, Router
from .params import Params

DEFAULT_FADE_MS = 30.0
PRIME_CHUNK = 2048  # frames per builder step: short enough to follow a moving input
PRIME_LIMIT_S = 10.0  # priming that has not caught up with the input by then fails the switch
# The builder sleeps this long between steps, so the worker gets the GIL and a core between them.
BUILDER_PAUSE_S = 0.0005


def measure_holdback(pipeline, block: int, params: Params, pause: float = 0.0) -> tuple[int, dict]:
    """Most frames ``pipeline`` keeps back when fed one block at a time, and its warm-up compute times.

    Runs the real pipeline on silence (which also warms the model up): hop
    granularity and soxr's buffering both show up here, measured rather than
    derived.
    """
    pipeline.reset()
    blocks = max(32, math.ceil(2 * max(pipeline.separator.spec.window, block) / block))
    silence = np.zeros((pipeline.channels, block), np.float32)
    pushed = produced = worst = 0
    for _ in range(min(blocks, 400)):
        produced += pipeline.process(silence, params).shape[2]
        if pause:
            time.sleep(pause)
        pushed += block
        worst = max(worst, pushed - produced)
    pipeline.reset()
    return worst, pipeline.compute.percentiles_ms()


def default_budget(pipeline, block: int, rate: int, warm_compute: dict) -> int:
    """The profile's blocks, or twice a typical warm-up call (p95) if longer.

    The p95 rather than the maximum: one call delayed by the scheduler
    during warm-up must not set the latency for the whole session.
    """
    typical_ms = warm_compute.get("p95") or 0.0
    blocks = pipeline.profile.budget_blocks * block
    return max(blocks, math.ceil(2.0 * typical_ms * rate / 1000.0))


def routes_for(routes: dict[str, list[int]], bus_names) -> tuple[dict[str, list[int]], list[str]]:
    """The routes a model with ``bus_names`` can play, and the buses it has no stem for."""
    kept = {bus: chans for bus, chans in routes.items() if bus in bus_names or bus == "mic"}
    return kept, [bus for bus in routes if bus not in kept]


class Chain:
    """One pipeline with its mixer and router: what the worker runs, and how late it plays."""

    def __init__(self, pipeline, block: int, routes: dict[str, list[int]], out_channels: int,
                 params: Params, budget: int | None = None, mixer: Mixer | None = None,
                 holdback: int | None = None, warm_compute: dict | None = None, pause: float = 0.0):
        self.pipeline = pipeline
        self.mixer = mixer or Mixer(pipeline.stems, pipeline.channels)
        self.router = Router(routes, self.mixer.bus_names, pipeline.channels, out_channels)
        if self.router.out_channels != out_channels:
            raise ValueError(f"routing needs {self.router.out_channels} output channels; the stream has {out_channels}")
        if holdback is None:
            holdback, warm_compute = measure_holdback(pipeline, block, params, pause)
        self.holdback = holdback
        self.warm_compute = warm_compute or {}
        self.budget = budget if budget is not None else default_budget(pipeline, block, pipeline.stream_rate,
                                                                        self.warm_compute)
        self.prefill = block + holdback + max(0, self.budget - block)
        # separated stems not mixed yet (RealtimeEngine mixes them just in time when the hop is long)
        self.pending: list[np.ndarray] = []
        self.pending_frames = 0

    def drop_held(self) -> None:
        self.pending, self.pending_frames = [], 0

    def hold(self, stems: np.ndarray) -> None:
        self.pending.append(stems)
        self.pending_frames += stems.shape[2]

    def take(self, n: int) -> np.ndarray:
        """The oldest ``n`` held frames, (stems, channels, n)."""
        parts, got = [], 0
        while got < n:
            head = self.pending[0]
            want = n - got
            if head.shape[2] <= want:
                parts.append(self.pending.pop(0))
            else:
                parts.append(head[:, :, :want])
                self.pending[0] = head[:, :, want:]
            got += parts[-1].shape[2]
        self.pending_frames -= n
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)

    def mix(self, stems: np.ndarray, params: Params) -> np.ndarray:
        """Stems (S, C, n) -> routed output (n, out_channels)."""
        return self.router.route(self.mixer.mix(stems, params))

    @property
    def signal_delay(self) -> int:
        return self.pipeline.framer_latency + self.pipeline.stage_latency

    @property
    def delay(self) -> int:
        """Output position minus the input position it plays (frames)."""
        return self.prefill + self.signal_delay

    def run(self, frames: np.ndarray, params: Params) -> np.ndarray:
        """Input (n, channels) -> routed output (m, out_channels), m what the pipeline finished."""
        stems = self.pipeline.process(frames.T, params)
        if stems.shape[2] == 0:
            return np.zeros((0, self.router.out_channels), np.float32)
        return self.mix(stems, params)

    def with_routes(self, routes: dict[str, list[int]], out_channels: int, params: Params) -> "Chain":
        """The same pipeline and mixer under other routing (no re-measuring)."""
        return Chain(self.pipeline, 0, routes, out_channels, params, budget=self.budget, mixer=self.mixer,
                     holdback=self.holdback, warm_compute=self.warm_compute)._keep_prefill(self.prefill)

    def _keep_prefill(self, prefill: int) -> "Chain":
        self.prefill = prefill
        return self


class Queue:
    """Output frames of one chain, by absolute output position (worker side; allocates freely)."""

    def __init__(self, start: int, channels: int):
        self.start = start
        self.frames = np.zeros((0, channels), np.float32)

    @property
    def end(self) -> int:
        return self.start + len(self.frames)

    def push(self, frames: np.ndarray) -> None:
        if len(frames):
            self.frames = np.concatenate([self.frames, frames])

    def take(self, begin: int, end: int) -> np.ndarray:
        """Frames for positions [begin, end) (silence where this queue has none); forgets what precedes ``end``."""
        out = np.zeros((max(0, end - begin), self.frames.shape[1]), np.float32)
        lo, hi = max(begin, self.start), min(end, self.end)
        if hi > lo:
            out[lo - begin:hi - begin] = self.frames[lo - self.start:hi - self.start]
        self.drop_before(end)
        return out

    def drop_before(self, position: int) -> None:
        cut = min(max(0, position - self.start), len(self.frames))
        if cut:
            self.frames = self.frames[cut:]
            self.start += cut
        elif position > self.start and not len(self.frames):
            self.start = position


@dataclass
class SwitchReport:
    """One switch as the stats report it (times in ms)."""

    what: str
    requested: float = field(default_factory=time.perf_counter)
    build_ms: float | None = None  # build() and measuring the new chain (builder thread)
    prime_ms: float | None = None  # feeding it the input history (builder thread)
    catch_up_frames: int = 0  # input the worker fed it at hand-over
    fade_ms: float = 0.0  # the crossfade, old chain to new
    gap_ms: float = 0.0  # output with neither chain (0 when priming covered the fade)
    latency_before_ms: float | None = None
    latency_after_ms: float | None = None
    misses_during: int = 0  # deadline misses while both chains ran
    fade_start: int | None = None  # output position (frames since the stream began) where the fade began
    dropped_routes: list = field(default_factory=list)
    error: str | None = None
    superseded: bool = False  # skipped: a later request of the same kind was queued behind it
    done: threading.Event = field(default_factory=threading.Event)
    callbacks: list = field(default_factory=list)  # called with the report on the builder thread when done

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()
                if k not in ("done", "requested", "callbacks")}


class Handover:
    """The worker's crossfade from ``old`` to ``new`` over output positions [start, start + fade)."""

    def __init__(self, old: Chain, new: Chain, new_queue: Queue, fed_until: int, start: int, fade: int,
                 report: SwitchReport):
        self.old, self.new = old, new
        self.old_queue = Queue(start, old.router.out_channels)
        self.new_queue = new_queue
        self.fed_until = fed_until  # next input position the new chain needs
        self.start, self.fade = start, max(1, fade)
        self.report = report
        self.shared = new.pipeline is old.pipeline  # a routing change: separate once, route twice

    @property
    def end(self) -> int:
        return self.start + self.fade

    def feed(self, frames: np.ndarray, params: Params) -> None:
        """The same input (n, channels) to both chains."""
        if self.shared:
            stems = self.old.pipeline.process(frames.T, params)
            if stems.shape[2]:
                self.old_queue.push(self.old.router.route(self.old.mixer.mix(stems, params)))
                self.new_queue.push(self.new.router.route(self.new.mixer.mix(stems, params)))
            return
        if self.old_queue.end < self.end:  # the old chain runs only as long as the fade needs it
            self.old_queue.push(self.old.run(frames, params))
        self.new_queue.push(self.new.run(frames, params))
        self.fed_until += len(frames)

    def ready_until(self, written: int) -> int:
        """How far output can be written: both chains inside the fade, the new one after it."""
        if written < self.end:
            both = min(self.old_queue.end, self.new_queue.end)
            if both < self.end:
                return both
        return self.new_queue.end

    def frames(self, written: int) -> np.ndarray:
        """Output for positions [written, ready): the crossfade where it overlaps them, the new chain after."""
        stop = self.ready_until(written)
        if stop <= written:
            return np.zeros((0, self.new.router.out_channels), np.float32)
        self.report.gap_ms += 1000.0 * max(0, min(stop, self.new_queue.start) - written) / self.new.pipeline.stream_rate
        new = self.new_queue.take(written, stop)
        fade_stop = min(stop, self.end)
        if written < fade_stop:
            old = self.old_queue.take(written, fade_stop)
            phase = (np.arange(written, fade_stop, dtype=np.float64) - self.start + 0.5) / self.fade
            rise = (np.sin(0.5 * np.pi * np.clip(phase, 0.0, 1.0)) ** 2).astype(np.float32)[:, None]
            span = fade_stop - written
            new[:span] = old * (1.0 - rise) + new[:span] * rise
        return new

    def finished(self, written: int) -> bool:
        return written >= self.end


def prime(chain: Chain, in_ring, start: int, params: Params, target: Callable[[], int],
          close_enough: int) -> tuple[Queue, int]:
    """Feed ``chain`` the input history from ``start`` until it is within ``close_enough``
    frames of ``target()`` (the worker's read position, which keeps moving).

    Returns the chain's output by output position and the next input position
    it needs. The ring's history is read without moving its read position, so
    the worker and the callback go on as before.
    """
    chain.pipeline.reset()
    queue = Queue(start + chain.prefill, chain.router.out_channels)
    position = start
    scratch = np.zeros((PRIME_CHUNK, chain.pipeline.channels), np.float32)
    rate = chain.pipeline.stream_rate
    deadline = time.perf_counter() + PRIME_LIMIT_S + (target() - start) / rate
    while True:
        behind = target() - position
        if behind <= close_enough:
            return queue, position
        if time.perf_counter() > deadline:  # slower than real time here: it could never take over
            raise RuntimeError(f"the new {chain.pipeline.separator.spec.name} chain cannot keep up with the "
                               f"input ({behind / rate:.1f} s behind after priming); the old one plays on")
        n = min(behind, PRIME_CHUNK)
        in_ring.copy_out(position, scratch[:n])
        queue.push(chain.run(scratch[:n], params))
        position += n
        time.sleep(BUILDER_PAUSE_S)
