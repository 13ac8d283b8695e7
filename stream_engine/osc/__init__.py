"""OSC control: the engine's own surface (``OscServer``) and DAW mirrors (``DawMirror``)."""

from .daw import DawMirror, list_daw_presets, load_daw_preset
from .bench import bench_set_to_audible
from .server import OscServer, bench_osc, param_values

__all__ = ["OscServer", "bench_osc", "bench_set_to_audible", "DawMirror", "list_daw_presets", "load_daw_preset", "param_values"]
