"""Reading a checkpoint written by ``stemstream train``, with errors that name the file.

``torch.load(weights_only=True)`` only: a file that needs arbitrary code to
load is refused, never loaded with ``weights_only=False``.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile

REQUIRED = ("kind", "model_cfg", "model")
MAX_SETTING = 1 << 20  # any numeric model setting (widths, layers, rates): larger is a corrupt checkpoint
MAX_PARAMETERS = 2_000_000_000  # the teacher has ~30M; 2G float32 would be 8 GB


def read_checkpoint(path: str | os.PathLike) -> dict:
    import torch

    where = str(path)
    if not os.path.isfile(where):
        raise FileNotFoundError(f"{where}: no such checkpoint")
    try:
        ck = torch.load(where, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise ValueError(
                f"{where}: refused: the file holds Python objects that only run as code when loaded, and "
                f"stemstream loads checkpoints as weights only; it is not a checkpoint written by "
                f"`stemstream train` (re-create it with `stemstream train`)") from None
        detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("Unsupported")), "")
        raise ValueError(f"{where}: not a stemstream checkpoint (not a torch file a weights-only load can read"
                         f"{': ' + detail if detail else ''})") from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, AttributeError, UnicodeDecodeError,
            OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{where}: not a stemstream checkpoint (torch cannot read it: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ck, dict):
        raise ValueError(f"{where}: not a stemstream checkpoint (it holds a {type(ck).__name__}, not a dict)")
    missing = [k for k in REQUIRED if k not in ck]
    if missing:
        raise ValueError(f"{where}: not a stemstream checkpoint (it lacks {', '.join(missing)}; "
                         f"it has {', '.join(map(str, list(ck)[:8])) or 'nothing'})")
    for k in ("config", "model_cfg", "history", "rng"):
        if isinstance(ck.get(k), str):
            try:
                ck[k] = json.loads(ck[k])
            except ValueError as exc:
                raise ValueError(f"{where}: checkpoint field {k!r} is not valid JSON ({exc})") from None
    return ck


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
