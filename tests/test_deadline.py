"""Deadline policy: a separator slower than the block never stalls the callback.

``run_paced`` drives ``RealtimeEngine.callback`` every block period, as a
device would. The separator here keeps ``vocals = 0.5 * input`` (karaoke off,
so the separated output is half the input) and can be told to sleep longer
than a block on each call. What plays is then either the separated signal
(0.5 x the delayed input), the dry input (1.0 x, on a miss), or a crossfade
between them, so every output block tells which one the callback chose.

Durations are printed; the only timing asserted is that the callback never
lasted anywhere near one slow separator call (which it would if it ever
waited for the worker).
"""

from __future__ import annotations

import time

import numpy as np

from stream_engine.params import ParamStore, Params
from stream_engine.pipeline import Pipeline
from stream_engine.profiles import get_profile
from stream_engine.realtime import MicLane, RealtimeEngine, run_paced
from stream_engine.separators.base import Separator, SeparatorSpec

RATE = 48000
BLOCK = 256
PERIOD_MS = 1000.0 * BLOCK / RATE
SLOW_S = 0.030  # one slow call: about 5.6 blocks


class SlowHalf(Separator):
    """vocals = 0.5 x input, accompaniment = 0; sleeps ``SLOW_S`` per call while ``slow_calls`` > 0."""

    def __init__(self, hop: int = 128, fade: int = 32):
        self.spec = SeparatorSpec(name="slow-half", stems=("vocals", "accompaniment"), window=hop + fade,
                                  hop=hop, fade=fade)
        self.slow_calls = 0  # how many of the next calls are slow (-1: all of them)

    def separate(self, window: np.ndarray) -> np.ndarray:
        if self.slow_calls:
            time.sleep(SLOW_S)
            if self.slow_calls > 0:
                self.slow_calls -= 1
        segment = self.segment_of(window)
        out = np.zeros((window.shape[0], 2) + segment.shape[1:], np.float32)
        out[:, 0] = 0.5 * segment
        return out


class TimedCallback:
    """Times each callback and notes which blocks were misses."""

    def __init__(self, engine: RealtimeEngine, blocks: int, on_last=None):
        self.engine = engine
        self.inner = engine.callback
        self.durations: list[float] = []
        self.missed: list[bool] = []
        self.blocks, self.on_last = blocks, on_last

    def __call__(self, indata, outdata, frames, time_info, status):
        misses = self.engine.stats.misses
        started = time.perf_counter()
        self.inner(indata, outdata, frames, time_info, status)
        self.durations.append(time.perf_counter() - started)
        self.missed.append(self.engine.stats.misses > misses)
        if len(self.durations) == self.blocks and self.on_last is not None:
            self.on_last()  # let the worker finish quickly: run_paced stops the engine next


def source(seconds: float) -> np.ndarray:
    """A stereo tone: never silent for more than a sample at its zero crossings."""
    t = np.arange(int(seconds * RATE)) / RATE
    left = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    right = 0.3 * np.sin(2 * np.pi * 554.37 * t + 0.7)
    return np.ascontiguousarray(np.stack([left, right], axis=1), dtype=np.float32)


def run(slow_calls: int, seconds: float, start_slow_after: float = 0.0):
    separator = SlowHalf()
    store = ParamStore(Params.for_stems(separator.spec.stems, karaoke=False))
    engine = RealtimeEngine(Pipeline(separator, RATE, 2, get_profile("live")), BLOCK, store=store)
    x = source(seconds)
    timed = TimedCallback(engine, len(x) // BLOCK, on_last=lambda: setattr(separator, "slow_calls", 0))
    engine.callback = timed  # run_paced calls engine.callback
    if start_slow_after:
        import threading

        threading.Timer(start_slow_after, lambda: setattr(separator, "slow_calls", slow_calls)).start()
    else:
        separator.slow_calls = slow_calls
    played = run_paced(engine, x, realtime=True)
    return engine, timed, x, played


def report(name, engine, timed):
    d = np.array(timed.durations) * 1000.0
    s = engine.stats
    print(f"\n{name}: {len(d)} callbacks, {s.misses} misses, {s.dropped_frames} dropped late frames; "
          f"callback ms p50 {np.percentile(d, 50):.4f} p99 {np.percentile(d, 99):.4f} max {d.max():.4f} "
          f"(block period {PERIOD_MS:.2f} ms, one slow call {SLOW_S * 1000:.0f} ms); budget {engine.budget} frames, "
          f"latency {engine.latency().samples} samples")
    return d


def check_output(engine, timed, x, played):
    """Every block is 0.5 x (separated), 1.0 x (dry on a miss) or a crossfade of the delayed input."""
    lag = engine.latency().samples
    assert np.all(np.isfinite(played))
    expected = np.zeros_like(played)
    expected[lag:] = x[: len(played) - lag]
    start = -(-lag // BLOCK) + 1  # first whole block after the prefill
    blocks = len(played) // BLOCK
    missed = timed.missed
    wet = dry = 0
    for k in range(start, blocks):
        out = played[k * BLOCK : (k + 1) * BLOCK]
        ref = expected[k * BLOCK : (k + 1) * BLOCK]
        if missed[k] and missed[k - 1]:  # wholly dry
            np.testing.assert_allclose(out, ref, atol=1e-6, err_msg=f"block {k}: a miss must play the dry input")
            dry += 1
        elif not missed[k] and not missed[k - 1]:
            np.testing.assert_allclose(out, 0.5 * ref, atol=1e-6, err_msg=f"block {k}: separated output expected")
            wet += 1
        else:  # a crossfade between the two: between 0.5 and 1.0 times the input, sample by sample
            big = np.abs(ref) > 0.02
            ratio = out[big] / ref[big]
            assert np.all((ratio > 0.5 - 1e-3) & (ratio < 1.0 + 1e-3)), f"block {k}: crossfade out of range"
    # never silent once the stream runs: the longest run of near-zero samples is a zero crossing
    quiet = np.abs(played[start * BLOCK :]) < 1e-3
    longest = 0
    for ch in range(quiet.shape[1]):
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], quiet[:, ch].astype(np.int8), [0]]))))[::2]
        longest = max(longest, int(runs.max()) if len(runs) else 0)
    assert longest <= 3, f"{longest} samples of silence in the output"
    return wet, dry


def test_slow_stretch_misses_play_dry_and_recover():
    """A stall of 12 slow calls (~360 ms) mid-stream: misses counted, dry input played, then back to separated."""
    engine, timed, x, played = run(slow_calls=12, seconds=3.0, start_slow_after=1.0)
    d = report("slow stretch", engine, timed)
    wet, dry = check_output(engine, timed, x, played)
    print(f"blocks: {wet} separated, {dry} wholly dry, {sum(timed.missed)} missed")
    assert engine.stats.misses == sum(timed.missed)
    assert engine.stats.misses >= 12 * SLOW_S * 1000 / PERIOD_MS * 0.5  # the stall is mostly missed
    assert engine.stats.dropped_frames > 0
    assert dry > 0 and wet > 0
    assert not timed.missed[-1] and not any(timed.missed[-20:]), "the stream must come back to separated output"
    assert engine.worker_error is None
    assert np.median(d) < PERIOD_MS / 10
    assert d.max() < SLOW_S * 1000 / 2, "the callback waited for the worker"


def test_always_too_slow_never_stalls_the_callback():
    """Every call sleeps longer than a block: the callback keeps time, counts misses, plays dry."""
    engine, timed, x, played = run(slow_calls=-1, seconds=2.0)
    d = report("always too slow", engine, timed)
    wet, dry = check_output(engine, timed, x, played)
    blocks = len(timed.missed)
    print(f"blocks: {wet} separated, {dry} wholly dry, {sum(timed.missed)} missed of {blocks}")
    assert engine.stats.misses == sum(timed.missed)
    assert engine.stats.misses > 0.8 * blocks
    assert engine.stats.dropped_frames > 0
    assert np.median(d) < PERIOD_MS / 10
    assert d.max() < SLOW_S * 1000 / 2, "the callback waited for the worker"


def test_mic_effects_run_one_block_behind_and_a_late_block_plays_the_raw_mic():
    """MicLane: the callback gets what the mic thread processed one block earlier; when the
    thread skipped a turn, that block is the raw mic at the same position, and is counted."""
    block, blocks, skipped = 64, 20, 10

    def halve(inp, out):
        np.multiply(inp, 0.5, out=out)

    lane = MicLane(halve, block, RATE)
    lane.start(thread=False)
    x = np.random.default_rng(3).uniform(-1, 1, (block * blocks, 1)).astype(np.float32)
    played = x.copy()
    for k in range(blocks):
        lane.process(played[k * block:(k + 1) * block], block)
        if k != skipped:  # the thread runs between callbacks, except once
            lane.work_once()
    assert np.all(played[:block] == 0)  # the prefill
    for k in range(1, blocks):
        got, before = played[k * block:(k + 1) * block], x[(k - 1) * block:k * block]
        expected = before if k == skipped + 1 else 0.5 * before
        assert np.array_equal(got, expected), f"block {k}"
    assert lane.late == 1


def test_callback_allocates_no_audio_buffers():
    """The callback on every path (wet, miss with nothing ready, partial crossfade, return to wet,
    a mic with effects) allocates no buffer. tracemalloc sees numpy's allocations: a block of
    stereo audio is 2 KiB, numpy's working buffers for broadcasting, matmul or take measured
    2.3-5.6 KiB a call; what is left are the small view objects a call makes and frees."""
    import tracemalloc

    separator = SlowHalf()
    engine = RealtimeEngine(Pipeline(separator, RATE, 2, get_profile("live")), BLOCK, mic_channel=2,
                            mic_processor=lambda inp, out: np.multiply(inp, 0.5, out=out))
    x = np.random.default_rng(5).uniform(-0.3, 0.3, (BLOCK * 120, 3)).astype(np.float32)
    out = np.zeros((BLOCK, engine.out_channels), np.float32)
    engine.start(thread=False)

    def drive(blocks: range, peaks: list | None):
        for k in blocks:
            if peaks is not None:
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
            engine.callback(x[k * BLOCK:(k + 1) * BLOCK], out, BLOCK, None, None)
            if peaks is not None:
                peaks.append(tracemalloc.get_traced_memory()[1] - before)
            engine.mic_lane.work_once()
            if k % 20 < 14:  # the worker keeps up, then skips six turns: misses, then recovery
                engine.work_once()
            elif k % 20 == 17:  # a partial block: some wet frames ready when the miss comes
                engine.process_frames(x[:BLOCK // 2, :2].copy())

    try:
        drive(range(0, 60), None)  # warm-up: first-call caches
        misses = engine.stats.misses
        peaks: list[int] = []
        tracemalloc.start()
        try:
            drive(range(60, 120), peaks)
        finally:
            tracemalloc.stop()
    finally:
        engine.stop()
    assert engine.stats.misses > misses  # the miss paths ran
    print(f"\ncallback: largest transient allocation {max(peaks)} bytes over {len(peaks)} calls "
          f"({engine.stats.misses - misses} misses)")
    assert max(peaks) < 2048, f"the callback allocated {max(peaks)} bytes"


def test_a_failing_worker_stops_and_keeps_its_error_while_audio_goes_on_dry():
    class Broken(SlowHalf):
        """Works while the engine is built (its warm-up runs the model), then fails for good."""
        broken = False

        def separate(self, window):
            if self.broken:
                raise RuntimeError("model file went away")
            return super().separate(window)

    separator = Broken()
    store = ParamStore(Params.for_stems(("vocals", "accompaniment"), karaoke=False))
    engine = RealtimeEngine(Pipeline(separator, RATE, 2, get_profile("live")), BLOCK, store=store)
    separator.broken = True
    x = source(0.5)
    played = run_paced(engine, x, realtime=True)
    assert isinstance(engine.worker_error, RuntimeError) and "went away" in str(engine.worker_error)
    assert engine.stats.misses > 0
    lag = engine.latency().samples
    np.testing.assert_allclose(played[-BLOCK:], x[len(played) - BLOCK - lag:len(played) - lag], atol=1e-6)  # dry
