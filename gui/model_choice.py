"""The Live and Files tabs' model boxes: filled from the registry, described from the cards,
greyed out where a model has no framing for the profile (a part of ``MainWindow``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from .choices import MODEL_FILE


class ModelChoice:
    """``MainWindow``'s model boxes (a mixin: it uses the window's widgets and settings)."""

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

        from .live_config import AUTO_PROFILE

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

    def _describe_models(self) -> None:
        """Each model's tooltip: what it is for, stems, latency and SDR from its card (gui.models)."""
        from .models import _cards, describe

        cards = _cards()
        for box in (self.live.model_box, self.files.model_box):
            for i in range(box.count()):
                data = box.itemData(i)
                if data not in (None, MODEL_FILE):
                    box.setItemData(i, describe(data, cards), Qt.ToolTipRole)
        self.live.model_box.currentIndexChanged.connect(lambda _i: self._offer_models())
        self.live.profile_box.currentIndexChanged.connect(lambda _i: self._offer_models())

    def _offer_models(self) -> None:
        """Only what can run: a model without a framing for the chosen profile is greyed out (its
        tooltip says which profiles it has), and so is a profile the chosen model cannot run. A
        saved pair that cannot run (spleeter with live) moves the profile to one the model has."""
        from .models import _cards, model_profiles, summary

        lt = self.live
        cards = getattr(self, "_cards", None) or _cards()
        self._cards = cards
        model, profile = lt.model_box.currentData(), lt.profile_box.currentData()
        allowed = model_profiles(model if model != MODEL_FILE else None, cards)
        if allowed is not None and profile not in allowed and profile != "auto":
            choice = next((p for p in lt.profile_box_profiles() if p in allowed), None)
            if choice is not None:
                lt.profile_box.blockSignals(True)
                lt.profile_box.setCurrentIndex(lt.profile_box.findData(choice))
                lt.profile_box.blockSignals(False)
                followed = f"{model} has no framing for {profile}: the profile follows the model ({choice})"
                self.statusBar().showMessage(followed, 8000)
                profile = choice
            else:
                followed = None
        else:
            followed = None
        for box, items in ((lt.model_box, None), (lt.profile_box, allowed)):
            for i in range(box.count()):
                data = box.itemData(i)
                if box is lt.model_box:
                    ok = data in (None, MODEL_FILE) or (lambda a: a is None or profile in a)(
                        model_profiles(data, cards))
                else:
                    ok = items is None or data in items or data == "auto"
                item = box.model().item(i)
                if item is not None and item.isEnabled() != ok:
                    item.setEnabled(ok)
        if followed:
            self._followed = (model, followed)
        note = self.__dict__.get("_followed")
        note = note[1] if note and note[0] == model else None  # said until another model is chosen
        lt.model_info.setText((summary(model if model != MODEL_FILE else None, cards) if model else
                               "the profile's default model") + (f"\n{note}" if note else ""))

    def _select_model(self, model: str) -> None:
        box = self.live.model_box
        idx = box.findData(model)
        if idx < 0:
            box.insertItem(box.count() - 1, Path(model).name, model)
            box.setItemData(box.count() - 2, model, Qt.ToolTipRole)
            idx = box.count() - 2
        box.setCurrentIndex(idx)

    def _model_chosen(self, _index: int) -> None:
        box = self.live.model_box
        if box.currentData() == MODEL_FILE:
            name, _ = QFileDialog.getOpenFileName(self, "Separator model", str(Path.home()),
                                                  "Models (*.onnx *.pt *.ts *.torchscript);;All files (*)")
            if name:
                self._select_model(name)
            else:
                box.setCurrentIndex(0)
