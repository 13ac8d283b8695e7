"""Separators: from a window of samples to its stems, and the framing that streams through them.

Read in this order (each module imports only those above it):

    base.py        the contract every separator implements (SeparatorSpec, Separator, SeparatorError)
    card.py        model cards: the JSON beside a model file, validated
    framer.py      a stream -> overlapping windows -> a separator -> crossfaded stems
    passthrough.py, dsp_center.py, dsp_4stem.py, onnx_backend.py, torchscript_backend.py, spleeter.py
                   the separators themselves (weights load here, behind the contract)
    hybrid.py      a separator composed of two framed separators (Spleeter + a four-stem one)
    user_models.py the user's model folder, where opt-in weights are installed (HTDemucs, research.py)
    research.py    bundled weights whose licence limits use: opt-in install, checked against the package
    registry.py    find a separator by name or path; list what is installed

Nothing here knows about devices, files, mixing or effects: ``pipeline.py``
(one level up) puts a framer between resamplers and effect stages.
"""

from .base import Separator, SeparatorError, SeparatorSpec, group_channels

__all__ = ["Separator", "SeparatorError", "SeparatorSpec", "group_channels"]
