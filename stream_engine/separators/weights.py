"""Reading a torch weights file (a checkpoint of ``stemstream train`` or a bundled ``.pt``), with
errors that name the file.

``torch.load(weights_only=True)`` only: a file that needs arbitrary code to
load is refused, never loaded with ``weights_only=False``. It sits with the
separators because a separator that runs torch weights (the diffusion model)
reads them here too; training writes them.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile

REQUIRED = ("kind", "model_cfg", "model")


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
