"""Audio devices through PortAudio (sounddevice): its life cycle, discovery, and closing streams safely.

Used by every part that opens a device: ``live`` (the full-duplex stream),
``sources`` (capture streams: an input device, a microphone), the desktop app
and the JACK test harness. Nothing here runs in an audio callback.

PortAudio and JACK (measured): start jackd before sounddevice is imported
(PortAudio enumerates JACK once, when it initialises; ``rescan()`` re-runs
that), pick the JACK host API's device explicitly, and terminate PortAudio
before jackd stops (``release_portaudio()``). A stream whose device vanished
is never touched again: closing it can hang PortAudio (``close_within``,
``abandon``).

sounddevice is imported only inside functions, so importing this module never
touches PortAudio.
"""

from __future__ import annotations

import ctypes
import sys
import threading

from .errors import LiveError

CLOSE_TIMEOUT = 3.0  # seconds a stream may take to abort and close before it is abandoned

_client_name_buffer = None  # PortAudio keeps the pointer: keep the bytes alive
_name_buffers: list = []  # every name ever handed over: an instance may still point at an earlier one
_name_setter = None  # PaJack_SetClientName of the PortAudio instance sounddevice uses now, where it is not
                     # the library file itself (the app loads a fresh copy after a JACK server quits)
_abandoned: list = []  # streams of vanished devices: never touched again, freed with the process


class DeviceError(LiveError):
    """No such device, too few channels, PortAudio missing; the message says what to do."""


def portaudio():
    """Import sounddevice (which initialises PortAudio) and make sure it is initialised."""
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        raise DeviceError(f"PortAudio is not available ({exc}); Debian: apt-get install libportaudio2") from None
    if getattr(sd, "_initialized", 1) <= 0:
        sd._initialize()
    return sd


def set_jack_client_name(name: str | None) -> None:
    """Name the JACK client PortAudio opens (re-initialises PortAudio; no open streams)."""
    global _client_name_buffer
    sd = portaudio()
    setter = _name_setter
    if setter is None:
        try:
            setter = ctypes.CDLL(sd._libname).PaJack_SetClientName
        except (OSError, AttributeError):
            return  # a PortAudio built without JACK: nothing to name
    setter.argtypes = [ctypes.c_char_p]
    setter.restype = ctypes.c_int
    _client_name_buffer = ctypes.create_string_buffer((name or "PortAudio").encode()[:60])
    _name_buffers.append(_client_name_buffer)
    _reinitialise(sd, lambda: setter(_client_name_buffer))


def _reinitialise(sd, between=None) -> None:
    while getattr(sd, "_initialized", 0) > 0:
        sd._terminate()
    if between is not None:
        between()
    sd._initialize()


def rescan() -> None:
    """Re-enumerate devices (after jackd started or a device was plugged in)."""
    _reinitialise(portaudio())


def release_portaudio() -> None:
    """Terminate PortAudio (closes its JACK client): do this before jackd stops."""
    if "sounddevice" not in sys.modules:
        return
    sd = sys.modules["sounddevice"]
    if _abandoned:
        # PortAudio would wait forever on a stream whose server died (Pa_AbortStream and
        # Pa_Terminate hang on JACK, measured): leave it to the end of the process, and keep
        # sounddevice's exit handler from trying.
        sd._initialized = 0
        return
    while getattr(sd, "_initialized", 0) > 0:
        sd._terminate()


def close_within(stream, timeout: float) -> bool:
    """abort + close on a helper thread; False when PortAudio did not return in time."""
    def close():
        for step in (stream.abort, stream.close):
            try:
                step()
            except Exception:  # noqa: BLE001 - closing a broken stream: nothing left to do
                pass

    closer = threading.Thread(target=close, name="stemstream-close", daemon=True)
    closer.start()
    closer.join(timeout)
    return not closer.is_alive()


def abandon(stream) -> None:
    """Keep a stream that could not be closed out of reach until the process ends."""
    _abandoned.append(stream)


def list_devices() -> list[dict]:
    sd = portaudio()
    apis = sd.query_hostapis()
    out = []
    for d in sd.query_devices():
        out.append({
            "index": d["index"],
            "name": d["name"],
            "hostapi": apis[d["hostapi"]]["name"],
            "inputs": d["max_input_channels"],
            "outputs": d["max_output_channels"],
            "default_rate": d["default_samplerate"],
        })
    return out


def host_api_default(name: str, kind: str) -> int | None:
    """The default ``kind`` device of the host API whose name contains ``name`` (``jack``), or None."""
    sd = portaudio()
    key = "default_input_device" if kind == "input" else "default_output_device"
    for api in sd.query_hostapis():
        if name.lower() in api["name"].lower() and api.get(key, -1) >= 0:
            return int(api[key])
    return None


def find_device(spec: str | int | None, kind: str, host_api: str | None = None, need: int = 1) -> dict:
    """An index, a (case-insensitive) substring of the device name, or a host API's name.

    ``kind`` is "input" or "output"; devices of the host API named by
    ``host_api`` (substring) only; among several matches JACK comes first,
    then the lowest index. A name that matches no device but names a host
    API (``jack``, ``alsa``) picks that API's default device.
    """
    devices = list_devices()
    key = "inputs" if kind == "input" else "outputs"
    pool = devices
    if host_api:
        pool = [d for d in devices if host_api.lower() in d["hostapi"].lower()]
        if not pool:
            apis = sorted({d["hostapi"] for d in devices}) or ["none"]
            hint = " (is jackd running? start it before stemstream)" if "jack" in host_api.lower() else ""
            raise DeviceError(f"no {kind} device on a host API matching {host_api!r}{hint}; "
                            f"host APIs with devices: {', '.join(apis)}")
    if spec is None:
        hits = [d for d in pool if d[key] > 0]
        if not hits:
            raise DeviceError(f"no {kind} device found; run `stemstream devices`")
    elif str(spec).strip().lstrip("-").isdigit():
        index = int(spec)
        hits = [d for d in pool if d["index"] == index]
        if not hits:
            raise DeviceError(f"no {kind} device with index {index}; run `stemstream devices`")
    else:
        hits = [d for d in pool if str(spec).lower() in d["name"].lower()]
        if not hits:
            default = host_api_default(str(spec), kind)
            hits = [d for d in pool if d["index"] == default]
        if not hits:
            apis = sorted({d["hostapi"] for d in devices})
            raise DeviceError(f"no {kind} device matching {spec!r} (nor a host API of that name: "
                            f"{', '.join(apis) or 'none'}); run `stemstream devices`")
    hits.sort(key=lambda d: ("jack" not in d["hostapi"].lower(), d[key] <= 0, d["index"]))
    device = hits[0]
    if device[key] < need:
        jack = " (JACK dummy: start jackd with -C/-P N for more ports)" if "jack" in device["hostapi"].lower() else ""
        raise DeviceError(f"{kind} device {device['index']} {device['name']!r} ({device['hostapi']}) has "
                        f"{device[key]} {key}, {need} needed{jack}")
    return device


def format_devices(devices: list[dict]) -> str:
    if not devices:
        return "no audio devices found (for JACK, start jackd first)"
    lines = [f"{'idx':>3}  {'name':<40} {'host API':<28} {'in':>3} {'out':>3}  rate"]
    for d in devices:
        lines.append(f"{d['index']:>3}  {d['name'][:40]:<40} {d['hostapi'][:28]:<28} {d['inputs']:>3} "
                     f"{d['outputs']:>3}  {d['default_rate']:.0f}")
    return "\n".join(lines)
