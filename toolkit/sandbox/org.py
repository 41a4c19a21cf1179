"""The simulated Exchange organisation persisted as JSON with atomic writes (its state's classes are in
:mod:`toolkit.sandbox.model`).

State changes only by running scripts through the interpreter (see :mod:`toolkit.sandbox.cmdlets`); this module
holds the data, looks objects up the way Exchange resolves identities, and saves and loads.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.errors import ExkitError
from toolkit.sandbox.model import (  # noqa: F401 - the state's classes, re-exported for callers of this module
    ApplicationAccessPolicy, MailboxPermission, ManagementScope, Organisation, Recipient, RoleAssignment, RoleGroup,
    ServicePrincipal,
)


# ----------------------------------------------------------------------------------------------- persistence
class StateFileError(ExkitError):
    pass


def default_state_path(platform: str = "exchange-server") -> Path:
    """$EXKIT_SANDBOX_STATE, else $XDG_STATE_HOME/exkit/sandbox.json (~/.local/state/exkit/sandbox.json).

    The Exchange Online sandbox is a separate organisation: the same name with '-online' before the suffix.
    """
    explicit = os.environ.get("EXKIT_SANDBOX_STATE")
    if explicit:
        path = Path(explicit)
    else:
        path = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "exkit" / "sandbox.json"
    return path.with_name(path.stem + "-online" + path.suffix) if platform == "exchange-online" else path


def load(path: Path, platform: str = "exchange-server") -> Organisation:
    """Load the organisation; a missing file is the seed organisation of that platform."""
    return load_with_text(path, platform)[0]


def load_with_text(path: Path, platform: str = "exchange-server") -> tuple[Organisation, str | None]:
    """The organisation and the file's text (None for the seed of a missing file), for ``save(…, unless=text)``."""
    from toolkit.sandbox.seed import seed_organisation

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return seed_organisation(platform), None
    try:
        return Organisation.model_validate_json(text), text
    except ValueError as exc:
        raise StateFileError(f"the sandbox state {path} is not a valid organisation ({str(exc).splitlines()[0]}); "
                             "reset it with 'exkit sandbox reset'") from None


def save(path: Path, organisation: Organisation, *, unless: str | None = None, durable: bool = True) -> str:
    """Write atomically: a temporary file in the same folder, flushed and fsynced, then renamed over the target.
    Nothing is written when the organisation's text equals ``unless`` (what was loaded: nothing changed). Returns
    the text the file now holds.

    ``durable=False`` skips the two fsyncs: the rename still replaces the file whole for every reader, but after a
    crash of the machine the file may hold the old text, the new one or nothing. Only for state that stands for
    someone else's storage (the loopback servers' tenants stand for Microsoft's cloud, whose durability costs nothing
    on the client's machine); the sandbox a user runs keeps the default."""
    text = organisation.to_json()
    if unless is not None and text == unless:
        return text
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if not durable:
        return text
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return text


# This process's last look at each state file, while the file is as it was then: the file's identity (inode, size,
# modification and change times: every save renames a new file over it), its text and the organisation parsed from
# it. A loopback server runs each call or script of a tenant against the tenant's file; parsing its ~60 KB of JSON
# again for each was most of the servers' CPU. An entry is taken out while a run uses (and may change) its
# organisation, and put back only once the file holds exactly that organisation; both happen under locked(path).
_KNOWN: dict[Path, tuple[tuple[int, int, int, int], str, Organisation]] = {}  # the most recently kept last
_KNOWN_LOCK = threading.Lock()
_KNOWN_KEPT = 64  # a tenant's calls come close together: the last few dozen files are enough (and memory bounded)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def take(path: Path, platform: str = "exchange-server") -> tuple[Organisation, str | None]:
    """load_with_text, served from this process's last look when the file has not changed since (call it under
    locked(path); the organisation is the caller's until it calls keep())."""
    with _KNOWN_LOCK:
        known = _KNOWN.pop(path, None)
    if known is not None and known[0] == _identity(path):
        return known[2], known[1]
    return load_with_text(path, platform)


def keep(path: Path, organisation: Organisation, text: str) -> None:
    """Remember that the file at ``path`` holds ``text``, which is ``organisation`` (what save() returned, still
    under locked(path))."""
    identity = _identity(path)
    if identity is not None:
        with _KNOWN_LOCK:
            _KNOWN.pop(path, None)
            _KNOWN[path] = (identity, text, organisation)
            if len(_KNOWN) > _KNOWN_KEPT:
                del _KNOWN[next(iter(_KNOWN))]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise runs against one state file (several exkit processes, or parallel tests). The lock file is opened
    without truncating it and never through a symbolic link (a link committed as ``<state>.lock`` is refused)."""
    from toolkit.safe_paths import UnsafePathError, open_lock

    try:
        lock = open_lock(path.with_name(path.name + ".lock"))
    except UnsafePathError as exc:
        raise StateFileError(str(exc)) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
