"""The user's model folder, where opt-in weights are installed (HTDemucs, the research-use bundled models).

Shared by ``htdemucs.py`` and ``research.py``: where the folder is, and the one way a model's
folder in it is replaced (staged beside it, then swapped in) or removed, so a failed install
never leaves half a model and never touches what was there before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

MODELS_ENV = "STEMSTREAM_MODELS_DIR"
RECORD_FILE = "installed.json"  # written last into a staged install: its presence means "installed"


def models_dir() -> Path:
    """The user's model folder: ``$STEMSTREAM_MODELS_DIR``, else ``$STEMSTREAM_CONFIG_DIR/data/models``
    (the app's data folder, as gui.settings.data_dir), else platformdirs' user data dir + ``/models``."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser()
    cfg = os.environ.get("STEMSTREAM_CONFIG_DIR")
    if cfg:
        return Path(cfg).expanduser() / "data" / "models"
    from platformdirs import user_data_dir

    return Path(user_data_dir("stemstream")) / "models"


@contextmanager
def staged_install(target: Path):
    """Yields a scratch folder beside ``target`` (same file system) holding an empty ``staged/``
    folder; fill ``staged/`` and call ``swap_in(scratch, target)`` to install it. Whatever the
    block raises, the scratch folder goes and ``target`` is as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-", dir=target.parent) as tmp:
        scratch = Path(tmp)
        (scratch / "staged").mkdir()
        yield scratch


def swap_in(scratch: Path, target: Path) -> None:
    """Replace ``target`` by ``scratch/staged`` (the previous install leaves with the scratch folder)."""
    if target.exists():
        os.replace(target, scratch / "previous")
    os.replace(scratch / "staged", target)


def remove(target: Path, name: str, log=print) -> bool:
    """Delete an installed model's folder; False when there was none."""
    if not target.exists():
        return False
    shutil.rmtree(target)
    log(f"{name}: removed {target}")
    return True
