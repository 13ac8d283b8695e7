"""Per-stem effect chains: Pedalboard built-ins and VST3 plugins, streamed.

A chain is built from a JSON preset::

    {"name": "vocal", "description": "...",
     "effects": [
        {"type": "Compressor", "params": {"threshold_db": -18, "ratio": 3}},
        {"type": "Reverb", "params": {"room_size": 0.3, "wet_level": 0.2}},
        {"type": "vst3", "path": "/usr/lib/vst3/ZamCompX2.vst3",
         "params": {"threshold_db": -20}}
     ]}

``type`` is a Pedalboard class name (``Compressor``, ``Reverb``, ``Gain``,
``HighpassFilter`` ...) or ``vst3`` / ``plugin`` with a ``path`` loaded by
``pedalboard.load_plugin``. Every slot is processed with ``reset=False`` so a
chain streamed block by block gives the same output as the whole signal at once.

A slot that fails to load, to take a parameter, or raises while processing is
bypassed: the failure is logged and appended to ``chain.errors``; the slot is
replaced by a delay line of the slot's latency so the chain's reported latency
(and therefore stem alignment) never changes mid-stream.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from stream_engine.presets import list_preset_files
from stream_engine.untrusted import UntrustedInputError, check_plugin_path, read_json
from stream_engine.presets import user_preset_dir as _user_preset_dir

log = logging.getLogger("stemstream.plugins")

_plugin_host = None  # the one thread that loads hosted (VST3) plugins, made on first use
_plugin_host_lock = threading.Lock()


def on_plugin_host(fn):
    """Run ``fn()`` on the plugin-host thread and return its result.

    JUCE (inside Pedalboard) takes the first thread that loads a VST3 as its
    message thread; loading or resetting a plugin from any other thread later
    fails ("must be reloaded on the main thread"), measured when the GUI had
    loaded a chain from its engine thread and a later chain loaded on the
    main thread. So every load goes through this one thread; processing with
    ``reset=False``, ``reset()`` and parameter changes work from any thread.
    """
    global _plugin_host
    from concurrent.futures import ThreadPoolExecutor

    with _plugin_host_lock:
        if _plugin_host is None:
            _plugin_host = ThreadPoolExecutor(1, thread_name_prefix="stemstream-plugin-host")
    if threading.current_thread().name.startswith("stemstream-plugin-host"):
        return fn()
    return _plugin_host.submit(fn).result()

PACKAGE_PRESETS = Path(__file__).resolve().parent / "presets"
USER_PRESETS_ENV = "STEMSTREAM_FX_PRESETS"


def user_preset_dir() -> Path:
    """Folder for the user's own effect presets (``$STEMSTREAM_FX_PRESETS`` or
    ``~/.config/stemstream/presets/effects``)."""
    return _user_preset_dir("effects", USER_PRESETS_ENV)


def list_presets(user_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Preset name -> JSON file; a user preset shadows a bundled one of the same name."""
    return list_preset_files(PACKAGE_PRESETS, Path(user_dir) if user_dir else user_preset_dir())


class UnknownPreset(KeyError, ValueError):
    """No preset of that name: a KeyError (as before) and a ValueError (bad input), printed plainly."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def load_preset(name_or_path, user_dir=None) -> dict:
    """A preset dict from a name (bundled or user), a JSON path, or a dict/list."""
    if isinstance(name_or_path, Mapping):
        return dict(name_or_path)
    if isinstance(name_or_path, (list, tuple)):
        return {"name": "custom", "effects": list(name_or_path)}
    p = Path(name_or_path)
    if not p.suffix == ".json" or not p.exists():
        presets = list_presets(user_dir)
        if str(name_or_path) not in presets:
            raise UnknownPreset(f"unknown effect preset {name_or_path!r}; known: {', '.join(sorted(presets))}")
        p = presets[str(name_or_path)]
    try:
        data = read_json(p, "effect preset")
    except UntrustedInputError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, (dict, list)):
        raise ValueError(f"effect preset {p}: must be a JSON object or list, not {type(data).__name__}")
    if isinstance(data, list):
        data = {"name": p.stem, "effects": data}
    data.setdefault("name", p.stem)
    check_effects(data.get("effects"), f"effect preset {p}")
    return data


def check_effects(effects, where: str) -> None:
    """A preset's effects: a list of objects with a text ``type`` and an object of ``params``; else ValueError."""
    if not isinstance(effects, list):
        raise ValueError(f"{where}: 'effects' must be a list of effects, not {type(effects).__name__}")
    for i, e in enumerate(effects):
        if not isinstance(e, Mapping) or not isinstance(e.get("type"), str) \
                or not isinstance(e.get("params", {}), Mapping):
            raise ValueError(f"{where}: effect {i} must be an object with a 'type' name and a 'params' object, "
                             f"not {e!r}"[:300])


class DelayLine:
    """Constant delay of ``delay`` samples for [C, n] blocks (any n)."""

    def __init__(self, channels: int, delay: int):
        self.channels = channels
        self.delay = int(delay)
        self._buf = np.zeros((channels, self.delay), np.float32)

    def reset(self) -> None:
        self._buf[:] = 0.0

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.delay == 0:
            return x
        n = x.shape[-1]
        joined = np.concatenate([self._buf, x.astype(np.float32, copy=False)], axis=-1)
        self._buf = joined[:, n:].copy()
        return joined[:, :n]


def _measure_latency(make, sample_rate: int, channels: int, block: int = 256) -> int:
    """Onset of an impulse streamed through a fresh instance (reset=False)."""
    plugin = make()
    total = max(int(sample_rate * 0.5), 4 * block)
    x = np.zeros((channels, total), np.float32)
    x[:, 0] = 0.5
    out = np.concatenate(
        [plugin.process(x[:, i:i + block], sample_rate, reset=False) for i in range(0, total, block)],
        axis=-1,
    )
    mag = np.abs(out).max(axis=0)
    peak = float(mag.max())
    if peak <= 0.0 or not np.isfinite(peak):
        return 0
    return int(np.argmax(mag > peak * 1e-3))


class Slot:
    """One effect in a chain, bypassable."""

    def __init__(self, spec: Mapping, sample_rate: int, channels: int):
        self.spec = dict(spec)
        self.type = str(spec.get("type", ""))
        self.label = spec.get("name") or (spec.get("path") if self.is_external else self.type)
        self.sample_rate = sample_rate
        self.channels = channels
        self.plugin = None
        self.latency = 0
        self.error: str | None = None
        self._bypass: DelayLine | None = None
        self._mono_via_stereo = False  # a stereo-only plugin on a mono stream (the mic)

    @property
    def is_external(self) -> bool:
        return self.type.lower() in ("vst3", "vst", "plugin", "au", "external")

    def _make(self):
        import pedalboard

        if self.is_external:
            path = self.spec.get("path")
            if not path:
                raise ValueError("a 'vst3' effect needs a 'path'")
            # loading a plugin runs its code: only from the plugin folders (SECURITY.md)
            path = check_plugin_path(path, f"effect {self.label!r}")
            kw = {}
            if self.spec.get("plugin_name"):
                kw["plugin_name"] = self.spec["plugin_name"]
            plugin = pedalboard.load_plugin(str(path), **kw)
        else:
            cls = getattr(pedalboard, self.type, None)
            if cls is None or not isinstance(cls, type) or not issubclass(cls, pedalboard.Plugin) \
                    or issubclass(cls, getattr(pedalboard, "ExternalPlugin", ())):
                raise ValueError(f"no Pedalboard effect named {self.type!r}")
            plugin = cls()
        for k, v in dict(self.spec.get("params", {})).items():
            setattr(plugin, k, v)
        return plugin

    def _probe_channels(self, plugin) -> None:
        """Stereo-only plugins (e.g. the zam *X2 bundles) on mono: run them on L=R, take the mean."""
        try:
            plugin.process(np.zeros((self.channels, 32), np.float32), self.sample_rate, reset=True)
        except Exception:  # noqa: BLE001
            if self.channels != 1:
                raise
            plugin.process(np.zeros((2, 32), np.float32), self.sample_rate, reset=True)
            self._mono_via_stereo = True
        plugin.reset()

    def _make_and_probe(self):
        plugin = self._make()
        if self.is_external:
            self._probe_channels(plugin)
        return plugin

    def load(self) -> None:
        try:
            self.plugin = on_plugin_host(self._make_and_probe) if self.is_external else self._make()
            reported = getattr(self.plugin, "reported_latency_samples", None)
            if self.is_external and reported is not None:
                self.latency = int(reported)  # hosted plugins report it; no second instance
            elif reported:
                self.latency = int(reported)
            else:
                measure = lambda: _measure_latency(self._make, self.sample_rate, self.channels)  # noqa: E731
                self.latency = on_plugin_host(measure) if self.is_external else measure()
            self.plugin.reset()
        except Exception as exc:  # noqa: BLE001 - a bad plugin must never crash the engine
            self._fail(f"could not load effect {self.label!r}: {type(exc).__name__}: {exc}")

    def _fail(self, message: str) -> None:
        self.error = message
        self.plugin = None
        self._bypass = DelayLine(self.channels, self.latency)
        log.error("%s (bypassed)", message)

    @property
    def bypassed(self) -> bool:
        return self.plugin is None

    def set_param(self, name: str, value) -> str | None:
        if self.plugin is None:
            return f"effect {self.label!r} is bypassed"
        try:
            setattr(self.plugin, name, value)
        except Exception as exc:  # noqa: BLE001
            return f"effect {self.label!r}: cannot set {name}={value!r}: {exc}"
        return None

    def reset(self) -> None:
        if self.plugin is not None:
            self.plugin.reset()
        if self._bypass is not None:
            self._bypass.reset()

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.plugin is None:
            return self._bypass.process(x)
        try:
            if self._mono_via_stereo and x.shape[0] == 1:
                y = self.plugin.process(np.repeat(x, 2, axis=0), self.sample_rate, reset=False)
                y = y.mean(axis=0, keepdims=True, dtype=np.float32)
            else:
                y = self.plugin.process(x, self.sample_rate, reset=False)
            if y.shape != x.shape:
                raise RuntimeError(f"returned shape {y.shape} for input {x.shape}")
            return y
        except Exception as exc:  # noqa: BLE001
            self._fail(f"effect {self.label!r} raised while processing: {type(exc).__name__}: {exc}")
            return self._bypass.process(x)


class EffectChain:
    """A list of effects processed in series, streaming (``reset=False``)."""

    def __init__(self, effects: Sequence[Mapping], sample_rate: int, channels: int = 2, name: str = "custom"):
        self.name = name
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.slots = [Slot(spec, self.sample_rate, self.channels) for spec in effects]
        for s in self.slots:
            s.load()

    @classmethod
    def from_preset(cls, preset, sample_rate: int, channels: int = 2, user_dir=None) -> "EffectChain":
        """From a preset name, a JSON path, a dict ``{"effects": [...]}`` or a list of effects."""
        data = load_preset(preset, user_dir)
        return cls(data.get("effects", []), sample_rate, channels, name=data.get("name", "custom"))

    @property
    def latency(self) -> int:
        return sum(s.latency for s in self.slots)

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.slots if s.error]

    def set_param(self, index: int, name: str, value) -> str | None:
        """Set a parameter of effect ``index``; returns an error message or None."""
        if not 0 <= index < len(self.slots):
            return f"chain {self.name!r} has no effect {index}"
        return self.slots[index].set_param(name, value)

    def reset(self) -> None:
        for s in self.slots:
            s.reset()

    def process(self, x: np.ndarray) -> np.ndarray:
        """[C, n] float32 -> [C, n]."""
        y = np.ascontiguousarray(x, dtype=np.float32)
        if y.shape[-1] == 0:
            return y
        for s in self.slots:
            y = s.process(y)
        return y


class StemEffects:
    """Stage: an effect chain per stem, latency-compensated so stems stay aligned.

    ``latency`` is the longest chain's latency; every other stem (with or without
    a chain) goes through a delay line making up the difference.
    """

    def __init__(self, stem_names: Sequence[str], chains: Mapping[str, EffectChain], sample_rate: int, channels: int = 2):
        self.stem_names = list(stem_names)
        unknown = set(chains) - set(self.stem_names)
        if unknown:
            raise ValueError(f"effect chains for unknown stems {sorted(unknown)}; stems: {self.stem_names}")
        self.chains = dict(chains)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.latency = max([c.latency for c in self.chains.values()] + [0])
        self._delays = {
            s: DelayLine(self.channels, self.latency - (self.chains[s].latency if s in self.chains else 0))
            for s in self.stem_names
        }
        self._fx_seen: Mapping = {}
        self._param_errors: list[str] = []

    @property
    def errors(self) -> list[str]:
        out = []
        for s, c in self.chains.items():
            out += [f"{s}: {e}" for e in c.errors]
        return out + self._param_errors

    def reset(self) -> None:
        for c in self.chains.values():
            c.reset()
        for d in self._delays.values():
            d.reset()

    def check_fx(self, stem: str, index: int, name: str, value: float) -> tuple[float, str | None]:
        """What to apply for ``(stem, index, name) = value`` (the OSC server's ``fx_check``):
        ``(value, None)``, the value clamped into a VST3 parameter's range, or an error message
        where no such parameter exists or the effect refuses the value."""
        chain = self.chains.get(stem)
        if chain is None:
            return value, f"no effect chain on stem {stem!r}"
        if not 0 <= index < len(chain.slots):
            return value, f"stem {stem!r} has {len(chain.slots)} effects, no effect {index}"
        slot = chain.slots[index]
        if slot.plugin is None:
            return value, f"effect {index} ({slot.label}) on {stem!r} is bypassed: {slot.error}"
        params = getattr(slot.plugin, "parameters", None)
        if isinstance(params, Mapping):  # a VST3 plugin: parameters know their range
            if name not in params:
                return value, f"effect {index} ({slot.label}) on {stem!r} has no parameter {name!r}; it has {sorted(params)}"
            lo, hi = params[name].min_value, params[name].max_value
            if lo is not None and hi is not None:
                value = min(max(value, lo), hi)
            return value, None
        kind = type(slot.plugin)
        known = {a for a in dir(kind) if not a.startswith("_") and isinstance(getattr(kind, a, None), property)}
        known -= {"is_effect", "is_instrument"}
        if name not in known:
            return value, f"effect {index} ({slot.label}) on {stem!r} has no parameter {name!r}; it has {sorted(known)}"
        try:  # Pedalboard's own effects check their values: ask a scratch instance, not the live one
            scratch = kind()
        except Exception:  # noqa: BLE001 - needs constructor arguments: the worker reports a refusal
            return value, None
        try:
            setattr(scratch, name, value)
        except (ValueError, TypeError) as exc:
            return value, f"effect {index} ({slot.label}) on {stem!r}: {name}={value!r} refused: {exc}"
        return value, None

    def apply_fx(self, fx: Mapping) -> None:
        """Push changed ``(stem, index, param) -> value`` entries into the plugins."""
        if fx is self._fx_seen:
            return
        old = self._fx_seen
        self._fx_seen = fx
        for key, value in fx.items():
            if old.get(key) == value:
                continue
            try:
                stem, index, name = key
            except (TypeError, ValueError):
                continue
            chain = self.chains.get(stem)
            err = f"no effect chain on stem {stem!r}" if chain is None else chain.set_param(int(index), name, value)
            if err:
                if err not in self._param_errors:
                    self._param_errors.append(err)
                    del self._param_errors[:-50]
                log.warning(err)

    def process(self, stems: np.ndarray, params=None) -> np.ndarray:
        if params is not None:
            self.apply_fx(params.fx)
        if stems.shape[-1] == 0:
            return stems
        out = np.empty(stems.shape, np.float32)
        for i, name in enumerate(self.stem_names):
            y = stems[i]
            chain = self.chains.get(name)
            if chain is not None:
                y = chain.process(y)
            out[i] = self._delays[name].process(y)
        return out


def stem_effects_from_config(stem_names, presets: Mapping[str, object], sample_rate: int, channels: int = 2, user_dir=None) -> StemEffects:
    """``{"vocals": "vocal", "accompaniment": "radio"}`` -> StemEffects."""
    chains = {s: EffectChain.from_preset(p, sample_rate, channels, user_dir) for s, p in presets.items()}
    return StemEffects(stem_names, chains, sample_rate, channels)


def bench_effects(preset="vocal-vst3", sample_rate: int = 48000, block: int = 256, seconds: float = 5.0) -> dict:
    """Print and return the per-block cost of a chain (default: compressor + reverb + ZamCompX2 VST3)."""
    import time

    chain = EffectChain.from_preset(preset, sample_rate, 2)
    rng = np.random.default_rng(0)
    n_blocks = int(seconds * sample_rate / block)
    x = (0.2 * rng.standard_normal((2, n_blocks * block))).astype(np.float32)
    times = []
    for i in range(n_blocks):
        t0 = time.perf_counter()
        chain.process(x[:, i * block:(i + 1) * block])
        times.append(time.perf_counter() - t0)
    t = np.array(times[10:]) * 1e3
    budget = block / sample_rate * 1e3
    # streaming (this block size and an odd one) vs the whole signal at once
    ref = EffectChain.from_preset(preset, sample_rate, 2).process(x[:, : sample_rate * 2])
    diffs = {}
    for b in (block, 1000):
        c = EffectChain.from_preset(preset, sample_rate, 2)
        y = np.concatenate([c.process(x[:, i:i + b]) for i in range(0, ref.shape[1], b)], axis=-1)
        diffs[b] = float(np.abs(y[:, : ref.shape[1]] - ref).max())
    res = {
        "stream_vs_whole_max_abs_diff": diffs,
        "preset": chain.name, "effects": [s.label for s in chain.slots], "errors": chain.errors,
        "sample_rate": sample_rate, "block": block, "latency_samples": chain.latency,
        "median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
        "budget_ms": budget, "median_pct_of_budget": float(100 * np.median(t) / budget),
    }
    print(f"effects bench: chain {res['preset']} {res['effects']} at {sample_rate} Hz / {block} frames: "
          f"median {res['median_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms, max {res['max_ms']:.3f} ms per block "
          f"({res['median_pct_of_budget']:.1f}% of the {budget:.2f} ms budget); latency {chain.latency} samples; "
          f"streamed vs whole max abs diff {diffs}"
          + (f"; errors: {chain.errors}" if chain.errors else ""))
    return res


__all__ = [
    "EffectChain", "StemEffects", "DelayLine", "list_presets", "load_preset", "user_preset_dir",
    "stem_effects_from_config", "bench_effects", "PACKAGE_PRESETS",
]
