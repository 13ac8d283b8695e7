"""The window's ParamStore and who writes it: the Live tab's faders and buttons, the master
strip, the effects panel (edits reach the running chain) and the OSC server."""

from __future__ import annotations

import copy

from stream_engine.params import KEY_RANGE, ParamStore, Params

from .audio import idle_status
from .live_config import MIC_FX, active_effects
from .setting_keys import MASTER_SETTING
from .widgets import gain_text


class ParamWiring:
    """``MainWindow``'s parameters and OSC (a mixin: it uses the window's store, widgets and session)."""

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
        self.live.fx.set_stems(stems + (MIC_FX,))  # the mic's chain is edited beside the stems'

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
        if lt.mic_strip.mute.isChecked() != new.mic_mute:
            lt.mic_strip.show_value(lt.mic_strip.mute, bool(new.mic_mute))
        # one control, one meaning: lit exactly while the karaoke mix plays, whatever set the mode
        if new.listen != "karaoke":
            self._listen_before_karaoke = new.listen
        if self.karaoke.isChecked() != (new.listen == "karaoke"):
            self.karaoke.blockSignals(True)
            self.karaoke.setChecked(new.listen == "karaoke")
            self.karaoke.blockSignals(False)
        if old is not None and old.fx is not new.fx:
            for key, value in new.fx.items():
                if old.fx.get(key) != value:
                    stem, index, name = key
                    row = self._editor_row(stem, index)
                    if row is not None and self._same_chain(stem):
                        self.live.fx.show_param(stem, row, name, float(value))

    def _edit_mic_fx(self, _stem: str = "mic") -> None:
        """The mic strip's FX: its chain in the effects panel (presets such as mic-vocal load there)."""
        fx = self.live.fx
        fx.stem_box.setCurrentText(MIC_FX)
        fx.setFocus()
        self.statusBar().showMessage("effects panel: the microphone's chain (try the mic-vocal preset)", 5000)

    def master(self) -> tuple[float, bool]:
        """(master gain, limiter on) as the main strip shows them."""
        strip = self.live.main_strip
        return strip.fader.value() / 100.0, strip.limit.isChecked()

    def _master_changed(self) -> None:
        gain, limiter = self.master()
        session = self.session
        if session is not None and getattr(session, "master", None) is not None:
            session.master.gain, session.master.limiter = gain, limiter  # floats and a bool: atomic
        self.settings.set(MASTER_SETTING, {"gain": gain, "limiter": limiter})

    def _karaoke_toggled(self, on: bool) -> None:
        """On: the karaoke mix; off: back to the mode it came from (Instrumental stays Instrumental)."""
        back = self._listen_before_karaoke if self._listen_before_karaoke != "karaoke" else "full"
        self._update(lambda p: p.with_(listen="karaoke" if on else back))

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
        """A parameter box moved: reach the running chain through Params.fx if it has that slot
        (the mic's chain is small: rebuilt with the new value and swapped into its lane)."""
        if self.state != "running":
            return
        if stem == MIC_FX:
            self.session.set_mic_fx(copy.deepcopy(self.live.fx.chains.get(MIC_FX, [])))
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

