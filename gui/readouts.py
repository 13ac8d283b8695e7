"""What the window reads from the running engine at 50 Hz: strip and main meters, the
spectrogram, the header's indicators, and advice when blocks come late."""

from __future__ import annotations

import time

import numpy as np

from .audio import LiveSession


def latency_state(shown_ms: float, algorithmic_ms: float, target_ms: float) -> tuple[bool, bool]:
    """(bad, warn) for the latency pill: red when the design's own latency is above the profile's
    target, amber when only the compute budget takes the shown figure above it."""
    bad = algorithmic_ms > target_ms
    return bad, (not bad) and shown_ms > target_ms


class Readouts:
    """``MainWindow``'s tick (a mixin: it uses the window's widgets and session)."""

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
        peak, rms, limit = session.main_levels()  # what leaves on main: music, mic, master, limiter
        self.live.main_strip.set_levels(20.0 * np.log10(max(peak, 1e-6)), 20.0 * np.log10(max(rms, 1e-6)), text)
        if text:
            strip = self.live.main_strip
            strip.limit.setText(f"LIM {20 * np.log10(limit):.0f}" if limit < 0.98 else "LIMIT")
        source = self.live.spec_source.currentData()
        if source is None:
            session.input_snapshot(self._snap)
        elif source in session.stems:
            session.stem_snapshot(source, self._snap)
        self.live.spectrogram.push(self._snap)
        if self._ticks % 5 == 0:
            self._indicators(session)
        if self._ticks % 50 == 0 and session.running:
            self.namer.remember()  # the user's JACK connections, in case the server or the device goes

    def _indicators(self, session: LiveSession) -> None:
        if session.lost():
            self._device_lost(session)
            return
        st = session.stats()
        now = time.perf_counter()
        last = self._last_stats or st
        for key in ("misses", "xruns"):
            if st[key] > last[key]:
                self._bad_until[key] = now + 3.0
        self._last_stats = st
        self._advise_on_misses(session, st["misses"], now)
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

    MISSES_TO_ADVISE = 5  # late blocks within MISS_WINDOW_S that make the app say what to do
    MISS_WINDOW_S = 10.0

    def _advise_on_misses(self, session: LiveSession, misses: int, now: float) -> None:
        """Misses piling up: say what helps (a profile with a longer block, a lighter model),
        not only a red counter. Once per episode; the Misses pill keeps the advice as its tooltip."""
        history = self.__dict__.setdefault("_miss_history", [])
        if history and misses < history[-1][1]:  # another session's counter: start over
            history.clear()
        history.append((now, misses))
        while history and now - history[0][0] > self.MISS_WINDOW_S:
            history.pop(0)
        recent = misses - history[0][1]
        if recent < self.MISSES_TO_ADVISE or now < getattr(self, "_advised_until", 0.0):
            return
        from stream_engine.profiles import REALTIME_PROFILES

        profile = session.engine.pipeline.profile.name
        model = session.engine.pipeline.separator.spec.name
        order = list(REALTIME_PROFILES)
        longer = order[order.index(profile) + 1] if profile in order and order.index(profile) + 1 < len(order) else None
        steps = []
        if longer:
            steps.append(f"the {longer} profile (a longer block: more time per block, more latency)")
        if model not in ("dsp-center", "passthrough"):
            from stream_engine.separators.registry import bundled_models

            lighter = "stemstream-student-int8"  # offered only where the user installed it (opt-in licence)
            steps.append("a lighter model (dsp-center" + (f", or {lighter}" if lighter in bundled_models()
                                                          and model != lighter else "") + ")")
        steps.append("closing other programs that use the CPU")
        self.advice = (f"{recent} blocks came late in {self.MISS_WINDOW_S:.0f} s: the computer cannot keep up with "
                       f"{model} on the {profile} profile (the dry mix plays in their place). Try "
                       + "; or ".join(steps) + ".")
        self._advised_until = now + 30.0
        self.miss_ind.setToolTip(self.miss_ind.toolTip().split("\n\n")[0] + "\n\n" + self.advice)
        self.state_label.setText("running · blocks late")
        self.statusBar().showMessage(self.advice, 30000)

