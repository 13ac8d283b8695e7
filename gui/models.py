"""What the app says about each model: what it is for, its stems, latency and SDR (from its card),
and which profiles it has a framing for. Read from the cards (``stream_engine.separators.registry``);
no weights are loaded.
"""

from __future__ import annotations

from stream_engine.profiles import PROFILES

BUILTIN_NOTES = {
    "passthrough": ("No separation: the input as every stem (checks the audio path)", "0 ms", None),
    "dsp-center": ("Signal processing, no model: vocals from the centre of a stereo mix. Light on the CPU; "
                   "works on any profile", "no model latency", None),
    "dsp-4stem": ("Signal processing, no model: vocals, drums, bass, other by band and centre", "about 9 ms", None),
}


def _cards() -> dict:
    from stream_engine.separators.registry import bundled_models, third_party_models

    try:
        return {**third_party_models(), **bundled_models()}
    except Exception:  # noqa: BLE001 - a broken install: the names alone are still offered
        return {}


def model_profiles(name: str | None, cards: dict | None = None) -> set[str] | None:
    """The profiles ``name`` has a framing for (its card's ``profiles``); None: any (a streaming
    model or a built-in). The default entry (None) follows the profile: any."""
    if name is None:
        return None
    card = (cards if cards is not None else _cards()).get(name)
    table = card.get("profiles") if isinstance(card, dict) else None
    if not isinstance(table, dict) or not table:
        return None
    names = set(table)
    for profile in PROFILES.values():  # offline runs on quality's framing, as the registry allows
        if profile.falls_back_to in names:
            names.add(profile.name)
    return names


def _find(tree, key: str, depth: int = 0):
    """The first number under ``key`` (depth-first) in a card's nested metrics."""
    if depth > 6:
        return None
    if isinstance(tree, dict):
        value = tree.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        for k in sorted(tree, key=lambda k: ("engine" not in str(k), str(k))):  # engine figures first
            found = _find(tree[k], key, depth + 1)
            if found is not None:
                return found
    return None


def _latency_text(card: dict) -> str:
    latency = card.get("latency") or {}
    for key in ("engine_live_48k", "engine_quality_48k"):
        if isinstance(latency.get(key), dict) and "algorithmic_ms" in latency[key]:
            return f"{latency[key]['algorithmic_ms']:.0f} ms in the engine ({key.split('_')[1]}, 48 kHz)"
    for profile, entry in latency.items():
        if isinstance(entry, dict) and "algorithmic_ms_48k" in entry:
            ms = entry["algorithmic_ms_48k"]
            if isinstance(ms, dict):  # per calibrated hop (Spleeter balanced): the range a machine may get
                values = [v for v in ms.values() if isinstance(v, (int, float))]
                if values:
                    return f"{min(values):.0f}-{max(values):.0f} ms ({profile}, 48 kHz, hop per machine)"
            elif isinstance(ms, (int, float)):
                return f"{ms:.0f} ms ({profile}, 48 kHz)"
    if isinstance(latency.get("ms"), (int, float)):
        return f"{latency['ms']:.0f} ms (model)"
    return "see its card"


def describe(name: str | None, cards: dict | None = None) -> str:
    """A few lines for a tooltip: what it is for, stems, latency, SDR, profiles, licence."""
    if name is None:
        return "The profile's own default model"
    cards = cards if cards is not None else _cards()
    if name in BUILTIN_NOTES:
        what, latency, _ = BUILTIN_NOTES[name]
        from stream_engine.separators.registry import model_stems

        try:
            stems = ", ".join(model_stems(name))
        except Exception:  # noqa: BLE001
            stems = "?"
        return f"{name}: {what}\nStems: {stems}\nLatency: {latency}\nProfiles: any"
    card = cards.get(name)
    if not isinstance(card, dict):
        return f"{name}: a model file (its card, a .json beside it, says more)"
    stems = ", ".join(card.get("stems") or []) or "?"
    what = card.get("description") or ("A trained separator (" + str((card.get("architecture") or {}).get("kind")
                                                                     or card.get("format") or "model") + ")")
    sdr = _find(card.get("metrics") or {}, "vocals")
    profiles = model_profiles(name, cards)
    lines = [f"{name}: {what}", f"Stems: {stems}", f"Latency: {_latency_text(card)}",
             "SDR (vocals, from its card): " + (f"{sdr:.1f} dB" if sdr is not None else "not measured"),
             "Profiles: " + (", ".join(sorted(profiles)) if profiles else "any")]
    if card.get("licence"):
        lines.append(f"Licence: {card['licence']}")
    return "\n".join(lines)


def summary(name: str | None, cards: dict | None = None) -> str:
    """One line under the model box: stems and SDR."""
    text = describe(name, cards).splitlines()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in text[1:] if ":" in line}
    parts = [fields.get("Stems", "")]
    if "Latency" in fields:
        parts.append(fields["Latency"])
    sdr = next((v for k, v in fields.items() if k.startswith("SDR")), None)
    if sdr and sdr != "not measured":
        parts.append(f"SDR {sdr}")
    return " · ".join(p for p in parts if p)
