"""Live audio for the GUI: devices, the engine session, taps.

Nothing here touches Qt. ``LiveSession.start`` and ``stop`` are slow (model
load, warm-up, device open/close) and are called from worker threads; the UI
only reads attributes (``engine.mixer.meters``, ``engine.stats``, the taps),
which never block the audio side.

PortAudio, device enumeration, the stream and the JACK dummy server are the
engine's (``stream_engine.live``: ``portaudio``, ``list_devices``, ``rescan``,
``release_portaudio``, ``LiveStream``; ``stream_engine.tools.jack.JackServer``);
this module only adapts them to what the window shows. sounddevice is
imported lazily there: PortAudio enumerates JACK when it is initialised, so a
JACK server must already be running by then (the app starts it first when
asked for one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from stream_engine import live
from stream_engine.params import ParamStore, Params

FILE_SOURCE_PREFIX = "file:"
DEMO_SOURCE = "demo song"


@dataclass(frozen=True)
class Device:
    """One entry of ``stream_engine.live.list_devices()`` in the shape the window uses
    (a stable key for the settings, a label and a tooltip for the device boxes)."""

    index: int
    name: str
    hostapi: str
    max_in: int
    max_out: int
    default_rate: float

    @classmethod
    def from_live(cls, d: dict) -> "Device":
        return cls(d["index"], d["name"], d["hostapi"], d["inputs"], d["outputs"], float(d["default_rate"]))

    @property
    def key(self) -> str:
        """Stable across runs (indices are not): ``host API: name``."""
        return f"{self.hostapi}: {self.name}"

    @property
    def label(self) -> str:
        api = "JACK" if self.hostapi.startswith("JACK") else self.hostapi
        return f"{self.name} · {api}"

    @property
    def description(self) -> str:
        return (f"{self.name} on {self.hostapi}: {self.max_in} in / {self.max_out} out, "
                f"{self.default_rate:g} Hz (PortAudio device {self.index})")


def list_devices() -> tuple[list[Device], str | None]:
    """Every PortAudio device on every host API (``stream_engine.live.list_devices``), or ([], why not)."""
    try:
        return [Device.from_live(d) for d in live.list_devices()], None
    except Exception as exc:  # noqa: BLE001 - no PortAudio, broken driver: the app still runs
        return [], f"audio devices unavailable: {type(exc).__name__}: {exc}"


def find_device(spec, devices: list[Device], need: str) -> Device | None:
    """``spec``: index, ``host API: name`` key, or a case-insensitive part of a name
    (JACK preferred among equal matches). ``need``: "in" or "out".

    Not ``stream_engine.live.find_device``: the window looks up in the list it
    already shows (on the UI thread, without re-enumerating PortAudio), by the
    ``host API: name`` keys it saves in the settings (an exact key must win
    over a longer name containing it, and "JACK" must match the host API),
    and falls back to another choice instead of failing (None, not an error).
    """
    if spec is None or spec == "":
        return None
    usable = [d for d in devices if (d.max_in if need == "in" else d.max_out) > 0]
    text = str(spec).strip()
    if text.isdigit():
        return next((d for d in usable if d.index == int(text)), None)
    for d in usable:
        if d.key == text:
            return d
    low = text.lower()
    hits = [d for d in usable if low in d.key.lower()]
    hits.sort(key=lambda d: ("jack" not in d.hostapi.lower(), d.index))
    return hits[0] if hits else None


class TapRing:
    """Overwriting ring the worker writes and the UI copies from, without locks.

    The UI may read a block the worker is overwriting: a torn frame in a
    spectrogram column, never a wait.
    """

    def __init__(self, channels: int, capacity: int = 1 << 15):
        self.buffer = np.zeros((capacity, channels), np.float32)
        self.capacity = capacity
        self.written = 0

    def write(self, frames: np.ndarray) -> None:
        n = len(frames)
        if n >= self.capacity:
            frames, n = frames[-self.capacity:], self.capacity
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self.buffer[start:start + first] = frames[:first]
        if first < n:
            self.buffer[: n - first] = frames[first:]
        self.written += n

    def latest(self, out: np.ndarray) -> None:
        n = len(out)
        start = (self.written - n) % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self.buffer[start:start + first]
        if first < n:
            out[first:] = self.buffer[: n - first]


class StemTap:
    """Pipeline stage (latency 0) that keeps a mono copy of each stem for the UI."""

    latency = 0

    def __init__(self, stems, capacity: int = 1 << 15):
        self.stems = list(stems)
        self.ring = TapRing(len(self.stems), capacity)

    def reset(self) -> None:
        pass

    def process(self, stems: np.ndarray, params=None) -> np.ndarray:
        if stems.shape[-1]:
            self.ring.write(stems.mean(axis=1).T)
        return stems


class FileSource:
    """A file played in a loop as the engine's input (the demo, a backing track).

    ``next(frames)`` is called from the audio callback: slicing only, and a
    copy into a preallocated buffer where the loop wraps.
    """

    def __init__(self, path: str | Path, rate: int, channels: int = 2, max_block: int = 8192):
        from stream_engine.audio_io import read_audio

        data, file_rate = read_audio(path)
        if file_rate != rate:
            import soxr

            data = soxr.resample(data.T, file_rate, rate, "HQ").T
        if data.shape[0] == 1:
            data = np.repeat(data, channels, axis=0)
        elif data.shape[0] > channels:
            data = data[:channels]
        self.path = Path(path)
        self.data = np.ascontiguousarray(data.T.astype(np.float32))  # (frames, channels)
        self.position = 0
        self._wrap = np.zeros((max_block, channels), np.float32)

    def next(self, frames: int) -> np.ndarray:
        n = len(self.data)
        p = self.position
        self.position = (p + frames) % n
        if p + frames <= n:
            return self.data[p:p + frames]
        out = self._wrap[:frames]
        first = n - p
        out[:first] = self.data[p:]
        out[first:] = self.data[: frames - first]
        return out


def source_path(source: str | None) -> Path | None:
    """The file behind an input choice (``demo song`` or ``file:PATH``), else None."""
    if not source:
        return None
    if source == DEMO_SOURCE:
        from stream_engine.demo import DEMO_SONG

        return DEMO_SONG
    if source.startswith(FILE_SOURCE_PREFIX):
        return Path(source[len(FILE_SOURCE_PREFIX):])
    return None


@dataclass
class LiveConfig:
    input: str | None = None  # device spec, ``demo song`` or ``file:PATH``
    output: str | None = None  # device spec
    model: str | None = None  # None: the profile's default
    profile: str = "live"
    block: int | None = None  # None: the profile's block
    key_shift: bool = True  # add the KeyShift stage (its latency) so the key can change
    mic_channel: int | None = None  # 0-based input channel of the microphone
    fx: dict = field(default_factory=dict)  # stem -> [effect spec, ...] ({"bypass": True} skips one)


def carry_params(old: Params, stems) -> Params:
    """A snapshot for ``stems`` keeping what carries over from ``old``."""
    new = Params.for_stems(stems, karaoke=old.karaoke, guide=old.guide, key=old.key, mic_gain=old.mic_gain)
    for s in stems:
        if s in old.stems:
            new = new.with_stem(s, gain=old.stem(s).gain, mute=old.stem(s).mute, solo=old.stem(s).solo)
    return new


def active_effects(specs) -> list[tuple[int, dict]]:
    """(index in the editor's list, spec) of the effects that are not bypassed."""
    return [(i, s) for i, s in enumerate(specs or []) if not s.get("bypass")]


class LiveSession:
    """One running engine on one ``stream_engine.live.LiveStream``. Built and stopped off the UI thread.

    ``stream`` is the LiveStream (None when stopped): full duplex from an input
    device, or output-only with a ``FileSource`` as the engine's input.
    """

    def __init__(self, config: LiveConfig, store: ParamStore):
        self.config = config
        self.store = store
        self.engine = None
        self.stream = None
        self.source: FileSource | None = None
        self.tap: StemTap | None = None
        self.effects = None
        self.stems: tuple[str, ...] = ()
        self.rate = 48000
        self.latency_report = None
        self.warnings: list[str] = []
        self.timings: dict[str, float] = {}  # perf_counter stamps
        self.t_first_callback: float | None = None
        self.t_first_sound: float | None = None
        self.device_names = ("", "")

    # -- building (worker thread) -----------------------------------------
    def start(self) -> "LiveSession":
        from plugins.effects import StemEffects
        from stream_engine.pipeline import Pipeline
        from stream_engine.profiles import get_profile
        from stream_engine.realtime import RealtimeEngine
        from stream_engine.separators.registry import load_separator
        from stream_engine.stages import build_stages

        cfg = self.config
        self.timings["start"] = time.perf_counter()
        profile = get_profile(cfg.profile)
        devices, problem = list_devices()
        if problem:
            raise RuntimeError(problem)
        src_path = source_path(cfg.input)
        out_dev = find_device(cfg.output, devices, "out") if cfg.output else None
        if cfg.output and out_dev is None:
            raise RuntimeError(f"output device {cfg.output!r} not found; pick another one (Rescan lists new ones)")
        in_dev = None
        if src_path is None:
            in_dev = find_device(cfg.input, devices, "in") if cfg.input else None
            if cfg.input and in_dev is None:
                raise RuntimeError(f"input device {cfg.input!r} not found; pick another one")
        sd = live.portaudio()
        if out_dev is None:
            default_out = sd.default.device[1]
            if default_out is None or default_out < 0:
                raise RuntimeError("no output device: pick one in Output")
            out_dev = next(d for d in devices if d.index == default_out)
        if in_dev is None and src_path is None:
            default_in = sd.default.device[0]
            if default_in is None or default_in < 0:
                raise RuntimeError("no input device: pick one in Input, or play a file through the engine")
            in_dev = next(d for d in devices if d.index == default_in)
        self.rate = rate = int(out_dev.default_rate or 48000)
        block = cfg.block or profile.block

        separator = load_separator(cfg.model, cfg.profile, sample_rate=rate)
        self.timings["model_loaded"] = time.perf_counter()
        stems = separator.spec.stems
        self.stems = stems
        channels = 2
        fx = {}
        for stem, specs in (cfg.fx or {}).items():
            active = [s for _, s in active_effects(specs)]
            if stem in stems and active:
                fx[stem] = active
        stages = build_stages(stems, rate, channels, fx=fx, key_change=cfg.key_shift)
        for stage in stages:
            if isinstance(stage, StemEffects):
                self.effects = stage
                self.warnings += list(stage.errors)
        self.tap = StemTap(stems)
        stages.append(self.tap)
        pipeline = Pipeline(separator, rate, channels, profile, stages=stages)

        if set(self.store.current.stems) != set(stems):
            self.store = ParamStore(carry_params(self.store.current, stems))
        if self.store.current.fx:  # effect indices are rebuilt from the specs
            self.store.update(lambda p: p.with_(fx=MappingProxyType({})))

        input_channels = None
        mic = None
        if in_dev is not None:
            mic = cfg.mic_channel if cfg.mic_channel is not None and cfg.mic_channel < in_dev.max_in else None
            in_ch = min(in_dev.max_in, max(2, (mic or 0) + 1))
            music = [c for c in range(in_ch) if c != mic][:2] or [0]
            input_channels = (music * 2)[:2]
        routes = {"main": [0, 1]} if out_dev.max_out >= 2 else {"main": [0]}
        engine = RealtimeEngine(pipeline, block, routes=routes, store=self.store, input_channels=input_channels,
                                mic_channel=mic)
        self.engine = engine
        self.timings["engine_built"] = time.perf_counter()

        if src_path is not None:
            self.source = FileSource(src_path, rate, channels, max_block=max(8192, 4 * block))
            stream = live.LiveStream(engine, None, out_dev.index, 0, rate, callback=self._callback,
                                     source=self.source.next)
        else:
            stream = live.LiveStream(engine, in_dev.index, out_dev.index, in_ch, rate, callback=self._callback)
        try:
            stream.start()  # opens the device, starts the worker (realtime tuning included), then the device
        except BaseException:
            stream.stop()
            raise
        self.stream = stream
        self.device_names = (in_dev.key if in_dev else f"file {src_path.name}", out_dev.key)
        self.latency_report = stream.latency()
        self.engine_ms = engine.latency().ms  # algorithmic + compute budget
        self.algorithmic_ms = engine.latency().algorithmic_ms  # what the profile target is for
        self.target_ms = profile.latency_target_ms
        self.timings["stream_started"] = time.perf_counter()
        return self

    # -- the callback: copy, nothing else ---------------------------------------
    def _callback(self, indata, outdata, frames, time_info, status):
        """What LiveStream calls (``indata``: the device's, or the FileSource's frames)."""
        self.engine.callback(indata, outdata, frames, time_info, status)
        self._first(outdata)

    def _first(self, outdata) -> None:
        if self.t_first_sound is None:
            if self.t_first_callback is None:
                self.t_first_callback = time.perf_counter()
            if outdata.any():
                self.t_first_sound = time.perf_counter()

    # -- stopping (worker thread) ---------------------------------------------
    def stop(self) -> None:
        stream, self.stream = self.stream, None
        try:
            if stream is not None:
                stream.stop()  # the stream, then the worker; does not hang when the device vanished
        finally:
            if self.engine is not None:
                self.engine.stop()

    @property
    def running(self) -> bool:
        return self.stream is not None and self.engine is not None

    # -- what the UI reads (never blocks) --------------------------------------
    def levels(self) -> np.ndarray:
        """Linear (peak, rms) per stem and main, from the worker's last block."""
        return self.engine.mixer.meters

    def stats(self) -> dict:
        st = self.engine.stats
        return {"misses": st.misses, "xruns": st.xruns, "cpu": st.cpu_percent(), "callbacks": st.callbacks,
                "error": self.engine.worker_error}

    def status(self) -> dict:
        """For OSC feedback (same shape as ``RealtimeEngine.status``)."""
        engine = self.engine
        if engine is None:
            return idle_status(self.stems)
        return {"meters": engine.mixer.meters_db(),
                "latency_ms": self.latency_report.ms if self.latency_report else 0.0,
                "latency_samples": self.latency_report.samples if self.latency_report else 0,
                "stats": {"misses": engine.stats.misses, "xruns": engine.stats.xruns,
                          "cpu": engine.stats.cpu_percent()}}

    def input_snapshot(self, out: np.ndarray) -> None:
        """The newest ``len(out)`` input frames, mono."""
        ring = self.engine.in_ring
        n = len(out)
        if not hasattr(self, "_in_scratch") or len(self._in_scratch) != n:
            self._in_scratch = np.zeros((n, ring.channels), np.float32)
        ring.copy_out(ring.written - n, self._in_scratch)
        np.mean(self._in_scratch, axis=1, out=out)

    def stem_snapshot(self, stem: str, out: np.ndarray) -> None:
        ring = self.tap.ring
        n = len(out)
        if not hasattr(self, "_stem_scratch") or len(self._stem_scratch) != n:
            self._stem_scratch = np.zeros((n, ring.buffer.shape[1]), np.float32)
        ring.latest(self._stem_scratch)
        out[:] = self._stem_scratch[:, self.tap.stems.index(stem)]


def idle_status(stems) -> dict:
    return {"meters": {s: (-120.0, -120.0) for s in list(stems) + ["main"]}, "latency_ms": 0.0,
            "latency_samples": 0, "stats": {"misses": 0, "xruns": 0, "cpu": 0.0}}


def db(x: float) -> float:
    return 20.0 * math.log10(max(float(x), 1e-6))


class StemPlayer:
    """Plays one of several equally long stems; switching keeps the position (A/B compare)."""

    def __init__(self):
        self.tracks: dict[str, np.ndarray] = {}
        self.current: str | None = None
        self.position = 0
        self.rate = 44100
        self.stream = None
        self.length = 0

    @staticmethod
    def read(files: dict[str, Path], device_rate: int | None = None) -> tuple[dict[str, np.ndarray], int]:
        """Read the stems, resampled to ``device_rate`` if given (slow for long
        files: call it off the UI thread)."""
        from stream_engine.audio_io import read_audio

        tracks, rate = {}, None
        for name, path in files.items():
            data, rate = read_audio(path)
            if device_rate and rate != device_rate:
                import soxr

                data = soxr.resample(data.T, rate, device_rate, "HQ").T
                rate = device_rate
            if data.shape[0] == 1:
                data = np.repeat(data, 2, axis=0)
            tracks[name] = np.ascontiguousarray(data[:2].T)
        return tracks, rate or 44100

    def load(self, files: dict[str, Path]) -> None:
        self.set_tracks(*self.read(files))

    def set_tracks(self, tracks: dict[str, np.ndarray], rate: int) -> None:
        self.close()
        self.tracks, self.rate = tracks, rate
        self.length = min(len(t) for t in tracks.values()) if tracks else 0
        self.position = 0

    def play(self, name: str, device=None) -> None:
        if name not in self.tracks:
            raise KeyError(f"no stem {name!r} loaded")
        self.current = name
        if self.stream is None:
            sd = live.portaudio()
            self.stream = sd.OutputStream(device=device, samplerate=self.rate, channels=2, dtype="float32",
                                          callback=self._callback)
            self.stream.start()

    def _callback(self, outdata, frames, time_info, status):
        data = self.tracks.get(self.current)
        p = self.position
        if data is None or p >= self.length:
            outdata[:] = 0
            return
        n = min(frames, self.length - p)
        outdata[:n] = data[p:p + n]
        outdata[n:] = 0
        self.position = p + n

    def seek(self, fraction: float) -> None:
        self.position = int(max(0.0, min(1.0, fraction)) * self.length)

    @property
    def playing(self) -> bool:
        return self.stream is not None and self.position < self.length

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001
                pass
