"""``stemstream-gui``: the desktop app.

    stemstream-gui [--input DEV] [--output DEV] [--model M] [--profile P] [--osc-port N]
    stemstream-gui --screenshot FILE [--tab live|files] [--after SECONDS] [--jack-dummy]

``--screenshot`` starts the engine (Live tab) or separates ``--separate`` files
(Files tab), waits ``--after`` seconds, saves the window as a PNG and exits.
``--jack-dummy`` starts a private ``jackd -d dummy`` server first (no
hardware needed) and stops it on exit. ``--timings FILE`` writes measured
start-up times and the meters' frame rate as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _process_age() -> float:
    """Seconds since this process was created (Linux /proc), else 0."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


LAUNCH = time.perf_counter() - _process_age()  # perf_counter time of the process start

DARK_QSS = """
QWidget { font-size: 10pt; }
QGroupBox { border: 1px solid #3a3f48; border-radius: 6px; margin-top: 14px; padding-top: 6px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #b8c0cc; font-weight: bold; }
QFrame#strip { background: #22262d; border: 1px solid #343a44; border-radius: 6px; }
QPushButton { background: #2d323b; border: 1px solid #454c58; border-radius: 5px; padding: 4px 10px; }
QPushButton:hover { background: #363c47; }
QPushButton:disabled { color: #6a707a; }
QPushButton#start { font-size: 13pt; font-weight: bold; min-width: 96px; min-height: 40px; background: #1f6f43; }
QPushButton#start[running="true"] { background: #8a2a2a; }
QPushButton#karaoke { font-size: 13pt; font-weight: bold; min-width: 150px; min-height: 40px; letter-spacing: 1px; }
QPushButton#karaoke:checked { background: #b04f1a; border-color: #f08a40; color: white; }
QPushButton#primary { background: #2a5d9c; font-weight: bold; }
QPushButton#mute:checked { background: #b03030; color: white; }
QPushButton#solo:checked { background: #c9a227; color: black; }
QLabel#state { color: #c8ccd4; font-size: 11pt; padding-left: 10px; }
QLabel#osc { color: #8fb8e8; padding: 0 6px; }
QSlider::groove:vertical { width: 6px; background: #15181d; border-radius: 3px; }
QSlider::handle:vertical { height: 22px; width: 26px; margin: 0 -10px; background: #c8ccd4; border-radius: 4px; }
QSlider::groove:horizontal { height: 6px; background: #15181d; border-radius: 3px; }
QSlider::handle:horizontal { width: 16px; margin: -6px 0; background: #c8ccd4; border-radius: 4px; }
QProgressBar { border: 1px solid #454c58; border-radius: 4px; text-align: center; background: #1a1d22; }
QProgressBar::chunk { background: #2a7d5c; }
QTabBar::tab { padding: 6px 22px; }
QCheckBox::indicator { width: 13px; height: 13px; border: 1px solid #7a808a; border-radius: 3px; background: #1a1d22; }
QCheckBox::indicator:checked { background: #3a78c2; border-color: #7fb2ff; }
QCheckBox::indicator:disabled { border-color: #454c58; }
QLabel#colhead { color: #8a909a; font-size: 8pt; }
"""


def apply_dark_theme(app) -> None:
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    pal = QPalette()
    colors = {
        QPalette.Window: "#1b1e23", QPalette.WindowText: "#e2e5ea", QPalette.Base: "#15181c",
        QPalette.AlternateBase: "#20242a", QPalette.ToolTipBase: "#2a2f37", QPalette.ToolTipText: "#e2e5ea",
        QPalette.Text: "#e2e5ea", QPalette.Button: "#2d323b", QPalette.ButtonText: "#e2e5ea",
        QPalette.BrightText: "#ff6060", QPalette.Highlight: "#3a78c2", QPalette.HighlightedText: "#ffffff",
        QPalette.Link: "#7fb2ff", QPalette.PlaceholderText: "#7a808a",
    }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    pal.setColor(QPalette.Disabled, QPalette.Text, QColor("#6a707a"))
    pal.setColor(QPalette.Disabled, QPalette.ButtonText, QColor("#6a707a"))
    app.setPalette(pal)
    app.setStyleSheet(DARK_QSS)


def _osc_port(text: str) -> int:
    """argparse type: a UDP port 0..65535, or -1 for no OSC (out of range is a usage error)."""
    from stream_engine.live import port_number

    return -1 if text.strip() == "-1" else port_number(text)


def build_parser() -> argparse.ArgumentParser:
    from stream_engine.profiles import REALTIME_PROFILES

    p = argparse.ArgumentParser(prog="stemstream-gui", description="stemstream desktop app")
    p.add_argument("--input", help="input device (index, 'HOSTAPI: name' or part of a name), 'demo' for the "
                                   "demo song, or file:PATH to play a file through the engine")
    p.add_argument("--output", help="output device (index, 'HOSTAPI: name' or part of a name)")
    p.add_argument("--model", help="built-in, bundled model name or model file")
    p.add_argument("--profile", choices=["auto"] + REALTIME_PROFILES,
                   help="default: auto (a song runs the best model that keeps up, a device the live profile)")
    p.add_argument("--block", type=int, help="device block size (default: the profile's)")
    p.add_argument("--key-shift", dest="key_shift", action="store_true", default=None,
                   help="include the key-change stage (adds 43 ms)")
    p.add_argument("--no-key-shift", dest="key_shift", action="store_false")
    p.add_argument("--fx", action="append", metavar="STEM=PRESET",
                   help="load an effect preset into a stem's chain (repeatable), e.g. vocals=vocal")
    p.add_argument("--spectrogram", metavar="SOURCE", help="spectrogram source: input (default) or a stem name")
    p.add_argument("--osc-port", type=_osc_port, help="OSC UDP port on 127.0.0.1 (0: any free port, -1: off; default 9000)")
    p.add_argument("--start", action="store_true", help="start the engine once the devices are listed")
    p.add_argument("--jack-dummy", action="store_true", help="start a private JACK dummy server (jackd) first")
    p.add_argument("--screenshot", metavar="FILE", help="save the window as PNG and exit")
    p.add_argument("--tab", choices=["live", "files"], help="tab to show")
    p.add_argument("--after", type=float, default=3.0, help="seconds to run before the screenshot (default 3)")
    p.add_argument("--separate", nargs="+", metavar="FILE", help="with --screenshot: separate these files first")
    p.add_argument("--play", metavar="STEM", help="with --separate: play this stem once separated")
    p.add_argument("--size", default="1280x720", help="window size for --screenshot (default 1280x720)")
    p.add_argument("--timings", metavar="FILE", help="write measured timings (JSON) on exit")
    p.add_argument("--no-dialogs", action="store_true", help="errors go to the status bar only")
    return p


class Screenshot:
    """Drives --screenshot: wait for the engine / separation, then the delay, then grab."""

    def __init__(self, window, args, app):
        self.w, self.args, self.app = window, args, app
        self.deadline = time.perf_counter() + 120.0
        self.ready_at = None
        self.frames0 = None
        self.cpu0 = None
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def _ready(self) -> bool:
        w = self.w
        if not w.devices_ready:
            return False
        if self.args.separate:
            return w.files.job is None and bool(w.files.results or w.errors)
        if (self.args.tab or "live") == "live":
            return w.state == "running" or (w.state == "idle" and bool(w.errors))
        return True

    def poll(self) -> None:
        now = time.perf_counter()
        if self.ready_at is None:
            if self._ready() or now > self.deadline:
                self.ready_at = now
                self.frames0 = (self.w.meter_frames(), self.w._ticks, now)
                self.cpu0 = time.process_time()
            return
        if now - self.ready_at >= self.args.after:
            self.timer.stop()
            self.grab()

    def grab(self) -> None:
        w = self.w
        frames, ticks, t0 = self.frames0
        dt = time.perf_counter() - t0
        w.timings["meter_paints_per_s"] = (w.meter_frames() - frames) / dt if dt > 0 else 0.0
        w.timings["ui_ticks_per_s"] = (w._ticks - ticks) / dt if dt > 0 else 0.0
        w.timings["process_cpu_percent"] = 100.0 * (time.process_time() - self.cpu0) / dt if dt > 0 else 0.0
        path = Path(self.args.screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = w.grab().save(str(path), "PNG")
        print(f"stemstream-gui: {'saved' if ok else 'could not save'} {path}", file=sys.stderr)
        self.ok = ok
        self.app.exit(0 if ok else 1)


def _timings(window) -> dict:
    out = {}
    session = window.session
    stamps = dict(window.timings)
    if getattr(window.args, "jack_ready", None):
        stamps["jack_ready"] = window.args.jack_ready
    if session is not None:
        for k in ("model_loaded", "engine_built", "stream_started"):
            if k in session.timings:
                stamps[k] = session.timings[k]
        if session.t_first_callback:
            stamps["first_callback"] = session.t_first_callback
        if session.t_first_sound:
            stamps["first_sound"] = session.t_first_sound
        stats = session.stats()
        out["engine"] = {"misses": stats["misses"], "xruns": stats["xruns"], "cpu_percent": round(stats["cpu"], 1),
                         "callbacks": stats["callbacks"], "model": session.engine.pipeline.separator.spec.name,
                         "profile": session.config.profile, "block": session.engine.block, "rate": session.rate,
                         "latency_ms": round(session.latency_report.ms, 2)}
    for k, v in stamps.items():
        if isinstance(v, float) and k not in ("meter_paints_per_s", "ui_ticks_per_s", "process_cpu_percent"):
            out[f"launch_to_{k}_s"] = round(v - LAUNCH, 3)
    for k in ("meter_paints_per_s", "ui_ticks_per_s", "process_cpu_percent"):
        if k in stamps:
            out[k] = round(stamps[k], 1)
    out["errors"] = window.errors
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshot:
        args.tab = args.tab or ("files" if args.separate else "live")
    jack = None
    if args.jack_dummy:
        from stream_engine.tools.jack import JackServer

        jack = JackServer(ports=2)  # stereo in and out, as the app routes them
        try:
            jack.start()  # before sounddevice is imported: PortAudio lists JACK at initialisation
        except RuntimeError as exc:
            print(f"stemstream-gui: {exc}", file=sys.stderr)
            jack = None
        else:
            args.jack_ready = time.perf_counter()
            args.jack_running = True  # the window picks JACK output where nothing was chosen or saved
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("stemstream")
    app.setOrganizationName("stemstream")
    apply_dark_theme(app)

    from .settings import Settings
    from .window import MainWindow

    settings = Settings()
    window = MainWindow(args, settings)
    if settings.problem:
        window.show_error(settings.problem)
    if args.screenshot:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            window.resize(w, h)
        except ValueError:
            pass
    window.show()
    window.timings["window_shown"] = time.perf_counter()
    shot = Screenshot(window, args, app) if args.screenshot else None
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl+C / kill: quit cleanly (settings saved, jackd stopped)
        signal.signal(sig, lambda *_: app.quit())  # runs on the UI timer's next Python call
    code = app.exec()
    if args.timings:
        Path(args.timings).write_text(json.dumps(_timings(window), indent=1))
    window.shutdown()
    if jack is not None:
        try:
            from stream_engine.devices import release_portaudio

            release_portaudio()  # PortAudio lets go of JACK before jackd stops
        except Exception:  # noqa: BLE001
            pass
        jack.stop()
    from .jobs import wait_all

    if not wait_all(5.0):  # a model still loading: a QThread must not be destroyed while it runs
        print("stemstream-gui: a background job did not finish; exiting anyway", file=sys.stderr)
        sys.stderr.flush()
        os._exit(code or 1)
    if shot is not None and not getattr(shot, "ok", False):
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
