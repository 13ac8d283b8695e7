"""A real Ardour, headless, on a JACK server: sessions made by script, driven over OSC.

Debian's ``ardour`` package (7.x) ships two programs used here, both outside
``/usr/bin`` except for the Lua wrapper:

- ``ardourN-lua`` (``luasession``) runs a Lua script against libardour: it makes
  a session with one track per stem (:func:`create_session`), on Ardour's Dummy
  backend (no JACK needed);
- ``/usr/lib/ardourN/hardour-*`` opens a session with no GUI
  (:class:`HeadlessArdour`); its OSC surface listens on UDP 3819.

Both need the environment the ``ardourN-lua`` wrapper sets (``LD_LIBRARY_PATH``,
``ARDOUR_*_PATH``), and a private ``HOME`` (Ardour writes its config there).
Measured on Ardour 7.3 with a JACK dummy server:

- a JACK client must be given a name (an empty one broke the ports and hung
  the next run);
- headless Ardour starts the transport rolling on load: send
  ``/transport_stop`` and ``/goto_start`` before anything else;
- the OSC port is up before the JACK ports exist: wait for both;
- OSC replies go to the session's ``remote-port`` on the sender's address
  (``address-only``), not to the sender's port: every client on 127.0.0.1 is one
  surface, so a test's ``/set_surface`` also turns on feedback for what
  stemstream's DAW mirror changes;
- SIGTERM ends it in about 3 s without saving; recorded files are written when
  the transport stops, under ``interchange/<name>/audiofiles/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

OSC_PORT = 3819  # Ardour's OSC surface (fixed in Ardour; it moves to a free port only when 3819 is taken)

LUA_CREATE = """
AudioEngine:set_backend({backend}, {client}, "")
assert(AudioEngine:start(false) == 0, "cannot start Ardour's JACK engine")
local s = create_session({folder}, {name}, {rate})
assert(s, "create_session failed")
{tracks}
s:save_state("", false, false, false, false, false)
close_session()
print("session created")
"""
LUA_TRACK = ('assert(s:new_audio_track({channels}, 2, nil, 1, {name}, ARDOUR.PresentationInfo.max_order, '
             'ARDOUR.TrackMode.Normal, true, false):size() == 1, "new_audio_track failed")')


class ArdourError(RuntimeError):
    pass


class ArdourHalted(ArdourError):
    """JACK dropped Ardour ("JACK HALTED"): about 1 start in 10 on a dummy server (measured);
    that server stays damaged, so a retry needs a fresh jackd."""


def _lua_str(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ArdourInstall:
    """Where Debian put Ardour, and the environment its programs need."""

    lua: str  # the ardourN-lua wrapper
    headless: str  # hardour-*
    env: dict

    @classmethod
    def find(cls) -> "ArdourInstall | None":
        for lua in sorted((shutil.which(f"ardour{v}-lua") for v in (9, 8, 7)), key=lambda p: p is None):
            if lua is None:
                continue
            env = {}
            # the wrapper's own exports, so a newer Ardour's paths come along without code changes
            for line in Path(lua).read_text(errors="replace").splitlines():
                m = re.match(r"\s*export\s+([A-Z_]+)=(\S+)", line)
                if m:
                    env[m.group(1)] = re.sub(r"\$\{[^}]*\}", "", m.group(2)).rstrip(":")
            libdir = Path(env.get("ARDOUR_DLL_PATH", ""))
            headless = sorted(libdir.glob("hardour-*")) if libdir.is_dir() else []
            if headless:
                return cls(lua, str(headless[-1]), env)
        return None

    def environment(self, home: str, jack_env: dict | None = None) -> dict:
        env = dict(jack_env if jack_env is not None else os.environ)
        env.update(self.env)
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (self.env.get("LD_LIBRARY_PATH"),
                                                      os.environ.get("LD_LIBRARY_PATH")) if p)
        env["HOME"] = home
        return env


DUMMY_BACKEND = "None (Dummy)"


def create_session(install: ArdourInstall, parent: Path, name: str, tracks: list[tuple[str, int]], *,
                   home: str, jack_env: dict | None = None, rate: int = 48000, backend: str = DUMMY_BACKEND,
                   client: str = "ardour-lua", osc_reply_port: int = 8000,
                   inputs: dict[str, list[str]] | None = None, address_only: bool = True,
                   timeout: float = 30.0) -> Path:
    """A session ``parent/name/name.ardour`` with these (track name, input channels) audio tracks.

    Made on Ardour's Dummy backend by default: a session file names ports, not a backend, so
    it opens on JACK all the same, and no JACK client is started (on a JACK dummy server the
    Lua tool's client was dropped or hung about 1 time in 10, measured; ``backend="JACK"``
    with a non-empty ``client`` name if a JACK engine is wanted).

    OSC is switched on (replies to ``osc_reply_port``); ``inputs`` replaces each named
    track's input connections (``{"vocals": ["stemstream:out_2", "stemstream:out_3"]}``),
    which Ardour makes when it loads the session and those ports exist. Tracks not named
    keep Ardour's default (``system:capture_*``).
    """
    folder = Path(parent) / name  # Ardour wants the folder named like the session
    if folder.exists():
        raise ArdourError(f"{folder} exists")
    script = LUA_CREATE.format(backend=_lua_str(backend), client=_lua_str(client), folder=_lua_str(folder), name=_lua_str(name), rate=int(rate),
                               tracks="\n".join(LUA_TRACK.format(channels=int(c), name=_lua_str(t))
                                                for t, c in tracks))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        r = subprocess.run([install.lua, f.name], capture_output=True, text=True, timeout=timeout,
                           env=install.environment(home, jack_env), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        said = " | ".join(str(exc.output or "").strip().splitlines()[-5:])
        raise ArdourError(f"{install.lua} did not finish within {timeout:.0f} s: {said}") from None
    finally:
        os.unlink(f.name)
    session_file = folder / f"{name}.ardour"
    if r.returncode != 0 or "session created" not in r.stdout or not session_file.exists():
        tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-5:])
        raise ArdourError(f"{install.lua} could not create the session ({r.returncode}): {tail}")
    configure_session(session_file, osc_reply_port=osc_reply_port, inputs=inputs or {}, address_only=address_only)
    return folder


def configure_session(session_file: Path, osc_reply_port: int = 8000, inputs: dict[str, list[str]] | None = None,
                      address_only: bool = True):
    """Switch the OSC surface on and set track input connections in a saved session file.

    ``address_only``: one surface per sending host, replies to ``osc_reply_port``
    (Ardour's "Manual" port mode); False: one surface per sending host and port, replies
    to the sender's port ("Auto").
    """
    tree = ET.parse(session_file)
    root = tree.getroot()
    for proto in root.iter("Protocol"):
        if proto.get("name") == "Open Sound Control (OSC)":
            proto.attrib.update({"active": "1", "address-only": str(int(address_only)), "remote-port": str(int(osc_reply_port)),
                                 "feedback": "0", "debugmode": "0"})
            break
    else:
        raise ArdourError(f"{session_file}: no OSC protocol entry")
    routes = {r.get("name"): r for r in root.iter("Route")}
    for track, ports in (inputs or {}).items():
        if track not in routes:
            raise ArdourError(f"{session_file}: no track {track!r} (tracks: {sorted(routes)})")
        io = next(io for io in routes[track].iter("IO") if io.get("direction") == "Input")
        track_ports = io.findall("Port")
        if len(ports) > len(track_ports):
            raise ArdourError(f"track {track!r} has {len(track_ports)} inputs, {len(ports)} connections given")
        for port, other in zip(track_ports, list(ports) + [None] * len(track_ports)):
            for c in port.findall("Connection"):
                port.remove(c)
            if other is not None:
                ET.SubElement(port, "Connection", other=other)
    tree.write(session_file, encoding="UTF-8", xml_declaration=True)


class OscClient:
    """UDP to Ardour's surface; replies arrive on our own bound port (the session's remote-port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = OSC_PORT, reply_port: int = 0):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", reply_port))
        self.reply_port = self.sock.getsockname()[1]

    def send(self, address: str, *args) -> None:
        from pythonosc.osc_message_builder import build_msg

        self.sock.sendto(build_msg(address, list(args)).dgram, self.target)

    def set_surface(self, strip_types: int = 31, feedback: int = 3, fader_mode: int = 0) -> None:
        """Ardour's ``/set_surface``: all strips in one bank; strip types 31 (Ardour's default: audio
        and MIDI tracks and busses, VCAs); feedback 3 (buttons and fader values, the strip id as
        first argument); fader mode 0 (``/strip/gain`` in dB; 1: ``/strip/fader`` position 0..1)."""
        self.send("/set_surface", 0, strip_types, feedback, fader_mode, 0, 0, self.reply_port, 0, 0)

    def receive(self, seconds: float) -> list[tuple[str, tuple]]:
        """Every message that arrives within ``seconds`` (bundles opened)."""
        from pythonosc.osc_packet import OscPacket

        out = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return out
            try:
                for m in OscPacket(data).messages:
                    out.append((m.message.address, tuple(m.message.params)))
            except Exception:  # noqa: BLE001 - one unparsable datagram must not end the read
                continue

    def drain(self) -> None:
        self.receive(0.05)

    def close(self) -> None:
        self.sock.close()


class HeadlessArdour:
    """``hardour <session folder> <name>`` as a child process, stopped with SIGTERM."""

    def __init__(self, install: ArdourInstall, folder: Path, *, home: str, jack_env: dict | None = None,
                 log_path: str | None = None):
        self.install, self.folder = install, Path(folder)
        self.name = self.folder.name
        self.env = install.environment(home, jack_env)
        self.log_path = log_path or str(self.folder / "hardour.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HeadlessArdour":
        from .jack import _die_with_parent

        # Ardour moves its surface to another port when 3819 is taken, and whatever holds 3819
        # (another Ardour) would then take this one's messages: refuse instead
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("", OSC_PORT))
        except OSError as exc:
            raise ArdourError(f"UDP port {OSC_PORT} (Ardour's OSC surface) is taken: {exc}; is another Ardour "
                              "running?") from None
        finally:
            probe.close()

        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([self.install.headless, str(self.folder), self.name], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                                         preexec_fn=_die_with_parent)
        return self

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, osc: "OscClient", ports_ready, timeout: float = 30.0, settle: float = 1.0) -> None:
        """Until ``ports_ready()`` is true, ``settle`` s more, then until the OSC surface answers.

        ``/set_surface`` (not ``/strip/list``, which Ardour 7.3 answers with "No such strip") is
        the OSC probe because it replies at once with every strip's state. A start that JACK
        drops raises ArdourHalted. Measured on a loaded 2-core VM: 2 to 3 starts in 15 halted
        (jackd logs "CheckSize error ... Unknown request": Ardour's request stream to jackd out
        of step), the same with no OSC and no port polling during the load, with Ardour's
        ``-P`` (no port connections at start) 1 in 15, and more often, not less, with jackd's
        client timeout raised to 5 s.
        """
        deadline = time.monotonic() + timeout
        while not ports_ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ArdourError(f"headless Ardour's JACK ports did not appear within {timeout:.0f} s: "
                                  f"{self._tail()}")
            time.sleep(0.1)
        time.sleep(settle)  # the ports exist before the session is done loading
        while True:
            self._check_alive()
            osc.set_surface()
            if osc.receive(0.3):
                osc.drain()
                return
            if time.monotonic() > deadline:
                raise ArdourError(f"headless Ardour's OSC surface did not answer within {timeout:.0f} s: "
                                  f"{self._tail()}")

    def _check_alive(self) -> None:
        """Raise ArdourHalted when JACK dropped this Ardour, ArdourError when it exited."""
        if self.proc.poll() is not None:
            raise ArdourError(f"hardour exited at start ({self.proc.returncode}): {self._tail()}")
        if "JACK HALTED" in self.log():
            raise ArdourHalted(f"JACK dropped Ardour at start: {self._tail()}")

    def _tail(self) -> str:
        return " | ".join(self.log().strip().splitlines()[-4:])

    def recorded_files(self) -> list[Path]:
        return sorted((self.folder / "interchange" / self.name / "audiofiles").glob("*"))

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
