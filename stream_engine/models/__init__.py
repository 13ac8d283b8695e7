"""Bundled models (package data): ``<name>.onnx`` + ``<name>.json`` (model card).

- ``stemstream-student``: the distilled low-latency streaming student
  (16 kHz mono, stateful, 8 ms model latency); default of the live and
  balanced profiles.
- ``stemstream-student-int8``: the same with int8 weights.
- ``stemstream-teacher``: the TFC-TDF U-Net teacher (non-causal, 1.5 s windows);
  default of the quality profile.

Each card holds the command that reproduced the weights, the training data
and its terms, and the measured metrics. ``separators/registry.py`` finds
them by the card's ``name``.
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def bundled() -> list[str]:
    """Names of the bundled models (cards with an ONNX file beside them)."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json") if p.with_suffix(".onnx").is_file())
