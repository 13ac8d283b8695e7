"""Stable JACK port names for the app, and the user's connections restored.

PortAudio names its JACK ports itself, with a counter that runs on over the
whole process (``stemstream:out_0`` on the first Start, ``out_2`` after a
Stop/Start, ``in_3`` after a mic change), so OBS, a DAW or saved JACK
sessions lose the app's ports. ``PortNamer`` renames them after what they
carry (``main_L``, ``vocals_R``, ``in_L``, ``mic``) through a small JACK
client of its own (the ``JACK-Client`` package, ``jack_port_rename``: JACK
lets a client rename another's ports) and re-makes the connections the user
had on each name the last time it was seen (Stop/Start, a mic, input, model
or routing change, a restart of the app: they are saved with the settings).

Nothing here runs in an audio callback. Without the JACK-Client package or a
JACK server the namer does nothing (the ports keep PortAudio's names).
"""

from __future__ import annotations

import re
import threading

PORT_NUMBER = re.compile(r"_(\d+)$")
_left: list = []  # clients of servers that quit (never closed, never freed)
JACK_CLIENT = "stemstream"  # the app's own JACK client name (as `stemstream live`); never offered as a device


def own_jack_client(device) -> bool:
    """The app's own JACK client (``stemstream``, or ``stemstream-01``... when JACK renamed a second one)."""
    return device.hostapi.startswith("JACK") and re.fullmatch(rf"{JACK_CLIENT}(-\d+)?", device.name) is not None


def output_names(routes: dict, channels: int) -> list[str]:
    """One name per output channel (from 0) from the routing: ``main_L``/``main_R`` for a stereo bus,
    the bus name for a mono one, ``vocals_1..n`` for wider ones; ``outN`` (from 1) for an unused
    channel; ``main+mic_L`` where two buses share a channel."""
    carried: dict[int, list[str]] = {}
    for bus, chans in (routes or {}).items():
        for i, c in enumerate(chans):
            side = ("_L", "_R")[i] if len(chans) == 2 else "" if len(chans) == 1 else f"_{i + 1}"
            carried.setdefault(int(c), []).append((bus, side))
    names = []
    for c in range(channels):
        here = carried.get(c)
        if not here:
            names.append(f"out{c + 1}")  # not PortAudio's "out_N": its next stream would collide
        else:
            side = here[0][1]
            names.append("+".join(bus for bus, _ in here) + side)
    return names


def capture_names(channels: int, music_columns=(), mic_column=None, prefix: str = "in") -> list[str]:
    """One name per channel of a capture stream: ``in_L``/``in_R`` (the music; ``in`` when one
    channel is read twice), ``mic``, and ``<prefix>_chN`` (from 1) for a channel opened but unused
    (never PortAudio's own ``in_N``: a stream opened later would fail to register that name)."""
    music = list(dict.fromkeys(music_columns))
    names = []
    for c in range(channels):
        if c == mic_column:
            names.append("mic")
        elif c in music:
            names.append("in" if len(music) == 1 else ("in_L", "in_R")[music.index(c)] if len(music) == 2
                         else f"in_{music.index(c) + 1}")
        else:
            names.append(f"{prefix}_ch{c + 1}")
    return names


class PortNamer:
    """Renames the app's PortAudio JACK ports and restores connections by name.

    ``snapshot()`` before a PortAudio stream opens and ``ports_since(snapshot)`` after give that
    stream's ports in channel order; ``apply([(port, name), ...])`` renames (a name another of the app's
    ports holds moves aside first) and re-makes the remembered connections of each name;
    ``remember()`` records what is connected now (called while running and before a Stop).
    """

    CLIENT = "stemstream-ports"

    def __init__(self, own_client: str = "stemstream", connections: dict | None = None):
        self.own = re.compile(rf"^{re.escape(own_client)}(-\d+)?$")
        self.connections: dict[str, list[str]] = {k: list(v) for k, v in (connections or {}).items()}
        self.client = None
        self.problem: str | None = None
        self._lock = threading.RLock()
        self._dead = False
        self.named: set[str] = set()  # full names the namer gave (what ``remember`` records)

    # -- the JACK client ---------------------------------------------------------
    def _jack(self):
        """The namer's own client (opened on first use, again after the server went away); None without JACK."""
        with self._lock:
            if self.client is not None and not self._dead:
                return self.client
            self.close()
            try:
                import jack

                client = jack.Client(self.CLIENT, no_start_server=True)
            except Exception as exc:  # noqa: BLE001 - no package, no server: PortAudio's names stay
                self.problem = f"JACK port names: {type(exc).__name__}: {exc}"
                return None
            self._dead = False
            client.set_shutdown_callback(lambda *_: setattr(self, "_dead", True))
            client.activate()
            self.client = client
            self.problem = None
            return client

    def close(self) -> None:
        with self._lock:
            client, self.client = self.client, None
            if client is None:
                return
            if self._dead:  # a client of a server that quit is left alone: jack_client_close on it
                import jack  # crashes (measured: a segfault at exit when JACK-Client's __del__ closed it)

                _left.append(client)
                client._ptr = jack._ffi.NULL  # so its __del__ does nothing
                return
            try:
                client.deactivate()
                client.close()
            except Exception:  # noqa: BLE001 - the server may be gone
                pass

    def own_ports(self) -> list:
        client = self._jack()
        if client is None:
            return []
        try:
            return [p for p in client.get_ports() if self.own.match(p.name.split(":", 1)[0])]
        except Exception:  # noqa: BLE001
            return []

    def snapshot(self) -> set[str]:
        return {p.name for p in self.own_ports()}

    def ports_since(self, before: set[str], is_output: bool) -> list:
        """The app's ports that appeared since ``before`` (one stream's), in PortAudio's order."""
        new = [p for p in self.own_ports() if p.name not in before and p.is_output == is_output]
        return sorted(new, key=lambda p: int(m.group(1)) if (m := PORT_NUMBER.search(p.shortname)) else 0)

    # -- names and connections ----------------------------------------------------
    def apply(self, wanted: list) -> None:
        """``[(port, short name), ...]``: rename, then restore the remembered connections of those names."""
        with self._lock:
            client = self._jack()
            if client is None:
                return
            for n, (port, name) in enumerate(wanted):
                try:
                    if port.shortname == name:
                        continue
                    client_name = port.name.split(":", 1)[0]
                    holder = next((p for p in self.own_ports() if p.name == f"{client_name}:{name}"), None)
                    if holder is not None:  # a stream on its way out, or a port about to be renamed too
                        holder.shortname = f"{name}~{n}"
                    port.shortname = name
                except Exception:  # noqa: BLE001 - a port closed meanwhile: the next apply names the rest
                    continue
            self.named = {port.name for port, _ in wanted}
            self.restore([port for port, _ in wanted])

    def restore(self, ports) -> None:
        """Give each port the connections remembered for its name (missing ones made, others undone)."""
        client = self._jack()
        if client is None:
            return
        for port in ports:
            try:
                peers = self.connections.get(port.shortname)
                if peers is None:
                    continue
                now = {p.name for p in client.get_all_connections(port)}
                for peer in set(peers) - now:
                    try:
                        client.connect(port, peer) if port.is_output else client.connect(peer, port)
                    except Exception:  # noqa: BLE001 - the other app is not there (yet)
                        pass
                for peer in now - set(peers):
                    client.disconnect(port, peer) if port.is_output else client.disconnect(peer, port)
            except Exception:  # noqa: BLE001
                continue

    def remember(self) -> None:
        """What each port the namer named is connected to now (not ports PortAudio just opened)."""
        with self._lock:
            client = self.client if not self._dead else None
            if client is None:
                return
            try:
                for port in self.own_ports():
                    if port.name in self.named:
                        self.connections[port.shortname] = sorted(p.name for p in client.get_all_connections(port))
            except Exception:  # noqa: BLE001 - the server went away: keep what was remembered
                pass
