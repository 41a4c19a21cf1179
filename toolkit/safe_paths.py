"""Names that become file names, and writes that stay where the user pointed.

Target names become parts of script file names (``<playbook>.<target>.ps1``): they must be plain file names on Linux,
macOS and Windows alike (no separators, no ``..``, no NUL or control characters, no reserved device names, bounded
length). Writes into a folder go through a descriptor of that folder with ``O_NOFOLLOW``: a name cannot leave the
folder, and a symbolic link planted where a file will be written is refused instead of followed.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from toolkit.errors import ExkitError

MAX_NAME = 100  # characters: <playbook>.<target>.<mode>.ps1 stays well under the 255 bytes file systems allow
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)  # Windows devices
_ALLOWED_PUNCTUATION = frozenset("._-@+")


class UnsafePathError(ExkitError):
    pass


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be part of a file name, or None when it can."""
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is {len(name)} characters long (at most {MAX_NAME})"
    if name in (".", "..") or name.startswith("."):
        return "it starts with '.'"
    for char in name:
        if char in "/\\":
            return f"it contains the path separator {char!r}"
        if unicodedata.category(char)[0] in "CZ" and char != " ":
            return f"it contains U+{ord(char):04X} ({unicodedata.name(char, 'a control character')})"
        if not (char.isalnum() or char in _ALLOWED_PUNCTUATION):
            return f"it contains {char!r} (use letters, digits and . _ - @ +)"
    if _RESERVED.match(name):
        return "it is a reserved device name on Windows"
    if name.endswith((".", " ")):
        return "it ends with a dot"
    return None


def require_file_name(name: str, what: str) -> str:
    problem = file_name_problem(name)
    if problem is not None:
        raise UnsafePathError(f"{what} {name[:60]!r} cannot be used in a file name: {problem}")
    return name


def _open_folder(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def write_in(folder: Path, name: str, data: bytes, mode: int = 0o644) -> Path:
    """Write ``folder/name``, where ``name`` must be a plain file name; refuse to follow a symbolic link there."""
    require_file_name(name, "the file name")
    directory = _open_folder(folder)
    try:
        try:
            handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode, dir_fd=directory)
        except OSError as exc:
            if os.path.islink(folder / name):
                raise UnsafePathError(f"refusing to write {folder / name}: it is a symbolic link") from None
            raise UnsafePathError(f"cannot write {folder / name}: {exc.strerror}") from None
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
    finally:
        os.close(directory)
    return folder / name


def remove_in(folder: Path, name: str) -> None:
    """Remove ``folder/name`` (a link itself, never what it points to)."""
    require_file_name(name, "the file name")
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.unlink(name, dir_fd=directory)
    finally:
        os.close(directory)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write a file the user named; a symbolic link at that path is refused, not followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if path.is_symlink():
            raise UnsafePathError(f"refusing to write {path}: it is a symbolic link") from None
        raise UnsafePathError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(handle, "wb") as stream:
        if mode & 0o077 == 0:
            os.fchmod(handle, mode)  # a private file stays private also when it existed before
        stream.write(data)
    return path


def open_lock(path: Path) -> int:
    """A lock file's descriptor: created if missing, never truncated, never through a symbolic link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if path.is_symlink():
            raise UnsafePathError(f"refusing to use the lock file {path}: it is a symbolic link") from None
        raise UnsafePathError(f"cannot open the lock file {path}: {exc.strerror}") from None
