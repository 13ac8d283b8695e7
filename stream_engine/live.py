"""``stemstream devices`` and ``stemstream live``: the engine on a real audio device.

One full-duplex PortAudio stream (sounddevice) whose callback is
``RealtimeEngine.callback``; blocksize fixed to ``--block``, float32. The
separator runs on the engine's worker thread, never in the callback.

Channels: ``--mic CH`` reads the singer's microphone from input channel CH;
the music is read from the first two other input channels (one when that is
all the device has); the output channels come from the routing (``--route BUS=CH,CH``,
channels counted from 1; default ``main=1,2``).

Devices (PortAudio's life cycle, discovery, closing streams) are
``devices.py``'s; on JACK the engine's client is called ``stemstream``
(``--jack-name``), so its ports are ``stemstream:in_N`` / ``stemstream:out_N``.
sounddevice is imported only inside functions, so ``import
stream_engine.live`` never touches PortAudio.
"""
# Long module (over 500 lines): the `live` command from arguments to exit status (parsing, engine building,
# the device stream, OSC/DAW start-up and clean-up) is one sequence that reads top to bottom

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from .devices import (CLOSE_TIMEOUT, abandon, close_within, find_device, format_devices, list_devices,
                      portaudio, release_portaudio, rescan, set_jack_client_name)
from .errors import LiveError
from .profiles import PROFILES, REALTIME_PROFILES

EXIT_OK = 0
EXIT_RUNTIME = 1  # the device stopped / vanished, the worker failed
EXIT_USAGE = 2  # bad arguments, no such device, cannot open the stream


# -- the command line ----------------------------------------------------------
def port_number(text: str) -> int:
    """argparse type: a UDP port 0..65535 (out of range is a usage error, not an OverflowError later)."""
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 0..65535")
    return port


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser("devices", help="list audio devices (every PortAudio host API, JACK included)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser("live", help="separate a live input and play the stems (full duplex)")
    p.add_argument("--input", default=None, metavar="DEV", help="input device: index or part of the name")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="play this file (looped) as the input instead of a device; the model and profile then "
                        "default to the best that keeps up on this machine (Spleeter, quality, block 512)")
    p.add_argument("--output", required=True, metavar="DEV", help="output device: index or part of the name")
    p.add_argument("--host-api", default=None, metavar="NAME",
                   help="only devices of this host API (part of its name, e.g. jack, alsa)")
    p.add_argument("--model", default=None,
                   help="built-in name (passthrough, dsp-center, dsp-4stem), bundled model name, or a model file path")
    p.add_argument("--profile", choices=REALTIME_PROFILES, default=None,
                   help="default: live for a device input, the best that keeps up for --file")
    p.add_argument("--device", dest="compute_device", default="cpu", help="cpu or cuda (model backends only)")
    p.add_argument("--block", type=int, default=None, help="device block in frames (default: the profile's)")
    p.add_argument("--rate", type=int, default=None, help="sample rate (default: the device's)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop after this long (headless runs); default: until Ctrl-C")
    p.add_argument("--stats-json", default=None, metavar="FILE", help="write stats and latency here at the end")
    p.add_argument("--route", nargs="+", action="extend", default=None, metavar="BUS=CH,CH",
                   help="put a bus on output channels (from 1): a stem, main, instrumental, karaoke or mic; "
                        "e.g. --route vocals=3,4 accompaniment=1,2, or drums=5,6 with a four-stem model (default main=1,2)")
    p.add_argument("--routes", default=None, metavar="FILE",
                   help="routing from a file: JSON {\"vocals\": [3, 4], ...} or lines BUS=CH,CH (channels from 1)")
    p.add_argument("--mic", type=int, default=None, metavar="CH", help="microphone on input channel CH (from 1)")
    p.add_argument("--mic-device", default=None, metavar="DEV",
                   help="the microphone's own device (index or part of the name): --mic CH is then its channel "
                        "(default 1), read on a capture stream of its own; latency: its device's plus one block")
    p.add_argument("--mic-gain", type=float, default=1.0, metavar="G", help="microphone gain, 0..2")
    p.add_argument("--mic-fx", default=None, metavar="PRESET",
                   help="effect chain preset (or JSON file) for the microphone, e.g. mic-vocal; it runs on its "
                   "own thread, one block behind (monitoring latency: two device blocks)")
    p.add_argument("--mic-fx-in-callback", action="store_true",
                   help="run the mic effect chain in the audio callback: one device block of monitoring latency, "
                   "but effect hosts allocate memory there")
    p.add_argument("--fx", action="append", metavar="STEM=PRESET",
                   help="effect chain preset on a stem; repeatable, e.g. --fx vocals=vocal")
    p.add_argument("--key", type=int, default=0, help="shift the accompaniment by semitones (-12..12)")
    p.add_argument("--no-karaoke", action="store_true", help="main plays every stem at full level")
    p.add_argument("--guide", type=float, default=None, help="karaoke guide vocal level, 0..1")
    p.add_argument("--osc-port", type=port_number, default=None, metavar="P",
                   help="OSC control on 127.0.0.1:P (0: any free port)")
    p.add_argument("--daw", default=None, metavar="PRESET",
                   help="mirror the stem faders onto a DAW's OSC surface: reaper, ableton, ardour or a preset file")
    p.add_argument("--daw-tracks", nargs="+", default=None, metavar="STEM=N",
                   help="DAW track number per stem (default: the stems in order, from 1)")
    p.add_argument("--daw-port", type=port_number, default=None, help="the DAW's OSC port (default: the preset's)")
    p.add_argument("--jack-name", default="stemstream", help="JACK client name (default: %(default)s)")
    p.add_argument("--budget", type=int, default=None, metavar="FRAMES",
                   help="compute budget the worker runs ahead by (default: measured at start)")
    p.add_argument("--quiet", action="store_true", help="no status line while running")
    p.set_defaults(func=cmd_live)


def cmd_devices(args) -> int:
    try:
        devices = list_devices()
    except LiveError as exc:
        return _fail(exc)
    except Exception as exc:  # noqa: BLE001 - PortAudio errors come in several types
        return _fail(LiveError(f"cannot list audio devices: {exc}"))
    print(json.dumps(devices, indent=2) if getattr(args, "json", False) else format_devices(devices))
    return EXIT_OK


def _fail(exc: LiveError) -> int:
    print(f"stemstream: error: {exc}", file=sys.stderr)
    return exc.code


def cmd_live(args) -> int:
    try:
        return run_live(args)
    except LiveError as exc:
        return _fail(exc)


class CallbackTimer:
    """Wraps the engine callback to time each call (preallocated, no logging)."""

    def __init__(self, callback, capacity: int = 1 << 16):
        from .stats import ComputeTimes

        self.inner = callback
        self.times = ComputeTimes(capacity)

    def __call__(self, indata, outdata, frames, time_info, status):
        started = time.perf_counter()
        self.inner(indata, outdata, frames, time_info, status)
        self.times.add(time.perf_counter() - started)

    @property
    def max(self) -> float:
        return self.times.max

    def percentiles_ms(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.times.percentiles_ms().items()}


def load_routes(path) -> dict[str, list[int]]:
    """A routing file: JSON ``{"vocals": [3, 4]}`` or lines ``vocals=3,4`` (``#`` comments); channels from 1."""
    from .mixer import parse_route

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise LiveError(f"--routes {path}: {exc}") from None
    routes = {}
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
            for bus, chans in data.items():
                chans = [chans] if isinstance(chans, int) else list(chans)
                routes.update([parse_route(f"{bus}={','.join(str(int(c)) for c in chans)}")])
        except (ValueError, TypeError, AttributeError) as exc:
            raise LiveError(f"--routes {path}: {exc}") from None
        return routes
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                routes.update([parse_route(line)])
            except ValueError as exc:
                raise LiveError(f"--routes {path}: {exc}") from None
    return routes


def mic_chain(preset: str, rate: int):
    """The microphone's effect chain as a RealtimeEngine mic_processor (run on its MicLane thread)."""
    from plugins.effects import EffectChain

    try:
        chain = EffectChain.from_preset(preset, rate, channels=1)
    except (OSError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise LiveError(f"--mic-fx {preset}: {message}") from None
    for error in chain.errors:
        print(f"warning: --mic-fx {preset}: {error}", file=sys.stderr)

    def process(mic_in, mic_out):
        mic_out[:, 0] = chain.process(mic_in.T)[0]

    process.latency = chain.latency
    return process


def build_engine(args, rate: int, music_inputs: list[int]):
    """Separator -> Pipeline (+ effects, key) -> RealtimeEngine as the arguments say."""
    from .mixer import parse_route
    from .params import GUIDE_RANGE, KEY_RANGE, MIC_GAIN_RANGE, ParamStore, Params, clamp
    from .stages import build_stages, parse_fx
    from .pipeline import Pipeline
    from .profiles import get_profile
    from .realtime import RealtimeEngine
    from .separators.base import SeparatorError
    from .separators.registry import load_separator

    profile = get_profile(args.profile)
    block = profile.block if args.block is None else args.block
    if block <= 0:
        raise LiveError(f"--block must be positive, got {block}")
    routes = load_routes(args.routes) if getattr(args, "routes", None) else {}
    for item in args.route or []:
        try:
            bus, channels = parse_route(item)
        except ValueError as exc:
            raise LiveError(str(exc)) from None
        routes[bus] = channels
    try:
        separator = load_separator(args.model, args.profile, sample_rate=rate, device=args.compute_device)
    except SeparatorError as exc:
        raise LiveError(str(exc)) from None
    mic_gain, clamped = clamp(args.mic_gain, *MIC_GAIN_RANGE)
    if clamped:
        print(f"warning: --mic-gain {args.mic_gain} is outside {MIC_GAIN_RANGE}; using {mic_gain}", file=sys.stderr)
    key, clamped = clamp(getattr(args, "key", 0) or 0, *KEY_RANGE)
    if clamped:
        print(f"warning: --key {args.key} is outside {KEY_RANGE}; using {key}", file=sys.stderr)
    extra = {"mic_gain": mic_gain, "karaoke": not args.no_karaoke, "key": key}
    if args.guide is not None:
        extra["guide"] = clamp(args.guide, *GUIDE_RANGE)[0]
    store = ParamStore(Params.for_stems(separator.spec.stems, **extra))
    music_channels = len(music_inputs)
    try:
        stages = build_stages(separator.spec.stems, rate, music_channels, parse_fx(getattr(args, "fx", None)),
                              key_change=key != 0)
    except (ValueError, OSError, ImportError, KeyError) as exc:
        raise LiveError(exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) from None
    mic_fx = getattr(args, "mic_fx", None)
    if mic_fx and args.mic is None:
        raise LiveError("--mic-fx needs --mic CH (the microphone's input channel)")
    processor = mic_chain(mic_fx, rate) if mic_fx else None
    pipeline = Pipeline(separator, rate, music_channels, profile, stages=stages)
    try:
        engine = RealtimeEngine(pipeline, block, routes=routes or None, store=store,
                                input_channels=list(music_inputs),
                                mic_channel=None if args.mic is None else args.mic - 1, mic_processor=processor,
                                mic_fx_in_callback=getattr(args, "mic_fx_in_callback", False),
                                budget=args.budget)
    except ValueError as exc:  # unknown bus in the routing
        raise LiveError(str(exc)) from None
    if args.mic is not None and not engine.router.mic_channels() and "main" not in engine.router.routes:
        print("warning: the microphone goes to the main bus's channels, and main is not routed: "
              "add --route mic=CH,CH", file=sys.stderr)
    return engine, store, separator


class LiveStream:
    """A RealtimeEngine on one full-duplex sounddevice stream.

    ``open()`` opens the stream (fixed blocksize = engine block, float32,
    ``inputs`` channels in, the routing's channels out); ``start()`` starts
    the worker then the device; ``stop()`` stops both. The callback is
    ``RealtimeEngine.callback``, timed by ``CallbackTimer``.

    For other front ends (the desktop app): ``callback`` replaces what the
    timer wraps (same signature as ``RealtimeEngine.callback``, which it
    should call); ``source(frames) -> (frames, channels) float32`` feeds the
    engine from something other than a device (a file played in a loop): the
    stream is then output-only, ``input_device``/``inputs`` are unused and
    ``device_latency`` is ``(0.0, output)``.
    """

    def __init__(self, engine, input_device: int | None, output_device: int, inputs: int, rate: int | None = None,
                 finished=None, callback=None, source=None):
        self.engine = engine
        self.input_device, self.output_device = input_device, output_device
        self.inputs = inputs
        self.rate = rate or engine.rate
        self.timer = CallbackTimer(callback or engine.callback)
        self.source = source
        self.finished = finished
        self.stream = None
        self.device_latency = (0.0, 0.0)  # (input, output) seconds as PortAudio reports them, once open
        self._running = False

    def open(self) -> "LiveStream":
        sd = portaudio()
        kwargs = {"finished_callback": self.finished} if self.finished is not None else {}
        if self.source is not None:
            self.stream = sd.OutputStream(device=self.output_device, samplerate=self.rate,
                                          blocksize=self.engine.block, dtype="float32",
                                          channels=self.engine.out_channels, callback=self._from_source,
                                          latency="low", **kwargs)
            self.device_latency = (0.0, float(self.stream.latency))
            return self
        self.stream = sd.Stream(device=(self.input_device, self.output_device), samplerate=self.rate,
                                blocksize=self.engine.block, dtype="float32",
                                channels=(self.inputs, self.engine.out_channels), callback=self.timer,
                                latency="low", **kwargs)
        latency = self.stream.latency
        if isinstance(latency, (tuple, list)):
            self.device_latency = (float(latency[0]), float(latency[1]))
        else:
            self.device_latency = (float(latency), float(latency))
        return self

    def _from_source(self, outdata, frames, time_info, status):
        self.timer(self.source(frames), outdata, frames, time_info, status)

    def latency(self):
        """The engine's latency report with PortAudio's device latencies added."""
        return self.engine.latency(*self.device_latency)

    def start(self) -> None:
        if self.stream is None:
            self.open()
        self.engine.start()
        self._running = True
        self.stream.start()

    @property
    def active(self) -> bool:
        return self.stream is not None and bool(self.stream.active)

    def stop(self) -> None:
        """Stop and close the stream, then the worker; safe to call twice, and after the device vanished."""
        if self.stream is not None:
            stream, self.stream = self.stream, None
            lost = self._running and not stream.active  # we did not stop it: the device did
            if lost or not close_within(stream, CLOSE_TIMEOUT):
                abandon(stream)
        if self._running:
            self.engine.stop()
            self._running = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def _mic_fx_stats(engine) -> dict:
    """Where the mic's effect chain ran, what it added (samples beyond the device block), its late blocks."""
    lane = engine.mic_lane
    if lane is not None:
        return {"mic_fx": {"where": "own thread", "latency_samples": lane.latency, "late_blocks": lane.late,
                           "error": None if lane.error is None else repr(lane.error)}}
    if engine.mic_fx_in_callback:
        return {"mic_fx": {"where": "callback", "latency_samples": int(getattr(engine.mic_processor, "latency", 0)),
                           "late_blocks": 0, "error": None}}
    return {}


def stats_dict(engine, latency, timer: CallbackTimer | None, extra: dict) -> dict:
    stats = engine.stats.as_dict()
    compute = stats.pop("compute_ms")
    return {
        **extra,
        **stats,
        "compute_ms": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in compute.items()},
        "callback_ms": timer.percentiles_ms() if timer is not None else None,
        "latency": latency.as_dict(),
        "algorithmic_latency": engine.latency().as_dict(),
        "worker_error": None if engine.worker_error is None else repr(engine.worker_error),
        **_mic_fx_stats(engine),
    }


def run_live(args) -> int:
    if args.mic is not None and args.mic < 1:
        raise LiveError(f"--mic counts channels from 1, got {args.mic}")
    if args.duration is not None and args.duration <= 0:
        raise LiveError(f"--duration must be positive, got {args.duration}")
    if args.block is not None and args.block <= 0:
        raise LiveError(f"--block must be positive, got {args.block}")
    if args.stats_json:
        folder = Path(args.stats_json).resolve().parent
        if not folder.is_dir():
            raise LiveError(f"--stats-json {args.stats_json}: no such folder {folder}")
    portaudio()  # initialise PortAudio before the JACK client name and device look-ups
    jack_api = any("jack" in str(x).lower() for x in (args.host_api, args.input, args.output) if x is not None)
    if args.jack_name and (jack_api or args.host_api is None):
        set_jack_client_name(args.jack_name)
    if jack_api and not any("jack" in d["hostapi"].lower() for d in list_devices()):
        rescan()  # jackd may have started after PortAudio was initialised

    file_source = _file_input(args)
    mic_dev = None
    if args.mic_device is not None:  # the mic on a device of its own: not a channel of the music input
        args.mic = args.mic or 1
        mic_dev = find_device(args.mic_device, "input", args.host_api, need=args.mic)
    mic = None if args.mic is None or mic_dev is not None else args.mic - 1
    if file_source is None:
        in_dev = find_device(args.input, "input", args.host_api, need=max(1, (mic or -1) + 1))
        music_inputs = [c for c in range(in_dev["inputs"]) if c != mic][:2] or [0]
        rate = args.rate or int(in_dev["default_rate"])
    else:  # output-only: the file is the clock's input, read in the callback
        in_dev = {"file": str(file_source)}
        music_inputs = [0, 1]
        rate = args.rate or int(find_device(args.output, "output", args.host_api)["default_rate"])
    engine, store, separator = build_engine(args, rate, music_inputs)
    n_in = max(music_inputs + [mic if mic is not None else 0]) + 1
    n_out = engine.out_channels
    out_dev = find_device(args.output, "output", args.host_api, need=n_out)
    source = None
    if file_source is not None:
        from .sources import FileSource

        try:
            source = FileSource(file_source, rate, 2, max_block=max(8192, 4 * engine.block))
        except Exception as exc:  # noqa: BLE001 - AudioFileError, soundfile's own errors
            raise LiveError(f"--file {file_source}: cannot read it ({exc})") from None
        n_in = 0

    mic_capture = None
    if mic_dev is not None:
        engine.mic_channel = None
        mic_capture = _open_mic(mic_dev, args.mic - 1, rate, engine)

    stopped = threading.Event()
    live = LiveStream(engine, in_dev.get("index"), out_dev["index"], n_in, rate, finished=stopped.set,
                      source=None if source is None else source.next)
    try:
        live.open()
    except Exception as exc:  # noqa: BLE001 - sd.PortAudioError, ValueError for bad settings
        if mic_capture is not None:
            mic_capture.close()
        raise LiveError(f"cannot open the stream ({in_dev.get('name', file_source)} -> {out_dev['name']}, {rate} Hz, "
                        f"block {engine.block}, {n_in} in / {n_out} out): {exc}") from None
    device_in, device_out = live.device_latency
    latency = live.latency()
    source_text = (f"file {file_source}" if file_source is not None
                   else f"in {in_dev['name']!r} ({in_dev['hostapi']}) x{n_in}")
    print(f"live: {separator.spec.name}, profile {args.profile}, {rate} Hz, block {engine.block}, "
          f"{source_text}, out {out_dev['name']!r} x{n_out}")
    if getattr(args, "file_choice", None):
        print(f"file input: {args.file_choice}")
    print(f"latency: {latency.describe()}", flush=True)
    if mic_capture is not None:  # the mic skips the separator: its device, the block held, cycle order, one block
        mic_ms = 1000.0 * (mic_capture.latency + 3 * engine.block / rate + device_out)
        print(f"microphone: {mic_dev['name']!r} channel {args.mic}, {mic_ms:.1f} ms to the output")
    if engine.latency().algorithmic_ms > PROFILES[args.profile].latency_target_ms:
        print(f"warning: algorithmic latency {engine.latency().algorithmic_ms:.1f} ms is above the {args.profile} "
              f"target of {PROFILES[args.profile].latency_target_ms:.0f} ms", file=sys.stderr)

    osc = None
    try:
        osc = _start_osc(args, store, separator, engine)
        daw = _start_daw(args, store, separator)
    except LiveError:
        if osc is not None:
            osc.close()
        live.stop()
        if mic_capture is not None:
            mic_capture.close()
        release_portaudio()
        raise
    interrupted = {"signal": None}
    previous = _install_signal_handlers(interrupted)
    code, reason = EXIT_OK, "duration reached" if args.duration else "stopped"
    started = time.monotonic()
    try:
        try:
            live.start()
        except Exception as exc:  # noqa: BLE001
            raise LiveError(f"cannot start the stream: {exc}", EXIT_RUNTIME) from None
        next_status = started + 1.0
        while True:
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                break
            if interrupted["signal"] is not None:
                reason = f"stopped by {interrupted['signal']}"
                break
            if stopped.is_set() or not live.active:
                code, reason = EXIT_RUNTIME, "the audio device stopped (disconnected, or its server quit)"
                break
            if engine.worker_error is not None:
                code, reason = EXIT_RUNTIME, f"separation failed: {engine.worker_error}"
                break
            if not args.quiet and sys.stderr.isatty() and now >= next_status:
                s = engine.stats
                print(f"\r{now - started:7.1f} s  misses {s.misses}  xruns {s.xruns}  cpu {s.cpu_percent():4.1f}%",
                      end="", file=sys.stderr, flush=True)
                next_status = now + 1.0
            time.sleep(0.05)
    except KeyboardInterrupt:
        reason = "stopped by Ctrl-C"
    finally:
        _restore_signal_handlers(previous)
        elapsed = time.monotonic() - started
        timer = live.timer
        live.stop()
        if mic_capture is not None:
            mic_capture.close()
        if osc is not None:
            osc.close()
        if daw is not None:
            daw.close()
        release_portaudio()  # closes the JACK client now, before anyone stops jackd
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)

    info = {
        "model": separator.spec.name,
        "profile": args.profile,
        "sample_rate": rate,
        "block": engine.block,
        "input_device": in_dev,
        "output_device": out_dev,
        "channels": {"in": n_in, "out": n_out, "music_inputs": [c + 1 for c in music_inputs],
                     "mic_input": args.mic, "mic_device": None if mic_dev is None else mic_dev["name"]},
        "routes": {bus: [c + 1 for c in chans] for bus, chans in engine.router.routes.items()},
        "device_latency_s": {"input": device_in, "output": device_out},
        "seconds": round(elapsed, 3),
        "worker_priority_raised": live.engine.tuning.worker_boosted,
        "model_at_end": engine.pipeline.separator.spec.name,  # switches (OSC) may have changed them
        "profile_at_end": engine.pipeline.profile.name,
        "exit": {"code": code, "reason": reason},
    }
    result = stats_dict(engine, latency, timer, info)
    c = result["compute_ms"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    bad = result["nonfinite_windows"]
    print(f"{reason} after {elapsed:.1f} s: {result['callbacks']} callbacks, {result['xruns']} xruns, "
          f"{result['misses']} misses, {result['dropped_frames']} dropped frames, cpu {result['cpu_percent']:.1f}%"
          + (f", {bad} windows of NaN/inf model output played dry" if bad else ""))
    print(f"compute per call (ms): p50 {fmt(c['p50'])}, p95 {fmt(c['p95'])}, p99 {fmt(c['p99'])}, "
          f"max {fmt(c['max'])}; callback max {fmt(result['callback_ms']['max'])} ms")
    if args.stats_json:
        try:
            _write_json(Path(args.stats_json), result)
        except OSError as exc:
            print(f"stemstream: error: cannot write {args.stats_json}: {exc}", file=sys.stderr)
            return code or EXIT_RUNTIME
    if code:
        print(f"stemstream: error: {reason}", file=sys.stderr)
    return code


def _file_input(args):
    """The --file path (checked), with the model, profile and block it defaults to; None for a device input.

    A file is never heard unseparated, so its input-to-output latency is
    free: unless told otherwise it runs the best model that keeps up
    (``registry.file_input_choice``). A device input keeps the live profile.
    """
    if args.file is None:
        if args.input is None:
            raise LiveError("give an input: --input DEV (a device) or --file PATH (a file played in a loop)")
        args.profile = args.profile or "live"
        return None
    if args.input is not None:
        raise LiveError("--input and --file both name the input: give one")
    if args.mic is not None and args.mic_device is None:
        raise LiveError("--mic CH with --file needs --mic-device DEV (a file has no microphone channel)")
    path = Path(args.file)
    if not path.is_file():
        raise LiveError(f"--file {args.file}: no such file")
    if args.profile is None:
        from .separators.registry import file_input_choice

        choice = file_input_choice()
        args.profile = choice["profile"]
        args.model = args.model or choice["model"]
        args.block = args.block or choice["block"]
        args.file_choice = (f"{args.model}, profile {args.profile}, block {args.block} "
                            f"(the best that keeps up: {choice['why']})")
    return path


def _open_mic(device: dict, channel: int, rate: int, engine):
    """The microphone's own capture stream, read by the engine's callback (``engine.mic_source``)."""
    from .sources import Capture

    try:
        capture = Capture(device["index"], channel + 1, rate, engine.block, name=device["name"]).open()
    except Exception as exc:  # noqa: BLE001 - PortAudio errors come in several types
        raise LiveError(f"cannot open the microphone's device {device['name']!r}: {exc}") from None
    engine.mic_source = capture.reader((channel,)).next
    return capture


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    tmp.replace(path)


def _start_osc(args, store, separator, engine):
    if args.osc_port is None:
        return None
    import importlib.util

    if importlib.util.find_spec("stream_engine.osc") is None:
        raise LiveError("--osc-port: OSC control is not available in this build")
    try:
        from .osc import OscServer
    except ImportError as exc:
        raise LiveError(f"--osc-port: OSC control needs python-osc ({exc})") from None
    try:
        effects = next((stage for stage in engine.pipeline.stages if hasattr(stage, "check_fx")), None)
        server = OscServer(store, list(engine.pipeline.stems), status=engine.status, port=args.osc_port,
                           fx_check=None if effects is None else effects.check_fx, controls=live_control(args, engine))
    except (OSError, OverflowError) as exc:
        raise LiveError(f"--osc-port {args.osc_port}: {exc}") from None
    print(f"OSC on 127.0.0.1:{server.port}")
    return server


def live_control(args, engine):
    """Model, profile, key stage, effects and routing changes while playing (OSC), for ``stemstream live``."""
    from .control import ChainSpec, LiveControl
    from .stages import parse_fx

    preload_backends()
    spec = ChainSpec(model=args.model, profile=args.profile, key_stage=bool(getattr(args, "key", 0)),
                     fx=parse_fx(getattr(args, "fx", None)), channels=engine.channels)
    return LiveControl(engine, spec, device=getattr(args, "compute_device", "cpu"))


def preload_backends() -> None:
    """Import the model backends now, before the stream runs: a first import holds the GIL for tens of
    ms (onnxruntime: 25-45 ms measured), which a switch to a model would otherwise spend mid-stream."""
    import importlib
    import importlib.util

    for name in ("onnxruntime",):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def parse_daw_tracks(items, stems) -> dict[str, int]:
    """``["vocals=3", "accompaniment=4"]`` -> {stem: track}; default: stems in order from 1."""
    if not items:
        return {stem: n for n, stem in enumerate(stems, start=1)}
    tracks = {}
    for item in items:
        stem, _, number = item.partition("=")
        if stem not in stems or not number.isdigit() or int(number) < 1:
            raise LiveError(f"--daw-tracks {item!r}: write STEM=N with a stem of this model "
                            f"({', '.join(stems)}) and a track number from 1")
        tracks[stem] = int(number)
    return tracks


def _start_daw(args, store, separator):
    if getattr(args, "daw", None) is None:
        return None
    from .osc.daw import DawMirror

    tracks = parse_daw_tracks(args.daw_tracks, list(separator.spec.stems))
    try:
        mirror = DawMirror(store, args.daw, tracks, port=args.daw_port)
    except (OSError, ValueError, KeyError) as exc:
        raise LiveError(f"--daw {args.daw}: {exc}") from None
    print(f"mirroring stem faders to {args.daw} at {mirror.host}:{mirror.port} (tracks {tracks})")
    return mirror


def _install_signal_handlers(flag: dict):
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, _frame):
        flag["signal"] = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stemstream")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
