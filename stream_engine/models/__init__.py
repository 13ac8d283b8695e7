"""Bundled models (package data): ``<name>.onnx`` + ``<name>.json`` (model card).

- ``stemstream-student``: the distilled low-latency streaming student
  (16 kHz mono, stateful, 8 ms model latency); default of the live and
  balanced profiles.
- ``stemstream-student-int8``: the same with int8 weights.
- ``stemstream-teacher``: the TFC-TDF U-Net teacher (non-causal, 1.5 s windows);
  default of the quality profile.

Each card holds the command that reproduced the weights, the training data
and its terms, and the measured metrics. Their licence limits use (MIR-1K:
research only), so they are opt-in: the package's files are only the source
of ``stemstream install NAME --accept-licence`` (``separators/research.py``),
and ``separators/registry.py`` lists the installed copy by the card's ``name``.
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def bundled() -> list[str]:
    """Names of the ONNX models shipped in the package (installed or not: ``registry.bundled_models``
    lists what may be used)."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json") if p.with_suffix(".onnx").is_file())
