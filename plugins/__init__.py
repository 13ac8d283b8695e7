"""Per-stem effect chains (Pedalboard built-ins and VST3) and the microphone chain."""

from .effects import (
    DelayLine,
    EffectChain,
    StemEffects,
    bench_effects,
    list_presets,
    load_preset,
    stem_effects_from_config,
    user_preset_dir,
)
from .mic import MicChain, bench_mic

__all__ = [
    "EffectChain", "StemEffects", "DelayLine", "MicChain", "list_presets", "load_preset", "user_preset_dir",
    "stem_effects_from_config", "bench_effects", "bench_mic",
]
