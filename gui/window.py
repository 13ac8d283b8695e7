"""The main window: header (start/stop, karaoke, indicators), Live and Files tabs.

Threads: the UI thread only reads what the engine publishes (meters, stats,
tap rings) on a 50 Hz QTimer and writes parameters through the ParamStore.
Device listing, engine start (model load and warm-up) and stop, and file
separation run as ``Job``s. ParamStore listeners may fire on the OSC thread;
they only emit a queued signal, so widgets are touched on the UI thread.

``MainWindow`` builds the header and tabs, restores and saves the settings;
its parts are ``gui.model_choice``, ``gui.device_choice`` (with a device
that goes away), ``gui.param_wiring`` (the ParamStore and OSC),
``gui.engine_control`` (start, stop) and ``gui.readouts`` (the 50 Hz tick).
Nothing but ``gui.app`` imports this module: the names its parts share are in
``gui.choices``, ``gui.setting_keys`` and ``gui.jack_ports``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPushButton, QSizePolicy, QTabWidget, QVBoxLayout,
    QWidget,
)

from stream_engine.params import ParamStore, Params
from .audio import LiveSession
from .choices import INPUT_FILE, MODEL_FILE, stems_for
from .device_choice import DeviceChoice
from .engine_control import EngineControl
from .files_tab import FilesTab
from .jack_ports import JACK_CLIENT
from .live_config import MIC_FX
from .live_control import LiveWiring
from .live_tab import LiveTab
from .model_choice import ModelChoice
from .param_wiring import ParamWiring
from .readouts import Readouts
from .setting_keys import JACK_CONNECTIONS_SETTING, MASTER_SETTING, default_output_folder
from .settings import Settings
from .widgets import Indicator, keep_width_for

TICK_MS = 20  # meter / spectrogram refresh (50 Hz)


class MainWindow(ModelChoice, DeviceChoice, ParamWiring, EngineControl, Readouts, QMainWindow):
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
        self.advice: str | None = None  # what to do when misses pile up (said once per episode)
        self.lost: dict | None = None  # the device that went away: {"device", "restart"}; None when all is well
        self._portaudio_dead = False  # a device died under a stream: the next scan needs a new PortAudio
        self._running_fx: dict = {}
        self._error_box: QMessageBox | None = None
        self._reported_worker_error = False
        self._last_stats = None
        self._bad_until = {"misses": 0.0, "xruns": 0.0}
        self._ticks = 0
        self._snap = np.zeros(2048, np.float32)
        self.setWindowTitle("stemstream")
        from .widgets import WheelGuard

        self.wheel_guard = WheelGuard(self)  # a wheel over the scrolling panels scrolls, it changes nothing
        from .jack_ports import PortNamer

        saved = self.settings.get(JACK_CONNECTIONS_SETTING)
        self.namer = PortNamer(JACK_CLIENT, saved if isinstance(saved, dict) else None)

        # -- header ---------------------------------------------------------------
        self.start_button = QPushButton("▶  Start")
        self.start_button.setObjectName("start")
        self.start_button.setToolTip("Start or stop the live engine (Space)")
        self.start_button.clicked.connect(self.toggle_start)
        self.karaoke = QPushButton("KARAOKE")  # lit (checked) while the karaoke mix plays; its text never changes
        self.karaoke.setObjectName("karaoke")
        self.karaoke.setCheckable(True)
        self.karaoke.setToolTip("Karaoke: lit while the main output plays the karaoke mix (vocals down to the guide "
                                "level). Press to switch it on; press again to go back to the mode it came from "
                                "(K; OSC /stemstream/karaoke/on)")
        self._listen_before_karaoke = "full"  # where the KARAOKE button returns to
        self.karaoke.toggled.connect(self._karaoke_toggled)
        for button, texts in ((self.start_button, ("▶  Start", "■  Stop", "Starting…", "Stopping…")),
                              (self.karaoke, ("KARAOKE",))):
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
        out_dir = Path(self.settings.get("files_out") or str(default_output_folder()))
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
        self._describe_models()
        self._restore()
        self._offer_models()
        self.params_changed.connect(self._show_params)
        self.store = ParamStore(self._initial_params())
        self._unsub = self.store.subscribe(lambda old, new: self.params_changed.emit(old, new))
        self._use_stems(self.store.current.stems)
        self._show_params(None, self.store.current)
        self._start_osc()
        self._wire()
        self.live_wiring = LiveWiring(self)  # changes while running, listen mode, scenes, mic, routing
        from .player import PlayerWiring

        self.player = PlayerWiring(self)  # the queue, the transport, key and guide per song
        if not self.player.paths():
            self.live.bottom_tabs.setCurrentIndex(1)  # nothing queued: the spectrogram
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

    def _restore(self) -> None:
        s, a = self.settings, self.args
        geometry = s.get("geometry")
        if geometry and not a.screenshot:
            self.restoreGeometry(QByteArray.fromBase64(geometry.encode()))
        elif a.screenshot:
            self.resize(1280, 720)
        else:  # the first launch: 1280x720 at most, inside the screen's free area with the window frame
            screen = self.screen().availableGeometry() if self.screen() is not None else None
            frame = 40  # a title bar and borders
            self.resize(min(1280, screen.width() - 16) if screen else 1280,
                        min(720, screen.height() - frame) if screen else 720 - frame)
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
        self.live.fx.set_stems(stems_for(self.live.model_box.currentData(), self.live.profile_box.currentData())
                               + (MIC_FX,), chains)
        master = s.get(MASTER_SETTING) if isinstance(s.get(MASTER_SETTING), dict) else {}
        try:
            self.live.main_strip.show_value(self.live.main_strip.fader,
                                            round(100 * min(max(float(master.get("gain", 1.0)), 0.0), 2.0)))
        except (TypeError, ValueError):
            pass
        self.live.main_strip.show_value(self.live.main_strip.limit, bool(master.get("limiter", True)))

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
        lt.mic_strip.mute_changed.connect(lambda _s, on: self._update(lambda p: p.with_(mic_mute=bool(on))))
        lt.mic_strip.fx_requested.connect(self._edit_mic_fx)
        lt.main_strip.gain_changed.connect(lambda _s, gain: self._master_changed())
        lt.main_strip.limiter_changed.connect(lambda _on: self._master_changed())
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
        # a traceback goes under "Show Details...", never into the box's width
        text, _, details = message.partition("\nTraceback")
        self._error_box.setText(text)
        self._error_box.setDetailedText(("Traceback" + details) if details else "")
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
        s.set(JACK_CONNECTIONS_SETTING, {k: list(v) for k, v in self.namer.connections.items()
                                         if isinstance(k, str) and isinstance(v, (list, tuple))})
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
        self.wheel_guard.remove()
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
        self.namer.close()
        self._unsub()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

