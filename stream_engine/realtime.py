"""The live side: a device callback that only copies, and a worker that separates.

    callback: device input -> input ring;  output ring -> device output
    worker:   input ring -> Pipeline -> Mixer -> Router -> output ring

A separator with a long hop (Spleeter: 93-372 ms) hands the worker a hop of
stems at once, and the output ring holds that much audio ahead of the
callback: mixed at once, a fader change would wait for all of it. Such a
chain (a hop over ``MIX_JUST_IN_TIME_BLOCKS`` device blocks) keeps its
stems unmixed (``Chain.hold``) and a mixer thread mixes them just in time,
``mix_lead`` frames (two device blocks) ahead of the callback, so faders,
mutes and listen modes are heard within about two blocks whatever the
model's latency. It runs while the worker is inside the model (onnxruntime
releases the GIL). Effects and the key stage run before the mixer, at
separation time.

The output ring starts with ``prefill`` frames of silence: one device block
plus what the pipeline holds back (hop and resampler buffering, measured at
start-up) plus the compute budget. When the worker is late the callback
crossfades to the dry input, counts a miss and moves on; the worker's late
frames are dropped when they arrive (``Ring.write_dropping_late``). The
callback takes no lock, calls no model and logs nothing.
"""
# Long module (over 500 lines): the audio callback, the worker and the mic lane share one engine's state and
# its real-time rules; split, those rules would be spread over files

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Callable

import numpy as np

from .handover import BUILDER_PAUSE_S, DEFAULT_FADE_MS, Chain, Handover, Queue, SwitchReport, prime, routes_for
from .latency import LatencyReport
from .mixer import MIX_BUSES, Router
from .params import ParamStore, Params
from .pipeline import Pipeline
from .ring import Ring
from .stats import Stats

MicProcessor = Callable[[np.ndarray, np.ndarray], None]  # (mic frames in, frames out) in place


class RealtimeTuning:
    """Process settings that keep a Python audio callback on time (restored on exit).

    Measured on JACK dummy at 256 frames on a loaded 2-core machine: with
    Python's default 5 ms GIL switch interval the device thread can wait
    almost a whole period for the GIL while the worker computes ("client not
    finished" xruns), so the interval drops to 0.5 ms while the stream runs.
    The worker thread gets a higher scheduling priority (nice -10) where the
    system allows it, so CPU-heavy neighbours delay it less (fewer misses);
    where it does not, it runs as it is. The garbage collector is frozen
    (``gc.freeze``) for the run: a full collection scans every object the
    process holds while keeping the GIL (74 ms measured with torch imported),
    long enough to miss many device periods.
    """

    SWITCH_INTERVAL = 0.0005
    WORKER_NICE = -10

    def __init__(self, engine: "RealtimeEngine"):
        self.engine = engine
        self._interval = None
        self.worker_boosted = False

    def __enter__(self):
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._interval, self.SWITCH_INTERVAL))
        gc.collect()
        gc.freeze()  # what exists now is never scanned again: no long full collections mid-stream
        return self

    def boost_worker(self) -> bool:
        """Call after ``engine.start()`` (the worker thread, and the mic thread if any, must exist)."""
        lane = getattr(self.engine, "mic_lane", None)
        if lane is not None:
            self._boost(lane._thread)
        self.worker_boosted = self._boost(getattr(self.engine, "_worker", None))
        return self.worker_boosted

    def _boost(self, thread) -> bool:
        import os

        tid = getattr(thread, "native_id", None)
        if tid is None or not hasattr(os, "setpriority"):
            return False
        try:
            os.setpriority(os.PRIO_PROCESS, tid, self.WORKER_NICE)  # Linux: per thread
            return True
        except OSError:
            return False

    def __exit__(self, *exc):
        if self._interval is not None:
            sys.setswitchinterval(self._interval)
            gc.unfreeze()
            self._interval = None


def poll(owner, work_once: Callable[[], bool], idle) -> BaseException | None:
    """A worker thread's loop: ``work_once`` while ``owner._running``, sleeping ``idle`` seconds
    (a number, or a function returning it) when there was nothing to do. An exception ends the loop (``owner._running`` = False) and is
    returned for the owner to keep."""
    try:
        while owner._running:
            if not work_once():
                time.sleep(idle() if callable(idle) else idle)
    except BaseException as exc:  # noqa: BLE001 - kept by the owner, never raised into the audio
        owner._running = False
        return exc
    return None


class MicLane:
    """The microphone's effect chain on its own thread, one device block behind the callback.

    Effect hosts allocate their output and hold the GIL while they run
    (Pedalboard does both), so the chain stays out of the callback, which
    never allocates. The callback writes the raw mic into ``raw`` and reads
    what the thread processed one block earlier from ``wet`` (prefilled with
    one block of silence): monitoring latency is two device blocks plus the
    chain's own. When the thread is late, the callback plays the raw mic from
    the same position, so the timing holds, and counts a late block
    (``late``); the thread's late frames are dropped when they arrive.
    """

    def __init__(self, processor: MicProcessor, block: int, rate: int):
        self.processor = processor
        self.delay = block
        self.rate = rate
        self.capacity = max(rate, 16 * block)
        self.raw = Ring(1, self.capacity)
        self.wet = Ring(1, self.capacity)
        self._chunk = np.zeros((self.capacity, 1), np.float32)
        self.late = 0
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def latency(self) -> int:
        return self.delay + int(getattr(self.processor, "latency", 0) or 0)

    def start(self, thread: bool = True) -> None:
        self.raw, self.wet = Ring(1, self.capacity), Ring(1, self.capacity)  # positions from 0 on every start
        self.wet.write(np.zeros((self.delay, 1), np.float32))
        self.late = 0
        self._running = True
        if thread:
            self._thread = threading.Thread(target=self._run, name="stemstream-mic", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        # an error stops the lane; the callback goes on with the raw mic (counted late)
        self.error = poll(self, self.work_once, min(0.0005, self.delay / self.rate / 8))

    def work_once(self) -> bool:
        """Process the raw mic waiting; False if there was none."""
        available = self.raw.available()
        if available == 0:
            return False
        chunk = self._chunk[: self.raw.read_into(self._chunk[:available])]
        self.processor(chunk, chunk)
        self.wet.write_dropping_late(chunk)
        return True

    def process(self, mic: np.ndarray, frames: int) -> None:
        """Callback side, in place on ``mic`` (frames, 1): raw in, processed (one block old) out."""
        self.raw.write(mic)
        position = self.wet.consumed
        ready = self.wet.read_into(mic, advance=frames)
        if ready < frames:
            self.late += 1
            self.raw.copy_out(position + ready - self.delay, mic[ready:frames])


MIX_JUST_IN_TIME_BLOCKS = 4


class RealtimeEngine:
    def __init__(
        self,
        pipeline: Pipeline,
        block: int,
        routes: dict[str, list[int]] | None = None,
        store: ParamStore | None = None,
        input_channels: list[int] | None = None,
        mic_channel: int | None = None,
        mic_processor: MicProcessor | None = None,
        mic_fx_in_callback: bool = False,
        out_channels: int | None = None,
        budget: int | None = None,
    ):
        self.block = block
        self.channels = pipeline.channels
        self.rate = pipeline.stream_rate
        self.store = store or ParamStore(Params.for_stems(pipeline.stems))
        self.routes_wanted = dict(routes or {"main": [0, 1][: max(1, self.channels)]})  # kept across switches
        self._budget_override = budget
        # pipeline, mixer, router and their timing in one object the worker swaps whole (handover.py)
        needed = Router(self.routes_wanted, pipeline.stems + MIX_BUSES, self.channels, out_channels).out_channels
        self.chain = Chain(pipeline, block, self.routes_wanted, needed, self.store.current, budget)
        self.out_channels = self.router.out_channels
        self.input_channels = np.array(input_channels or list(range(self.channels)), np.intp)
        self._music_columns = tuple(int(c) for c in self.input_channels)
        self.mic_channel = mic_channel
        # a microphone on a device of its own: ``next(frames) -> (frames, 1)`` (sources.CaptureReader),
        # read in the callback instead of an input channel; replaced whole to change the mic while playing
        self.mic_source = None
        self.mic_processor = mic_processor
        # An effect chain on the mic runs on its own thread (MicLane), one block behind, since effect
        # hosts allocate; ``mic_fx_in_callback`` runs it in the callback instead: one block less
        # monitoring latency, at the price of the callback's no-allocation rule (the user's choice).
        self.mic_fx_in_callback = bool(mic_fx_in_callback and mic_processor is not None)
        self.mic_lane = (MicLane(mic_processor, block, self.rate)
                         if mic_processor is not None and not self.mic_fx_in_callback else None)
        self.stats = Stats()
        # the input ring also keeps the history a new chain is primed with at a switch (seconds of it)
        capacity = max(10 * self.rate, 8 * (self.prefill + self.pipeline.framer_latency + 2 * block))
        self.in_ring = Ring(self.channels, capacity)
        self.out_ring = Ring(self.out_channels, max(4 * self.rate, capacity // 2))
        self._use_chain_in_callback(self.chain)
        self._scratch_out = np.zeros((max(block, 4096), self.out_channels), np.float32)
        self._scratch_dry = np.zeros((max(block, 4096), self.channels), np.float32)
        self._scratch_mic = np.zeros((max(block, 4096), 1), np.float32)
        self._scratch_in = np.zeros((max(block, 4096), self.channels), np.float32)
        self._ramp = np.zeros(max(block, 4096), np.float32)
        self._fall = np.zeros(max(block, 4096), np.float32)
        self._index = np.arange(max(block, 4096), dtype=np.float32)
        self._scratch_col = np.zeros(max(block, 4096), np.float32)
        self._wet = True
        self.tuning = RealtimeTuning(self)
        self.mix_lead = 2 * block  # mixed frames kept ahead of the callback by a just-in-time chain
        self.just_in_time = True  # False: mix at separation time whatever the hop (the old way, to compare)
        self._mix_lock = threading.Lock()  # worker and mixer thread: held stems and the output ring's writes
        self._mixer: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._running = False
        self.worker_error: BaseException | None = None
        # builder -> worker: (chain, its output queue, next input it needs, report, fade frames, done event)
        self._pending: tuple | None = None
        self._handover: Handover | None = None  # worker only
        self._retired: Handover | None = None  # the finished hand-over (its old chain), freed by the builder
        self._switch_lock = threading.Lock()  # one switch at a time (builder threads)
        self._latest: dict[str, SwitchReport] = {}  # the newest request of each kind
        self.on_switch: list[Callable[[SwitchReport], None]] = []  # called on the builder thread when one ends
        self.pipeline.reset()

    # -- what the worker runs (swapped whole at a switch) ----------------------
    pipeline = property(lambda self: self.chain.pipeline)
    mixer = property(lambda self: self.chain.mixer)
    router = property(lambda self: self.chain.router)
    holdback = property(lambda self: self.chain.holdback)
    budget = property(lambda self: self.chain.budget)
    prefill = property(lambda self: self.chain.prefill)

    @property
    def _warm_compute(self) -> dict:
        return self.chain.warm_compute

    def _use_chain_in_callback(self, chain: Chain) -> None:
        """What the callback reads of a chain, each a single reference it reads once per call."""
        dry = chain.router.dry_matrix().T  # (channels, out_channels)
        # the dry map as (output channel, [(input channel, gain), ...]): the callback's loops need no matmul
        self._dry_terms = [(o, [(c, float(dry[c, o])) for c in range(self.channels) if dry[c, o] != 0.0])
                           for o in range(self.out_channels)]
        self._mic_out = chain.router.mic_channels() or list(chain.router.routes.get("main", []))
        self._dry_delay = chain.delay

    # -- set-up ------------------------------------------------------------
    def latency(self, device_in: float = 0.0, device_out: float = 0.0) -> LatencyReport:
        """Input-to-output latency; add the device's own latencies (seconds) if known."""
        report = LatencyReport(self.rate)
        report.add("device block", self.block)
        report.add("hop and resampler buffering", self.holdback)
        if self.budget > self.block:
            report.add("compute budget", self.budget - self.block, algorithmic=False)
        pipeline = self.pipeline.latency()
        for name, samples in pipeline.parts.items():
            report.add(name, samples, algorithmic=name not in pipeline.scheduled)
        if device_in or device_out:
            report.add("device input/output (reported by PortAudio)", round((device_in + device_out) * self.rate),
                       algorithmic=False)
        return report

    # -- lifecycle ----------------------------------------------------------
    def start(self, thread: bool = True) -> None:
        """Prefill the output and start the worker (``thread=False``: the caller
        drives ``work_once`` itself, deterministically, as the tests do)."""
        self.pipeline.reset()
        self.chain.drop_held()  # stems a stopped run left unmixed belong to its timeline, not this one
        self.out_ring.write(np.zeros((self.prefill, self.out_channels), np.float32))
        self.stats = Stats()
        self.pipeline.compute.reset()
        self.stats.compute = self.pipeline.compute  # per-call times, measured in the framer
        self._chunk = np.zeros((self.in_ring.capacity, self.channels), np.float32)
        self._running = True
        if self.mic_lane is not None:
            self.mic_lane.start(thread)
        if thread:
            self.tuning.__enter__()
            self._worker = threading.Thread(target=self._work, name="stemstream-worker", daemon=True)
            self._worker.start()
            self.tuning.boost_worker()
            self._mixer = threading.Thread(target=self._mix_loop, name="stemstream-mixer", daemon=True)
            self._mixer.start()
            self.tuning._boost(self._mixer)

    def stop(self) -> None:
        self._running = False
        if self.mic_lane is not None:
            self.mic_lane.stop()
        if self._mixer is not None:
            self._mixer.join(timeout=5.0)
            self._mixer = None
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
            self.tuning.__exit__(None, None, None)
        self._end_handover_now()

    def _end_handover_now(self) -> None:
        """A fade cut short by Stop: the new chain is the engine's from here (its builder is told)."""
        handover, self._handover = self._handover, None
        if handover is not None:
            self._install(handover.new, handover.report, fade_ms=0.0)
            handover.handed.set()

    # -- the audio callback (sounddevice signature) -------------------------
    def callback(self, indata, outdata, frames, time_info, status) -> None:
        stats = self.stats
        stats.callbacks += 1
        if status:
            if status.input_overflow or status.output_underflow:
                stats.xruns += 1
        if indata.shape[1] == self.channels:
            music = indata
        else:  # the device has more inputs (a microphone): pick the music channels
            music = self._scratch_in[:frames]
            for i, c in enumerate(self._music_columns):  # np.take would allocate a working buffer
                music[:, i] = indata[:, c]
        written = self.in_ring.write(music)
        if written < frames:
            stats.input_overflows += frames - written

        position = self.out_ring.consumed
        ready = self.out_ring.read_into(outdata, advance=frames)
        if ready < frames:
            stats.misses += 1
            self._play_dry(outdata, position, ready, frames)
        elif not self._wet:
            self._return_to_wet(outdata, position, frames)
        if self.mic_source is not None or self.mic_channel is not None:
            self._mix_mic(indata, outdata, frames)

    def _dry(self, position: int, frames: int) -> np.ndarray:
        """The dry input that lines up with output ``position`` -> (frames, out).

        Column by column with ``out=`` arguments: numpy's broadcasting and
        matmul allocate working buffers (measured, 3-6 KiB a call), 1-D
        operations do not.
        """
        dry = self._scratch_dry[:frames]
        self.in_ring.copy_out(position - self._dry_delay, dry)
        out = self._scratch_out[:frames]
        term = self._scratch_col[:frames]
        for o, terms in self._dry_terms:  # one read of the reference: a switch replaces the list whole
            column = out[:, o]
            if not terms:
                column.fill(0.0)
                continue
            np.multiply(dry[:, terms[0][0]], terms[0][1], out=column)
            for c, gain in terms[1:]:
                np.add(column, np.multiply(dry[:, c], gain, out=term), out=column)
        return out

    def _crossfade(self, outdata, dry, n: int, into_dry: bool) -> None:
        """``outdata[:n]`` (wet) fades into ``dry[:n]`` or back out of it, channel by channel (no buffers)."""
        rise = self._ramp[:n]
        np.multiply(self._index[:n], 1.0 / n, out=rise)
        fall = np.subtract(1.0, rise, out=self._fall[:n])
        wet_gain, dry_gain = (fall, rise) if into_dry else (rise, fall)
        term = self._scratch_col[:n]
        for ch in range(outdata.shape[1]):
            column = outdata[:n, ch]
            np.multiply(column, wet_gain, out=column)
            np.add(column, np.multiply(dry[:n, ch], dry_gain, out=term), out=column)

    def _play_dry(self, outdata, position: int, ready: int, frames: int) -> None:
        dry = self._dry(position, frames)
        if self._wet and ready:  # fade the wet frames we have into the dry signal
            self._crossfade(outdata, dry, ready, into_dry=True)
        else:
            outdata[:ready] = dry[:ready]
        outdata[ready:frames] = dry[ready:frames]
        self._wet = False

    def _return_to_wet(self, outdata, position: int, frames: int) -> None:
        self._crossfade(outdata, self._dry(position, frames), frames, into_dry=False)
        self._wet = True

    def _mix_mic(self, indata, outdata, frames: int) -> None:
        mic = self._scratch_mic[:frames]
        source = self.mic_source  # one read: another thread may replace it
        if source is not None:
            mic[:, 0] = source(frames)[:, 0]
        elif self.mic_channel is not None:
            mic[:, 0] = indata[:, self.mic_channel]
        else:
            return
        if self.mic_lane is not None:
            self.mic_lane.process(mic, frames)
        elif self.mic_fx_in_callback:
            self.mic_processor(mic, mic)
        p = self.store.current  # one snapshot: gain and mute agree
        mic *= 0.0 if p.mic_mute else p.mic_gain
        for ch in self._mic_out:  # replaced whole at a switch
            outdata[:, ch] += mic[:, 0]

    # -- the worker -----------------------------------------------------------
    def _work(self) -> None:
        # an error stops the worker, surfaced by the front end; audio goes on dry
        self.worker_error = poll(self, self.work_once, min(0.001, self.block / self.rate / 4))

    def work_once(self) -> bool:
        """Process whatever input is waiting; False if there was none."""
        available = self.in_ring.available()
        if available == 0:
            return self.mix_due()
        started = time.perf_counter()
        if self._pending is not None and self._handover is None:
            self._begin_handover()
        n = self.in_ring.read_into(self._chunk[:available])
        if self._handover is not None:
            self._continue_handover(self._chunk[:n])
        else:
            self.process_frames(self._chunk[:n])
        self.stats.busy_seconds += time.perf_counter() - started
        self.mix_due()
        return True

    def mixes_just_in_time(self, chain: Chain) -> bool:
        """A separator whose hop spans more than MIX_JUST_IN_TIME_BLOCKS device blocks (at the stream rate)."""
        pipeline = chain.pipeline
        hop = pipeline.separator.spec.hop * pipeline.stream_rate / pipeline.model_rate
        return self.just_in_time and hop > MIX_JUST_IN_TIME_BLOCKS * self.block

    def process_frames(self, frames: np.ndarray) -> None:
        """Input frames (n, channels) -> separated, mixed, routed -> output ring (or held, to mix just in time)."""
        params = self.store.current
        chain = self.chain
        stems = chain.pipeline.process(frames.T, params)
        self.stats.nonfinite_windows = chain.pipeline.framer.nonfinite_windows
        if stems.shape[2] == 0:
            return
        if self.mixes_just_in_time(chain):
            with self._mix_lock:
                chain.hold(stems)
            return
        self.stats.dropped_frames += self.out_ring.write_dropping_late(chain.mix(stems, params))

    def _mix_loop(self) -> None:
        # a quarter block between looks while a chain mixes just in time (the lead is two blocks);
        # otherwise it only waits for one (a switch), rarely taking the GIL from the callback
        quarter = self.block / self.rate / 4
        error = poll(self, self.mix_due, lambda: quarter if self.mixes_just_in_time(self.chain) else 0.02)
        if error is not None and self.worker_error is None:
            self.worker_error = error

    def mix_due(self) -> bool:
        """Mix held stems until ``mix_lead`` frames wait ahead of the callback; False if none was due."""
        chain = self.chain
        if not chain.pending_frames:
            return False
        with self._mix_lock:
            if self._handover is not None or chain is not self.chain:
                return False
            # behind the callback (a miss) this is more than the lead: the late frames are dropped
            n = min(chain.pending_frames, self.mix_lead - (self.out_ring.written - self.out_ring.consumed))
            if n <= 0:
                return False
            out = chain.mix(chain.take(n), self.store.current)
            self.stats.dropped_frames += self.out_ring.write_dropping_late(out)
        return True

    def _mix_all_held(self, chain: Chain) -> None:
        """Mix everything ``chain`` holds now (worker, under the lock): a hand-over starts from the ring's end."""
        if chain.pending_frames:
            out = chain.mix(chain.take(chain.pending_frames), self.store.current)
            self.stats.dropped_frames += self.out_ring.write_dropping_late(out)

    # -- changes while playing (handover.py) ----------------------------------
    def switch(self, build: Callable[[], Pipeline] | None, what: str, routes: dict[str, list[int]] | None = None,
               fade_ms: float = DEFAULT_FADE_MS, wait: bool = False,
               on_done: Callable[[SwitchReport], None] | None = None) -> SwitchReport:
        """Replace the pipeline (``build()`` returns the new one) and/or the routing while playing.

        Runs on a builder thread; switches queue behind each other. The report's
        ``done`` event is set when the new chain plays alone (or the switch
        failed: ``error``); ``on_switch`` listeners hear of it then.
        """
        report = SwitchReport(what)
        if on_done is not None:
            report.callbacks.append(on_done)
        kind = "routing" if build is None else "pipeline"
        self._latest[kind] = report  # a queued request of the same kind is superseded by this one
        args = (report, build, routes, max(1, round(fade_ms * self.rate / 1000.0)))
        thread = threading.Thread(target=self._switch_in_thread, args=args, name="stemstream-switch", daemon=True)
        thread.start()
        if wait:
            thread.join()
        return report

    def _switch_in_thread(self, report: SwitchReport, build, routes, fade: int) -> None:
        # The worker's priority, not a lower one: a builder that loses its core while it holds the GIL
        # stalls the worker too (measured: dozens of misses at a switch with the builder at nice 0 on a
        # loaded 2-core machine); it sleeps between its steps instead (BUILDER_PAUSE_S).
        self.tuning._boost(threading.current_thread())
        with self._switch_lock:
            try:
                if self._latest.get("routing" if build is None else "pipeline") is not report:
                    report.superseded = True  # a later request (which includes this one's change) follows
                else:
                    self._build_and_hand_over(report, build, routes, fade)
            except Exception as exc:  # noqa: BLE001 - the old chain plays on; the front end shows why
                report.error = f"{type(exc).__name__}: {exc}"
            report.done.set()
        for listener in report.callbacks + list(self.on_switch):
            listener(report)

    def _build_and_hand_over(self, report: SwitchReport, build, routes, fade: int) -> None:
        old = self.chain
        report.latency_before_ms = 1000.0 * old.delay / self.rate
        wanted = dict(routes) if routes is not None else self.routes_wanted
        started = time.perf_counter()
        if build is None:  # routing only: same pipeline, separated once and routed twice during the fade
            kept, report.dropped_routes = routes_for(wanted, old.mixer.bus_names)
            chain = old.with_routes(kept, self.out_channels, self.store.current)
        else:
            pipeline = build()
            if pipeline.channels != self.channels or pipeline.stream_rate != self.rate:
                raise ValueError(f"the new pipeline runs {pipeline.channels} channels at {pipeline.stream_rate} Hz; "
                                 f"the stream has {self.channels} at {self.rate} Hz")
            kept, report.dropped_routes = routes_for(wanted, pipeline.stems + MIX_BUSES)
            if tuple(pipeline.stems) != tuple(old.pipeline.stems):  # both chains find their stems' faders
                union = tuple(old.pipeline.stems) + tuple(s for s in pipeline.stems if s not in old.pipeline.stems)
                self.store.update(lambda p: p.carried_to(union))
            chain = Chain(pipeline, self.block, kept, self.out_channels, self.store.current, self._budget_override,
                          pause=BUILDER_PAUSE_S if self._running else 0.0)
        report.build_ms = 1000.0 * (time.perf_counter() - started)
        self.routes_wanted = wanted
        if not self._running:  # nothing plays: the new chain simply takes over
            self._install(chain, report, fade_ms=0.0)
            self.store.update(lambda p: p.carried_to(chain.pipeline.stems))
            return
        started = time.perf_counter()
        if chain.pipeline is old.pipeline:
            queue, fed = Queue(self.out_ring.written, self.out_channels), 0
        else:
            # enough past input that the new chain's output is valid where the fade will begin
            warm = 2 * chain.pipeline.framer_latency + 4 * self.block + chain.pipeline.separator.spec.window
            oldest = self.in_ring.written - self.in_ring.capacity + 8 * self.block
            # never past the worker's read position: a chain of lower latency waits for its input instead
            begin = max(0, oldest, min(self.out_ring.written - chain.delay - warm, self.in_ring.consumed))
            queue, fed = prime(chain, self.in_ring, begin, self.store.current,
                               target=lambda: self.in_ring.consumed, close_enough=2 * self.block)
        report.prime_ms = 1000.0 * (time.perf_counter() - started)
        handed = threading.Event()
        self._pending = (chain, queue, fed, report, fade, handed)
        while not handed.wait(0.05):  # the worker finishes the fade; a stopped engine takes it at once
            if not self._running and self._pending is not None:
                self._pending = None
                self._install(chain, report, fade_ms=0.0)
                break
        if tuple(chain.pipeline.stems) != tuple(self.store.current.stems):
            self.store.update(lambda p: p.carried_to(chain.pipeline.stems))
        # the old chain is freed here, not on the worker (a model session can take ms to tear down)
        time.sleep(0.02)  # the worker has left its hand-over step by now
        self._retired = None

    def _install(self, chain: Chain, report: SwitchReport, fade_ms: float) -> None:
        """Make ``chain`` the engine's (worker side, or while stopped)."""
        self.chain = chain
        self._use_chain_in_callback(chain)
        chain.pipeline.compute.reset()
        self.stats.compute = chain.pipeline.compute
        report.fade_ms = fade_ms
        report.latency_after_ms = 1000.0 * chain.delay / self.rate
        self.stats.switches += 1
        self.stats.last_switch = report.as_dict()

    def _begin_handover(self) -> None:
        """Worker: take the primed chain, feed it the input it has not seen yet, start the fade."""
        chain, queue, fed, report, fade, handed = self._pending
        self._pending = None
        with self._mix_lock:  # the mixer thread stops at a hand-over; what it held goes out first
            self._mix_all_held(self.chain)
            handover = Handover(self.chain, chain, queue, fed, self.out_ring.written, fade, report)
            self._handover = handover
        report.fade_start = self.out_ring.written
        handover.handed = handed
        handover.misses_before = self.stats.misses
        if not handover.shared:
            behind = self.in_ring.consumed - fed
            history = np.zeros((max(0, behind), self.channels), np.float32)
            self.in_ring.copy_out(fed, history)
            handover.new_queue.push(chain.run(history, self.store.current))
            handover.fed_until += len(history)
            report.catch_up_frames = len(history)
        self._handover = handover

    def _continue_handover(self, frames: np.ndarray) -> None:
        """Worker: both chains on this input, their crossfade to the output; the old one goes when it is done."""
        handover = self._handover
        handover.feed(frames, self.store.current)
        out = handover.frames(self.out_ring.written)
        self.stats.dropped_frames += self.out_ring.write_dropping_late(out)
        if handover.finished(self.out_ring.written):
            self._handover = None
            self._retired = handover  # the builder lets go of it, off the worker
            handover.report.misses_during = self.stats.misses - handover.misses_before
            self._install(handover.new, handover.report, fade_ms=1000.0 * handover.fade / self.rate)
            handover.handed.set()

    # -- status for OSC and the GUI -----------------------------------------
    def status(self) -> dict:
        report = self.latency()
        return {
            "meters": self.mixer.meters_db(),
            "latency_ms": report.ms,
            "latency_samples": report.samples,
            # a window of NaN/inf model output is played dry, like a miss, and counted with them
            "stats": {"misses": self.stats.misses + self.stats.nonfinite_windows, "xruns": self.stats.xruns,
                      "cpu": self.stats.cpu_percent(), "switches": self.stats.switches},
        }


def run_paced(engine: RealtimeEngine, source: np.ndarray, realtime: bool = True) -> np.ndarray:
    """Drive the callback from a clock instead of a device (bench, tests).

    ``source`` is (frames, channels); returns what the callback played,
    (frames, out_channels). With ``realtime`` the callback is called every
    block period, as a device would, and the worker runs on its thread;
    without, the worker runs after each callback, deterministically.
    """
    block = engine.block
    blocks = len(source) // block
    played = np.zeros((blocks * block, engine.out_channels), np.float32)
    period = block / engine.rate
    engine.start(thread=realtime)
    try:
        next_time = time.perf_counter()
        for k in range(blocks):
            if realtime:
                next_time += period
                delay = next_time - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -period:  # the clock itself fell behind: a device would xrun
                    engine.stats.xruns += 1
                    next_time = time.perf_counter()
            engine.callback(source[k * block : (k + 1) * block], played[k * block : (k + 1) * block], block, None, None)
            if not realtime:
                engine.work_once()
                if engine.mic_lane is not None:
                    engine.mic_lane.work_once()
    finally:
        engine.stop()
    return played
