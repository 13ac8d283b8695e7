"""The Python API: separate numpy audio or files in your own program, or stream block by block.

    import stemstream

    sep = stemstream.Separator()                        # the offline profile's best installed model
    stems = sep.separate(audio, 44100)                  # audio: (channels, samples) or (samples,)
    stems["vocals"], stems["accompaniment"], stems["karaoke"]

    live = sep.stream(48000, channels=2, block=256)     # for your own audio callback
    out = live.process(block)                           # same frames out, ``live.latency`` late

Everything here runs on the engine's one code path: ``separate`` and
``separate_file`` are ``stemstream separate`` (``offline.separate_array`` /
``offline.separate_file``: the same Pipeline, framer, separator and mixer, the
latency removed, outputs aligned with the input sample for sample), and a
``Stream`` runs what the live engine's worker runs (``Pipeline.process`` then
``Mixer.mix``, untrimmed, model failures played dry), with the live engine's
way of measuring what the pipeline holds back. What it returns is the stems
plus the two mixes the command writes: ``instrumental`` (every stem but the
vocals) and ``karaoke`` (the instrumental with the vocals at 15 %).

Errors: everything raised on purpose is a ``StemstreamError``:
``ArgumentError`` (a bad value passed here), ``SeparatorError`` (a model
cannot be found, loaded or run), ``AudioFileError`` (an input file cannot be
read), ``OutputError`` (an output file cannot be written).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, overload

import numpy as np
from numpy.typing import ArrayLike

from .audio_io import AudioFileError, OutputError, open_audio, read_blocks, sanitize, truncation
from .batch import make_factory
from .errors import ArgumentError, StemstreamError
from .latency import LatencyReport
from .mixer import Mixer
from .offline import OFFLINE_BUSES, separate_array, separate_file
from .params import Params
from .pipeline import Pipeline
from .profiles import PROFILES, get_profile
from .separators.base import Separator as BackendSeparator
from .separators.base import SeparatorError
from .separators.registry import (BUILTINS, bundled_models, default_model, load_separator, model_stems,
                                  third_party_models)

__all__ = ["Separator", "Stream", "ModelInfo", "list_models", "StemstreamError", "ArgumentError",
           "SeparatorError", "AudioFileError", "OutputError"]

MAX_CHANNELS = 64  # more than this is taken for a (samples, channels) array passed the wrong way round
RATE_RANGE = (1000, 768000)
BUILTIN_LICENCE = "MIT (stemstream's own code; no weights)"
REFERENCE_RATE = 48000  # where a model that runs at the stream's rate reports its latency


@dataclass(frozen=True)
class ModelInfo:
    """One separator ``Separator(model=name)`` can load."""

    name: str
    kind: str  # "built-in" (no weights), "third-party" (weights from another package), "bundled"
    stems: tuple[str, ...]
    sample_rate: int | None  # the model's own rate; None: it runs at the audio's rate
    default_for: tuple[str, ...]  # the profiles that pick it when no model is named
    licence: str | None
    path: str | None  # the model file of a bundled model
    card: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def list_models() -> list[ModelInfo]:
    """Every separator installed here: built-ins, third-party (once their package is installed), bundled."""
    defaults = {profile: default_model(profile) for profile in PROFILES}

    def profiles_of(name: str) -> tuple[str, ...]:
        return tuple(p for p, model in defaults.items() if model == name)

    models = [ModelInfo(name, "built-in", model_stems(name), None, profiles_of(name), BUILTIN_LICENCE, None)
              for name in BUILTINS]
    for kind, cards in (("third-party", third_party_models()), ("bundled", bundled_models())):
        for name, card in cards.items():
            models.append(ModelInfo(name, kind, tuple(card.get("stems", ())), card.get("sample_rate"),
                                    profiles_of(name), licence_of(card), card.get("path"), dict(card)))
    return models


def licence_of(card: Mapping[str, Any]) -> str | None:
    """The weights' licence as the model card states it (at the top, or with the training data)."""
    from .separators.research import card_licence

    return card_licence(dict(card)) or None


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer, float, np.floating)):
        raise ArgumentError(f"sample_rate must be a number of samples per second, not {sample_rate!r}")
    if not float(sample_rate).is_integer():
        raise ArgumentError(f"sample_rate must be a whole number of Hz, not {sample_rate}")
    rate = int(sample_rate)
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise ArgumentError(f"sample_rate {rate} Hz is outside {RATE_RANGE[0]}..{RATE_RANGE[1]} Hz")
    return rate


def _as_audio(audio: ArrayLike, what: str = "audio") -> tuple[np.ndarray, bool]:
    """(channels, n) float32 (a copy when converted) and whether the caller passed one dimension."""
    array = np.asarray(audio)
    if array.dtype.kind not in "fiu":
        raise ArgumentError(f"{what} must hold real numbers, not {array.dtype}")
    if array.ndim == 1:
        array, mono = array[np.newaxis, :], True
    elif array.ndim == 2:
        mono = False
    else:
        raise ArgumentError(f"{what} must be (channels, samples) or (samples,), not shape {array.shape}")
    if array.shape[0] == 0:
        raise ArgumentError(f"{what} has no channels (shape {array.shape})")
    if array.shape[0] > MAX_CHANNELS:
        raise ArgumentError(f"{what} has shape {array.shape}: {array.shape[0]} channels? stemstream takes "
                            f"(channels, samples); soundfile.read gives (samples, channels): pass audio.T")
    if array.dtype.kind in "iu":  # PCM integers: full scale is 1.0, as soundfile reads them
        info = np.iinfo(array.dtype)
        scale = float(-info.min) if info.min < 0 else (info.max + 1) / 2.0
        offset = 0.0 if info.min < 0 else scale
        array = ((array.astype(np.float64) - offset) / scale).astype(np.float32)
    else:
        array = array.astype(np.float32)  # always a copy: the caller's array is never changed
    return array, mono


class Separator:
    """A model loaded once, for any number of signals and files.

    ``model``: a name from ``list_models()`` or a model file's path (``.onnx``
    with its ``.json`` card beside it); None picks the profile's default, as
    the command line does. ``profile``: ``offline`` (the longest windows, for
    files), ``quality``, ``balanced`` or ``live``. ``device``: ``cpu`` or
    ``cuda`` (model backends only). ``threads``: compute threads of the
    model (None: its backend's default).

    The model loads here, so a missing or broken one fails at once
    (``SeparatorError``). Not thread-safe: one call at a time per object
    (streams made by ``stream()`` each have their own model).
    """

    def __init__(self, model: str | Path | None = None, profile: str = "offline", device: str = "cpu",
                 threads: int | None = None):
        if profile not in PROFILES:
            raise ArgumentError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ArgumentError(f"threads must be a positive whole number or None, not {threads!r}")
        if not isinstance(device, str) or not device:
            raise ArgumentError(f"device must be 'cpu' or 'cuda', not {device!r}")
        self.model = str(model) if model is not None else default_model(profile)
        self.profile = profile
        self.device = device
        self.threads = threads
        # rate -> separator, each built once and reset between signals: what `stemstream separate` uses
        self._make = make_factory(self.model, profile, device, threads)
        self._reference = self._load(REFERENCE_RATE)

    def _load(self, rate: int) -> BackendSeparator:
        try:
            separator: BackendSeparator = self._make(rate)
        except StemstreamError:
            raise
        except (ValueError, OSError) as exc:  # a backend's own complaint about its file or settings
            raise SeparatorError(f"model {self.model!r}: {exc}") from exc
        return separator

    @property
    def name(self) -> str:
        """The model's name (from its card)."""
        return str(self._reference.spec.name)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stems the model separates, in order (``separate`` also returns the two mixes after them)."""
        return tuple(self._reference.spec.stems)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The keys of every dict this object returns: the stems, then ``instrumental`` and ``karaoke``."""
        return self.stems + OFFLINE_BUSES

    @property
    def card(self) -> dict[str, Any]:
        """The model card (sample rate, stems, training data, metrics, licence); a copy."""
        return dict(self._reference.spec.card)

    @property
    def licence(self) -> str | None:
        """The licence of the model's weights, from its card (research-only weights say so here)."""
        return licence_of(self.card) or (BUILTIN_LICENCE if self.model in BUILTINS else None)

    @property
    def latency(self) -> LatencyReport:
        """What the model's framing delays a stream by (lookahead + crossfade), at the model's rate
        (48 kHz for a model that runs at the audio's rate). ``separate`` removes it; ``stream`` reports
        its own, which adds the buffering of whole hops."""
        spec = self._reference.spec
        report = LatencyReport(spec.sample_rate or REFERENCE_RATE)
        report.add("framer (lookahead + crossfade)", spec.latency)
        return report

    def __repr__(self) -> str:
        return f"Separator(model={self.model!r}, profile={self.profile!r}, device={self.device!r})"

    def separate(self, audio: ArrayLike, sample_rate: int) -> dict[str, np.ndarray]:
        """Separate a whole signal in memory.

        ``audio``: ``(channels, samples)`` or ``(samples,)``, float (full scale
        1.0) or PCM integers, any number of channels, any ``sample_rate``.
        Returns ``{name: array}`` for ``self.outputs``, each the input's shape
        and rate, float32, aligned with the input sample for sample. The same
        channel rule as the command line: a stereo model runs on consecutive
        pairs, a mono model on each channel, an odd last channel is paired
        with itself. NaN/inf samples are separated as silence (with a warning).
        """
        rate = _check_rate(sample_rate)
        x, mono = _as_audio(audio)
        if x.shape[1] == 0:
            empty = np.zeros(x.shape, np.float32)
            return {name: (empty[0] if mono else empty).copy() for name in self.outputs}
        bad = sanitize(x)
        if bad:
            warnings.warn(f"{bad} NaN/inf samples of the audio were separated as silence", stacklevel=2)
        separator = self._load(rate)
        buses = separate_array(separator, x, rate, self.profile)
        return {name: (buses[name][0] if mono else buses[name]) for name in self.outputs}

    @overload
    def separate_file(self, path: str | Path, out: None = None, fmt: str = "wav") -> dict[str, np.ndarray]: ...

    @overload
    def separate_file(self, path: str | Path, out: str | Path, fmt: str = "wav") -> dict[str, Path]: ...

    def separate_file(self, path: str | Path, out: str | Path | None = None,
                      fmt: str = "wav") -> dict[str, np.ndarray] | dict[str, Path]:
        """Separate an audio file (whatever libsndfile reads).

        ``out=None``: returns ``{name: (channels, samples) array}`` at the
        file's own rate (``soundfile.info(path).samplerate``). With ``out``, a
        folder: writes ``out/<file name without extension>/<name>.<fmt>``
        exactly as ``stemstream separate FILE --out OUT`` does (``wav``: 32-bit
        float, ``flac``: 24-bit), atomically, and returns ``{name: path}``.
        A file that cannot be read raises ``AudioFileError``, one that cannot
        be written ``OutputError``; nothing half-written is left.
        """
        path = Path(path)
        if out is None:
            with open_audio(path) as f:  # as the command reads it, and with its warnings
                rate, cut = f.samplerate, truncation(f)
                data = np.concatenate(list(read_blocks(f, 1 << 18, path)), axis=1)
            if cut:
                warnings.warn(f"{path}: the file is truncated: its header promises {cut[0]} frames, it holds "
                              f"{cut[1]}; separated what is there", stacklevel=2)
            try:
                return self.separate(data, rate)
            except ArgumentError as exc:
                raise AudioFileError(f"{path}: {exc}") from None
        if fmt not in ("wav", "flac"):
            raise ArgumentError(f"fmt must be 'wav' or 'flac', not {fmt!r}")
        result = separate_file(path, Path(out), self._load, self.profile, fmt=fmt, progress=False)
        return dict(result.files)

    def stream(self, sample_rate: int, channels: int = 2, block: int | None = None,
               profile: str | None = None) -> "Stream":
        """A ``Stream`` for audio that arrives block by block (your own audio callback, a game engine,
        a plugin host), with a model of its own. ``block``: the frames every call will pass (a device
        callback's block size), which keeps the latency as low as the live engine's; None: calls of
        any size, a little more latency (up to one hop of the model). ``profile``: None, this object's;
        a stream usually wants ``live`` or ``balanced`` (the offline profile's windows last seconds)."""
        if profile is not None and profile not in PROFILES:
            raise ArgumentError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        return Stream(self.model, profile or self.profile, sample_rate, channels, block, self.device, self.threads)


class Stream:
    """Separation of a stream, one block at a time: what ``stemstream live`` runs, without a device.

    ``process(block)`` takes ``(channels, frames)`` (or ``(frames,)`` for one
    channel) and returns ``{name: array}`` of the same frames for every name
    in ``outputs``, ``latency.samples`` frames late: output frame ``t`` is the
    separation of input frame ``t - latency.samples`` (silence before the
    stream began). The calls do the model's work in the calling thread, so
    the time one takes varies (a call that completes a hop runs the model);
    in a hard real-time callback, run ``process`` on a worker thread behind a
    ring buffer, as the live engine does.

    The latency is the live engine's without its device block and compute
    budget: what the pipeline holds back (whole hops, resampler buffering,
    measured on silence at start, as the engine does) plus the framer's
    lookahead and crossfade. Should a call still find too little output (only
    possible with calls of uneven size), the missing frames are silence and
    the late frames are dropped when they come, so the timing never shifts
    (counted in ``underruns``). A window the model returns NaN/inf for is
    played dry, as live. Feed ``latency.samples`` frames of silence at the
    end to get the last input out.
    """

    def __init__(self, model: str, profile: str, sample_rate: int, channels: int, block: int | None = None,
                 device: str = "cpu", threads: int | None = None):
        self.sample_rate = _check_rate(sample_rate)
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or not 1 <= channels <= MAX_CHANNELS:
            raise ArgumentError(f"channels must be a whole number from 1 to {MAX_CHANNELS}, not {channels!r}")
        if block is not None and (isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1):
            raise ArgumentError(f"block must be a positive number of frames or None, not {block!r}")
        self.channels = int(channels)
        self.block = None if block is None else int(block)
        try:
            separator = load_separator(model, profile, sample_rate=self.sample_rate, device=device, threads=threads)
        except (ValueError, OSError) as exc:
            raise SeparatorError(f"model {model!r}: {exc}") from exc
        # untrimmed, NaN/inf windows played dry: the live engine's pipeline (live.build_engine)
        self.pipeline = Pipeline(separator, self.sample_rate, self.channels, get_profile(profile))
        self.mixer = Mixer(self.pipeline.stems, self.channels)
        self.params = Params.for_stems(self.pipeline.stems)
        self.stems: tuple[str, ...] = tuple(self.pipeline.stems)
        self.outputs: tuple[str, ...] = self.stems + OFFLINE_BUSES
        self.holdback = self._measure_holdback()
        self.reset()

    def _measure_holdback(self) -> int:
        """Most frames the pipeline can owe at the end of a call, measured on silence (then reset).

        With a fixed block this is the live engine's measurement (``handover.measure_holdback``),
        run until the model has produced output twice, however long its hop. For calls of any size:
        the output after n frames pushed, f(n), is never less than at the last probe step below n,
        so n - f(n) <= (k + 1) * step - f(k * step) bounds every call size.
        """
        spec = self.pipeline.separator.spec
        ratio = self.sample_rate / self.pipeline.model_rate
        needed = math.ceil(2 * (spec.window + spec.hop) * ratio) + 4096  # two model calls and the resamplers
        step = self.block or 32
        silence = np.zeros((self.channels, step), np.float32)
        self.pipeline.reset()
        produced = worst = 0
        for k in range(max(64, math.ceil(needed / step))):
            if self.block is None:
                worst = max(worst, (k + 1) * step - produced)
            produced += self.pipeline.process(silence, self.params).shape[2]
            if self.block is not None:
                worst = max(worst, (k + 1) * step - produced)
        self.pipeline.reset()
        return worst

    @property
    def latency(self) -> LatencyReport:
        """Input to output, at the stream's rate (``.samples``, ``.ms``, ``.parts``, ``.describe()``)."""
        report = LatencyReport(self.sample_rate)
        report.add("hop and resampler buffering", self.holdback)
        for name, samples in self.pipeline.latency().parts.items():
            report.add(name, samples)
        return report

    @property
    def nonfinite_windows(self) -> int:
        """Windows the model returned NaN/inf for (played dry)."""
        return self.pipeline.framer.nonfinite_windows

    def reset(self) -> None:
        """Start a new stream: the model's state and the buffers are cleared."""
        self.pipeline.reset()
        self._queue = np.zeros((len(self.outputs), self.channels, self.holdback), np.float32)
        self._owed = 0  # frames handed out as silence whose real output is still to come (and be dropped)
        self.underruns = 0
        self.frames_in = 0

    def process(self, block: ArrayLike) -> dict[str, np.ndarray]:
        """Push ``block`` through the separator; return as many frames of every output, ``latency`` late."""
        x, mono = _as_audio(block, "block")
        n = x.shape[1]
        if x.shape[0] != self.channels:
            raise ArgumentError(f"block has {x.shape[0]} channel(s); this stream was opened for {self.channels}")
        if self.block is not None and n != self.block:
            raise ArgumentError(f"block has {n} frames; this stream was opened for blocks of {self.block} "
                                f"(open it with block=None for calls of any size)")
        sanitize(x)
        self.frames_in += n
        stems = self.pipeline.process(x, self.params)
        if stems.shape[2]:
            buses = self.mixer.mix(stems, self.params)
            ready = np.stack([buses[name] for name in self.outputs])
            if self._owed:  # these frames were played as silence already
                drop = min(self._owed, ready.shape[2])
                self._owed -= drop
                ready = ready[:, :, drop:]
            self._queue = np.concatenate([self._queue, ready], axis=2)
        out = self._queue[:, :, :n]
        self._queue = self._queue[:, :, n:]
        if out.shape[2] < n:
            self.underruns += 1
            self._owed += n - out.shape[2]
            out = np.concatenate([out, np.zeros((len(self.outputs), self.channels, n - out.shape[2]),
                                                np.float32)], axis=2)
        return {name: (out[i, 0] if mono else out[i]) for i, name in enumerate(self.outputs)}

    def __repr__(self) -> str:
        return (f"Stream({self.pipeline.separator.spec.name!r}, {self.sample_rate} Hz, {self.channels} ch, "
                f"block {self.block}, latency {self.latency.samples} frames)")
