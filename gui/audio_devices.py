"""Audio devices as the window shows them, and a new PortAudio after a device died under a stream.

Discovery and PortAudio's life cycle are the engine's (``stream_engine.devices``);
this module only adapts them to the device boxes (``Device``, ``find_device``)
and loads a second PortAudio instance when the first cannot be used again
(``fresh_portaudio``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stream_engine import devices


@dataclass(frozen=True)
class Device:
    """One entry of ``stream_engine.devices.list_devices()`` in the shape the window uses
    (a stable key for the settings, a label and a tooltip for the device boxes)."""

    index: int
    name: str
    hostapi: str
    max_in: int
    max_out: int
    default_rate: float

    @classmethod
    def from_live(cls, d: dict) -> "Device":
        return cls(d["index"], d["name"], d["hostapi"], d["inputs"], d["outputs"], float(d["default_rate"]))

    @property
    def key(self) -> str:
        """Stable across runs (indices are not): ``host API: name``."""
        return f"{self.hostapi}: {self.name}"

    @property
    def label(self) -> str:
        api = "JACK" if self.hostapi.startswith("JACK") else self.hostapi
        return f"{self.name} · {api}"

    @property
    def description(self) -> str:
        return (f"{self.name} on {self.hostapi}: {self.max_in} in / {self.max_out} out, "
                f"{self.default_rate:g} Hz (PortAudio device {self.index})")


_dead_instances: list = []  # PortAudio instances whose device died under a stream: never touched again


def portaudio_path() -> str | None:
    """The file of the PortAudio library this process loaded (from /proc/self/maps), else a guess."""
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            if "libportaudio" in line and "/" in line:
                return line[line.index("/"):].strip()
    except OSError:
        pass
    import ctypes.util

    return ctypes.util.find_library("portaudio")


def fresh_portaudio(client_name: str | None = None) -> None:
    """Replace sounddevice's PortAudio with a new instance of the library, then initialise it.

    Why: once a JACK server quits under an open stream, that PortAudio cannot be used again in
    this process (measured, PortAudio 19.6 on JACK 1.9: Pa_AbortStream and Pa_Terminate hang, and
    a new stream fails with "Insufficient memory [PaErrorCode -9992]" because the old JACK client
    is dead). A copy of the library under another name loads as a second instance with its own
    state and its own JACK client; the old one is left as it is (its streams abandoned, never
    touched, freed with the process). Not on the audio path: Start, Rescan and the recovery poll.
    """
    import ctypes
    import shutil
    import tempfile

    sd = devices.portaudio()
    source = portaudio_path()
    if not source or not Path(source).exists():
        raise RuntimeError("cannot find the PortAudio library to load it again; restart the app")
    old_name_buffer = devices._client_name_buffer  # the old instance keeps its pointer: keep the bytes alive
    folder = tempfile.mkdtemp(prefix="stemstream-pa-")
    copy = Path(folder) / f"libportaudio-{len(_dead_instances) + 1}.so"
    shutil.copy(source, copy)
    try:
        lib = sd._ffi.dlopen(str(copy))
        try:  # later names go to the new instance (devices.set_jack_client_name), not the file's first one
            setter = ctypes.CDLL(str(copy)).PaJack_SetClientName
            setter.argtypes, setter.restype = [ctypes.c_char_p], ctypes.c_int
            devices._name_setter = setter
        except (OSError, AttributeError):
            setter = None
        if client_name and setter is not None:  # the JACK client name is set before initialising, in the new instance
            devices._client_name_buffer = ctypes.create_string_buffer(client_name.encode()[:60])
            devices._name_buffers.append(devices._client_name_buffer)
            setter(devices._client_name_buffer)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the mapping stays; the file is not needed
    _dead_instances.append((sd._lib, list(devices._abandoned), old_name_buffer))
    devices._abandoned.clear()  # those belong to the old instance; the new one terminates normally
    sd._lib = lib
    sd._initialized = 0
    sd._initialize()


def list_devices() -> tuple[list[Device], str | None]:
    """Every PortAudio device on every host API (``stream_engine.devices.list_devices``), or ([], why not)."""
    try:
        return [Device.from_live(d) for d in devices.list_devices()], None
    except Exception as exc:  # noqa: BLE001 - no PortAudio, broken driver: the app still runs
        return [], f"audio devices unavailable: {type(exc).__name__}: {exc}"


def find_device(spec, devices: list[Device], need: str) -> Device | None:
    """``spec``: index, ``host API: name`` key, or a case-insensitive part of a name
    (JACK preferred among equal matches). ``need``: "in" or "out".

    Not ``stream_engine.devices.find_device``: the window looks up in the list it
    already shows (on the UI thread, without re-enumerating PortAudio), by the
    ``host API: name`` keys it saves in the settings (an exact key must win
    over a longer name containing it, and "JACK" must match the host API),
    and falls back to another choice instead of failing (None, not an error).
    """
    if spec is None or spec == "":
        return None
    usable = [d for d in devices if (d.max_in if need == "in" else d.max_out) > 0]
    text = str(spec).strip()
    if text.isdigit():
        return next((d for d in usable if d.index == int(text)), None)
    for d in usable:
        if d.key == text:
            return d
    low = text.lower()
    hits = [d for d in usable if low in d.key.lower()]
    hits.sort(key=lambda d: ("jack" not in d.hostapi.lower(), d.index))
    return hits[0] if hits else None
