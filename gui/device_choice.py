"""Audio devices in the window: listing them (off the UI thread), choosing input and output,
and a device that goes away (said plainly, a clean stop, a new start when it returns)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog

from .audio import LiveSession
from .choices import INPUT_FILE
from .input_sources import DEMO_SOURCE, FILE_SOURCE_PREFIX
from .jack_ports import JACK_CLIENT, own_jack_client
from .jobs import run_job


class DeviceChoice:
    """``MainWindow``'s devices (a mixin: it uses the window's widgets, state and session)."""

    # ================================================================ devices
    def load_devices(self) -> None:
        from stream_engine.devices import rescan

        from .audio_devices import list_devices

        if self.state != "idle" and self.devices_ready:
            self.statusBar().showMessage("stop the engine before rescanning devices")
            return
        self.live.rescan.setEnabled(False)
        first = not self.devices_ready

        def work():
            if first:
                from stream_engine.devices import set_jack_client_name

                try:
                    set_jack_client_name(JACK_CLIENT)  # so the app's own client can be told apart (and routed)
                except Exception:  # noqa: BLE001 - no PortAudio: list_devices says why
                    pass
            elif self._portaudio_dead:
                from .audio_devices import fresh_portaudio

                fresh_portaudio(JACK_CLIENT)  # the old instance cannot be used again (gui.audio_devices says why)
                self._portaudio_dead = False
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
        if self.lost is not None:
            back = self.lost["device"] is not None and any(d.key == self.lost["device"] for d in devices)
            restart = self.lost["restart"] and getattr(self, "_recovering", False)
            self._recovering = False
            if back:
                self.lost = None
                if hasattr(self, "_recovery"):
                    self._recovery.stop()
                self.statusBar().showMessage("the audio device is back" + (": starting again" if restart else ""))
                self.state_label.setText("stopped")
                if restart:
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
        from .audio_devices import find_device
        from .input_sources import DEMO_SOURCE as demo

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
            from .player import song_name

            ib.insertItem(ib.count() - 1, f"File: {song_name(Path(path))}", data)
            ib.setItemData(ib.count() - 2, path, Qt.ToolTipRole)
        ib.setCurrentIndex(ib.findData(data))

    # ================================================================ a device that goes away
    def _device_lost(self, session: LiveSession) -> None:
        """The output stopped by itself: say so plainly, stop cleanly, wait for the device to return."""
        name = session.out_device.label if session.out_device is not None else "the output"
        jack = session.out_device is not None and session.out_device.hostapi.startswith("JACK")
        self.lost = {"device": session.out_device.key if session.out_device else None, "restart": True,
                     "jack": jack}
        self._portaudio_dead = True
        self._set_state("stopping")
        self.state_label.setText("audio device lost: stopped")
        why = "its JACK server quit" if jack else "unplugged, or its driver stopped"
        self.show_error(f"The audio device {name} stopped ({why}). The engine stopped; your settings are kept.\n"
                        + ("It starts again by itself when the JACK server is back (or press Rescan, then Start)."
                           if jack else "Plug it back in and press Rescan, then Start (or pick another output)."))
        run_job(session.stop_lost, on_done=lambda _r: self._lost_stopped(session),
                on_error=lambda _m: self._lost_stopped(session), name="stemstream-stop-lost")

    def _lost_stopped(self, session: LiveSession) -> None:
        if self.session is session:
            self.session = None
        self._set_state("idle")
        self.state_label.setText("audio device lost: waiting for it")
        for strip in list(self.live.strips.values()) + [self.live.main_strip, self.live.mic_strip]:
            strip.reset_levels()
        if self.lost and self.lost.get("jack"):
            if not hasattr(self, "_recovery"):
                self._recovery = QTimer(self)
                self._recovery.setInterval(1000)
                self._recovery.timeout.connect(self._poll_lost_device)
            self._recovery.start()

    def _poll_lost_device(self) -> None:
        """Once a second while a JACK device is lost: is the server back? Then list and Start again."""
        if self.lost is None or self.state != "idle" or getattr(self, "_polling", False):
            return

        def server_up() -> bool:
            try:
                import jack

                client = jack.Client("stemstream-probe", no_start_server=True)
            except Exception:  # noqa: BLE001 - not yet
                return False
            client.close()
            return True

        self._polling = True

        def done(up: bool) -> None:
            self._polling = False
            if up and self.lost is not None:
                self._recovery.stop()
                self._recovering = True
                self.load_devices()  # a new PortAudio (the old one died with the server), then Start

        run_job(server_up, on_done=done, on_error=lambda _m: setattr(self, "_polling", False),
                name="stemstream-poll-device")

