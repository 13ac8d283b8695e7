"""Start, stop and restart of the live engine from the window (model load and stream
opening run as ``Job``s off the UI thread), and the state the header shows."""

from __future__ import annotations

import copy
import time

from stream_engine.params import ParamStore

from .audio import LiveSession
from .choices import INPUT_FILE, MODEL_FILE, stems_for
from .jobs import run_job
from .live_config import LiveConfig, carry_params


class EngineControl:
    """``MainWindow``'s engine life cycle (a mixin: it uses the window's widgets, store and session)."""

    # ================================================================ engine
    def config(self) -> LiveConfig:
        lt = self.live
        inp = lt.input_box.currentData()
        return LiveConfig(input=inp if inp != INPUT_FILE else None, output=lt.output_box.currentData(),
                          model=lt.model_box.currentData() if lt.model_box.currentData() != MODEL_FILE else None,
                          profile=lt.profile_box.currentData(), key_shift=lt.key_stage.isChecked(),
                          mic_channel=lt.mic_box.currentData(), fx=copy.deepcopy(lt.fx.chains),
                          block=self.args.block, master_gain=self.master()[0], limiter=self.master()[1],
                          loop=self.live.player.loop.isChecked())

    def toggle_start(self) -> None:
        if self.state == "idle":
            self.start()
        elif self.state == "running":
            self.stop()

    def start(self) -> None:
        if self.state != "idle":
            return
        if self._portaudio_dead:  # Start right after a loss: list the devices again first (a new PortAudio)
            self._recovering = True
            if self.lost is not None:
                self.lost["restart"] = True
            self.load_devices()
            return
        cfg = self.config()
        wanted = stems_for(cfg.model, cfg.profile)
        if set(wanted) != set(self.store.current.stems):
            self._swap_store(ParamStore(carry_params(self.store.current, wanted)))
        session = LiveSession(cfg, self.store, namer=self.namer)
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
        self._miss_history = []
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
        for strip in list(self.live.strips.values()) + [self.live.main_strip, self.live.mic_strip]:
            strip.reset_levels()  # to the floor at once: a frozen level after Stop reads as sound
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

