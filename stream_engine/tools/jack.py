"""A private JACK dummy server and port wiring through the JACK command-line tools.

``jackd --no-realtime -d dummy`` is a real audio server, paced in real time,
with no hardware: what tests, benchmarks and CI play through. Rules measured
on this project: start jackd before sounddevice is imported (or call
``stream_engine.devices.rescan()``), and terminate PortAudio
(``stream_engine.devices.release_portaudio()``) before jackd stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux
        pass


class JackError(RuntimeError):
    pass


class JackServer:
    """``jackd -n NAME --no-realtime -d dummy -r RATE -p PERIOD -C N -P N``.

    ``start()`` waits until clients can connect and points this process (and
    its children) at the server through ``JACK_DEFAULT_SERVER``;
    ``JACK_NO_START_SERVER`` keeps the JACK tools from launching a server of
    their own when this one is not up.
    """

    def __init__(self, name: str | None = None, rate: int = 48000, period: int = 256, ports: int = 8,
                 realtime: bool | None = False, log_path: str | None = None):
        """``realtime``: False runs ``--no-realtime``; True asks for real-time scheduling; None tries
        real time and says in ``self.realtime`` whether the system granted it (jackd runs either way)."""
        self.name = name or f"stemstream-{os.getpid()}-{time.monotonic_ns() % 100000}"
        self.rate, self.period, self.ports = rate, period, ports
        self.want_realtime = realtime
        self.realtime = False
        self._own_log = log_path is None
        self.log_path = log_path or tempfile.mkstemp(prefix="jackd-", suffix=".log")[1]
        self.proc: subprocess.Popen | None = None
        self._saved_env: dict[str, str | None] = {}

    @staticmethod
    def available() -> bool:
        return all(shutil.which(tool) for tool in ("jackd", "jack_lsp", "jack_connect", "jack_disconnect"))

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    def command(self) -> list[str]:
        mode = ["--realtime"] if self.want_realtime in (True, None) else ["--no-realtime"]
        return ["jackd", "-n", self.name, *mode, "-d", "dummy", "-r", str(self.rate),
                "-p", str(self.period), "-C", str(self.ports), "-P", str(self.ports)]

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def xrun_counts(self) -> dict[str, int]:
        """What jackd logged so far: its own timer running late, and clients that missed a cycle."""
        log = self.log()
        return {"server_late": log.count("JackTimedDriver::Process XRun"),
                "client_late": log.count("was not finished")}

    def start(self, timeout: float = 20.0) -> "JackServer":
        if not self.available():
            raise JackError("jackd and the JACK tools are not installed (Debian: apt-get install jackd2)")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = " | ".join(self.log().strip().splitlines()[-3:])
                code = self.proc.returncode
                self.stop()
                raise JackError(f"jackd exited at start (code {code}): {' '.join(self.command())} [{tail}]")
            if any(p.startswith("system:playback") for p in self.ports_list()):
                for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
                    self._saved_env[key] = os.environ.get(key)
                os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")
                log = self.log()
                self.realtime = "starting in realtime mode" in log and "Cannot use real-time scheduling" not in log
                if self.want_realtime is True and not self.realtime:
                    self.stop()
                    raise JackError("jackd could not get real-time scheduling")
                return self
            time.sleep(0.1)
        self.stop()
        raise JackError(f"jackd did not come up within {timeout:.0f} s: {' '.join(self.command())}")

    def activate(self) -> None:
        """Point this process at this server again (another server may have been started since)."""
        os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    def stop(self) -> None:
        """Stop jackd (release PortAudio first: ``stream_engine.devices.release_portaudio``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                self._reclaim()
        self.proc = None
        if self._own_log:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def _reclaim(self) -> None:
        """After a jackd was killed: free its slot in JACK's shared-memory registry.

        A server that does not shut down cleanly leaves its entry behind, and
        the registry holds 8 (measured: after 8 killed servers no jackd on the
        machine starts, exit code 255). jackd reclaims a dead server's entry
        when a server of the same name registers, so start and stop one.
        """
        try:
            with open(os.devnull, "w") as null:
                proc = subprocess.Popen(self.command(), stdout=null, stderr=null, env=self.env)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None and not self.ports_list():
                time.sleep(0.1)
            proc.terminate()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- ports ----------------------------------------------------------------
    def _tool(self, *cmd: str, check: bool = True) -> str:
        r = subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=10)
        if check and r.returncode != 0:
            raise JackError(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def ports_list(self) -> list[str]:
        try:
            out = self._tool("jack_lsp", check=False)
        except subprocess.TimeoutExpired:
            return []
        return [line.strip() for line in out.splitlines() if line.strip() and not line.startswith(" ")]

    def connections(self) -> dict[str, list[str]]:
        """{port: [ports it is connected to]} (both directions listed)."""
        out = self._tool("jack_lsp", "-c")
        result: dict[str, list[str]] = {}
        current = None
        for line in out.splitlines():
            if not line.strip():
                continue
            if line[0].isspace():
                if current is not None:
                    result[current].append(line.strip())
            else:
                current = line.strip()
                result[current] = []
        return result

    def client_ports(self, client: str) -> list[str]:
        return [p for p in self.ports_list() if p.split(":", 1)[0] == client]

    def wait_for_ports(self, client: str, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.client_ports(client)
            if len(ports) >= count:
                return ports
            time.sleep(0.05)
        raise JackError(f"JACK client {client!r} did not show {count} ports within {timeout:.0f} s "
                        f"(ports now: {self.ports_list()})")

    def connect(self, source: str, destination: str) -> None:
        self._tool("jack_connect", source, destination)

    def disconnect(self, source: str, destination: str) -> None:
        self._tool("jack_disconnect", source, destination, check=False)

    def isolate(self, *clients: str) -> None:
        """Remove every connection of these clients' ports (PortAudio auto-connects to system:)."""
        for port, peers in self.connections().items():
            if port.split(":", 1)[0] in clients:
                for peer in peers:
                    if ":out_" in port or port.startswith("system:capture"):
                        self.disconnect(port, peer)
                    else:
                        self.disconnect(peer, port)
