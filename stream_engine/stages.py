"""Build the per-stem stages (effects, key change) that follow separation.

Shared by ``separate``, ``live`` and the GUI so every front end orders and
configures them alike: effects first, then the key change (which shifts the
accompaniment, effects included). Pedalboard and the pitch shifter load only
when asked for.
"""

from __future__ import annotations


def parse_fx(items) -> dict[str, str]:
    """``["vocals=vocal", "accompaniment=radio"]`` -> {stem: preset name or path}."""
    fx = {}
    for item in items or []:
        stem, sep, preset = item.partition("=")
        if not sep or not stem or not preset:
            raise ValueError(f"bad effect assignment {item!r}: write STEM=PRESET, e.g. vocals=vocal")
        fx[stem] = preset
    return fx


def build_stages(stems, sample_rate: int, channels: int, fx: dict[str, str] | None = None,
                 key_change: bool = False) -> list:
    stages = []
    if fx:
        from plugins.effects import stem_effects_from_config

        unknown = sorted(set(fx) - set(stems))
        if unknown:
            raise ValueError(f"effects for unknown stem(s) {', '.join(unknown)}; this model's stems: {', '.join(stems)}")
        stages.append(stem_effects_from_config(stems, fx, sample_rate, channels))
    if key_change:
        from .pitch import KeyShift

        stages.append(KeyShift(stems, sample_rate, channels))
    return stages
