"""What can change while the engine plays, in one place for every front end (CLI, GUI, OSC).

``LiveControl`` owns the description of the running chain (``ChainSpec``:
model, profile, key stage, effect chains) and turns a change of any of them
into ``RealtimeEngine.switch`` (a crossfade, handover.py). Moving the key
away from 0 without the key stage adds the stage the same way. Inputs and
the microphone belong to the front end's streams: it plugs them in with
``inputs`` (an object with ``set_input(spec)`` / ``set_mic(spec)`` and
``input_name()`` / ``mic_name()``). Listeners hear ``(name, values)`` when a
change has taken effect, e.g. ``("model", ("dsp-center",))``, or
``("error", (name, message))`` when it failed; the OSC server forwards them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .handover import SwitchReport
from .mixer import MIX_BUSES
from .profiles import REALTIME_PROFILES, get_profile

Listener = Callable[[str, tuple], None]


@dataclass(frozen=True)
class ChainSpec:
    model: str | None  # None: the profile's default
    profile: str = "live"
    key_stage: bool = False
    fx: dict = field(default_factory=dict)  # stem -> preset name, or a list of effect specs (the editor's)
    channels: int = 2


def model_choice(name: str | None) -> str | None:
    """A model name or path a switch can load (None or "default": the profile's), or ValueError."""
    from .separators.registry import available

    if name in (None, "", "default"):
        return None
    if name in available() or Path(name).is_file():
        return name
    raise ValueError(f"unknown model {name!r}; models: {', '.join(available())}, or a model file path")


def format_routes(routes: dict[str, list[int]]) -> str:
    """``{"vocals": [2, 3]}`` -> ``vocals=3,4`` (channels from 1, as the CLI writes them)."""
    return " ".join(f"{bus}={','.join(str(c + 1) for c in chans)}" for bus, chans in routes.items())


class LiveControl:
    def __init__(self, engine, spec: ChainSpec, build: Callable[[ChainSpec], object] | None = None,
                 device: str = "cpu", inputs=None):
        self.engine = engine
        self.spec = spec  # what plays now
        self.wanted = spec  # what plays once the switches asked for are done
        self.device = device
        self.inputs = inputs
        self._build = build or self.build_pipeline
        self._lock = threading.Lock()  # requests come from the GUI, OSC and store listeners at once
        self.listeners: list[Listener] = []
        self._unsubscribe = engine.store.subscribe(self._watch_key)

    def close(self) -> None:
        self._unsubscribe()

    # -- building -----------------------------------------------------------
    def build_pipeline(self, spec: ChainSpec):
        """Separator, stages and Pipeline for ``spec`` at the engine's rate (a builder thread runs it)."""
        from .pipeline import Pipeline
        from .separators.registry import load_separator
        from .stages import build_stages

        rate = self.engine.rate
        separator = load_separator(spec.model, spec.profile, sample_rate=rate, device=self.device)
        stages = build_stages(separator.spec.stems, rate, spec.channels, fx=spec.fx or None,
                              key_change=spec.key_stage)
        return Pipeline(separator, rate, spec.channels, get_profile(spec.profile), stages=stages)

    # -- changes ----------------------------------------------------------------
    def change(self, what: str, **changes) -> SwitchReport:
        """Switch to the wanted spec with ``changes`` (a crossfade once the new chain is ready)."""
        with self._lock:
            new = replace(self.wanted, **changes)
            self.wanted = new
        return self.engine.switch(lambda: self._build(new), what, on_done=lambda r: self._switched(r, new))
        # Requests queue; one superseded by a later one is skipped (its report says so): the later
        # one is built from ``wanted``, which holds every change asked for so far.

    def set_model(self, name: str | None) -> SwitchReport:
        return self.change("model", model=model_choice(name))

    def set_profile(self, name: str) -> SwitchReport:
        if name not in REALTIME_PROFILES:
            raise ValueError(f"unknown profile {name!r}; live profiles: {', '.join(REALTIME_PROFILES)}")
        return self.change("profile", profile=name)

    def set_key_stage(self, on: bool) -> SwitchReport | None:
        if bool(on) == self.wanted.key_stage:
            return None
        return self.change("keystage", key_stage=bool(on))

    def set_fx(self, chains: dict) -> SwitchReport:
        return self.change("fx", fx=dict(chains or {}))

    def set_routes(self, routes: dict[str, list[int]]) -> SwitchReport:
        """New routing (channels from 0) for the same pipeline: separated once, routed twice during the fade."""
        outs = self.engine.out_channels
        for bus, chans in routes.items():
            if not chans or min(chans) < 0 or max(chans) >= outs:
                raise ValueError(f"route {bus}: channels 1..{outs} (the output stream has {outs}; "
                                 f"more channels need a restart of the stream: Stop, then Start)")
        return self.engine.switch(None, "routing", routes=dict(routes),
                                  on_done=lambda r: self._switched(r, self.wanted))

    def set_route(self, bus: str, channels: list[int]) -> SwitchReport:
        """One bus onto ``channels`` (from 0); no channels: the bus is no longer routed."""
        known = tuple(self.engine.pipeline.stems) + MIX_BUSES + ("mic",)
        if bus not in known:
            raise ValueError(f"unknown bus {bus!r}; buses: {', '.join(known)}")
        routes = dict(self.engine.routes_wanted)
        if channels:
            routes[bus] = list(channels)
        else:
            routes.pop(bus, None)
        return self.set_routes(routes)

    def set_input(self, spec: str) -> None:
        self._need_inputs("input").set_input(spec)

    def set_mic(self, spec: str) -> None:
        self._need_inputs("mic").set_mic(spec)

    def _need_inputs(self, what: str):
        if self.inputs is None:
            raise ValueError(f"this front end cannot change its {what} while playing (stemstream live reads "
                             f"the devices it was started with; the desktop app can)")
        return self.inputs

    def _watch_key(self, old, new) -> None:
        # any key move away from 0 brings the key stage in (crossfaded), whoever moved it
        if new.key != 0 and not self.wanted.key_stage:
            self.set_key_stage(True)

    def _switched(self, report: SwitchReport, spec: ChainSpec) -> None:
        if report.superseded:  # the later request carries this change too (``wanted`` is cumulative)
            return
        if report.error is not None:
            with self._lock:
                if self.wanted is spec:
                    self.wanted = self.spec
            self.notify("error", (report.what, f"{report.what} change failed: {report.error}"))
            return
        self.spec = spec
        value = self.get(report.what) if report.what in ("model", "profile", "keystage", "routing") else None
        if value is not None:
            self.notify(report.what, value if isinstance(value, tuple) else (value,))
        self.notify("switched", (report.what, float(report.fade_ms), float(report.gap_ms),
                                 float(report.latency_after_ms or 0.0)))

    def notify(self, name: str, values: tuple) -> None:
        for listener in list(self.listeners):
            try:
                listener(name, values)
            except Exception:  # noqa: BLE001 - a front end's listener must not stop the others
                pass

    # -- reading ---------------------------------------------------------------
    def get(self, what: str):
        engine = self.engine
        if what == "model":
            return engine.pipeline.separator.spec.name
        if what == "profile":
            return engine.pipeline.profile.name
        if what == "keystage":
            return int(any(type(stage).__name__ == "KeyShift" for stage in engine.pipeline.stages))
        if what in ("routing", "routes"):
            return format_routes(engine.router.routes)
        if what == "switches":
            last = engine.stats.last_switch or {}
            return (int(engine.stats.switches), float(last.get("fade_ms", 0.0)), float(last.get("gap_ms", 0.0)))
        if what == "input":
            return self.inputs.input_name() if self.inputs is not None else "device"
        if what == "mic":
            return self.inputs.mic_name() if self.inputs is not None else (
                "none" if engine.mic_channel is None else f"input channel {engine.mic_channel + 1}")
        raise KeyError(what)

    # -- scenes -------------------------------------------------------------------
    def save_scene(self, name: str) -> Path:
        from .scenes import save_scene

        chains = self.wanted.fx if all(isinstance(v, list) for v in self.wanted.fx.values()) else None
        return save_scene(name, self.engine.store.current, chains)

    def load_scene(self, name: str) -> Path:
        """The scene's mixer now; its effect chains through a switch when they differ."""
        from .scenes import load_scene, params_from_scene, scene_path

        scene = load_scene(name)
        self.engine.store.update(lambda p: params_from_scene(scene, p))
        chains = scene.get("fx")
        if chains is not None and chains != self.wanted.fx:
            self.set_fx(chains)
        return scene_path(name)
