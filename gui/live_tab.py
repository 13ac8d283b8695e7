"""The Live tab: devices and model, the mixer with meters, karaoke controls,
the spectrogram and the effect chains. Widgets only: the window wires them
to the ParamStore and the session."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QFrame, QGridLayout, QGroupBox,
    QHBoxLayout, QHeaderView, QLabel, QPushButton, QScrollArea, QSizePolicy, QSlider, QStyle,
    QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout, QWidget,
)

from stream_engine.params import LISTEN_LABELS, LISTEN_MODES, StemParams
from stream_engine.profiles import PROFILES, REALTIME_PROFILES

from .fx_panel import FxPanel
from .widgets import FaderScale, LevelMeter, Spectrogram, gain_text, keep_width_for


class StemStrip(QFrame):
    """One channel strip: name, peak/RMS meter, fader (0..2 linear), mute, solo.

    ``kind``: "stem" (mute, solo), "mic" (mute, and FX: its effect chain in the effects panel) or
    "main" (the master fader and the safety limiter's LIMIT toggle); ``controls=False``: a meter only.
    Double-click a fader: back to 0 dB.
    """

    gain_changed = Signal(str, float)
    mute_changed = Signal(str, bool)
    solo_changed = Signal(str, bool)
    fx_requested = Signal(str)
    limiter_changed = Signal(bool)

    def __init__(self, stem: str, parent=None, controls: bool = True, title: str | None = None, kind: str = "stem"):
        super().__init__(parent)
        self.stem = stem
        self.kind = kind
        self.setObjectName("strip")
        self.setFrameShape(QFrame.StyledPanel)
        title = QLabel(title or (stem.upper() if controls else "MAIN"))
        title.setAlignment(Qt.AlignCenter)
        title.setStyleSheet("font-weight:bold; letter-spacing:1px;")
        self.meter = LevelMeter(stereo_width=24)
        self.level = QLabel("-inf")
        self.level.setAlignment(Qt.AlignCenter)
        self.level.setStyleSheet("color:#9aa0aa; font-size:10px;")
        self.level.setMinimumWidth(64)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(title)
        body = QHBoxLayout()
        body.setSpacing(3)  # meter, fader and scale close together: more strips fit at 1024 px
        body.addStretch(1)
        body.addWidget(self.meter)
        self.fader = None
        if controls:
            self.fader = QSlider(Qt.Vertical)
            self.fader.setRange(0, 200)
            self.fader.setValue(100)
            self.fader.setPageStep(10)
            self.fader.setMinimumHeight(80)
            self.fader.setToolTip({"main": "Master level of the main output, 0..2 (double-click: 0 dB)",
                                   "mic": "Microphone level in the output, 0..2 (OSC /stemstream/mic/gain; "
                                          "double-click: 0 dB)"}.get(
                kind, f"{stem} level: linear gain 0..2 (OSC /stemstream/stem/{stem}/gain; double-click: 0 dB)"))
            self.fader.valueChanged.connect(self._fader_moved)
            self.fader.installEventFilter(self)  # a double-click resets it
            body.addWidget(self.fader)
            body.addWidget(FaderScale(self.fader))
        body.addStretch(1)
        layout.addLayout(body, 1)
        layout.addWidget(self.level)
        self.gain_label = QLabel("0.0 dB" if controls else "")
        self.gain_label.setAlignment(Qt.AlignCenter)
        layout.addWidget(self.gain_label)
        self.mute = self.solo = self.fx_button = self.limit = None
        if controls and kind == "main":
            row = QHBoxLayout()
            self.limit = QPushButton("LIMIT")
            self.limit.setCheckable(True)
            self.limit.setChecked(True)
            self.limit.setObjectName("solo")
            self.limit.setToolTip("Safety limiter on the main output: nothing leaves above -1 dBFS (mic plus music "
                                  "would clip at 0 dBFS). It does nothing below that level, so it is on by default")
            self.limit.toggled.connect(self.limiter_changed)
            keep_width_for(self.limit, ("LIMIT", "LIM -99"))  # it shows the gain reduction while acting
            row.addWidget(self.limit)
            layout.addLayout(row)
        elif controls and kind == "mic":
            row = QHBoxLayout()
            self.mute = QPushButton("M")
            self.mute.setCheckable(True)
            self.mute.setObjectName("mute")
            self.mute.setToolTip("Mute the microphone")
            self.mute.toggled.connect(lambda on: self.mute_changed.emit(self.stem, on))
            self.fx_button = QPushButton("FX")
            self.fx_button.setToolTip("The microphone's effect chain (e.g. the mic-vocal preset) in the effects panel")
            self.fx_button.clicked.connect(lambda: self.fx_requested.emit(self.stem))
            self.mute.setFixedWidth(34)
            self.fx_button.setFixedWidth(max(34, self.fx_button.fontMetrics().horizontalAdvance("FX") + 26))
            for b in (self.mute, self.fx_button):
                row.addWidget(b)
            layout.addLayout(row)
        elif controls:
            row = QHBoxLayout()
            self.mute = QPushButton("M")
            self.mute.setCheckable(True)
            self.mute.setObjectName("mute")
            self.mute.setToolTip(f"Mute {stem}")
            self.mute.toggled.connect(lambda on: self.mute_changed.emit(self.stem, on))
            self.solo = QPushButton("S")
            self.solo.setCheckable(True)
            self.solo.setObjectName("solo")
            self.solo.setToolTip(f"Solo {stem} (only soloed stems play)")
            self.solo.toggled.connect(lambda on: self.solo_changed.emit(self.stem, on))
            for b in (self.mute, self.solo):
                b.setFixedWidth(34)
                row.addWidget(b)
            layout.addLayout(row)
        # never narrower than the title (a fixed minimum clipped "ACCOMPANIMENT" to "COMPANIMI")
        self.setMinimumWidth(max(90 if controls else 80, title.minimumSizeHint().width() + 14))
        self.setMaximumWidth(max(200, self.minimumWidth()))

    def eventFilter(self, obj, event) -> bool:
        from PySide6.QtCore import QEvent

        if obj is self.fader and event.type() == QEvent.MouseButtonDblClick:
            self.fader.setValue(100)  # 0 dB, as mixers do
            return True
        return super().eventFilter(obj, event)

    def _fader_moved(self, value: int) -> None:
        gain = value / 100.0
        self.gain_label.setText(gain_text(gain))
        self.gain_changed.emit(self.stem, gain)

    def show_params(self, p: StemParams) -> None:
        """Reflect the store without sending anything back."""
        if self.fader is None or self.solo is None:
            return
        for w, value in ((self.fader, round(p.gain * 100)), (self.mute, p.mute), (self.solo, p.solo)):
            w.blockSignals(True)
            if isinstance(value, bool):
                w.setChecked(value)
            else:
                w.setValue(value)
            w.blockSignals(False)
        self.gain_label.setText(gain_text(p.gain))

    def set_levels(self, peak_db: float, rms_db: float, text: bool = True) -> None:
        """Meter every call; the numbers only when ``text`` (they need not move at 50 Hz)."""
        self.meter.set_levels(peak_db, rms_db)
        if text:
            self.level.setText("-inf" if peak_db <= -119 else f"{peak_db:.0f} / {rms_db:.0f}")

    def reset_levels(self) -> None:
        self.meter.reset()
        self.level.setText("-inf")

    def show_value(self, widget, value) -> None:
        """Set a control of this strip without sending anything back."""
        if widget is None:
            return
        widget.blockSignals(True)
        if isinstance(value, bool):
            widget.setChecked(value)
        else:
            widget.setValue(value)
        widget.blockSignals(False)
        if widget is self.fader:
            self.gain_label.setText(gain_text(value / 100.0))


class LiveTab(QWidget):
    rescan_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        # -- setup ----------------------------------------------------------
        self.input_box = QComboBox()
        self.input_box.setToolTip("What the engine separates: an input device (any host API: ALSA, JACK, ...) "
                                  "or a file played through the live engine")
        self.output_box = QComboBox()
        self.output_box.setToolTip("Where the mix plays (the device's sample rate becomes the stream rate)")
        for box in (self.input_box, self.output_box):
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(10)  # the full name is in the tooltip; the column stays narrow
        self.rescan = QPushButton("Rescan")
        self.rescan.setToolTip("Look for audio devices again (e.g. after starting a JACK server)")
        self.rescan.clicked.connect(self.rescan_requested)
        self.model_box = QComboBox()
        self.model_box.setToolTip("Separator: a built-in, a bundled model, or a model file (.onnx, .pt)")
        self.model_box.setMinimumContentsLength(12)
        self.profile_box = QComboBox()
        for name in REALTIME_PROFILES:
            self.profile_box.addItem(f"{name}  (≤ {PROFILES[name].latency_target_ms:g} ms)", name)
        self.profile_box.setToolTip("\n".join(f"{n}: {PROFILES[n].description}, block {PROFILES[n].block}, "
                                              f"target ≤ {PROFILES[n].latency_target_ms:g} ms"
                                              for n in REALTIME_PROFILES))
        self.key_stage = QCheckBox("Key change (adds 43 ms)")
        self.key_stage.setToolTip("The key-shift stage: its phase vocoder adds 2048 samples of latency. "
                                  "Moving the key away from 0 adds it by itself; while running it comes "
                                  "in or out with a 30 ms crossfade (OSC /stemstream/keystage)")
        self.mic_device_box = QComboBox()
        self.mic_device_box.addItem("Input device", None)
        self.mic_device_box.setToolTip("The microphone's device: any input device, also while a file or the demo "
                                       "plays (\"Input device\": the music's input device, or the default one)")
        self.mic_device_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.mic_device_box.setMinimumContentsLength(8)
        self.mic_box = QComboBox()
        self.mic_box.addItem("none", None)
        for ch in range(8):
            self.mic_box.addItem(f"ch {ch + 1}", ch)
        self.mic_box.setToolTip("The microphone's channel on its device (mixed into the output at the mic level; "
                                "OSC /stemstream/mic \"DEVICE#CH\")")
        self.routing_button = QPushButton("Routing…")
        self.routing_button.setToolTip("Put each stem and bus on output channels (as the command line's --route)")
        setup = QGroupBox("Audio and model")
        form = QFormLayout(setup)
        form.setLabelAlignment(Qt.AlignRight)
        in_row = QHBoxLayout()
        in_row.addWidget(self.input_box, 1)
        in_row.addWidget(self.rescan)
        form.addRow("Input", in_row)
        form.addRow("Output", self.output_box)
        form.addRow("Model", self.model_box)
        self.model_info = QLabel("")  # stems, latency and SDR from the model's card (gui.models)
        self.model_info.setWordWrap(True)
        self.model_info.setStyleSheet("color:#8a909a; font-size:8pt;")
        form.addRow("", self.model_info)
        form.addRow("Profile", self.profile_box)
        mic_row = QHBoxLayout()
        mic_row.addWidget(self.mic_device_box, 1)
        mic_row.addWidget(self.mic_box)
        form.addRow("Mic", mic_row)
        form.addRow("", self.key_stage)
        form.addRow("Outputs", self.routing_button)

        # -- karaoke ----------------------------------------------------------
        self.guide = QSlider(Qt.Horizontal)
        self.guide.setRange(0, 100)
        self.guide.setToolTip("Guide vocal: how much of the vocals stays in the karaoke mix (OSC /stemstream/karaoke/guide)")
        self.guide_label = QLabel("15 %")
        self.key = QSlider(Qt.Horizontal)
        self.key.setRange(-12, 12)
        self.key.setTickPosition(QSlider.TicksBelow)
        self.key.setTickInterval(1)
        self.key.setPageStep(1)
        self.key.setToolTip("Key of the accompaniment in semitones, -12..+12 (Up/Down or +/-; OSC /stemstream/karaoke/key)")
        self.key_label = QLabel("0")
        # the microphone has a strip of its own in the mixer (level, meter, mute, effects)
        self.mic_strip = StemStrip("mic", title="MIC", kind="mic")
        self.mic_strip.setToolTip("The microphone: its level after its effects, level and mute (what it adds to "
                                  "the output; it skips the separation)")
        self.mic, self.mic_label, self.mic_meter = self.mic_strip.fader, self.mic_strip.gain_label, self.mic_strip.meter
        for lab in (self.guide_label, self.key_label):
            lab.setMinimumWidth(56)
        self.listen_box = QComboBox()
        for mode in LISTEN_MODES:
            self.listen_box.addItem(LISTEN_LABELS[mode], mode)
        self.listen_box.setToolTip("What the main output plays: every stem, all but the vocals, the vocals alone, "
                                   "or the karaoke mix with the guide vocal (OSC /stemstream/listen)")
        self.scene_box = QComboBox()
        self.scene_box.setEditable(True)
        self.scene_box.setToolTip("Scenes: the whole mixer (listen mode, faders, mutes, solos, key, guide, mic, "
                                  "effect chains). Type a name to save a new one (OSC /stemstream/scene/save)")
        self.scene_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.scene_box.setMinimumContentsLength(6)
        self.scene_save = QToolButton()
        self.scene_save.setText("Save")
        self.scene_save.setToolTip("Save the mixer as the scene named on the left")
        self.scene_load = QToolButton()
        self.scene_load.setText("Load")
        self.scene_load.setToolTip("Load the scene named on the left (effect chains crossfade in while running)")
        karaoke = QGroupBox("Listen")
        grid = QGridLayout(karaoke)
        grid.addWidget(QLabel("Mode"), 0, 0)
        grid.addWidget(self.listen_box, 0, 1, 1, 2)
        for r, (name, slider, lab) in enumerate((("Guide", self.guide, self.guide_label), ("Key", self.key, self.key_label)),
                                                start=1):
            grid.addWidget(QLabel(name), r, 0)
            grid.addWidget(slider, r, 1)
            grid.addWidget(lab, r, 2)
        scenes = QHBoxLayout()
        scenes.addWidget(self.scene_box, 1)
        scenes.addWidget(self.scene_save)
        scenes.addWidget(self.scene_load)
        grid.addWidget(QLabel("Scene"), 3, 0)
        grid.addLayout(scenes, 3, 1, 1, 2)
        grid.setColumnStretch(1, 1)

        self.latency_group = QGroupBox("Latency")
        self.latency_text = QLabel("Start the engine to see where the latency comes from.")
        self.latency_text.setWordWrap(True)
        self.latency_text.setStyleSheet("color:#aab2be;")
        self.latency_text.setToolTip("Every part that delays the sound, in ms at the stream rate")
        QVBoxLayout(self.latency_group).addWidget(self.latency_text)

        left = QVBoxLayout()
        left.addWidget(setup)
        left.addWidget(karaoke)
        left.addWidget(self.latency_group)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        # scrolls rather than squeezes when the window is short; its width goes by stretch, not by
        # its text, so nothing shifts when the latency breakdown appears on Start
        left_scroll = QScrollArea()
        left_scroll.setWidget(left_w)
        left_scroll.setWidgetResizable(True)
        left_scroll.setFrameShape(QFrame.NoFrame)
        left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        left_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOn)  # a bar appearing on Start would shift the column
        left_scroll.setMaximumWidth(460)
        left_scroll.setMinimumWidth(left_w.minimumSizeHint().width()
                                    + left_scroll.style().pixelMetric(QStyle.PM_ScrollBarExtent) + 4)
        left_scroll.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)

        # -- mixer -------------------------------------------------------------
        self.mixer_group = QGroupBox("Mixer (peak / RMS dBFS)")
        self.strip_row = QHBoxLayout(self.mixer_group)
        self.strip_row.setSpacing(8)
        self.strips: dict[str, StemStrip] = {}
        self.main_strip = StemStrip("main", title="MAIN", kind="main")
        self.main_strip.setToolTip("The main output as it leaves: music, mic, master fader and limiter (the stem "
                                   "strips show each stem's part of it)")


        # -- spectrogram ----------------------------------------------------------
        self.spec_source = QComboBox()
        self.spec_source.setToolTip("Show the input or one separated stem")
        self.spectrogram = Spectrogram()
        spec_group = QGroupBox("Spectrogram")
        sv = QVBoxLayout(spec_group)
        sh = QHBoxLayout()
        sh.addWidget(QLabel("Source"))
        sh.addWidget(self.spec_source)
        sh.addStretch(1)
        sv.addLayout(sh)
        sv.addWidget(self.spectrogram, 1)

        from .player import PlayerPanel

        self.player = PlayerPanel()
        center = QVBoxLayout()
        center.addWidget(self.player.transport)
        center.addWidget(self.mixer_group, 3)
        center.addWidget(spec_group, 2)

        # -- effects ----------------------------------------------------------------
        self.fx = FxPanel()
        fx_group = QGroupBox("Effects per stem")
        fv = QVBoxLayout(fx_group)
        fv.addWidget(self.fx)
        fv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(fx_group)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(fx_group.minimumSizeHint().width() + scroll.style().pixelMetric(QStyle.PM_ScrollBarExtent) + 4)

        # the mixer spans the width right of the set-up (any number of strips fits at 1024 px);
        # below it the spectrogram and the effects share the row and grow with the window
        center.takeAt(2)
        from PySide6.QtWidgets import QTabWidget

        self.bottom_tabs = QTabWidget()  # the queue and the spectrogram share the place under the mixer
        self.bottom_tabs.addTab(self.player.queue_box, "Queue")
        self.bottom_tabs.addTab(spec_group, "Spectrogram")
        bottom = QHBoxLayout()
        bottom.addWidget(self.bottom_tabs, 1)
        bottom.addWidget(scroll, 1)
        center.addLayout(bottom, 2)
        layout = QHBoxLayout(self)
        layout.addWidget(left_scroll, 1)
        layout.addLayout(center, 3)

    def profile_box_profiles(self) -> list[str]:
        return [self.profile_box.itemData(i) for i in range(self.profile_box.count())]

    def show_latency(self, report, target_ms: float, mic_ms: float | None = None) -> None:
        rows = [f"<tr><td>{name}</td><td align='right'>&nbsp;{1000.0 * n / report.sample_rate:.1f} ms</td></tr>"
                for name, n in report.parts.items() if n]
        rows.append(f"<tr><td><b>total</b></td><td align='right'>&nbsp;<b>{report.ms:.1f} ms</b></td></tr>")
        if mic_ms is not None:
            rows.append(f"<tr><td>microphone (no separation)</td><td align='right'>&nbsp;{mic_ms:.1f} ms</td></tr>")
        self.mic_meter.setToolTip(self.mic_meter.toolTip().split("\n")[0] +
                                  ("" if mic_ms is None else f"\nlatency {mic_ms:.1f} ms"))
        self.latency_text.setText(f"<table width='100%'>{''.join(rows)}</table>"
                                  f"<span style='color:#7f8794'>algorithmic {report.algorithmic_ms:.1f} ms "
                                  f"(profile target ≤ {target_ms:g} ms; compute budget and device excluded)</span>")

    def set_stems(self, stems) -> None:
        """Rebuild the strips for ``stems`` (order kept)."""
        while self.strip_row.count():
            item = self.strip_row.takeAt(0)
            w = item.widget()
            if w is not None and w not in (self.main_strip, self.mic_strip):
                w.deleteLater()
        self.strips = {s: StemStrip(s) for s in stems}
        for strip in self.strips.values():
            self.strip_row.addWidget(strip, 1)
        self.strip_row.addSpacing(16)
        self.strip_row.addWidget(self.mic_strip)
        self.strip_row.addWidget(self.main_strip)
        current = self.spec_source.currentData()
        self.spec_source.blockSignals(True)
        self.spec_source.clear()
        self.spec_source.addItem("Input", None)
        for s in stems:
            self.spec_source.addItem(f"Stem: {s}", s)
        idx = self.spec_source.findData(current)
        self.spec_source.setCurrentIndex(max(0, idx))
        self.spec_source.blockSignals(False)


class RoutingDialog(QDialog):
    """Each bus on output channels, as ``stemstream live --route`` (channels from 1, e.g. 3,4)."""

    def __init__(self, buses, routes: dict, outputs: int | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Routing")
        self.outputs = outputs
        self.table = QTableWidget(len(buses), 2)
        self.table.setHorizontalHeaderLabels(["Bus", "Output channels"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        for row, bus in enumerate(buses):
            name = QTableWidgetItem(bus)
            name.setFlags(Qt.ItemIsEnabled)
            self.table.setItem(row, 0, name)
            chans = routes.get(bus) or []
            self.table.setItem(row, 1, QTableWidgetItem(",".join(str(c + 1) for c in chans)))
        hint = QLabel("Channels from 1, e.g. 3,4; empty: not routed. The mic bus (if routed) replaces "
                      "its place in main." + (f" The output device has {outputs} channels." if outputs else ""))
        hint.setWordWrap(True)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color:#e06c5a;")
        buttons = self.button_box = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(hint)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)
        self.result_routes: dict | None = None

    def routes(self) -> dict:
        """{bus: [channels from 0]} as typed; ValueError naming the bad row."""
        from .live_config import parse_channels

        routes = {}
        for row in range(self.table.rowCount()):
            bus = self.table.item(row, 0).text()
            text = self.table.item(row, 1).text() if self.table.item(row, 1) else ""
            try:
                chans = parse_channels(text)
            except ValueError:
                raise ValueError(f"{bus}: write channels from 1 like 3,4 (got {text!r})") from None
            if chans and self.outputs and max(chans) >= self.outputs:
                raise ValueError(f"{bus}: the output device has {self.outputs} channels")
            if chans:
                routes[bus] = chans
        if not routes:
            raise ValueError("route at least one bus (main=1,2 plays the mix)")
        return routes

    def _accept(self) -> None:
        try:
            self.result_routes = self.routes()
        except ValueError as exc:
            self.problem.setText(str(exc))
            return
        self.accept()


__all__ = ["LiveTab", "RoutingDialog", "StemStrip", "gain_text"]
