"""The main window: header (start/stop, karaoke, indicators), Live and Files tabs.

Threads: the UI thread only reads what the engine publishes (meters, stats,
tap rings) on a 50 Hz QTimer and writes parameters through the ParamStore.
Device listing, engine start (model load and warm-up) and stop, and file
separation run as ``Job``s. ParamStore listeners may fire on the OSC thread;
they only emit a queued signal, so widgets are touched on the UI thread.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPushButton, QSizePolicy, QTabWidget, QVBoxLayout,
    QWidget,
)

from stream_engine.params import KEY_RANGE, ParamStore, Params
from .audio import DEMO_SOURCE, FILE_SOURCE_PREFIX, LiveConfig, LiveSession, active_effects, carry_params, idle_status
from .files_tab import FilesTab
from .jobs import run_job
from .live_control import LiveWiring
from .live_tab import LiveTab, gain_text
from .settings import Settings, data_dir
from .widgets import Indicator, keep_width_for

TICK_MS = 20  # meter / spectrogram refresh (50 Hz)
MODEL_FILE = "__model_file__"
INPUT_FILE = "__input_file__"
JACK_CLIENT = "stemstream"  # the app's own JACK client name (as `stemstream live`); never offered as a device


def own_jack_client(device) -> bool:
    """The app's own JACK client (``stemstream``, or ``stemstream-01``... when JACK renamed a second one)."""
    return device.hostapi.startswith("JACK") and re.fullmatch(rf"{JACK_CLIENT}(-\d+)?", device.name) is not None


def latency_state(shown_ms: float, algorithmic_ms: float, target_ms: float) -> tuple[bool, bool]:
    """(bad, warn) for the latency pill: red when the design's own latency is above the profile's
    target, amber when only the compute budget takes the shown figure above it."""
    bad = algorithmic_ms > target_ms
    return bad, (not bad) and shown_ms > target_ms


def stems_for(model: str | None, profile: str = "live") -> tuple[str, ...]:
    """The stems a model will produce (the strips to build), without loading its weights.

    A model whose stems cannot be told before loading gets two strips for now;
    the session rebuilds them from the loaded model when it starts.
    """
    from stream_engine.separators.base import SeparatorError
    from stream_engine.separators.registry import model_stems

    if profile == "auto":  # a song's choice (a device's live default has the same two stems)
        from stream_engine.separators.registry import file_input_choice

        choice = file_input_choice()
        model, profile = model or choice["model"], choice["profile"]
    try:
        return model_stems(model, profile)
    except (SeparatorError, ValueError):
        return ("vocals", "accompaniment")


class MainWindow(QMainWindow):
    params_changed = Signal(object, object)  # (old, new), re-emitted on the UI thread
    state_changed = Signal(str)

    def __init__(self, args, settings: Settings | None = None):
        super().__init__()
        self.args = args
        self.settings = settings or Settings()
        self.errors: list[str] = []
        self.state = "idle"  # idle | starting | running | stopping
        self.session: LiveSession | None = None
        self.osc = None
        self.devices = []
        self.devices_ready = False
        self.timings: dict[str, float] = {}
        self._restart_after_stop = False
        self._running_fx: dict = {}
        self._error_box: QMessageBox | None = None
        self._reported_worker_error = False
        self._last_stats = None
        self._bad_until = {"misses": 0.0, "xruns": 0.0}
        self._ticks = 0
        self._snap = np.zeros(2048, np.float32)
        self.setWindowTitle("stemstream")

        # -- header ---------------------------------------------------------------
        self.start_button = QPushButton("▶  Start")
        self.start_button.setObjectName("start")
        self.start_button.setToolTip("Start or stop the live engine (Space)")
        self.start_button.clicked.connect(self.toggle_start)
        self.karaoke = QPushButton("KARAOKE")
        self.karaoke.setObjectName("karaoke")
        self.karaoke.setCheckable(True)
        self.karaoke.setToolTip("Karaoke mix: vocals down to the guide level (K; OSC /stemstream/karaoke/on)")
        self.karaoke.toggled.connect(self._karaoke_toggled)
        for button, texts in ((self.start_button, ("▶  Start", "■  Stop", "Starting…", "Stopping…")),
                              (self.karaoke, ("KARAOKE  ON", "KARAOKE  OFF"))):
            keep_width_for(button, texts)
        self.state_label = QLabel("stopped")
        self.state_label.setObjectName("state")
        self.state_label.setWordWrap(True)  # long states wrap onto two lines instead of pushing the pills
        self.state_label.setMinimumWidth(90)
        self.state_label.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.latency_ind = Indicator("Latency", "Input-to-output latency: what the engine adds (device block, "
                                               "hop, compute budget, model lookahead, effects and key), plus what "
                                               "PortAudio reports for the device ('dev'). Amber: the engine's part "
                                               "(with the compute budget) is above the profile's target; red: "
                                               "even its algorithmic part is")
        self.latency_ind.reserve("1999.9 ms +99.9 dev")
        self.cpu_ind = Indicator("CPU", "Share of real time the separation worker is busy. Red: above 80 %")
        self.cpu_ind.reserve("100 %")
        self.miss_ind = Indicator("Misses", "Blocks whose separated audio was late (the dry mix played instead). "
                                            "Red for 3 s after a new miss")
        self.miss_ind.reserve("99999")
        self.xrun_ind = Indicator("Xruns", "Device over/underruns reported by PortAudio. Red for 3 s after a new one")
        self.xrun_ind.reserve("99999")
        self.osc_label = QLabel("OSC off")
        self.osc_label.setObjectName("osc")
        self.osc_label.setToolTip("OSC control surface (UDP, 127.0.0.1): /stemstream/...")
        header = QHBoxLayout()
        header.addWidget(self.start_button)
        header.addWidget(self.karaoke)
        header.addWidget(self.state_label, 1)
        for w in (self.latency_ind, self.cpu_ind, self.miss_ind, self.xrun_ind):
            header.addWidget(w)

        # -- tabs -----------------------------------------------------------------
        self.live = LiveTab()
        out_dir = Path(self.settings.get("files_out", str(data_dir() / "separated")))
        self.files = FilesTab(out_dir)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.files, "Files")
        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(8, 8, 8, 4)
        v.addLayout(header)
        v.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.statusBar().showMessage("ready")
        self.statusBar().addPermanentWidget(self.osc_label)  # beside the messages: the header keeps its room
        self._build_menus()

        self._fill_models()
        self._restore()
        self.params_changed.connect(self._show_params)
        self.store = ParamStore(self._initial_params())
        self._unsub = self.store.subscribe(lambda old, new: self.params_changed.emit(old, new))
        self._use_stems(self.store.current.stems)
        self._show_params(None, self.store.current)
        self._start_osc()
        self._wire()
        self.live_wiring = LiveWiring(self)  # changes while running, listen mode, scenes, mic, routing
        if a_spec := getattr(self.args, "spectrogram", None):
            idx = self.live.spec_source.findData(None if a_spec == "input" else a_spec)
            self.live.spec_source.setCurrentIndex(max(0, idx))

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self.load_devices()

    # ================================================================ set-up
    def _build_menus(self) -> None:
        """File, Transport and Help menus with the usual shortcuts."""
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_action = self._action(file_menu, "&Open files…", self._open_files, "Ctrl+O",
                                        "Add audio files to the Files tab")
        self.export_action = self._action(file_menu, "&Export stems…", self._export_stems, "Ctrl+E",
                                          "Export the chosen stems of the selected track")
        file_menu.addSeparator()
        self.quit_action = self._action(file_menu, "&Quit", self.close, "Ctrl+Q", "Quit stemstream")
        transport = bar.addMenu("&Transport")
        # Space as well as Ctrl+Space: a text field with focus keeps its Space (Qt's shortcut override)
        self.start_action = self._action(transport, "&Start / Stop", self.toggle_start, None,
                                         "Start or stop the live engine")
        self.start_action.setShortcuts([QKeySequence("Space"), QKeySequence("Ctrl+Space")])
        self.karaoke_action = self._action(transport, "&Karaoke on/off", self.karaoke.toggle, "K",
                                           "Karaoke mix: vocals down to the guide level")
        help_menu = bar.addMenu("&Help")
        self.about_action = self._action(help_menu, "&About stemstream", self.show_about, None, "")
        self.files.export_ready.connect(self.export_action.setEnabled)
        self.export_action.setEnabled(False)

    def _action(self, menu, text: str, slot, shortcut, tip: str) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _open_files(self) -> None:
        self.tabs.setCurrentWidget(self.files)
        self.files.pick_files()

    def _export_stems(self) -> None:
        self.tabs.setCurrentWidget(self.files)
        self.files.export_dialog()

    def show_about(self) -> QMessageBox:
        from stream_engine import __version__

        box = QMessageBox(QMessageBox.Information, "About stemstream",
                          f"<b>stemstream {__version__}</b><br>Music separated into stems while it plays: "
                          "live karaoke, stems to a DAW, a vocal-free mix for a stream.<br><br>"
                          "Live tab: the engine on an audio device. Files tab: separate, preview and export "
                          "files.<br>Keys: Space / Ctrl+Space start-stop, K karaoke, Up/Down key, "
                          "Ctrl+O open files, Ctrl+E export, Ctrl+Q quit.", QMessageBox.Ok, self)
        box.setWindowModality(Qt.NonModal)
        box.open()
        self._about_box = box
        return box

    def _fill_models(self) -> None:
        from stream_engine.separators.registry import available, default_model

        for box in (self.live.model_box, self.files.model_box):
            box.addItem("default (per profile)", None)
            for name in available():
                box.addItem(name, name)
        self.live.model_box.addItem("Model file…", MODEL_FILE)
        self.live.model_box.setItemData(0, f"The profile's default model (live: {default_model('live')})",
                                        Qt.ToolTipRole)
        self._fill_auto_profile()

    def _fill_auto_profile(self, running: str | None = None) -> None:
        """The profile box's "auto" entry says what it runs: for a song the best model that keeps up."""
        from stream_engine.profiles import PROFILES
        from stream_engine.separators.registry import file_input_choice

        from .audio import AUTO_PROFILE

        box = self.live.profile_box
        if box.findData(AUTO_PROFILE) < 0:
            box.insertItem(0, "", AUTO_PROFILE)
        choice = file_input_choice()
        song = f"{choice['model']} {choice['profile']} ≤ {PROFILES[choice['profile']].latency_target_ms:g} ms"
        box.setItemText(box.findData(AUTO_PROFILE), running or f"auto (song: {song}; device: live)")
        box.setItemData(box.findData(AUTO_PROFILE),
                        f"A song or the demo is never heard unseparated, so it runs the best model that keeps up "
                        f"here ({choice['why']}); faders act within about 40 ms. A device input runs the live "
                        f"profile (≤ {PROFILES['live'].latency_target_ms:g} ms).", Qt.ToolTipRole)

    def _restore(self) -> None:
        s, a = self.settings, self.args
        geometry = s.get("geometry")
        if geometry and not a.screenshot:
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode()))
        else:
            self.resize(1280, 720)
        model = a.model or s.get("model")
        if model:
            self._select_model(model)
        profile = a.profile or s.get("profile", "auto")
        idx = self.live.profile_box.findData(profile)
        self.live.profile_box.setCurrentIndex(max(0, idx))
        self.live.key_stage.setChecked(bool(s.get("key_stage", False) if a.key_shift is None else a.key_shift))
        mic = s.get("mic_channel")
        self.live.mic_box.setCurrentIndex(max(0, self.live.mic_box.findData(mic)))
        files_model = a.model or s.get("files_model")
        if files_model:
            fb = self.files.model_box
            if fb.findData(files_model) < 0:
                fb.addItem(Path(files_model).name, files_model)
            fb.setCurrentIndex(fb.findData(files_model))
        self.files.profile_box.setCurrentText(s.get("files_profile", "offline"))
        self.tabs.setCurrentIndex(1 if (a.tab or s.get("tab")) == "files" else 0)
        chains = dict(s.get("fx", {}) or {})
        if a.fx:
            from plugins.effects import load_preset
            from stream_engine.stages import parse_fx

            try:
                for stem, preset in parse_fx(a.fx).items():
                    chains[stem] = [dict(e) for e in load_preset(preset).get("effects", [])]
            except (KeyError, OSError, ValueError) as exc:
                self.show_error(f"--fx: {exc}")
        self.live.fx.set_stems(stems_for(self.live.model_box.currentData(), self.live.profile_box.currentData()),
                               chains)

    def _select_model(self, model: str) -> None:
        box = self.live.model_box
        idx = box.findData(model)
        if idx < 0:
            box.insertItem(box.count() - 1, Path(model).name, model)
            box.setItemData(box.count() - 2, model, Qt.ToolTipRole)
            idx = box.count() - 2
        box.setCurrentIndex(idx)

    def _initial_params(self) -> Params:
        stems = stems_for(self.live.model_box.currentData(), self.live.profile_box.currentData())
        p = Params.for_stems(stems)
        saved = self.settings.get("params") or {}
        try:
            p = p.with_(karaoke=bool(saved.get("karaoke", True)), guide=float(saved.get("guide", p.guide)),
                        key=int(saved.get("key", 0)), mic_gain=float(saved.get("mic_gain", 1.0)))
            for stem, sp in (saved.get("stems") or {}).items():
                if stem in stems:
                    p = p.with_stem(stem, gain=float(sp.get("gain", 1.0)), mute=bool(sp.get("mute", False)),
                                    solo=bool(sp.get("solo", False)))
        except (TypeError, ValueError, AttributeError):
            pass
        return p

    def _wire(self) -> None:
        lt = self.live
        lt.guide.valueChanged.connect(lambda v: self._update(lambda p: p.with_(guide=v / 100.0)))
        lt.key.valueChanged.connect(self._key_moved)
        lt.mic.valueChanged.connect(lambda v: self._update(lambda p: p.with_(mic_gain=v / 100.0)))
        lt.rescan_requested.connect(self.load_devices)
        lt.output_box.currentIndexChanged.connect(self._output_changed)
        lt.model_box.activated.connect(self._model_chosen)
        lt.input_box.activated.connect(self._input_chosen)
        lt.spec_source.currentIndexChanged.connect(lambda _i: lt.spectrogram.clear())
        lt.fx.param_changed.connect(self._fx_edited)
        lt.fx.structure_changed.connect(self._fx_structure)
        lt.fx.message.connect(self.statusBar().showMessage)
        self.files.message.connect(self.statusBar().showMessage)
        self.files.error.connect(self.show_error)
        for keys, slot in ((("Up", "+", "="), lambda: self.nudge_key(1)), (("Down", "-"), lambda: self.nudge_key(-1))):
            for k in keys:
                sc = QShortcut(QKeySequence(k), self)
                sc.setContext(Qt.WindowShortcut)
                sc.activated.connect(slot)

    # ================================================================ devices
    def load_devices(self) -> None:
        from stream_engine.live import rescan

        from .audio import list_devices

        if self.state != "idle" and self.devices_ready:
            self.statusBar().showMessage("stop the engine before rescanning devices")
            return
        self.live.rescan.setEnabled(False)
        first = not self.devices_ready

        def work():
            if first:
                from stream_engine.live import set_jack_client_name

                try:
                    set_jack_client_name(JACK_CLIENT)  # so the app's own client can be told apart (and routed)
                except Exception:  # noqa: BLE001 - no PortAudio: list_devices says why
                    pass
            else:
                rescan()
            return list_devices()

        run_job(work, on_done=self._devices_loaded, on_error=self._devices_failed, name="stemstream-devices")

    def _devices_failed(self, message: str) -> None:
        self._devices_loaded(([], message))

    def _devices_loaded(self, result) -> None:
        devices, problem = result
        devices = [d for d in devices if not own_jack_client(d)]
        self.devices = devices
        self.devices_ready = True
        self.timings.setdefault("devices_listed", time.perf_counter())
        self.live.rescan.setEnabled(True)
        if problem:
            self.show_error(problem)
        s, a = self.settings, self.args
        # first launch plays the demo song: a new user hears something on Start (the system input is often silent)
        want_in = a.input or s.get("input") or DEMO_SOURCE
        want_out = a.output or s.get("output") or ("JACK" if getattr(a, "jack_running", False) else None)
        ib, ob = self.live.input_box, self.live.output_box
        for box in (ib, ob):
            box.clear()
        for d in devices:
            for box, n in ((ib, d.max_in), (ob, d.max_out)):
                if n:
                    box.addItem(d.label, d.key)
                    box.setItemData(box.count() - 1, d.description, Qt.ToolTipRole)
        ib.addItem("Demo song (file)", DEMO_SOURCE)
        ib.setItemData(ib.count() - 1, "The bundled demo song, looped, played through the live engine as its input", Qt.ToolTipRole)
        ib.addItem("Audio file…", INPUT_FILE)
        if want_in and str(want_in).startswith(FILE_SOURCE_PREFIX):
            self._add_input_file(str(want_in)[len(FILE_SOURCE_PREFIX):])
        else:
            self._select_device(ib, want_in, "in")
        if want_out:
            self._select_device(ob, want_out, "out")
        else:
            self._select_default(ob, 1)
        self.statusBar().showMessage(f"{len(devices)} audio devices on "
                                     f"{len({d.hostapi for d in devices})} host APIs" if devices else "no audio devices")
        if a.start or a.screenshot and (a.tab or "live") == "live":
            QTimer.singleShot(0, self.start)
        if a.screenshot and a.separate:
            self.tabs.setCurrentWidget(self.files)
            self.files.add_files([Path(p) for p in a.separate])
            if a.play:
                self.files.separated.connect(self._play_for_screenshot)
            self.files.separate_all()

    def _play_for_screenshot(self, track: str) -> None:
        top = next(self.files.tree.topLevelItem(i) for i in range(self.files.tree.topLevelItemCount())
                   if self.files.tree.topLevelItem(i).text(0) == track)
        self.files.tree.setCurrentItem(top)
        self.files.play_stem(track, self.args.play)

    def _select_device(self, box, spec, need) -> None:
        from .audio import DEMO_SOURCE as demo, find_device

        if spec in ("demo", demo):
            box.setCurrentIndex(box.findData(demo))
            return
        d = find_device(spec, self.devices, need)
        if d is None:
            self.show_error(f"{'input' if need == 'in' else 'output'} device {spec!r} not found; "
                            f"using {box.currentText() or 'nothing'}")
            return
        box.setCurrentIndex(max(0, box.findData(d.key)))

    def _select_default(self, box, which: int) -> None:
        try:
            import sounddevice as sd

            index = sd.default.device[which]
        except Exception:  # noqa: BLE001
            return
        for d in self.devices:
            if d.index == index:
                box.setCurrentIndex(max(0, box.findData(d.key)))

    def _output_changed(self, _index: int) -> None:
        key = self.live.output_box.currentData()
        device = next((d for d in self.devices if d.key == key), None)
        self.files.set_output(device.index if device else None, int(device.default_rate) if device else None)

    def _input_chosen(self, _index: int) -> None:
        if self.live.input_box.currentData() == INPUT_FILE:
            name, _ = QFileDialog.getOpenFileName(self, "Play a file through the engine", str(Path.home()),
                                                  "Audio (*.wav *.flac *.ogg *.mp3 *.aif *.aiff);;All files (*)")
            if name:
                self._add_input_file(name)
            else:
                self.live.input_box.setCurrentIndex(max(0, self.live.input_box.findData(DEMO_SOURCE)))

    def _add_input_file(self, path: str) -> None:
        ib = self.live.input_box
        data = FILE_SOURCE_PREFIX + path
        if ib.findData(data) < 0:
            ib.insertItem(ib.count() - 1, f"File: {Path(path).name}", data)
        ib.setCurrentIndex(ib.findData(data))

    def _model_chosen(self, _index: int) -> None:
        box = self.live.model_box
        if box.currentData() == MODEL_FILE:
            name, _ = QFileDialog.getOpenFileName(self, "Separator model", str(Path.home()),
                                                  "Models (*.onnx *.pt *.ts *.torchscript);;All files (*)")
            if name:
                self._select_model(name)
            else:
                box.setCurrentIndex(0)

    # ================================================================ params
    def _update(self, change) -> None:
        self.store.update(change)

    def _use_stems(self, stems) -> None:
        stems = tuple(stems)
        self.stems = stems
        self.live.set_stems(stems)
        for s, strip in self.live.strips.items():
            strip.gain_changed.connect(lambda stem, g: self._update(lambda p: p.with_stem(stem, gain=g)))
            strip.mute_changed.connect(lambda stem, on: self._update(lambda p: p.with_stem(stem, mute=on)))
            strip.solo_changed.connect(lambda stem, on: self._update(lambda p: p.with_stem(stem, solo=on)))
        self.live.fx.set_stems(stems)

    def _show_params(self, old, new: Params) -> None:
        """The store changed (GUI, OSC, anything): show it, sending nothing back."""
        if new is not self.store.current and old is not None:
            new = self.store.current  # a later change is queued; show the newest
        for stem, strip in self.live.strips.items():
            strip.show_params(new.stem(stem))
        lt = self.live
        for w, value in ((lt.guide, round(new.guide * 100)), (lt.key, int(new.key)), (lt.mic, round(new.mic_gain * 100))):
            if w.value() != value:
                w.blockSignals(True)
                w.setValue(value)
                w.blockSignals(False)
        lt.guide_label.setText(f"{new.guide * 100:.0f} %")
        lt.key_label.setText(f"{new.key:+d} st" if new.key else "0 st")
        lt.mic_label.setText(gain_text(new.mic_gain))
        if self.karaoke.isChecked() != new.karaoke:
            self.karaoke.blockSignals(True)
            self.karaoke.setChecked(new.karaoke)
            self.karaoke.blockSignals(False)
        self.karaoke.setText("KARAOKE  ON" if new.karaoke else "KARAOKE  OFF")
        if old is not None and old.fx is not new.fx:
            for key, value in new.fx.items():
                if old.fx.get(key) != value:
                    stem, index, name = key
                    row = self._editor_row(stem, index)
                    if row is not None and self._same_chain(stem):
                        self.live.fx.show_param(stem, row, name, float(value))

    def _karaoke_toggled(self, on: bool) -> None:
        self._update(lambda p: p.with_(karaoke=on))

    def _key_moved(self, value: int) -> None:
        self._update(lambda p: p.with_(key=int(value)))
        if value and self.state == "running" and not self.session.config.key_shift:
            self.statusBar().showMessage("key change needs the Key change stage: tick it (applies on restart)")

    def nudge_key(self, delta: int) -> None:
        self._update(lambda p: p.with_(key=int(min(max(p.key + delta, KEY_RANGE[0]), KEY_RANGE[1]))))

    def _editor_row(self, stem: str, active_index: int):
        active = active_effects(self._running_fx.get(stem, []))
        return active[active_index][0] if 0 <= active_index < len(active) else None

    def _fx_edited(self, stem: str, row: int, name: str, value: float) -> None:
        """A parameter box moved: reach the running chain through Params.fx if it has that slot."""
        if self.state != "running":
            return
        running = self._running_fx.get(stem, [])
        if not self._same_chain(stem):
            return
        active = [i for i, _ in active_effects(running)]
        if row in active:
            index = active.index(row)
            self._running_fx[stem][row].setdefault("params", {})[name] = value
            self._update(lambda p: p.with_fx(stem, index, name, float(value)))

    def _same_chain(self, stem: str) -> bool:
        """The editor's chain for ``stem`` has the running engine's structure (edits map 1:1)."""
        def shape(chain):
            return [(e.get("type"), e.get("path"), bool(e.get("bypass"))) for e in chain]

        return shape(self._running_fx.get(stem, [])) == shape(self.live.fx.chains.get(stem, []))

    def _fx_structure(self) -> None:
        if self.state == "running":
            self.restart()

    # ================================================================ OSC
    def _start_osc(self) -> None:
        from stream_engine.osc import OscServer

        if self.osc is not None:
            self.osc.close()
            self.osc = None
        port = self.args.osc_port if self.args.osc_port is not None else int(self.settings.get("osc_port", 9000))
        if port < 0:
            self.osc_label.setText("OSC off")
            return
        try:
            self.osc = OscServer(self.store, list(self.stems), self._osc_status, port=port,
                                 fx_check=self._osc_fx_check)
        except OSError as exc:
            self.osc_label.setText("OSC off")
            self.show_error(f"OSC server could not listen on 127.0.0.1:{port} ({exc}); "
                            f"the app works without it (choose another port with --osc-port)")
            return
        self.osc_label.setText(f"OSC :{self.osc.port}")

    def _osc_fx_check(self, stem: str, index: int, name: str, value: float):
        """OSC effect parameters are checked against the running chains (none while stopped)."""
        session = self.session
        effects = getattr(session, "effects", None) if session is not None and self.state == "running" else None
        return (value, None) if effects is None else effects.check_fx(stem, index, name, value)

    def _osc_status(self) -> dict:
        session = self.session
        if session is not None and self.state == "running":
            return session.status()
        return idle_status(self.stems)

    def _swap_store(self, store: ParamStore) -> None:
        self._unsub()
        self.store = store
        self._unsub = self.store.subscribe(lambda old, new: self.params_changed.emit(old, new))
        self._use_stems(store.current.stems)
        self._start_osc()
        self._show_params(None, store.current)

    # ================================================================ engine
    def config(self) -> LiveConfig:
        lt = self.live
        inp = lt.input_box.currentData()
        return LiveConfig(input=inp if inp != INPUT_FILE else None, output=lt.output_box.currentData(),
                          model=lt.model_box.currentData() if lt.model_box.currentData() != MODEL_FILE else None,
                          profile=lt.profile_box.currentData(), key_shift=lt.key_stage.isChecked(),
                          mic_channel=lt.mic_box.currentData(), fx=copy.deepcopy(lt.fx.chains),
                          block=self.args.block)

    def toggle_start(self) -> None:
        if self.state == "idle":
            self.start()
        elif self.state == "running":
            self.stop()

    def start(self) -> None:
        if self.state != "idle":
            return
        cfg = self.config()
        wanted = stems_for(cfg.model, cfg.profile)
        if set(wanted) != set(self.store.current.stems):
            self._swap_store(ParamStore(carry_params(self.store.current, wanted)))
        session = LiveSession(cfg, self.store)
        self.session = session
        self._reported_worker_error = False
        self._set_state("starting")
        self.timings["start_clicked"] = time.perf_counter()
        run_job(session.start, on_done=self._started, on_error=self._start_failed, name="stemstream-start")

    def _started(self, session: LiveSession) -> None:
        if session is not self.session:
            return
        if session.store is not self.store:
            self._swap_store(session.store)
        elif tuple(session.stems) != self.stems:
            self._use_stems(session.stems)
        self._running_fx = copy.deepcopy(session.config.fx)
        self.live.spectrogram.set_rate(session.rate)
        self.timings.setdefault("stream_started", session.timings.get("stream_started", time.perf_counter()))
        self._last_stats = None
        self._set_state("running")
        rep = session.latency_report
        self.latency_ind.setToolTip(self.latency_ind.toolTip().split("\n\n")[0] + "\n\n" + rep.describe())
        self.live.show_latency(rep, session.target_ms)
        ins, outs = session.device_names
        if self.live.profile_box.currentData() == "auto":  # what auto chose, with its latency
            self._fill_auto_profile(f"auto: {session.engine.pipeline.separator.spec.name} {session.config.profile}, "
                                    f"{rep.ms:.0f} ms")
        calibration = getattr(session.engine.pipeline.separator, "calibration", None)
        if calibration:  # a hop sized to this machine (Spleeter, balanced): which, and why
            base = self.live.profile_box.toolTip().split("\n\nhop ")[0]
            self.live.profile_box.setToolTip(f"{base}\n\nhop {calibration['hop_frames']} STFT frames, chosen for this "
                                             f"machine ({calibration['source']}): {calibration['why']}")
        self.statusBar().showMessage(f"running: {ins} → {outs} at {session.rate} Hz, model "
                                     f"{session.engine.pipeline.separator.spec.name}, block {session.engine.block}")
        if session.warnings:
            self.show_error("Some effects could not load and are bypassed:\n" + "\n".join(session.warnings))
        if self._restart_after_stop:
            self._restart_after_stop = False

    def _start_failed(self, message: str) -> None:
        self.session = None
        self._set_state("idle")
        self.show_error(f"Could not start the engine: {message}")

    def stop(self) -> None:
        if self.state != "running" or self.session is None:
            return
        session = self.session
        self._set_state("stopping")
        run_job(session.stop, on_done=lambda _r: self._stopped(), on_error=self._stop_failed, name="stemstream-stop")

    def _stop_failed(self, message: str) -> None:
        self.show_error(f"Stopping the audio stream failed: {message}")
        self._stopped()

    def _stopped(self) -> None:
        self.session = None
        self._set_state("idle")
        self.statusBar().showMessage("stopped")
        for strip in list(self.live.strips.values()) + [self.live.main_strip]:
            strip.set_levels(-120.0, -120.0)
        if self._restart_after_stop:
            self._restart_after_stop = False
            self.start()

    def restart(self) -> None:
        if self.state == "running":
            self._restart_after_stop = True
            self.stop()
        elif self.state == "idle":
            self.start()

    def _set_state(self, state: str) -> None:
        self.state = state
        b = self.start_button
        b.setEnabled(state in ("idle", "running"))
        b.setText({"idle": "▶  Start", "starting": "Starting…", "running": "■  Stop", "stopping": "Stopping…"}[state])
        b.setProperty("running", state == "running")
        b.style().unpolish(b)
        b.style().polish(b)
        busy = state != "idle"
        for w in (self.live.input_box, self.live.output_box, self.live.model_box, self.live.profile_box,
                  self.live.mic_box, self.live.key_stage, self.live.rescan):
            w.setEnabled(not busy)
        self.state_label.setText({"idle": "stopped", "starting": "loading model, opening devices…",
                                  "running": "running", "stopping": "stopping…"}[state])
        if state == "idle" and self.live.profile_box.findData("auto") >= 0:
            self._fill_auto_profile()  # what auto chose while running is no longer true
        if state != "running":
            for ind in (self.latency_ind, self.cpu_ind, self.miss_ind, self.xrun_ind):
                ind.set_idle()
        self.state_changed.emit(state)

    # ================================================================ the tick
    def _tick(self) -> None:
        self._ticks += 1
        session = self.session
        if self.state != "running" or session is None or session.engine is None:
            return
        levels = session.levels()
        db = 20.0 * np.log10(np.maximum(levels, 1e-6))
        text = self._ticks % 5 == 0
        for i, stem in enumerate(session.stems):
            strip = self.live.strips.get(stem)
            if strip is not None:
                strip.set_levels(float(db[i, 0]), float(db[i, 1]), text)
        self.live.main_strip.set_levels(float(db[-1, 0]), float(db[-1, 1]), text)
        source = self.live.spec_source.currentData()
        if source is None:
            session.input_snapshot(self._snap)
        elif source in session.stems:
            session.stem_snapshot(source, self._snap)
        self.live.spectrogram.push(self._snap)
        if self._ticks % 5 == 0:
            self._indicators(session)

    def _indicators(self, session: LiveSession) -> None:
        st = session.stats()
        now = time.perf_counter()
        last = self._last_stats or st
        for key in ("misses", "xruns"):
            if st[key] > last[key]:
                self._bad_until[key] = now + 3.0
        self._last_stats = st
        device_ms = session.latency_report.ms - session.engine_ms
        bad, warn = latency_state(session.engine_ms, session.algorithmic_ms, session.target_ms)
        self.latency_ind.set(f"{session.engine_ms:.1f} ms" + (f" +{device_ms:.1f} dev" if device_ms >= 0.05 else ""),
                             bad, warn)
        self.cpu_ind.set(f"{st['cpu']:.0f} %", st["cpu"] > 80.0)
        self.miss_ind.set(str(st["misses"]), now < self._bad_until["misses"])
        self.xrun_ind.set(str(st["xruns"]), now < self._bad_until["xruns"])
        if st["error"] is not None and not self._reported_worker_error:
            self._reported_worker_error = True
            self.state_label.setText("separation failed: playing the dry input")
            self.cpu_ind.set("error", True)
            self.show_error(f"The separation worker stopped: {type(st['error']).__name__}: {st['error']}\n"
                            "The input plays unseparated; Stop and Start again, or pick another model.")

    # ================================================================ misc
    def show_error(self, message: str) -> None:
        """Tell the user without blocking anything (non-modal box, status bar)."""
        self.errors.append(message)
        self.statusBar().showMessage(message.splitlines()[0], 15000)
        if self.args.screenshot or self.args.no_dialogs:
            return
        if self._error_box is None:
            self._error_box = QMessageBox(QMessageBox.Warning, "stemstream", "", QMessageBox.Ok, self)
            self._error_box.setWindowModality(Qt.NonModal)
        self._error_box.setText(message)
        self._error_box.open()

    def meter_frames(self) -> int:
        return self.live.main_strip.meter.frames

    def save_settings(self) -> None:
        s = self.settings
        p = self.store.current
        s.set("geometry", bytes(self.saveGeometry().toBase64()).decode())
        s.set("tab", "files" if self.tabs.currentWidget() is self.files else "live")
        s.set("input", self.live.input_box.currentData() if self.live.input_box.currentData() != INPUT_FILE else None)
        s.set("output", self.live.output_box.currentData())
        s.set("model", self.live.model_box.currentData() if self.live.model_box.currentData() != MODEL_FILE else None)
        s.set("profile", self.live.profile_box.currentData())
        s.set("key_stage", self.live.key_stage.isChecked())
        s.set("mic_channel", self.live.mic_box.currentData())
        s.set("fx", self.live.fx.chains)
        s.set("params", {"karaoke": p.karaoke, "guide": p.guide, "key": p.key, "mic_gain": p.mic_gain,
                         "stems": {n: {"gain": sp.gain, "mute": sp.mute, "solo": sp.solo} for n, sp in p.stems.items()}})
        s.set("files_out", self.files.out_edit.text())
        s.set("files_model", self.files.model_box.currentData())
        s.set("files_profile", self.files.profile_box.currentData())
        if self.osc is not None and self.args.osc_port is None:
            s.set("osc_port", self.osc.port)
        problem = s.save()
        if problem:
            self.statusBar().showMessage(problem)

    def shutdown(self) -> None:
        """Stop audio and OSC (waits for the stream to close: called when quitting)."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self.timer.stop()
        if not self.args.screenshot:
            self.save_settings()
        self.files.stop_playback()
        session, self.session = self.session, None
        if session is not None:
            try:
                session.stop()
            except Exception:  # noqa: BLE001
                pass
        if self.osc is not None:
            self.osc.close()
            self.osc = None
        self._unsub()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

