"""Mirror stem faders onto a DAW's own OSC surface.

A DAW preset is a small JSON file (``daw_presets/*.json`` bundled, plus a user
folder: ``$STEMSTREAM_DAW_PRESETS`` or ``~/.config/stemstream/presets/daw``)::

    {"name": "reaper", "host": "127.0.0.1", "port": 8000,
     "messages": [
       {"on": "gain", "address": "/track/{track}/volume", "args": ["{value}"],
        "value": {"db_table": [[-150, 0.0], [0, 0.716], [6, 1.0]]}},
       {"on": "mute", "address": "/track/{track}/mute", "args": ["{value}"], "value": "int"}
     ]}

``on`` is the stem parameter mirrored (``gain``, ``mute`` or ``solo``);
``address`` and ``args`` are templates: ``{track}`` is the stem's track number
in the DAW (an int argument), ``{value}`` the converted value. ``value`` says how
the stem's value becomes the DAW's:

- ``"linear"``: the linear gain (0..2) as is;
- ``"db"``: 20·log10(gain), floored at ``db_floor`` (default -193, Ardour's -inf);
- ``"int"``: 0/1 for mute and solo;
- ``{"db_table": [[dB, value], ...]}``: piecewise-linear in dB between the
  points (a fader taper), gain 0 giving the first point's value.
"""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path
from typing import Mapping

from pythonosc.osc_message_builder import build_msg

from ..params import ParamStore, Params
from ..presets import list_preset_files, user_preset_dir

log = logging.getLogger("stemstream.osc.daw")

PACKAGE_DAW_PRESETS = Path(__file__).resolve().parent / "daw_presets"
USER_DAW_PRESETS_ENV = "STEMSTREAM_DAW_PRESETS"


def user_daw_preset_dir() -> Path:
    return user_preset_dir("daw", USER_DAW_PRESETS_ENV)


def list_daw_presets(user_dir=None) -> dict[str, Path]:
    """Preset name -> JSON file; a user preset shadows a bundled one."""
    return list_preset_files(PACKAGE_DAW_PRESETS, Path(user_dir) if user_dir else user_daw_preset_dir())


def load_daw_preset(preset, user_dir=None) -> dict:
    if isinstance(preset, Mapping):
        data = dict(preset)
    else:
        p = Path(preset)
        if not (p.suffix == ".json" and p.exists()):
            known = list_daw_presets(user_dir)
            if str(preset) not in known:
                raise KeyError(f"unknown DAW preset {preset!r}; known: {sorted(known)}")
            p = known[str(preset)]
        from ..untrusted import read_json

        data = read_json(p, "DAW preset")  # a regular file, size and depth limited; ValueError otherwise
        if not isinstance(data, dict):
            raise ValueError(f"DAW preset {p}: must be a JSON object, not a {type(data).__name__}")
        data.setdefault("name", p.stem)
    if not isinstance(data.get("messages"), list) or not data["messages"]:
        raise ValueError(f"DAW preset {data.get('name', preset)!r} has no 'messages'")
    for m in data["messages"]:
        if not isinstance(m, dict) or m.get("on", "gain") not in ("gain", "mute", "solo") \
                or not isinstance(m.get("address"), str):
            raise ValueError(f"DAW preset {data.get('name')!r}: bad message {m!r}")
    return data


def convert(value: float, how, db_floor: float = -193.0):
    """Stem value -> DAW value (see the module doc)."""
    if how in (None, "linear"):
        return float(value)
    if how == "int":
        return int(bool(value))
    if how == "db":
        return max(20.0 * math.log10(value), db_floor) if value > 0 else db_floor
    if isinstance(how, Mapping) and "db_table" in how:
        table = sorted((float(d), float(v)) for d, v in how["db_table"])
        if value <= 0:
            return table[0][1]
        db = 20.0 * math.log10(value)
        if db <= table[0][0]:
            return table[0][1]
        for (d0, v0), (d1, v1) in zip(table, table[1:]):
            if db <= d1:
                return v0 + (v1 - v0) * (db - d0) / (d1 - d0)
        return table[-1][1]
    raise ValueError(f"unknown value conversion {how!r}")


def _fill(template, track: int, value):
    if template == "{track}":
        return int(track)
    if template == "{value}":
        return value
    if isinstance(template, str):
        return template.format(track=track, value=value)
    return template


class DawMirror:
    """Send each stem's fader (and mute/solo where the preset says) to a DAW."""

    def __init__(self, store: ParamStore, preset, stem_tracks: Mapping[str, int], host: str | None = None,
                 port: int | None = None, user_dir=None, send_initial: bool = True):
        self.preset = load_daw_preset(preset, user_dir)
        self.store = store
        self.stem_tracks = {s: int(t) for s, t in stem_tracks.items()}
        self.host = host or self.preset.get("host", "127.0.0.1")
        self.port = int(port or self.preset["port"])
        self.db_floor = float(self.preset.get("db_floor", -193.0))
        self.sent = 0
        self.errors = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._closed = False
        self._unsubscribe = store.subscribe(self._on_change)
        if send_initial:
            self.sync()

    def messages_for(self, stem: str, params: Params, fields=("gain", "mute", "solo")):
        """The (address, args) the preset maps this stem's current values to."""
        track = self.stem_tracks[stem]
        sp = params.stem(stem)
        out = []
        for m in self.preset["messages"]:
            on = m.get("on", "gain")
            if on not in fields:
                continue
            value = convert(getattr(sp, on), m.get("value", "int" if on != "gain" else "linear"), self.db_floor)
            address = _fill(m["address"], track, value)
            args = [_fill(a, track, value) for a in m.get("args", ["{value}"])]
            out.append((address, args))
        return out

    def _send(self, address: str, args) -> None:
        try:
            self._sock.sendto(build_msg(address, args).dgram, (self.host, self.port))
            self.sent += 1
        except Exception as exc:  # noqa: BLE001 - a DAW that is not there must not hurt the writer
            self.errors += 1
            log.debug("DAW mirror send %s %r failed: %s", address, args, exc)

    def sync(self) -> None:
        """Send every mirrored stem's current values."""
        p = self.store.current
        for stem in self.stem_tracks:
            for address, args in self.messages_for(stem, p):
                self._send(address, args)

    def _on_change(self, old: Params, new: Params) -> None:
        if self._closed:
            return
        try:
            for stem in self.stem_tracks:
                a, b = old.stem(stem), new.stem(stem)
                changed = tuple(f for f in ("gain", "mute", "solo") if getattr(a, f) != getattr(b, f))
                if changed:
                    for address, args in self.messages_for(stem, new, changed):
                        self._send(address, args)
        except Exception:  # noqa: BLE001
            self.errors += 1
            log.exception("DAW mirror failed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
