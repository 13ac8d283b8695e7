"""The Live tab's controls that change the running engine: model, profile, key stage, input,
microphone, listen mode, scenes and routing.

``LiveWiring`` hooks them onto the window without the window knowing much:
it listens to the widgets, to ``MainWindow.state_changed`` and to the
ParamStore (``params_changed``). While the engine runs, a change goes to the
session (``gui.audio.LiveSession``), which switches with a crossfade
(``stream_engine.control.LiveControl``); while it is stopped, the change
waits for the next Start. What the control reports back (a switch done, or
failed; also changes asked for over OSC) arrives on a worker thread and is
re-emitted as a queued signal, so widgets are touched on the UI thread only.

The boxes stay enabled while running: the window greys them out on each state
change and ``_state`` enables them again once the engine runs. The mic device
and the routing are completed into the session's config when it is created
(``state_changed("starting")`` fires before the session starts) and saved in
the settings as soon as they change.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from stream_engine.mixer import MIX_BUSES

from .input_sources import resolve_auto
from .jobs import run_job
from .live_config import ROUTES_SETTING, active_effects, routes_from_setting, routes_to_setting
from .live_tab import RoutingDialog

MIC_DEVICE_SETTING = "mic_device"


class LiveWiring(QObject):
    control_event = Signal(str, object)  # (name, values) from LiveControl, re-emitted on the UI thread

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.tab = window.live
        self.routes = routes_from_setting(window.settings.get(ROUTES_SETTING))
        self._mic_device = window.settings.get(MIC_DEVICE_SETTING)
        self._attached = None  # the session whose control the OSC server serves
        lt = self.tab
        self.control_event.connect(self._on_control_event, Qt.QueuedConnection)
        window.state_changed.connect(self._state)
        window.params_changed.connect(self._show_params)
        lt.model_box.currentIndexChanged.connect(self._model_changed)
        lt.profile_box.currentIndexChanged.connect(self._profile_changed)
        lt.key_stage.toggled.connect(self._key_stage_toggled)
        lt.key.valueChanged.connect(self._key_moved)  # after the window's slot: corrects its restart hint
        lt.input_box.currentIndexChanged.connect(self._input_changed)
        lt.mic_box.currentIndexChanged.connect(self._mic_changed)
        lt.mic_device_box.currentIndexChanged.connect(self._mic_changed)
        lt.mic_device_box.currentIndexChanged.connect(self._fill_mic_channels)
        lt.input_box.currentIndexChanged.connect(self._fill_mic_channels)
        lt.listen_box.currentIndexChanged.connect(self._listen_changed)
        lt.scene_save.clicked.connect(self.save_scene)
        lt.scene_load.clicked.connect(self.load_scene)
        lt.routing_button.clicked.connect(self.edit_routing)
        lt.input_box.model().rowsInserted.connect(self._devices_listed)  # the window lists devices there too
        self._fill_pending = False
        self._key_stage_auto = False  # ticked because the key moved (not by the user): it leaves again at 0
        self._ticking = False
        # effect chains change by a switch while running, not by a restart
        try:
            lt.fx.structure_changed.disconnect(window._fx_structure)
        except (RuntimeError, TypeError):
            pass
        lt.fx.structure_changed.connect(self._fx_structure)
        self._meter = QTimer(self)
        self._meter.setInterval(50)
        self._meter.timeout.connect(self._mic_meter)
        self._meter.start()
        self._refresh_scenes()
        self._show_params(None, window.store.current)

    # ------------------------------------------------------------ helpers
    def _session(self):
        """The running session, or None (changes then wait for Start)."""
        w = self.window
        return w.session if w.state == "running" and w.session is not None else None

    def _ask(self, change, *args) -> None:
        """Run a session change off the UI thread (a file load, a device open); errors are shown."""
        run_job(change, *args, on_done=lambda _r: None, on_error=self.window.show_error, name="stemstream-switch")

    def _switch(self, call, *args) -> None:
        """A LiveControl request: returns at once (the switch runs on its own thread)."""
        try:
            call(*args)
        except ValueError as exc:
            self.window.show_error(str(exc))

    # ------------------------------------------------------------ state
    def _state(self, state: str) -> None:
        w, lt = self.window, self.tab
        session = w.session
        if state == "starting" and session is not None:
            session.config.mic_device = self._mic_device
            session.config.routes = copy.deepcopy(self.routes)
        if state == "running" and session is not None and session.control is not None:
            for box in (lt.input_box, lt.model_box, lt.profile_box, lt.mic_box, lt.mic_device_box, lt.key_stage):
                box.setEnabled(True)
            if self._attached is not session:
                session.control.listeners.append(lambda name, values: self.control_event.emit(name, values))
                self._attached = session
            if w.osc is not None:
                w.osc.attach(session.control)
            QTimer.singleShot(0, self._show_latency)  # after the window's own, which has no mic line
        elif state == "idle":
            if w.osc is not None:
                w.osc.attach(None)
            self._attached = None
            lt.mic_strip.reset_levels()
        lt.mic_device_box.setEnabled(state in ("idle", "running"))

    # ------------------------------------------------------------ the setup boxes
    def _model_changed(self, _index: int) -> None:
        from .choices import MODEL_FILE

        data = self.tab.model_box.currentData()
        session = self._session()
        if session is not None and data != MODEL_FILE:
            self._switch(session.control.set_model, data)

    def _profile_changed(self, _index: int) -> None:
        """While playing: a crossfade when the device block stays; else Stop and Start, so it plays as a
        fresh Start would (a crossfade kept the old block: more latency and misses than promised)."""
        from stream_engine.profiles import get_profile

        session = self._session()
        if session is None:
            return
        profile = resolve_auto(replace(session.config, profile=self.tab.profile_box.currentData())).profile
        block = self.window.args.block or get_profile(profile).block
        if block != session.engine.block:
            self.window.statusBar().showMessage(f"profile {profile}: device block {block} (was "
                                                f"{session.engine.block}): restarting the stream", 5000)
            self.window.restart()
            return
        self._switch(session.control.set_profile, profile)

    def _key_stage_toggled(self, on: bool) -> None:
        if not self._ticking:
            self._key_stage_auto = False  # the user's own tick (or untick) stays
        session = self._session()
        if session is not None:
            session.control.set_key_stage(on)

    def _tick_key_stage(self, on: bool) -> None:
        """The key stage follows the key: in when it leaves 0, out when it is back (the stage's 43 ms
        go with it), unless the user ticked the box by hand."""
        box = self.tab.key_stage
        if box.isChecked() == on:
            return
        self._ticking = True
        try:
            box.setChecked(on)
        finally:
            self._ticking = False
        self._key_stage_auto = on

    def _key_moved(self, value: int) -> None:
        if value and not self.tab.key_stage.isChecked():
            self._tick_key_stage(True)  # running: LiveControl adds it already; stopped: at Start
        elif not value and self._key_stage_auto:
            self._tick_key_stage(False)
            if self._session() is not None:
                self.window.statusBar().showMessage("key back at 0: the key stage leaves (its 43 ms with it)", 5000)
            return
        if value and self._session() is not None:
            self.window.statusBar().showMessage("key change: the key stage comes in with a crossfade (+43 ms)", 5000)

    def _input_changed(self, _index: int) -> None:
        from .choices import INPUT_FILE

        data = self.tab.input_box.currentData()
        session = self._session()
        if session is not None and data not in (None, INPUT_FILE):
            self._ask(session.set_input, data)

    def _mic_changed(self, _index: int) -> None:
        self._mic_device = self.tab.mic_device_box.currentData()
        self.window.settings.set(MIC_DEVICE_SETTING, self._mic_device)
        session = self._session()
        if session is not None:
            self._ask(session.set_mic_device, self._mic_device, self.tab.mic_box.currentData())

    def mic_device(self):
        """The device the mic is read from: its own choice, else the input device, else the default input."""
        w, lt = self.window, self.tab
        key = lt.mic_device_box.currentData()
        if key is None:
            key = lt.input_box.currentData()
        device = next((d for d in w.devices if d.key == key and d.max_in), None)
        if device is None:
            try:
                import sounddevice as sd

                index = sd.default.device[0]
                device = next((d for d in w.devices if d.index == index and d.max_in), None)
            except Exception:  # noqa: BLE001
                device = None
        return device

    def _fill_mic_channels(self, *_args) -> None:
        """Offer the channels the mic's device has (1-2 on a 2-input device, not 1-8)."""
        box = self.tab.mic_box
        device = self.mic_device()
        count = min(device.max_in, 64) if device is not None else 8
        current = box.currentData()
        if box.count() == count + 1:
            return
        box.blockSignals(True)
        box.clear()
        box.addItem("none", None)
        for ch in range(count):
            box.addItem(f"ch {ch + 1}", ch)
        box.setCurrentIndex(max(0, box.findData(current)))
        box.blockSignals(False)
        if current is not None and box.currentData() != current:
            self._mic_changed(0)  # the chosen channel is gone: no mic

    def _devices_listed(self, *_args) -> None:
        if not self._fill_pending:  # once per listing, after the window added every row
            self._fill_pending = True
            QTimer.singleShot(0, self._fill_mic_devices)

    def _fill_mic_devices(self) -> None:
        self._fill_pending = False
        self._key_stage_auto = False  # ticked because the key moved (not by the user): it leaves again at 0
        self._ticking = False
        box = self.tab.mic_device_box
        box.blockSignals(True)
        box.clear()
        box.addItem("Input device", None)
        for d in self.window.devices:
            if d.max_in:
                box.addItem(d.label, d.key)
                box.setItemData(box.count() - 1, d.description, Qt.ToolTipRole)
        box.setCurrentIndex(max(0, box.findData(self._mic_device)))
        box.blockSignals(False)
        self._fill_mic_channels()

    def _fx_structure(self) -> None:
        session = self._session()
        if session is None:
            return
        from .live_config import MIC_FX

        def stem_chains(chains):
            return {stem: [s for _, s in active_effects(specs)] for stem, specs in chains.items()
                    if stem != MIC_FX and active_effects(specs)}

        chains = copy.deepcopy(self.tab.fx.chains)
        before = stem_chains(self.window._running_fx)
        self.window._running_fx = chains
        if chains.get(MIC_FX, []) != session.config.fx.get(MIC_FX, []):
            session.config.fx[MIC_FX] = copy.deepcopy(chains.get(MIC_FX, []))
            self._ask(session.set_mic_fx, chains.get(MIC_FX, []))  # the mic's lane swaps chains: no rebuild
        if stem_chains(chains) != before:
            self._switch(session.control.set_fx, stem_chains(chains))

    # ------------------------------------------------------------ listen mode, params
    def _listen_changed(self, _index: int) -> None:
        mode = self.tab.listen_box.currentData()
        if mode != self.window.store.current.listen:
            self.window.store.update(lambda p: p.with_(listen=mode))

    def _show_params(self, _old, new) -> None:
        key = self.window.store.current.key
        if key != 0 and not self.tab.key_stage.isChecked():
            self._tick_key_stage(True)  # a key set by OSC, a shortcut or a scene needs the stage too
        elif key == 0 and self._key_stage_auto:
            self._tick_key_stage(False)
        box = self.tab.listen_box
        index = box.findData(self.window.store.current.listen)
        if index >= 0 and index != box.currentIndex():
            box.blockSignals(True)
            box.setCurrentIndex(index)
            box.blockSignals(False)

    # ------------------------------------------------------------ what the control reports
    def _on_control_event(self, name: str, values) -> None:
        w, lt = self.window, self.tab
        session = w.session
        if name == "error":
            w.show_error(values[1])
            if session is not None and session.control is not None:  # the boxes show what still plays
                self._select(lt.model_box, session.control.spec.model)
                self._select(lt.profile_box, session.control.spec.profile)
            return
        if name == "model":
            if session is not None:
                self._select(lt.model_box, session.control.spec.model)  # also when OSC asked for it
            if session is not None and tuple(session.engine.pipeline.stems) != tuple(w.stems):
                w._use_stems(session.engine.pipeline.stems)
                w._show_params(None, w.store.current)
        elif name == "profile":
            self._select(lt.profile_box, values[0])
        elif name == "keystage":
            on = bool(values[0])
            if session is not None and session.control is not None and session.control.wanted.key_stage != on:
                return  # a later request (the user's tick) is on its way: the box already shows it
            lt.key_stage.blockSignals(True)
            lt.key_stage.setChecked(on)
            lt.key_stage.blockSignals(False)
            if session is not None:
                session.config.key_shift = on
        elif name == "switched" and session is not None:
            what, fade_ms, gap_ms, latency_ms = values
            self._show_latency()
            w.statusBar().showMessage(f"{what} changed while playing: {fade_ms:.0f} ms crossfade"
                                      + (f", {gap_ms:.1f} ms gap" if gap_ms else "")
                                      + f", latency now {latency_ms:.1f} ms", 8000)
        elif name in ("input", "mic") and session is not None:
            if name == "input":
                self._select(lt.input_box, values[0])
            self._show_latency()
            w.statusBar().showMessage(f"{name}: {values[0]}", 5000)

    def _show_latency(self) -> None:
        session = self._session()
        if session is not None and session.latency_report is not None:
            self.tab.show_latency(session.latency_report, session.target_ms, session.mic_ms)

    @staticmethod
    def _select(box, data) -> None:
        index = box.findData(data)
        if index >= 0 and index != box.currentIndex():
            box.blockSignals(True)
            box.setCurrentIndex(index)
            box.blockSignals(False)

    def _mic_meter(self) -> None:
        session = self.window.session
        if self.window.state != "running" or session is None or session.engine is None:
            return
        import math

        peak, rms = session.mic_levels()
        self._mic_ticks = getattr(self, "_mic_ticks", 0) + 1
        self.tab.mic_strip.set_levels(20 * math.log10(max(peak, 1e-6)), 20 * math.log10(max(rms, 1e-6)),
                                      self._mic_ticks % 5 == 0)

    # ------------------------------------------------------------ scenes
    def _refresh_scenes(self) -> None:
        from stream_engine.scenes import list_scenes

        box = self.tab.scene_box
        text = box.currentText()
        box.blockSignals(True)
        box.clear()
        box.addItems(list_scenes())
        box.setEditText(text)
        box.blockSignals(False)

    def save_scene(self) -> None:
        """Save the mixer and the app's set-up (routing, model, profile, input) as the named scene;
        without a name, ask for one."""
        import json
        import os

        from stream_engine.scenes import save_scene

        name = self.tab.scene_box.currentText().strip()
        if not name:
            from PySide6.QtWidgets import QInputDialog

            dialog = QInputDialog(self.window)
            dialog.setWindowTitle("Save scene")
            dialog.setLabelText("Scene name:")
            dialog.textValueSelected.connect(lambda text: (self.tab.scene_box.setEditText(text.strip()),
                                                           self.save_scene() if text.strip() else None))
            self.name_dialog = dialog  # tests answer it; kept alive while open
            dialog.open()
            return
        try:
            path = save_scene(name, self.window.store.current, copy.deepcopy(self.tab.fx.chains))
            scene = json.loads(path.read_text())
            scene["app"] = self.setup()  # the app's part; stemstream live reads the mixer and ignores it
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(scene, indent=1))
            os.replace(tmp, path)
        except (OSError, ValueError) as exc:
            self.window.show_error(f"Could not save the scene: {exc}")
            return
        self._refresh_scenes()
        self.window.statusBar().showMessage(f"scene saved: {path}", 5000)

    def setup(self) -> dict:
        """What a scene keeps beyond the mixer: routing (channels from 1), model, profile, input."""
        from .live_config import routes_to_setting
        from .choices import MODEL_FILE

        lt = self.tab
        model = lt.model_box.currentData()
        return {"routes": routes_to_setting(self.routes), "model": None if model == MODEL_FILE else model,
                "profile": lt.profile_box.currentData(), "input": lt.input_box.currentData()}

    def apply_setup(self, app) -> list[str]:
        """A scene's set-up, checked as untrusted input: a model only by a name the app lists (never
        a path), a live profile, an input only among the listed devices or the demo song (never a
        file path), routing in the settings' shape. Returns what was left out."""
        from stream_engine.profiles import REALTIME_PROFILES
        from stream_engine.separators.registry import available

        from .input_sources import DEMO_SOURCE
        from .live_config import routes_from_setting

        skipped = []
        if not isinstance(app, dict):
            return skipped
        lt = self.tab
        model = app.get("model")
        if model is None or (isinstance(model, str) and model in available()):
            self._select_user(lt.model_box, model)
        else:
            skipped.append(f"model {model!r}")
        if app.get("profile") in (*REALTIME_PROFILES, "auto"):
            self._select_user(lt.profile_box, app["profile"])
        elif app.get("profile") is not None:
            skipped.append(f"profile {app.get('profile')!r}")
        inp = app.get("input")
        if inp == DEMO_SOURCE or any(d.key == inp and d.max_in for d in self.window.devices):
            self._select_user(lt.input_box, inp)
        elif inp is not None:
            skipped.append(f"input {inp!r}")
        if app.get("routes") is not None:
            routes = routes_from_setting(app.get("routes"))
            if routes is not None and all(isinstance(b, str) and len(b) < 64 for b in routes):
                self.set_routes(routes)
            else:
                skipped.append("routing")
        return skipped

    @staticmethod
    def _select_user(box, data) -> None:
        """Select as the user would (signals on: a running engine switches)."""
        index = box.findData(data)
        if index >= 0 and index != box.currentIndex():
            box.setCurrentIndex(index)

    def load_scene(self, name: str | None = None) -> None:
        from stream_engine.scenes import load_scene, params_from_scene

        name = name or self.tab.scene_box.currentText().strip()
        try:
            scene = load_scene(name)
            self.window.store.update(lambda p: params_from_scene(scene, p))
        except ValueError as exc:
            self.window.show_error(str(exc))
            return
        chains = scene.get("fx")
        skipped = self.apply_setup(scene.get("app"))
        if isinstance(chains, dict) and chains != self.tab.fx.chains:
            from .live_config import MIC_FX

            self.tab.fx.set_stems(tuple(self.window.stems) + (MIC_FX,), copy.deepcopy(chains))
            self._fx_structure()
        self.window.statusBar().showMessage(f"scene loaded: {name}" + (f" (left out: {', '.join(skipped)})"
                                                                       if skipped else ""), 8000)

    # ------------------------------------------------------------ routing
    def buses(self) -> list[str]:
        return list(self.window.stems) + list(MIX_BUSES) + ["mic"]

    def edit_routing(self) -> None:
        outputs = None
        session = self._session()
        if session is not None:
            outputs = session.engine.out_channels
        else:  # stopped: the chosen output device's channels (9,10 on an 8-channel device is refused)
            key = self.tab.output_box.currentData()
            device = next((d for d in self.window.devices if d.key == key), None)
            outputs = device.max_out if device is not None else None
        current = self.routes or {"main": [0, 1]}
        dialog = RoutingDialog(self.buses(), current, outputs, self.window)
        dialog.setModal(True)
        dialog.finished.connect(lambda result: self._routing_done(dialog) if result else None)
        dialog.open()
        self.dialog = dialog  # tests reach it; also keeps it alive

    def _routing_done(self, dialog: RoutingDialog) -> None:
        self.set_routes(dialog.result_routes)

    def set_routes(self, routes: dict) -> None:
        """New routing (channels from 0): saved with the settings, applied while running (a crossfade)."""
        self.routes = copy.deepcopy(routes)
        self.window.settings.set(ROUTES_SETTING, routes_to_setting(routes))
        self.tab.routing_button.setToolTip(
            "Put each stem and bus on output channels (as the command line's --route)\nnow: "
            + " ".join(f"{bus}={','.join(str(c + 1) for c in chans)}" for bus, chans in routes.items()))
        session = self._session()
        if session is not None:
            self._switch(session.control.set_routes, routes)
