"""Reading a checkpoint written by ``stemstream train``, with errors that name the file.

``torch.load(weights_only=True)`` only: a file that needs arbitrary code to
load is refused, never loaded with ``weights_only=False``.
"""

from __future__ import annotations

import os

from ..separators.weights import read_checkpoint  # noqa: F401 - train.py reads checkpoints through here

MAX_SETTING = 1 << 20  # any numeric model setting (widths, layers, rates): larger is a corrupt checkpoint
MAX_PARAMETERS = 2_000_000_000  # the teacher has ~30M; 2G float32 would be 8 GB


def build_from_checkpoint(ck: dict, path: str | os.PathLike = "checkpoint"):
    """The model of a checkpoint, its weights loaded, in eval mode."""
    from .models import build_model

    import torch

    if not isinstance(ck.get("model_cfg"), dict):
        raise ValueError(f"{path}: checkpoint field 'model_cfg' must be an object")
    bad = {k: v for k, v in ck["model_cfg"].items()
           if isinstance(v, (int, float)) and not isinstance(v, bool) and not (0 <= v <= MAX_SETTING)}
    if bad:
        raise ValueError(f"{path}: checkpoint model settings out of range: "
                         f"{', '.join(f'{k}={v!r}' for k, v in list(bad.items())[:4])} (0..{MAX_SETTING})")
    try:
        with torch.device("meta"):  # sized first without memory: a huge setting is refused, not allocated
            size = sum(p.numel() for p in build_model(ck["kind"], ck["model_cfg"]).parameters())
        if size > MAX_PARAMETERS:
            raise ValueError(f"checkpoint model settings make {size:,} parameters, more than the "
                             f"{MAX_PARAMETERS:,} allowed (settings: {ck['model_cfg']})")
        model = build_model(ck["kind"], ck["model_cfg"])
    except (TypeError, RuntimeError, OverflowError, MemoryError, ZeroDivisionError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: checkpoint model settings do not fit a {ck['kind']!r} model "
                         f"({type(exc).__name__}: {message})") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(ck["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: the weights do not fit a {ck['kind']!r} model with its settings "
                         f"({str(exc).splitlines()[0]})") from None
    model.eval()
    return model
