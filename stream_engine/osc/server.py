"""OSC control surface of stemstream (python-osc, UDP).

Address space (one prefix, ``/stemstream``)::

    /stemstream/stem/<stem>/gain      f   linear gain 0..2
    /stemstream/stem/<stem>/mute      i   0 | 1
    /stemstream/stem/<stem>/solo      i   0 | 1
    /stemstream/karaoke/on            i   0 | 1   karaoke mix on/off
    /stemstream/karaoke/guide         f   0..1    vocals kept in the karaoke mix
    /stemstream/karaoke/key           i   -12..12 semitones on the accompaniment
    /stemstream/mic/gain              f   0..2
    /stemstream/listen                s   full | instrumental | acappella | karaoke: what main plays
    /stemstream/model                 s   switch the model while playing (a name from `stemstream models`,
                                          or "default"; never a file path: SECURITY.md)
    /stemstream/profile               s   switch the profile while playing (live, balanced, quality)
    /stemstream/keystage              i   0 | 1   key-change stage in or out (crossfaded)
    /stemstream/input                 s   input: a device, "demo song" or file:PATH (front ends that can)
    /stemstream/mic                   s   microphone: a device, "DEVICE#CH" for one channel, or "none"
    /stemstream/route                 s   BUS=CH[,CH] (from 1) or BUS= to unroute: per-stem routing
    /stemstream/scene/save            s   save the mixer as a scene: a plain name (no path), in <config>/scenes/
    /stemstream/scene/load            s   load a scene by name (mixer now, effect chains by a switch; plugins
                                          only from the plugin folders)
    /stemstream/fx/<stem>/<n>/<param> f   effect parameter of effect n on <stem>
    /stemstream/subscribe             s i host, port that receive feedback
    /stemstream/unsubscribe           s i
    /stemstream/get/<path>                reply <path> value, e.g. get/stem/vocals/gain
                                          (also get/latency, get/stats, get/meter/<stem>,
                                          get/stems, get/fx/<stem>/<n>/<param>)

Model, profile, key stage, input, mic and routing changes need ``controls``
(``stream_engine.control.LiveControl``); they take effect after a crossfade
and are then reported to subscribers and the sender as ``/stemstream/<name> value``,
with ``/stemstream/switched s f f f`` (what, crossfade ms, gap ms, latency ms);
a change that fails is reported on ``/stemstream/error``. A scene reply is
``/stemstream/scene/saved s`` / ``/stemstream/scene/loaded s`` (the file).

``<stem>`` may be an OSC pattern (``*``, ``?``, ``[..]``, ``{a,b}``) matching stems.

Replies and feedback:
- wrong type / missing value / unknown stem or address: ``/stemstream/error s s``
  (the address, a message naming the address and the value), to the sender;
- out of range: the value is clamped and applied, and ``/stemstream/clamped s f f``
  (address, requested, applied) goes to the sender;
- ``get``: ``/stemstream/<path> value`` to the sender and to every subscriber;
- every parameter change (from OSC, the GUI or anything else writing the
  ParamStore) goes to subscribers as ``/stemstream/<path> value``;
- at ``meter_hz`` to subscribers: ``/stemstream/meter/<stem> f f`` (peak, rms dBFS),
  ``/stemstream/latency f`` (ms), ``/stemstream/stats i i f`` (misses, xruns, cpu %).

Messages from non-loopback senders are dropped (counted, logged once per
sender) unless ``allow_remote``. Handlers never raise into the server loop; bundle
timetags are not waited on (a client cannot stall the server).
"""
# Long module (over 500 lines): the whole OSC address space and its validation in one place, so every
# message's rule is read (and attacked) beside the others

from __future__ import annotations

import logging
import math
import re
import socket
import threading
import time

import numpy as np
from typing import Callable, Iterable

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import BlockingOSCUDPServer

from ..params import GAIN_RANGE, GUIDE_RANGE, KEY_RANGE, MIC_GAIN_RANGE, ParamStore, Params, clamp, listen_mode

log = logging.getLogger("stemstream.osc")

PREFIX = "/stemstream"
RCVBUF_BYTES = 4 * 1024 * 1024
MAX_SUBSCRIBERS = 64
MAX_DATAGRAM = 65535  # socketserver reads 8192 bytes by default: a larger datagram (a bundle) was cut short
LOG_EVERY_S = 10.0  # failures a client can cause are logged at most once per this many seconds per kind


def osc_model_choice(value: str) -> str:
    """Over OSC a model is a *name* (built-in, bundled, installed) or "default", never a file path:
    loading a model file is loading code-like content a client could plant (SECURITY.md)."""
    from ..separators.registry import available

    from ..separators.research import not_installed_error

    if value in ("", "default") or value in available():
        return value
    if not_installed_error(value):  # a bundled research-use model the user has not opted in to
        raise ValueError(not_installed_error(value))
    raise ValueError(f"unknown model {value!r}: over OSC name one of {', '.join(available())} or 'default' "
                     f"(model files are loaded from the command line or the app, not by path over OSC)")


def osc_input_choice(value: str) -> str:
    """``file:PATH`` must be a regular file (a FIFO would stop the OSC thread); devices and the demo as they are."""
    from ..untrusted import describe_kind, is_regular_file

    if value.startswith("file:"):
        path = value[5:]
        if not is_regular_file(path):
            raise ValueError(f"input {value!r}: {path} is {describe_kind(path)}, not a regular audio file")
    return value


def is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")


class OscError(Exception):
    pass


def _osc_pattern_to_regex(pat: str) -> re.Pattern:
    out = []
    i = 0
    while i < len(pat):
        ch = pat[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = pat.find("]", i + 1)
            if j < 0 or j == i + 1:
                raise OscError(f"bad pattern {pat!r}")
            body = pat[i + 1:j]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            # OSC ranges are a-z only: escape everything else so the regex cannot be broken ([\], [^], ...)
            parts = re.split(r"(?<=.)-(?=.)", body)
            ranged = "-".join(re.escape(p) for p in parts)
            out.append("[" + ("^" if negate else "") + ranged + "]")
            i = j
        elif ch == "{":
            j = pat.find("}", i)
            if j < 0:
                raise OscError(f"bad pattern {pat!r}")
            out.append("(?:" + "|".join(re.escape(p) for p in pat[i + 1:j].split(",")) + ")")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:  # e.g. a reversed range [z-a]
        raise OscError(f"bad pattern {pat!r}: {exc}") from None


class _ParsingDispatcher(Dispatcher):
    """python-osc's dispatcher, but a packet that does not parse is reported, not dropped
    silently (``ParseError``) or raised as a traceback (``UnicodeDecodeError``)."""

    def __init__(self, on_malformed, **kw):
        super().__init__(**kw)
        self._on_malformed = on_malformed

    def handlers_for_address(self, address_pattern: str):
        """Every message goes to the one default handler, which matches stems itself (_match_stems).
        python-osc's own matching compiles the address as a regex and drops, without a word, a
        message whose pattern does not compile (``/stemstream/stem/[z-a]/gain``)."""
        if self._default_handler is not None:
            yield self._default_handler

    def call_handlers_for_packet(self, data: bytes, client_address):
        try:
            packet = OscPacket(data)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the packet's fault
            self._on_malformed(data, client_address, exc)
            return []
        try:
            return super().call_handlers_for_packet(data, client_address)
        except re.error as exc:  # python-osc turns the address pattern into a regex: [z-a] breaks it
            address = packet.messages[0].message.address if packet.messages else ""
            self._on_malformed(data, client_address, OscError(f"{address}: bad address pattern ({exc})"), address)
            return []


def param_values(p: Params, stems: Iterable[str]) -> dict[str, object]:
    """Every OSC-visible parameter of a snapshot as ``path -> value``."""
    out: dict[str, object] = {}
    for s in stems:
        sp = p.stem(s)
        out[f"stem/{s}/gain"] = float(sp.gain)
        out[f"stem/{s}/mute"] = int(bool(sp.mute))
        out[f"stem/{s}/solo"] = int(bool(sp.solo))
    out["karaoke/on"] = int(bool(p.karaoke))
    out["karaoke/guide"] = float(p.guide)
    out["karaoke/key"] = int(p.key)
    out["mic/gain"] = float(p.mic_gain)
    out["listen"] = str(p.listen)
    for (stem, idx, name), v in p.fx.items():
        out[f"fx/{stem}/{idx}/{name}"] = float(v)
    return out


class OscServer:
    """The engine's OSC surface on UDP; runs its own threads (server + meters)."""

    def __init__(self, store: ParamStore, stems: list[str], status: Callable[[], dict],
                 host: str = "127.0.0.1", port: int = 9000, allow_remote: bool = False, meter_hz: float = 30,
                 fx_check: Callable[[str, int, str, float], tuple[float, str | None]] | None = None,
                 controls=None):
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"binding OSC to {host!r} exposes the engine to the network; pass allow_remote=True")
        self.store = store
        self.stems = list(stems)
        self.status = status
        self.allow_remote = allow_remote
        self.meter_hz = float(meter_hz)
        self.fx_check = fx_check  # e.g. StemEffects.check_fx: (value to apply, error message or None)
        self.controls = None  # LiveControl: changes while playing (model, profile, ...); attach() sets it
        self._asked_by: dict[str, tuple[str, int]] = {}  # change ("model", "routing", ...) -> who asked for it
        self._logged_at: dict[str, float] = {}  # rate limit for logging what clients cause
        self._log_suppressed: dict[str, int] = {}
        self.subscribers: list[tuple[str, int]] = []
        self._sub_lock = threading.Lock()
        self.counters = {"received": 0, "errors": 0, "clamped": 0, "refused": 0, "sent": 0, "send_errors": 0,
                         "malformed": 0}
        self._refused_logged: set[str] = set()
        self._malformed_logged: set[str] = set()
        self._pending_reports: list = []

        dispatcher = _ParsingDispatcher(self._malformed, strict_timing=False)
        dispatcher.set_default_handler(self._on_message, needs_reply_address=True)
        server = BlockingOSCUDPServer((host, port), dispatcher)
        server.max_packet_size = MAX_DATAGRAM
        server.verify_request = self._verify_request  # type: ignore[method-assign]
        server.handle_error = self._handle_error  # type: ignore[method-assign]
        self._server = server
        sock = server.socket
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        except OSError as exc:  # pragma: no cover
            log.warning("could not raise SO_RCVBUF: %s", exc)
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if self.rcvbuf < RCVBUF_BYTES:
            try:  # needs CAP_NET_ADMIN; above net.core.rmem_max otherwise
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), RCVBUF_BYTES)
                self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            except OSError:
                pass
        if self.rcvbuf < RCVBUF_BYTES:
            log.warning("OSC receive buffer is %d bytes (asked %d): raise net.core.rmem_max so bursts are not lost",
                        self.rcvbuf, RCVBUF_BYTES)
        self.address = server.server_address[:2]
        self._stop = threading.Event()
        self._unsubscribe_store = store.subscribe(self._on_params)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stemstream-osc", daemon=True)
        self._meter_thread = threading.Thread(target=self._meter_loop, name="stemstream-osc-meter", daemon=True)
        self._thread.start()
        self._meter_thread.start()
        self._closed = False
        if controls is not None:
            self.attach(controls)

    def attach(self, controls) -> None:
        """Serve ``controls`` (a LiveControl) and forward what it reports."""
        if self.controls is not None:
            self.controls.listeners.remove(self._on_control)
        self.controls = controls
        if controls is not None:
            controls.listeners.append(self._on_control)

    def set_stems(self, stems) -> None:
        """The model's stems changed (a switch): addresses and feedback follow."""
        self.stems = list(stems)

    def _on_control(self, name: str, values: tuple) -> None:
        """A change took effect (or failed): subscribers and the sender hear of it."""
        if self._stop.is_set():
            return
        if name == "error":
            what, message = values
            self.counters["errors"] += 1
            self._to_subscribers(PREFIX + "/error", f"{PREFIX}/{what}", message, also=self._asked_by.pop(what, None))
            return
        if name in ("model", "routing") and self.controls is not None:
            self.set_stems(self.controls.engine.pipeline.stems)
        if name == "switched":  # the last word on a change: its asker is forgotten
            asker = self._asked_by.pop(str(values[0]) if values else "", None)
        elif name in ("input", "mic"):  # reported once, when done
            asker = self._asked_by.pop(name, None)
        else:
            asker = self._asked_by.get(name)
        self._to_subscribers(f"{PREFIX}/{name}", *values, also=asker)

    @property
    def port(self) -> int:
        return self.address[1]

    # ---- sending -------------------------------------------------------
    def _send(self, addr: tuple[str, int], path: str, *args) -> None:
        try:
            self._server.socket.sendto(_build(path, args), addr)
            self.counters["sent"] += 1
        except Exception as exc:  # noqa: BLE001 - a bad subscriber must not hurt the server
            self.counters["send_errors"] += 1
            log.debug("OSC send to %s failed: %s", addr, exc)

    def _to_subscribers(self, path: str, *args, also: tuple[str, int] | None = None) -> None:
        with self._sub_lock:
            targets = list(self.subscribers)
        if also is not None and also not in targets:
            targets.append(also)
        for t in targets:
            self._send(t, path, *args)

    def _error(self, to, address: str, message: str) -> None:
        self.counters["errors"] += 1
        self._send(to, PREFIX + "/error", address, message)

    # ---- receiving -----------------------------------------------------
    def _verify_request(self, request, client_address) -> bool:
        host = client_address[0]
        if self.allow_remote or is_loopback(host):
            return True
        self.counters["refused"] += 1
        if host not in self._refused_logged and len(self._refused_logged) < 100:
            self._refused_logged.add(host)
            log.warning("OSC message from non-local sender %s refused (start with allow_remote to accept)", host)
        return False

    def _handle_error(self, request, client_address) -> None:
        """Last resort for an exception out of the request handler: counted, logged once per
        sender without a traceback (handlers catch their own errors; packets are parsed first)."""
        import sys

        data = request[0] if isinstance(request, tuple) and request and isinstance(request[0], bytes) else b""
        self._malformed(data, client_address, sys.exc_info()[1])

    def _malformed(self, data: bytes, client_address, exc: BaseException | None, address: str = "") -> None:
        """A datagram that is not OSC (bad UTF-8, truncated, wrong padding) or whose address pattern
        cannot be matched: counted, answered on ``/stemstream/error``, logged once per sender, without
        a traceback."""
        self.counters["malformed"] += 1
        message = (str(exc) if address else
                   f"undecodable OSC packet ({len(data)} bytes): {type(exc).__name__}: {exc}")[:200]
        self._error(client_address, address, message)
        host = client_address[0] if client_address else "?"
        if host not in self._malformed_logged and len(self._malformed_logged) < 100:
            self._malformed_logged.add(host)
            log.warning("OSC: %s from %s (further ones from this sender are only counted)", message, host)

    def _on_message(self, client_address, address: str, *args) -> None:
        self.counters["received"] += 1
        self._pending_reports = []
        try:
            self._dispatch(client_address, address, args)
            for to, msg in self._pending_reports:
                self._send(to, *msg)
        except OscError as exc:
            self._error(client_address, address, str(exc))
        except Exception as exc:  # noqa: BLE001 - nothing a client sends may stop the server
            self._log_limited("handler", "OSC: handler failed for %.80s: %s: %.200s", address, type(exc).__name__,
                              exc)
            log.debug("OSC: handler failed for %s %r", address, args, exc_info=True)
            self._error(client_address, address, f"{address}: internal error: {type(exc).__name__}: {exc}"[:300])

    def _log_limited(self, kind: str, fmt: str, *args) -> None:
        """A warning without a traceback, at most once per LOG_EVERY_S per kind (a client sending
        the same bad packet in a loop must not fill the log); the suppressed ones are counted."""
        now = time.monotonic()
        if now - self._logged_at.get(kind, -math.inf) < LOG_EVERY_S:
            self._log_suppressed[kind] = self._log_suppressed.get(kind, 0) + 1
            return
        self._logged_at[kind] = now
        skipped = self._log_suppressed.pop(kind, 0)
        log.warning(fmt + (f" ({skipped} more like it not logged)" if skipped else ""), *args)

    def _match_stems(self, address: str, pat: str) -> list[str]:
        if any(c in pat for c in "*?[{"):
            rx = _osc_pattern_to_regex(pat)
            found = [s for s in self.stems if rx.match(s)]
        else:
            found = [pat] if pat in self.stems else []
        if not found:
            raise OscError(f"{address}: unknown stem {pat!r} (stems: {', '.join(self.stems)})")
        return found

    @staticmethod
    def _number(address: str, args, kind: str):
        if len(args) != 1:
            raise OscError(f"{address}: expects one {kind} value, got {len(args)} values {list(args)!r}")
        v = args[0]
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, (int, float)):
            raise OscError(f"{address}: expects a {kind} value, got {type(v).__name__} {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise OscError(f"{address}: expects a finite {kind} value, got {v!r}")
        return v

    def _clamped(self, to, address, value, lo, hi, integer=False):
        out, was = clamp(value, lo, hi)
        if integer:
            out = int(round(out))
            was = was or out != value
        if was:  # reported once applied (see _on_message)
            self.counters["clamped"] += 1
            self._pending_reports.append((to, (PREFIX + "/clamped", address, float(value), float(out))))
        return out

    def _dispatch(self, sender, address: str, args) -> None:
        if not address.startswith(PREFIX + "/"):
            raise OscError(f"{address}: unknown address (everything lives under {PREFIX}/)")
        parts = address[len(PREFIX) + 1:].split("/")
        head = parts[0]
        if head == "stem" and len(parts) == 3:
            stems = self._match_stems(address, parts[1])
            what = parts[2]
            if what == "gain":
                v = self._clamped(sender, address, self._number(address, args, "float"), *GAIN_RANGE)
                self.store.update(lambda p: _with_stems(p, stems, gain=float(v)))
            elif what in ("mute", "solo"):
                v = self._clamped(sender, address, self._number(address, args, "int 0|1"), 0, 1, integer=True)
                self.store.update(lambda p: _with_stems(p, stems, **{what: bool(v)}))
            else:
                raise OscError(f"{address}: unknown stem parameter {what!r} (gain, mute, solo)")
        elif head == "karaoke" and len(parts) == 2:
            what = parts[1]
            if what == "guide":
                v = self._clamped(sender, address, self._number(address, args, "float"), *GUIDE_RANGE)
                self.store.update(lambda p: p.with_(guide=float(v)))
            elif what == "key":
                v = self._clamped(sender, address, self._number(address, args, "int"), *KEY_RANGE, integer=True)
                self.store.update(lambda p: p.with_(key=int(v)))
            elif what == "on":
                v = self._clamped(sender, address, self._number(address, args, "int 0|1"), 0, 1, integer=True)
                self.store.update(lambda p: p.with_(karaoke=bool(v)))
            else:
                raise OscError(f"{address}: unknown karaoke parameter {what!r} (on, guide, key)")
        elif head == "mic" and parts[1:] == ["gain"]:
            v = self._clamped(sender, address, self._number(address, args, "float"), *MIC_GAIN_RANGE)
            self.store.update(lambda p: p.with_(mic_gain=float(v)))
        elif head == "fx" and len(parts) == 4:
            stems = self._match_stems(address, parts[1])
            try:
                idx = int(parts[2])
                if idx < 0:
                    raise ValueError
            except ValueError:
                raise OscError(f"{address}: effect index must be a number >= 0, got {parts[2]!r}") from None
            name = parts[3]
            if not name.isidentifier():
                raise OscError(f"{address}: bad effect parameter name {name!r}")
            v = float(self._number(address, args, "float"))
            if self.fx_check is None:
                raise OscError(f"{address}: no effect chain is loaded on {', '.join(stems)} (value {v!r} not "
                               f"stored; start with --fx STEM=PRESET)")
            if self.fx_check is not None:
                applied = v
                for s in stems:
                    applied, problem = self.fx_check(s, idx, name, applied)
                    if problem:
                        raise OscError(f"{address}: {problem} (value {v!r} not applied)")
                if applied != v:  # outside the plugin's range: clamped, reported once applied
                    self.counters["clamped"] += 1
                    self._pending_reports.append((sender, (PREFIX + "/clamped", address, v, float(applied))))
                    v = float(applied)

            def change(p):
                for s in stems:
                    p = p.with_fx(s, idx, name, v)
                return p

            self.store.update(change)
        elif head == "listen" and len(parts) == 1:
            mode = self._text(address, args)
            try:
                mode = listen_mode(mode)
            except ValueError as exc:
                raise OscError(f"{address}: {exc}") from None
            self.store.update(lambda p: p.with_(listen=mode))
        elif head in ("model", "profile", "keystage", "input", "mic", "route") and len(parts) == 1:
            self._control(sender, address, head, args)
        elif head == "scene" and len(parts) == 2 and parts[1] in ("save", "load"):
            self._scene(sender, address, parts[1], self._text(address, args))
        elif head in ("subscribe", "unsubscribe") and len(parts) == 1:
            if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], int) or isinstance(args[1], bool):
                raise OscError(f"{address}: expects s i (host, port), got {list(args)!r}")
            host, port = args[0], args[1]
            if not 0 < port < 65536:
                raise OscError(f"{address}: port out of range: {port!r}")
            if not self.allow_remote and not is_loopback(host):
                raise OscError(f"{address}: feedback to non-local host {host!r} refused (allow_remote is off)")
            if host == "localhost":
                host = "127.0.0.1"
            target = (host, port)
            with self._sub_lock:
                if head == "subscribe":
                    if target not in self.subscribers:
                        if len(self.subscribers) >= MAX_SUBSCRIBERS:
                            raise OscError(f"{address}: too many subscribers ({MAX_SUBSCRIBERS})")
                        self.subscribers.append(target)
                elif target in self.subscribers:
                    self.subscribers.remove(target)
            if head == "subscribe":  # a fresh subscriber gets the whole state once
                for path, value in param_values(self.store.current, self.stems).items():
                    self._send(target, f"{PREFIX}/{path}", value)
        elif head == "get" and len(parts) >= 2:
            path = "/".join(parts[1:])
            value = self._get(address, path)
            if not isinstance(value, tuple):
                value = (value,)
            self._to_subscribers(f"{PREFIX}/{path}", *value, also=sender)
        else:
            raise OscError(f"{address}: unknown address")

    @staticmethod
    def _text(address: str, args) -> str:
        if len(args) != 1 or not isinstance(args[0], str):
            raise OscError(f"{address}: expects one string value, got {list(args)!r}")
        return args[0]

    def _control(self, sender, address: str, what: str, args) -> None:
        """Model, profile, key stage, input, mic or a route: validated now, applied by a switch."""
        if self.controls is None:
            raise OscError(f"{address}: changes while playing are not available in this front end")
        c = self.controls
        try:
            if what == "keystage":
                on = self._clamped(sender, address, self._number(address, args, "int 0|1"), 0, 1, integer=True)
                self._asked_by["keystage"] = sender
                if c.set_key_stage(bool(on)) is None:  # already so: say so at once
                    self._send(sender, f"{PREFIX}/keystage", int(c.get("keystage")))
                return
            value = self._text(address, args)
            self._asked_by["routing" if what == "route" else what] = sender
            if what == "model":
                c.set_model(osc_model_choice(value))
            elif what == "profile":
                c.set_profile(value)
            elif what == "input":
                c.set_input(osc_input_choice(value))
            elif what == "mic":
                c.set_mic(value)
            else:
                from ..mixer import parse_route

                bus, _, chans = value.partition("=")
                c.set_route(bus.strip(), parse_route(value)[1] if chans.strip() else [])
        except (ValueError, KeyError) as exc:
            self._asked_by.pop("routing" if what == "route" else what, None)
            raise OscError(f"{address}: {exc.args[0] if exc.args else exc}") from None

    def _scene(self, sender, address: str, action: str, name: str) -> None:
        """With ``controls`` effect chains too; without (nothing playing), the mixer alone."""
        from .. import scenes

        try:
            if self.controls is not None:
                if action == "load":
                    self._asked_by["fx"] = sender  # the chains follow by a switch
                path = self.controls.save_scene(name) if action == "save" else self.controls.load_scene(name)
            elif action == "save":
                path = scenes.save_scene(name, self.store.current)
            else:
                scene = scenes.load_scene(name)
                self.store.update(lambda p: scenes.params_from_scene(scene, p))
                path = scenes.scene_path(name)
        except (OSError, ValueError) as exc:
            raise OscError(f"{address}: {exc}") from None
        self._to_subscribers(f"{PREFIX}/scene/{'saved' if action == 'save' else 'loaded'}", str(path), also=sender)

    def _get(self, address: str, path: str):
        p = self.store.current
        if path == "stems":
            return tuple(self.stems)
        if path in ("latency", "stats") or path.startswith("meter/"):
            st = self.status()
            if path == "latency":
                return float(st.get("latency_ms", 0.0))
            if path == "stats":
                s = st.get("stats", {})
                return (int(s.get("misses", 0)), int(s.get("xruns", 0)), float(s.get("cpu", 0.0)))
            stem = path[len("meter/"):]
            if stem not in self.stems:
                raise OscError(f"{address}: unknown stem {stem!r}")
            peak, rms = st.get("meters", {}).get(stem, (-math.inf, -math.inf))
            return (_db(peak), _db(rms))
        values = param_values(p, self.stems)
        if path in values:
            return values[path]
        if path in ("model", "profile", "keystage", "input", "mic", "routes", "switches"):
            if self.controls is None:
                raise OscError(f"{address}: {path} is not available in this front end")
            return self.controls.get(path)
        parts = path.split("/")
        if parts[0] == "stem" and len(parts) == 3 and parts[1] not in self.stems:
            raise OscError(f"{address}: unknown stem {parts[1]!r} (stems: {', '.join(self.stems)})")
        if parts[0] == "fx" and len(parts) == 4:
            raise OscError(f"{address}: effect parameter {path!r} has not been set")
        raise OscError(f"{address}: nothing to get at {path!r}")

    # ---- feedback ------------------------------------------------------
    def _on_params(self, old: Params, new: Params) -> None:
        if self._stop.is_set() or not self.subscribers:
            return
        try:
            before = param_values(old, self.stems)
            for path, value in param_values(new, self.stems).items():
                if before.get(path) != value:
                    self._to_subscribers(f"{PREFIX}/{path}", value)
        except Exception:  # noqa: BLE001 - a listener must never hurt the writer (GUI, OSC)
            log.exception("OSC feedback failed")

    def send_feedback(self) -> None:
        """Send one round of meters, latency and stats to subscribers."""
        if not self.subscribers:
            return
        try:
            st = self.status()
        except Exception as exc:  # noqa: BLE001
            log.debug("status() failed: %s", exc)
            return
        for stem, (peak, rms) in dict(st.get("meters", {})).items():
            self._to_subscribers(f"{PREFIX}/meter/{stem}", _db(peak), _db(rms))
        self._to_subscribers(PREFIX + "/latency", float(st.get("latency_ms", 0.0)))
        s = st.get("stats", {})
        self._to_subscribers(PREFIX + "/stats", int(s.get("misses", 0)), int(s.get("xruns", 0)), float(s.get("cpu", 0.0)))

    def _meter_loop(self) -> None:
        period = 1.0 / self.meter_hz if self.meter_hz > 0 else None
        if period is None:
            return
        nxt = time.monotonic()
        while not self._stop.is_set():
            nxt += period
            self.send_feedback()
            delay = nxt - time.monotonic()
            if delay < 0:
                nxt = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._unsubscribe_store()
        self._server.shutdown()
        self._thread.join(timeout=2)
        self._meter_thread.join(timeout=2)
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


FLOAT32_MAX = 3.4028234663852886e38


def _build(path: str, args) -> bytes:
    """An OSC datagram; a float too large for OSC's 32-bit ``f`` goes as a 64-bit ``d``
    (python-osc would fail to pack it, and the reply would be lost)."""
    from pythonosc.osc_message_builder import OscMessageBuilder

    if not any(isinstance(a, float) and math.isfinite(a) and abs(a) > FLOAT32_MAX for a in args):
        return build_msg(path, list(args)).dgram
    b = OscMessageBuilder(path)
    for a in args:
        if isinstance(a, float) and math.isfinite(a) and abs(a) > FLOAT32_MAX:
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_DOUBLE)
        else:
            b.add_arg(a)
    return b.build().dgram


def _db(v) -> float:
    """Meters come as dBFS already; -inf/NaN are sent as -200 dBFS (OSC floats)."""
    v = float(v)
    if not math.isfinite(v):
        return -200.0
    return max(v, -200.0)


def _with_stems(p: Params, stems, **changes) -> Params:
    for s in stems:
        p = p.with_stem(s, **changes)
    return p


def bench_osc(n: int = 300, burst: int = 1000) -> dict:
    """Print and return loopback figures: set->applied latency (OSC message sent
    to the new Params snapshot in the ParamStore), get round trip, burst loss."""
    import statistics

    from pythonosc.osc_packet import OscPacket

    stems = ["vocals", "accompaniment"]
    store = ParamStore(Params.for_stems(stems))

    def status():
        return {"meters": {s: (-6.0, -12.0) for s in stems}, "latency_ms": 0.0, "latency_samples": 0,
                "stats": {"misses": 0, "xruns": 0, "cpu": 0.0}}

    server = OscServer(store, stems, status, port=0, meter_hz=0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    dest = ("127.0.0.1", server.port)
    landed: dict[float, float] = {}
    arrived = threading.Event()

    def on_change(old, new):
        landed.setdefault(new.stem("vocals").gain, time.perf_counter())
        arrived.set()

    unsub = store.subscribe(on_change)
    try:
        set_ms = []
        for i in range(n):
            value = float(np.float32(0.001 + (i % 1000) / 1000.0))  # OSC 'f' is float32
            landed.pop(value, None)
            arrived.clear()
            dgram = build_msg("/stemstream/stem/vocals/gain", [value]).dgram
            t0 = time.perf_counter()
            sock.sendto(dgram, dest)
            arrived.wait(1.0)  # blocks without holding the GIL
            if value in landed:
                set_ms.append((landed[value] - t0) * 1e3)
            time.sleep(0.002)
        rt_ms = []
        get = build_msg("/stemstream/get/stem/vocals/gain", []).dgram
        for _ in range(n):
            t0 = time.perf_counter()
            sock.sendto(get, dest)
            data, _ = sock.recvfrom(65536)
            rt_ms.append((time.perf_counter() - t0) * 1e3)
            OscPacket(data)
        unsub()
        count = [0]
        unsub = store.subscribe(lambda old, new: count.__setitem__(0, count[0] + 1))
        for i in range(burst):
            sock.sendto(build_msg("/stemstream/stem/accompaniment/gain", [(i + 1) / burst]).dgram, dest)
        deadline = time.monotonic() + 10
        while count[0] < burst and time.monotonic() < deadline:
            time.sleep(0.01)
        res = {
            "set_applied_median_ms": statistics.median(set_ms), "set_applied_p99_ms": float(np.percentile(set_ms, 99)),
            "get_rtt_median_ms": statistics.median(rt_ms), "get_rtt_p99_ms": float(np.percentile(rt_ms, 99)),
            "burst": burst, "burst_lost": burst - count[0], "rcvbuf_bytes": server.rcvbuf, "n": n,
        }
    finally:
        unsub()
        sock.close()
        server.close()
    print(f"osc bench (loopback): set->applied median {res['set_applied_median_ms']:.3f} ms "
          f"(p99 {res['set_applied_p99_ms']:.3f}); get round trip median {res['get_rtt_median_ms']:.3f} ms "
          f"(p99 {res['get_rtt_p99_ms']:.3f}); burst {burst} unpaced: {res['burst_lost']} lost "
          f"(SO_RCVBUF {res['rcvbuf_bytes']} bytes)")
    return res
