"""The app's main window for the GUI tests, built as ``stemstream-gui`` builds it from its arguments."""

from __future__ import annotations


def window_factory(qtbot, dialogs: bool = False):
    """A pytest fixture body: yields ``make(*argv, jack_running=False)``, which opens a window with
    those command-line arguments (OSC on any free port) once its devices are listed; every window
    made is shut down afterwards. ``dialogs=False`` sends errors to the status bar only."""
    windows = []

    def make(*argv, jack_running: bool = False):
        from gui.app import build_parser
        from gui.window import MainWindow

        args = build_parser().parse_args(["--osc-port", "0", *([] if dialogs else ["--no-dialogs"]), *argv])
        if jack_running:
            args.jack_running = True  # as `--jack-dummy` marks it
        w = MainWindow(args)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitUntil(lambda: w.devices_ready, timeout=10000)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.shutdown()
