"""What a live session is started with (``LiveConfig``), its routing as the settings keep it,
and small helpers the window and its wiring share (effects that are on, parameters carried over)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from stream_engine.params import Params


@dataclass
class LiveConfig:
    input: str | None = None  # device spec, ``demo song`` or ``file:PATH``
    output: str | None = None  # device spec
    model: str | None = None  # None: the profile's default
    profile: str = "live"
    block: int | None = None  # None: the profile's block
    key_shift: bool = True  # add the KeyShift stage (its latency) so the key can change
    mic_channel: int | None = None  # 0-based channel of the microphone on its device; None: no mic
    fx: dict = field(default_factory=dict)  # stem -> [effect spec, ...] ({"bypass": True} skips one)
    mic_device: str | None = None  # the mic's device (any input device); None: the input device, else the default
    routes: dict | None = None  # bus -> output channels from 0 (``{"vocals": [2, 3]}``); None: main on 1-2
    loop: bool = True  # a file input loops (False: plays once, then silence; the player moves on)
    master_gain: float = 1.0  # the master fader (linear)
    limiter: bool = True  # the safety limiter on main (MasterBus says why it is on by default)


AUTO_PROFILE = "auto"  # the profile box's first entry: a file runs the best model that keeps up, a device live
MIC_FX = "mic"  # the mic's effect chain in ``LiveConfig.fx`` (beside the stems' chains)
ROUTES_SETTING = "routes"  # the settings key routing is saved under (channels from 1, as the CLI writes them)
MAX_OUTPUTS = 16  # output channels opened at most, so routing can change while playing


def routes_to_setting(routes: dict | None) -> dict | None:
    """Routing for the settings file: ``{"vocals": [3, 4]}`` (channels from 1)."""
    return None if routes is None else {bus: [int(c) + 1 for c in chans] for bus, chans in routes.items()}


def routes_from_setting(value) -> dict | None:
    """The settings' routing back (channels from 0); anything malformed: None (main on 1-2)."""
    if not isinstance(value, dict) or not value:
        return None
    try:
        routes = {str(bus): [int(c) - 1 for c in chans] for bus, chans in value.items()}
    except (TypeError, ValueError):
        return None
    return routes if all(chans and min(chans) >= 0 for chans in routes.values()) else None


def parse_channels(text: str) -> list[int]:
    """``"3,4"`` or ``"3-4"`` or ``"3 4"`` (from 1) -> [2, 3]; empty -> []; ValueError otherwise."""
    text = text.strip()
    if not text:
        return []
    if "-" in text and "," not in text:
        lo, hi = (int(x) for x in text.split("-", 1))
        chans = list(range(lo, hi + 1))
    else:
        chans = [int(x) for x in text.replace(",", " ").split()]
    if not chans or min(chans) < 1:
        raise ValueError(f"channels count from 1: {text!r}")
    return [c - 1 for c in chans]


def carry_params(old: Params, stems) -> Params:
    """A snapshot for ``stems`` keeping what carries over from ``old`` (listen mode included; effect
    parameters are dropped: their indices are rebuilt from the chains)."""
    return old.carried_to(stems).with_(fx=MappingProxyType({}))


def active_effects(specs) -> list[tuple[int, dict]]:
    """(index in the editor's list, spec) of the effects that are not bypassed."""
    return [(i, s) for i, s in enumerate(specs or []) if not s.get("bypass")]

