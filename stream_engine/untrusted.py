"""Rules for what comes from outside: names that become paths, JSON files, plugin paths.

One place for every front end (OSC, CLI, GUI) so the rules cannot drift:

- ``plain_name``: a scene, preset or stem name is a *name*: no separators,
  no ``..``, no absolute path, no control characters, at most 64 characters.
  A name never leaves the folder it is looked up in.
- ``read_json``: opens only regular files (``O_NONBLOCK`` and ``fstat``: a FIFO
  or a device is refused at once, never waited on), at most ``MAX_JSON_BYTES``,
  and refuses nesting deeper than ``MAX_JSON_DEPTH`` with a message (never a
  ``RecursionError`` traceback).
- ``check_plugin_path``: a VST3 named by a preset or scene must lie in a plugin
  folder: ``$STEMSTREAM_VST3_PATH`` (``os.pathsep``-separated) or the system's
  standard VST3 folders. Loading a plugin runs its code; an arbitrary path is
  arbitrary code. See SECURITY.md.

The engine core imports this (stdlib only).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

MAX_NAME = 64
MAX_JSON_BYTES = 4 * 1024 * 1024  # scenes, presets, cards, settings: a few KiB in practice
MAX_JSON_DEPTH = 64  # deeper than any file we write (scenes and cards are 4 levels)
VST3_PATH_ENV = "STEMSTREAM_VST3_PATH"

_NAME = re.compile(r"^[\w][\w .+-]*$")


class UntrustedInputError(ValueError):
    """Input from outside breaks a rule; the message names the file or value."""


def plain_name(text, what: str = "name", max_len: int = MAX_NAME) -> str:
    """``text`` if it is a plain name (letters, digits, ``_``, space, ``.``, ``+``, ``-``; starts
    with a letter, digit or ``_``; no separators; not ``..``), else UntrustedInputError."""
    if not isinstance(text, str):
        raise UntrustedInputError(f"{what} must be a text name, not {type(text).__name__} {text!r}")
    if not text or len(text) > max_len or not _NAME.match(text) or text.strip() != text or ".." in text:
        raise UntrustedInputError(
            f"bad {what} {text!r}: a plain name of at most {max_len} characters (letters, digits, space, "
            f"'_', '.', '+', '-'; no '/', '\\' or '..'; not a path)")
    return text


def child_path(folder: Path, name, suffix: str = "", what: str = "name") -> Path:
    """``folder/<name><suffix>`` for a plain ``name``; the result is checked to stay in ``folder``."""
    path = Path(folder) / (plain_name(name, what) + suffix)
    if os.path.dirname(os.path.abspath(path)) != os.path.abspath(folder):  # belt and braces
        raise UntrustedInputError(f"bad {what} {name!r}: leaves {folder}")
    return path


def is_regular_file(path) -> bool:
    """A regular file (or a symlink to one), found without opening it (a FIFO never blocks a stat)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def describe_kind(path) -> str:
    """'a FIFO', 'a folder', ... for messages (follows symlinks)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    except ValueError:
        return "not a valid path"
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return word
    return "a special file"


def read_regular(path, what: str = "file", limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes; never blocks on a FIFO."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UntrustedInputError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:  # a NUL byte in the name
        raise UntrustedInputError(f"{what} {path!r}: not a valid path ({exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedInputError(f"{what} {path}: is {describe_kind(path)}, not a regular file; refused")
        if st.st_size > limit:
            raise UntrustedInputError(f"{what} {path}: {st.st_size} bytes, more than the {limit} allowed; refused")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:  # grew while we read
                raise UntrustedInputError(f"{what} {path}: more than the {limit} bytes allowed; refused")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise UntrustedInputError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def check_depth(value, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > max_depth:
                raise UntrustedInputError(f"{where}: JSON nested more than {max_depth} levels deep; refused")
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))


def loads_json(text, where: str, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` whose every failure (syntax, bad UTF-8, nesting) is an UntrustedInputError naming ``where``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        value = json.loads(text)
    except RecursionError:
        raise UntrustedInputError(f"{where}: JSON nested too deeply to read; refused") from None
    except UnicodeDecodeError as exc:
        raise UntrustedInputError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise UntrustedInputError(f"{where}: not valid JSON ({exc})") from None
    check_depth(value, where, max_depth)
    return value


def read_json(path, what: str = "file", limit: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """A JSON file from outside: a regular file, at most ``limit`` bytes, nesting at most ``max_depth``."""
    return loads_json(read_regular(path, what, limit), f"{what} {path}", max_depth)


# -- plugins -----------------------------------------------------------------------------------
def standard_vst3_folders() -> list[Path]:
    """The VST3 specification's folders for this system (per user, then system-wide)."""
    home = Path.home()
    if sys.platform == "darwin":
        return [home / "Library/Audio/Plug-Ins/VST3", Path("/Library/Audio/Plug-Ins/VST3"),
                Path("/Network/Library/Audio/Plug-Ins/VST3")]
    if sys.platform.startswith("win"):
        folders = [Path(os.environ.get("LOCALAPPDATA", home / "AppData/Local")) / "Programs/Common/VST3"]
        for env in ("COMMONPROGRAMFILES", "COMMONPROGRAMFILES(X86)"):
            if os.environ.get(env):
                folders.append(Path(os.environ[env]) / "VST3")
        return folders
    return [home / ".vst3", Path("/usr/lib/vst3"), Path("/usr/local/lib/vst3"),
            Path("/usr/lib64/vst3"), Path("/usr/lib/x86_64-linux-gnu/vst3")]


def plugin_folders() -> list[Path]:
    """Folders a VST3 may be loaded from: ``$STEMSTREAM_VST3_PATH`` first, then the standard ones."""
    configured = [Path(p).expanduser() for p in os.environ.get(VST3_PATH_ENV, "").split(os.pathsep) if p.strip()]
    return [p for p in configured if p.is_absolute()] + standard_vst3_folders()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_plugin_path(path, where: str = "effect") -> Path:
    """The plugin file or bundle ``path`` names, if it lies in a plugin folder; else UntrustedInputError.

    An absolute path must lie (as written, or once symlinks are resolved) in a
    plugin folder and contain no ``..``; a bare bundle name (``ZamComp.vst3``)
    is looked up in the plugin folders, in order.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise UntrustedInputError(f"{where}: plugin path must be a non-empty text, not {path!r}")
    folders = plugin_folders()
    shown = os.pathsep.join(str(f) for f in folders)
    p = Path(path).expanduser()
    if ".." in p.parts:
        raise UntrustedInputError(f"{where}: plugin path {path!r} contains '..'; refused")
    if not p.is_absolute():
        if len(p.parts) != 1:
            raise UntrustedInputError(f"{where}: plugin {path!r}: give an absolute path or a bundle name")
        for folder in folders:
            if (folder / p).exists():
                return folder / p
        raise UntrustedInputError(f"{where}: plugin {path!r} is in none of the plugin folders ({shown})")
    written, real = os.path.abspath(p), os.path.realpath(p)
    for folder in folders:
        if _inside(written, os.path.abspath(folder)) or _inside(real, os.path.realpath(folder)):
            return p
    raise UntrustedInputError(
        f"{where}: plugin {path!r} is outside the plugin folders ({shown}); refused (loading a plugin runs its "
        f"code: put it in one of them, or add its folder to ${VST3_PATH_ENV})")
