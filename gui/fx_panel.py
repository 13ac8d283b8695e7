"""Per-stem effect chains: add, remove, reorder, bypass, edit, presets.

A chain is a list of effect specs in the preset format of ``plugins.effects``
(``{"type": "Compressor", "params": {...}}``, ``{"type": "vst3", "path": ...}``)
plus ``"bypass": true`` for a bypassed slot. Parameter edits reach a running
engine at once through ``Params.fx`` (the same path as OSC
``/stemstream/fx/<stem>/<n>/<param>``); structural changes (add, remove,
reorder, bypass, preset) are applied by rebuilding the engine, which the
window does in the background when the user presses Apply.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QInputDialog, QLabel, QListWidget,
    QListWidgetItem, QPushButton, QVBoxLayout, QWidget,
)

from .widgets import button

# What an added effect starts with where Pedalboard's own defaults do nothing
# (a Compressor at ratio 1 and 0 dB, a NoiseGate at -100 dB): a typical gentle setting.
EFFECT_DEFAULTS = {
    "Compressor": {"threshold_db": -18.0, "ratio": 3.0, "attack_ms": 5.0, "release_ms": 120.0},
    "NoiseGate": {"threshold_db": -50.0, "ratio": 10.0, "attack_ms": 1.0, "release_ms": 100.0},
}
UNITS = {"db": "dB", "ms": "ms", "hz": "Hz", "seconds": "s"}

BUILTIN_EFFECTS = ["Compressor", "Reverb", "Gain", "HighpassFilter", "LowpassFilter", "Delay", "Chorus",
                   "Limiter", "NoiseGate", "Phaser", "Distortion", "HighShelfFilter", "LowShelfFilter", "PeakFilter"]


def builtin_params(type_name: str) -> dict[str, float]:
    """Default numeric parameters of a Pedalboard built-in (empty if unknown)."""
    try:
        import pedalboard

        cls = getattr(pedalboard, type_name)
        plugin = cls()
        out = {}
        for name, member in inspect.getmembers(cls):
            if isinstance(member, property) and not name.startswith("_"):
                value = getattr(plugin, name, None)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[name] = float(value)
        return out
    except Exception:  # noqa: BLE001
        return {}


def param_label(name: str) -> str:
    """What a user reads for a parameter: ``threshold_db`` -> ``Threshold (dB)``."""
    words = name.split("_")
    unit = UNITS.get(words[-1].lower()) if len(words) > 1 else None
    if unit:
        words = words[:-1]
    text = " ".join(words).capitalize()
    return f"{text} ({unit})" if unit else text


def preset_folder() -> Path:
    """The user's effect presets: ``$STEMSTREAM_FX_PRESETS``, else under the app's config folder
    (so ``$STEMSTREAM_CONFIG_DIR`` keeps everything the app writes in one place)."""
    import os

    from plugins.effects import USER_PRESETS_ENV

    from .settings import config_dir

    env = os.environ.get(USER_PRESETS_ENV)
    return Path(env).expanduser() if env else config_dir() / "presets" / "effects"


def effect_label(spec: dict) -> str:
    if str(spec.get("type", "")).lower() in ("vst3", "vst", "plugin", "external"):
        return f"VST3 {Path(str(spec.get('path', '?'))).stem}"
    return str(spec.get("name") or spec.get("type", "?"))


class FxPanel(QWidget):
    """Editor for ``chains: {stem: [spec, ...]}``."""

    structure_changed = Signal()  # needs an engine rebuild
    param_changed = Signal(str, int, str, float)  # stem, index in the editor list, param, value
    message = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.chains: dict[str, list[dict]] = {}
        self.stems: list[str] = []
        self._param_boxes: dict[str, QDoubleSpinBox] = {}
        self._defaults_cache: dict[str, dict] = {}

        self.stem_box = QComboBox()
        self.stem_box.setToolTip("Which stem's effect chain to edit (or the microphone's: mic)")
        self.stem_box.currentTextChanged.connect(self._show_chain)
        self.list = QListWidget()
        self.list.setToolTip("Effects in processing order. Untick to bypass; select to edit its parameters")
        self.list.setMinimumHeight(90)
        self.list.currentRowChanged.connect(self._show_params)
        self.list.itemChanged.connect(self._bypass_toggled)

        self.type_box = QComboBox()
        self.type_box.addItems(BUILTIN_EFFECTS)
        self.type_box.setToolTip("Pedalboard built-in effect to add")
        add = button("Add", "Add the chosen effect at the end of the chain", self._add_builtin)
        vst = button("VST3…", "Add a VST3 plugin bundle (e.g. /usr/lib/vst3/ZamCompX2.vst3)", self._add_vst3)
        up = button("▲", "Move the selected effect earlier", lambda: self._move(-1))
        down = button("▼", "Move the selected effect later", lambda: self._move(1))
        remove = button("Remove", "Remove the selected effect", self._remove)
        for b in (up, down):
            b.setFixedWidth(34)

        self.preset_box = QComboBox()
        self.preset_box.setToolTip("Effect presets: bundled ones and your own")
        load = button("Load", "Replace this stem's chain with the preset", self._load_preset)
        save = button("Save…", "Save this stem's chain as a preset in your preset folder", self._save_preset)

        self.params_form = QFormLayout()
        self.params_form.setLabelAlignment(Qt.AlignRight)
        self.params_holder = QWidget()
        self.params_holder.setLayout(self.params_form)
        self.pending = QLabel("")
        self.pending.setWordWrap(True)
        self.pending.setStyleSheet("color:#f0c060")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Apply the edited chains (while playing: a 30 ms crossfade to them)")
        self.apply_button.setEnabled(False)
        self.apply_button.clicked.connect(self._apply)

        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Stem"))
        row1.addWidget(self.stem_box, 1)
        row1.addWidget(self.apply_button)  # at the top: never below the panel's scroll
        row2 = QHBoxLayout()
        row2.addWidget(self.type_box, 1)
        row2.addWidget(add)
        row2.addWidget(vst)
        row3 = QHBoxLayout()
        row3.addWidget(up)
        row3.addWidget(down)
        row3.addStretch(1)
        row3.addWidget(remove)
        row4 = QHBoxLayout()
        row4.addWidget(self.preset_box, 1)
        row4.addWidget(load)
        row4.addWidget(save)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row1)
        layout.addWidget(self.list)
        layout.addLayout(row2)
        layout.addLayout(row3)
        layout.addWidget(self.params_holder)
        layout.addLayout(row4)
        layout.addWidget(self.pending)
        self.refresh_presets()

    # -- model -----------------------------------------------------------
    def set_stems(self, stems, chains: dict | None = None) -> None:
        if chains is not None:
            self.chains = {s: copy.deepcopy(list(v)) for s, v in chains.items() if isinstance(v, list)}
        self.stems = list(stems)
        current = self.stem_box.currentText()
        self.stem_box.blockSignals(True)
        self.stem_box.clear()
        self.stem_box.addItems(self.stems)
        if current in self.stems:
            self.stem_box.setCurrentText(current)
        self.stem_box.blockSignals(False)
        self._show_chain(self.stem_box.currentText())

    @property
    def stem(self) -> str:
        return self.stem_box.currentText()

    def chain(self) -> list[dict]:
        return self.chains.setdefault(self.stem, [])

    def refresh_presets(self) -> None:
        """The presets for the chain shown: a voice's (``mic-*``: mic-vocal) on the microphone, the
        rest on the stems (mic-vocal is for a singer's mic, not the song's vocals stem)."""
        from plugins.effects import list_presets

        current = self.preset_box.currentText()
        self.preset_box.clear()
        try:
            names = sorted(list_presets(preset_folder()))
        except OSError:
            names = []
        mic = self.stem_box.currentText() == "mic"
        self.preset_box.addItems([n for n in names if n.startswith("mic") == mic] or names)
        if current and self.preset_box.findText(current) >= 0:
            self.preset_box.setCurrentText(current)

    # -- views ------------------------------------------------------------
    def _show_chain(self, stem: str) -> None:
        self.refresh_presets()
        self.list.blockSignals(True)
        self.list.clear()
        for spec in self.chains.get(stem, []):
            item = QListWidgetItem(effect_label(spec))
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked if spec.get("bypass") else Qt.Checked)
            self.list.addItem(item)
        self.list.blockSignals(False)
        if self.list.count():
            self.list.setCurrentRow(0)
        else:
            self._show_params(-1)

    def _clear_params(self) -> None:
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self._param_boxes = {}

    def _defaults(self, spec: dict) -> dict:
        t = str(spec.get("type", ""))
        if t.lower() in ("vst3", "vst", "plugin", "external"):
            return {}
        if t not in self._defaults_cache:
            self._defaults_cache[t] = builtin_params(t)
        return self._defaults_cache[t]

    def _show_params(self, row: int) -> None:
        self._clear_params()
        chain = self.chains.get(self.stem, [])
        if not 0 <= row < len(chain):
            return
        spec = chain[row]
        values = dict(self._defaults(spec))
        values.update({k: v for k, v in spec.get("params", {}).items() if isinstance(v, (int, float))})
        for name, value in sorted(values.items()):
            box = QDoubleSpinBox()
            lo, hi, step = _range_for(name)
            box.setRange(min(lo, value), max(hi, value))
            box.setDecimals(3 if hi <= 2 else 1)
            box.setSingleStep(step)
            box.setValue(float(value))
            box.setKeyboardTracking(False)
            box.setToolTip(f"{name}: applied at once to the running engine (OSC /stemstream/fx/{self.stem}/{row}/{name})")
            box.valueChanged.connect(lambda v, n=name, r=row: self._param_edited(r, n, v))
            self.params_form.addRow(param_label(name), box)
            self._param_boxes[name] = box

    def show_param(self, stem: str, row: int, name: str, value: float) -> None:
        """An outside change (OSC): store it and show it without echoing."""
        chain = self.chains.get(stem, [])
        if 0 <= row < len(chain):
            chain[row].setdefault("params", {})[name] = value
            if stem == self.stem and self.list.currentRow() == row and name in self._param_boxes:
                box = self._param_boxes[name]
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)

    # -- edits --------------------------------------------------------------
    def _param_edited(self, row: int, name: str, value: float) -> None:
        chain = self.chain()
        if 0 <= row < len(chain):
            chain[row].setdefault("params", {})[name] = value
            self.param_changed.emit(self.stem, row, name, value)

    def _changed(self) -> None:
        self._show_chain(self.stem)
        self.pending.setText("Chain edited: press Apply to rebuild the running engine (or it applies on next start).")
        self.apply_button.setEnabled(True)

    def _add_builtin(self) -> None:
        t = self.type_box.currentText()
        self.chain().append({"type": t, "params": dict(EFFECT_DEFAULTS.get(t, {}))})
        self._changed()
        self.list.setCurrentRow(self.list.count() - 1)

    def _add_vst3(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "VST3 bundle (folder ending in .vst3)", "/usr/lib/vst3")
        if path:
            self.chain().append({"type": "vst3", "path": path, "params": {}})
            self._changed()

    def _remove(self) -> None:
        row = self.list.currentRow()
        chain = self.chain()
        if 0 <= row < len(chain):
            del chain[row]
            self._changed()

    def _move(self, delta: int) -> None:
        row = self.list.currentRow()
        chain = self.chain()
        new = row + delta
        if 0 <= row < len(chain) and 0 <= new < len(chain):
            chain[row], chain[new] = chain[new], chain[row]
            self._changed()
            self.list.setCurrentRow(new)

    def _bypass_toggled(self, item: QListWidgetItem) -> None:
        row = self.list.row(item)
        chain = self.chain()
        if 0 <= row < len(chain):
            chain[row]["bypass"] = item.checkState() != Qt.Checked
            self.pending.setText("Bypass changed: press Apply.")
            self.apply_button.setEnabled(True)

    def _load_preset(self) -> None:
        from plugins.effects import load_preset

        name = self.preset_box.currentText()
        if not name:
            return
        try:
            data = load_preset(name, preset_folder())
        except (KeyError, OSError, ValueError) as exc:
            self.message.emit(f"could not load effect preset {name!r}: {exc}")
            return
        self.chains[self.stem] = [dict(e) for e in data.get("effects", [])]
        self._changed()

    def _save_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save effect preset", "Preset name:")
        if ok and name.strip():
            self.save_preset_as(name)

    def save_preset_as(self, name: str) -> Path | None:
        """Save this stem's chain (bypassed effects left out) as a user preset; returns its file."""
        safe = re.sub(r"[^A-Za-z0-9_. -]", "_", name.strip())
        effects = [{k: v for k, v in e.items() if k != "bypass"} for e in self.chain() if not e.get("bypass")]
        try:
            folder = preset_folder()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{safe}.json"
            path.write_text(json.dumps({"name": safe, "effects": effects}, indent=1))
        except OSError as exc:
            self.message.emit(f"could not save preset: {exc}")
            return None
        self.refresh_presets()
        self.preset_box.setCurrentText(safe)
        self.message.emit(f"saved effect preset {safe!r} to {path}")
        return path

    def _apply(self) -> None:
        self.pending.setText("")
        self.apply_button.setEnabled(False)
        self.structure_changed.emit()


def _range_for(name: str) -> tuple[float, float, float]:
    n = name.lower()
    if n.endswith("_db"):
        return -60.0, 24.0, 0.5
    if n.endswith("_ms"):
        return 0.0, 2000.0, 1.0
    if n.endswith("_hz"):
        return 10.0, 20000.0, 10.0
    if n == "ratio":
        return 1.0, 30.0, 0.5
    if n.endswith("_seconds"):
        return 0.0, 5.0, 0.01
    return 0.0, 1.0, 0.01
