"""Live audio for the GUI: the engine session (``LiveSession``).

Nothing here touches Qt. ``LiveSession.start`` and ``stop`` are slow (model
load, warm-up, device open/close) and are called from worker threads; the UI
only reads attributes (``engine.mixer.meters``, ``engine.stats``, the taps),
which never block the audio side.

PortAudio, device enumeration, the stream and the JACK dummy server are the
engine's (``stream_engine.devices``: ``portaudio``, ``list_devices``, ``rescan``,
``release_portaudio``; ``stream_engine.live.LiveStream``;
``stream_engine.tools.jack.JackServer``); this module and the small ones it is
built from (``gui.audio_devices``, ``gui.input_sources``, ``gui.live_config``,
``gui.mic_channel``, ``gui.master_bus``, ``gui.taps``) only adapt them to what
the window shows. sounddevice is imported lazily there: PortAudio enumerates
JACK when it is initialised, so a JACK server must already be running by then
(the app starts it first when asked for one).
"""

# Long module (over 500 lines): LiveSession is one object whose start, sources, mic, stop and readings share its state.

from __future__ import annotations

import math
import time
from types import MappingProxyType

import numpy as np

from stream_engine import live
from stream_engine.devices import abandon, portaudio
from stream_engine.params import ParamStore
from stream_engine.sources import Capture, FileSource, SourceSwitch  # noqa: F401 - FileSource: older importers

from .audio_devices import Device, find_device, list_devices
from .input_sources import DEMO_SOURCE, PlayerSource, resolve_auto, source_path
from .live_config import MAX_OUTPUTS, MIC_FX, LiveConfig, active_effects, carry_params
from .master_bus import MasterBus
from .mic_channel import MicChannel
from .taps import StemTap


class LiveSession:
    """One running engine on one output-only ``stream_engine.live.LiveStream``. Built and stopped off the UI thread.

    The output stream is the clock; what the engine separates comes from a
    ``SourceSwitch`` (a file, the demo, or an input device captured on a
    stream of its own), so the input can change while the output plays. The
    microphone is another capture (any input device, any channel), read by
    the engine's callback. Model, profile, key stage, effect chains and
    routing change through ``control`` (``stream_engine.control.LiveControl``:
    a crossfade); ``set_input`` and ``set_mic`` change the sources.
    """

    def __init__(self, config: LiveConfig, store: ParamStore, namer=None):
        self.config = config
        self.store = store
        self.namer = namer  # gui.jack_ports.PortNamer: JACK ports named after what they carry (None: as opened)
        self._out_ports: list = []  # the output stream's JACK ports, in channel order
        self.engine = None
        self.stream = None
        self.control = None
        self.source: FileSource | None = None
        self.input_switch: SourceSwitch | None = None
        self.music_reader = None  # CaptureReader of the input device, when the input is one
        self.mic_reader = None
        self._captures: list[Capture] = []
        self._stems: tuple[str, ...] = ()
        self.rate = 48000
        self.block = 256
        self.out_device = None
        self.devices: list[Device] = []
        self.latency_report = None
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}  # perf_counter stamps
        self.t_first_callback: float | None = None
        self.t_first_sound: float | None = None
        self.device_names = ("", "")
        self.input_label = ""
        self.mic_label = "none"

    @property
    def stems(self) -> tuple[str, ...]:
        """The running mixer's stems (a switch may change them; ``levels()`` has one row each, then main)."""
        engine = self.engine
        return tuple(engine.mixer.stems) if engine is not None else self._stems

    @stems.setter
    def stems(self, stems) -> None:
        self._stems = tuple(stems)

    # -- building (worker thread) -----------------------------------------
    def start(self) -> "LiveSession":
        from stream_engine.control import ChainSpec, LiveControl
        from stream_engine.profiles import get_profile
        from stream_engine.realtime import RealtimeEngine

        cfg = self.config = resolve_auto(self.config)
        self.timings["start"] = time.perf_counter()
        profile = get_profile(cfg.profile)
        devices, problem = list_devices()
        if problem:
            raise RuntimeError(problem)
        self.devices = devices
        out_dev = find_device(cfg.output, devices, "out") if cfg.output else None
        if cfg.output and out_dev is None:
            raise RuntimeError(f"output device {cfg.output!r} not found; pick another one (Rescan lists new ones)")
        sd = portaudio()
        if out_dev is None:
            default_out = sd.default.device[1]
            if default_out is None or default_out < 0:
                raise RuntimeError("no output device: pick one in Output")
            out_dev = next(d for d in devices if d.index == default_out)
        self.out_device = out_dev
        self.rate = rate = int(out_dev.default_rate or 48000)
        self.block = block = cfg.block or profile.block
        live.preload_backends()

        key_stage = cfg.key_shift or self.store.current.key != 0  # a key away from 0 needs its stage
        spec = ChainSpec(cfg.model, cfg.profile, key_stage=key_stage, fx=self._active_fx(cfg.fx), channels=2)
        pipeline = self._build_pipeline(spec)
        self.timings["model_loaded"] = time.perf_counter()
        stems = pipeline.stems
        self.stems = stems
        if set(self.store.current.stems) != set(stems):
            self.store = ParamStore(carry_params(self.store.current, stems))
        if self.store.current.fx:  # effect indices are rebuilt from the specs
            self.store.update(lambda p: p.with_(fx=MappingProxyType({})))

        n_out = self._outputs_to_open(out_dev, cfg.routes)
        routes = self._usable_routes(cfg.routes, stems, n_out)
        engine = RealtimeEngine(pipeline, block, routes=routes, store=self.store, out_channels=n_out)
        self.engine = engine
        # the mic's own strip: its effect chain on the engine's mic lane (one block behind, never in the
        # callback), then its gain and mute; the master fader and limiter after everything
        self.mic_channel = MicChannel(rate)
        self.mic_channel.set_chain((cfg.fx or {}).get(MIC_FX))
        self.warnings += self.mic_channel.errors
        self.master = MasterBus(routes.get("main", []), rate, max_block=max(8192, 4 * block),
                                limiter=cfg.limiter, gain=cfg.master_gain)
        self.control = LiveControl(engine, spec, build=self._build_pipeline, inputs=self)
        self.control.listeners.append(self._switched)
        self.timings["engine_built"] = time.perf_counter()

        try:
            self.input_switch = SourceSwitch(self._open_input(cfg.input).next, 2, max_block=max(8192, 4 * block))
            self._use_mic(cfg.mic_device, cfg.mic_channel)
            stream = live.LiveStream(engine, None, out_dev.index, 0, rate, callback=self._callback,
                                     source=self.input_switch.next)
            before = self._jack_snapshot(out_dev)
            stream.start()  # opens the device, starts the worker (realtime tuning included), then the device
            if before is not None:
                self._out_ports = self.namer.ports_since(before, is_output=True)
        except BaseException:
            self._close_captures(keep=())
            if "stream" in locals():
                stream.stop()
            raise
        self.stream = stream
        self.device_names = (self.input_label, out_dev.key)
        self.name_ports()
        self._measure_latency()
        self.target_ms = profile.latency_target_ms
        self.timings["stream_started"] = time.perf_counter()
        return self

    @staticmethod
    def _active_fx(chains) -> dict:
        return {stem: [s for _, s in active_effects(specs)] for stem, specs in (chains or {}).items()
                if active_effects(specs)}

    def _build_pipeline(self, spec):
        """Separator, effects, key stage and the UI's stem tap (LiveControl's builder, any thread)."""
        from plugins.effects import StemEffects
        from stream_engine.pipeline import Pipeline
        from stream_engine.profiles import get_profile
        from stream_engine.separators.registry import load_separator
        from stream_engine.stages import build_stages

        separator = load_separator(spec.model, spec.profile, sample_rate=self.rate)
        stems = separator.spec.stems
        fx = {stem: chain for stem, chain in (spec.fx or {}).items() if stem in stems and chain}
        stages = build_stages(stems, self.rate, 2, fx=fx, key_change=spec.key_stage)
        for stage in stages:
            if isinstance(stage, StemEffects):
                self.warnings += list(stage.errors)
        stages.append(StemTap(stems))
        return Pipeline(separator, self.rate, 2, get_profile(spec.profile), stages=stages)

    @staticmethod
    def _outputs_to_open(device: Device, routes) -> int:
        """JACK: up to MAX_OUTPUTS ports, so routes can move while playing (unused ports cost nothing).
        Elsewhere what the routing uses, at least two: a desktop's "default" device offers 32
        channels and its sound server would remix the unused ones into the speakers."""
        used = max([c + 1 for chans in (routes or {}).values() for c in chans] + [2])
        if "jack" in device.hostapi.lower():
            return max(1, min(device.max_out, max(MAX_OUTPUTS, used)))
        return max(1, min(device.max_out, used))

    @staticmethod
    def _usable_routes(routes, stems, n_out: int) -> dict:
        """The saved routing where this model and device can play it; main on 1-2 otherwise."""
        from stream_engine.mixer import MIX_BUSES

        known = tuple(stems) + MIX_BUSES + ("mic",)
        usable = {bus: chans for bus, chans in (routes or {}).items()
                  if bus in known and chans and max(chans) < n_out}
        return usable or ({"main": [0, 1]} if n_out >= 2 else {"main": [0]})

    # -- inputs: the music and the microphone ----------------------------------
    def _device(self, spec) -> Device | None:
        return find_device(spec, self.devices, "in") if spec else None

    def _default_input(self) -> Device:
        index = portaudio().default.device[0]
        device = next((d for d in self.devices if d.index == index and d.max_in > 0), None)
        if device is None:
            raise RuntimeError("no input device: pick one in Input, or play a file through the engine")
        return device

    def _capture(self, device: Device, channels: int, new: bool = False) -> Capture:
        """An open capture of ``device`` with at least ``channels`` (shared by music and mic unless
        ``new``: a mic change opens just the channels it needs, so its ports match a fresh Start)."""
        for capture in self._captures if not new else ():
            if capture.device == device.index and capture.channels >= channels:
                return capture
        capture = Capture(device.index, min(device.max_in, max(channels, 1)), self.rate, self.block,
                          name=device.key)
        before = self._jack_snapshot(device)
        capture.open()
        capture.jack_ports = self.namer.ports_since(before, is_output=False) if before is not None else []
        self._captures.append(capture)
        return capture

    # -- JACK port names -------------------------------------------------------------
    def _jack_snapshot(self, device: Device):
        """The app's JACK ports before a stream on ``device`` opens (None: not JACK, or no namer)."""
        if self.namer is None or not device.hostapi.startswith("JACK"):
            return None
        return self.namer.snapshot()

    def name_ports(self) -> None:
        """Name every JACK port after what it carries now and restore the user's connections
        (after Start, an input, mic, model or routing change; any thread but the callback)."""
        if self.namer is None or self.engine is None:
            return
        from .jack_ports import capture_names, output_names

        wanted = list(zip(self._out_ports, output_names(self.engine.router.routes, len(self._out_ports))))
        music, mic = self.music_reader, self.mic_reader
        for capture in self._captures:
            ports = getattr(capture, "jack_ports", [])
            if not ports:
                continue
            music_cols = music.columns if music is not None and music.capture is capture else ()
            mic_col = mic.columns[0] if mic is not None and mic.capture is capture else None
            names = capture_names(len(ports), music_cols, mic_col, prefix="in" if music_cols else "mic")
            wanted += list(zip(ports, names))
        try:
            self.namer.apply(wanted)
        except Exception as exc:  # noqa: BLE001 - names are a convenience: never a reason to stop the sound
            self.warnings.append(f"JACK port names: {exc}")

    def _open_input(self, spec):
        """A source for ``spec`` (a file, the demo, or an input device); sets ``input_label``."""
        path = source_path(spec)
        if path is not None:
            self.source = PlayerSource(path, self.rate, 2, max_block=max(8192, 4 * self.block),
                                       loop=self.config.loop or spec == DEMO_SOURCE)
            self.music_reader = None
            self.input_label = f"file {path.name}"
            return self.source
        device = self._device(spec) if spec else self._default_input()
        if device is None:
            raise RuntimeError(f"input device {spec!r} not found; pick another one")
        mic = self.config.mic_channel if self._mic_device_spec() in (None, device.key) else None
        channels = min(device.max_in, max(2, (mic or 0) + 1))
        music = [c for c in range(channels) if c != mic][:2] or [0]
        reader = self._capture(device, channels).reader((music * 2)[:2], max_block=max(8192, 4 * self.block))
        self.source, self.music_reader = None, reader
        self.input_label = device.key
        self.config.input = device.key  # a part of a name (OSC) becomes the key the input box knows
        return reader

    def _mic_device_spec(self):
        return self.config.mic_device

    def _use_mic(self, device_spec, channel) -> None:
        """Route the mic (``channel`` of ``device_spec``; None: no mic) into the engine's callback."""
        if channel is None:
            self.engine.mic_source, self.mic_reader, self.mic_label = None, None, "none"
            return
        device = self._device(device_spec) if device_spec else None
        if device is None:
            device = (self._device(self.config.input) if source_path(self.config.input) is None else None) \
                or self._default_input()
        if channel >= device.max_in:
            raise RuntimeError(f"the microphone's device {device.key} has {device.max_in} inputs; "
                               f"channel {channel + 1} asked for")
        music = self.music_reader
        shared = music is not None and music.capture.device == device.index and music.capture.channels > channel
        capture = music.capture if shared else self._capture(device, channel + 1, new=True)
        reader = capture.reader((channel,), max_block=max(8192, 4 * self.block))
        if self.mic_channel.chain is not None:
            self._mic_lane()
        self.mic_reader = reader
        self.engine.mic_source = reader.next  # one reference: the callback reads it once per block
        self.mic_label = f"{device.key} #{channel + 1}"

    def _mic_lane(self) -> None:
        """The engine's mic lane running the mic's chain, made when a mic has effects (its thread polls
        and it adds a block to the mic's latency: without effects the mic is mixed in the callback)."""
        engine = self.engine
        if engine.mic_lane is not None:
            return
        from stream_engine.realtime import MicLane

        lane = MicLane(self.mic_channel, self.block, self.rate)
        engine.mic_processor = self.mic_channel
        if self.stream is not None:  # playing: start it, then hand it to the callback (one reference)
            lane.start(thread=True)
        engine.mic_lane = lane  # stopped with the engine

    def _close_captures(self, keep) -> None:
        """Close the captures no reader in ``keep`` uses (off the callback)."""
        used = {id(r.capture) for r in keep if r is not None}
        for capture in list(self._captures):
            if id(capture) not in used:
                self._captures.remove(capture)
                capture.close()

    def set_input(self, spec) -> None:
        """Crossfade to another input while playing (any thread but the callback; loads a file first).

        ``spec``: a device (as the device lists name it, or part of its name), ``demo`` or
        ``file:PATH``; one that cannot be opened raises ValueError and the input stays."""
        spec = DEMO_SOURCE if str(spec).strip().lower() in ("demo", DEMO_SOURCE) else str(spec)
        previous = self.config.input
        self.config.input = spec
        try:
            new = self._open_input(spec)
        except (RuntimeError, OSError, ValueError) as exc:
            self.config.input = previous
            raise ValueError(f"input {spec!r}: {exc}") from None
        self.input_switch.switch_to(new.next)
        deadline = time.monotonic() + 2.0
        while self.input_switch.switching and time.monotonic() < deadline:
            time.sleep(0.01)
        self._close_captures(keep=(self.music_reader, self.mic_reader))
        self.device_names = (self.input_label, self.device_names[1])
        self.name_ports()
        self.control.notify("input", (self.config.input or self.input_label,))
        self._measure_latency()

    def set_mic(self, spec) -> None:
        """``DEVICE#CH`` (CH from 1; DEVICE as in the device lists), ``none``, or a device (channel 1)."""
        text = str(spec).strip()
        if text.lower() in ("", "none", "off"):
            device, channel = None, None
        else:
            device, _, ch = text.rpartition("#") if "#" in text else (text, "", "1")
            device = device or None
            channel = int(ch) - 1
            if channel < 0:
                raise ValueError(f"mic channel counts from 1: {spec!r}")
        self.set_mic_device(device, channel)

    def set_mic_device(self, device, channel) -> None:
        """The mic from ``channel`` (from 0; None: no mic) of ``device`` (None: the input device or the
        default one); one that cannot be opened raises ValueError and the mic stays as it was."""
        old = self.mic_reader
        previous = self.config.mic_device, self.config.mic_channel
        self.config.mic_device, self.config.mic_channel = device, channel
        try:
            self._use_mic(device, channel)
        except (RuntimeError, OSError, ValueError) as exc:
            self.config.mic_device, self.config.mic_channel = previous
            raise ValueError(f"microphone {device or 'input device'} channel "
                             f"{'none' if channel is None else channel + 1}: {exc}") from None
        if old is not None:
            self._close_captures(keep=(self.music_reader, self.mic_reader))
        self.name_ports()
        self.control.notify("mic", (self.mic_label,))
        self._measure_latency()

    def input_name(self) -> str:
        return self.input_label

    def mic_name(self) -> str:
        return self.mic_label

    # -- switches (the model, profile, key stage, effects, routing) ----------------
    def _switched(self, name: str, values: tuple) -> None:
        if name == "switched":
            self.master.channels = list(self.engine.router.routes.get("main", []))  # a routing change
            self._measure_latency()
            self.name_ports()  # a routing (or a model's stems) may change what a port carries

    def _measure_latency(self) -> None:
        """The latency report as it stands (after a switch or an input change), with the mic's."""
        engine = self.engine
        device_in = self.music_reader.latency if self.music_reader is not None else 0.0
        self.latency_report = engine.latency(device_in, self.stream.device_latency[1] if self.stream else 0.0)
        self.engine_ms = engine.latency().ms  # algorithmic + compute budget
        self.algorithmic_ms = engine.latency().algorithmic_ms  # what the profile target is for
        self.target_ms = engine.pipeline.profile.latency_target_ms
        out = self.stream.device_latency[1] if self.stream else 0.0
        # the mic skips the separator: its capture, the slack held, one device block, the output
        lane = engine.mic_lane.latency if engine.mic_lane is not None else 0  # its block, its chain
        self.mic_ms = (None if self.mic_reader is None
                       else 1000.0 * (self.mic_reader.latency + out) + 1000.0 * (self.block + lane) / self.rate)

    def set_mic_fx(self, specs) -> None:
        """A new chain for the mic (built here, swapped into the running lane; the lane starts with
        the first chain)."""
        self.mic_channel.set_chain(specs)
        if self.mic_channel.chain is not None and self.mic_reader is not None:
            self._mic_lane()
        self._measure_latency()

    @property
    def effects(self):
        """The running chain's effect stage (None without effects)."""
        return self._stage("StemEffects")

    @property
    def tap(self):
        return self._stage("StemTap")

    def _stage(self, name: str):
        engine = self.engine
        if engine is None:
            return None
        return next((stage for stage in engine.pipeline.stages if type(stage).__name__ == name), None)

    # -- the callback: copy, nothing else ---------------------------------------
    def _callback(self, indata, outdata, frames, time_info, status):
        """What LiveStream calls (``indata``: the input switch's frames)."""
        self.engine.callback(indata, outdata, frames, time_info, status)
        self.master.process(outdata, frames)
        self._first(outdata)

    def _first(self, outdata) -> None:
        if self.t_first_sound is None:
            if self.t_first_callback is None:
                self.t_first_callback = time.perf_counter()
            if outdata.any():
                self.t_first_sound = time.perf_counter()

    # -- stopping (worker thread) ---------------------------------------------
    def lost(self) -> bool:
        """The output stream stopped without being asked (its device or JACK server went away)."""
        stream = self.stream
        if stream is None or stream.stream is None or not stream._running:
            return False
        try:
            return not stream.active
        except Exception:  # noqa: BLE001 - PortAudio errors on a dead stream mean the same
            return True

    def stop_lost(self) -> None:
        """Stop after the device went away: nothing of PortAudio is called on the dead streams
        (they would hang); the worker, the mic lane and the control stop as usual."""
        for capture in self._captures:
            stream, capture.stream = capture.stream, None
            if stream is not None:
                abandon(stream)
        self._captures = []
        self.device_lost = True
        self.stop()

    def stop(self) -> None:
        if self.namer is not None and self.stream is not None and not getattr(self, "device_lost", False):
            self.namer.remember()  # the connections the user made, for the next Start
        stream, self.stream = self.stream, None
        try:
            if stream is not None:
                stream.stop()  # the stream, then the worker; does not hang when the device vanished
        finally:
            if self.engine is not None:
                self.engine.stop()
            if self.control is not None:
                self.control.close()
            self._close_captures(keep=())

    @property
    def running(self) -> bool:
        return self.stream is not None and self.engine is not None

    # -- what the UI reads (never blocks) --------------------------------------
    def levels(self) -> np.ndarray:
        """Linear (peak, rms) per stem and main, from the worker's last block."""
        return self.engine.mixer.meters

    def mic_levels(self) -> tuple[float, float]:
        """Linear (peak, rms) of the mic now (the peak falling 20 dB/s), after its effects, level and
        mute (what it adds to the output); (0, 0) without a mic."""
        reader = self.mic_reader
        if reader is None:
            return 0.0, 0.0
        if self.engine.mic_lane is not None:  # after its effects
            peak, rms = self.mic_channel.levels()
        else:  # no effects: the capture's last 20 ms
            if not hasattr(self, "_mic_scratch"):
                self._mic_scratch = np.zeros(max(256, self.rate // 50), np.float32)
            reader.recent(self._mic_scratch)
            x = self._mic_scratch
            peak, rms = float(np.max(np.abs(x))), float(np.sqrt(np.mean(np.square(x))))
        p = self.store.current
        gain = 0.0 if p.mic_mute else p.mic_gain
        return peak * gain, rms * gain

    def main_levels(self) -> tuple[float, float, float]:
        """Linear (peak, rms, limiter gain) of what leaves on main (music, mic, master, limiter)."""
        return self.master.take_levels()

    def stats(self) -> dict:
        st = self.engine.stats
        return {"misses": st.misses, "xruns": st.xruns, "cpu": st.cpu_percent(), "callbacks": st.callbacks,
                "error": self.engine.worker_error, "switches": st.switches, "last_switch": st.last_switch}

    def status(self) -> dict:
        """For OSC feedback (same shape as ``RealtimeEngine.status``)."""
        engine = self.engine
        if engine is None:
            return idle_status(self.stems)
        return {"meters": engine.mixer.meters_db(),
                "latency_ms": self.latency_report.ms if self.latency_report else 0.0,
                "latency_samples": self.latency_report.samples if self.latency_report else 0,
                "stats": {"misses": engine.stats.misses, "xruns": engine.stats.xruns,
                          "cpu": engine.stats.cpu_percent(), "switches": engine.stats.switches}}

    def input_snapshot(self, out: np.ndarray) -> None:
        """The newest ``len(out)`` input frames, mono."""
        ring = self.engine.in_ring
        n = len(out)
        if not hasattr(self, "_in_scratch") or len(self._in_scratch) != n:
            self._in_scratch = np.zeros((n, ring.channels), np.float32)
        ring.copy_out(ring.written - n, self._in_scratch)
        np.mean(self._in_scratch, axis=1, out=out)

    def stem_snapshot(self, stem: str, out: np.ndarray) -> None:
        tap = self.tap
        if tap is None or stem not in tap.stems:
            out[:] = 0.0
            return
        ring = tap.ring
        n = len(out)
        if getattr(self, "_stem_scratch", None) is None or self._stem_scratch.shape != (n, ring.buffer.shape[1]):
            self._stem_scratch = np.zeros((n, ring.buffer.shape[1]), np.float32)
        ring.latest(self._stem_scratch)
        out[:] = self._stem_scratch[:, tap.stems.index(stem)]


def idle_status(stems) -> dict:
    return {"meters": {s: (-120.0, -120.0) for s in list(stems) + ["main"]}, "latency_ms": 0.0,
            "latency_samples": 0, "stats": {"misses": 0, "xruns": 0, "cpu": 0.0}}


def db(x: float) -> float:
    return 20.0 * math.log10(max(float(x), 1e-6))

