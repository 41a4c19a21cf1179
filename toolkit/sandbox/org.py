"""The simulated Exchange organisation persisted as JSON with atomic writes (its state's classes are in
:mod:`toolkit.sandbox.model`).

State changes only by running scripts through the interpreter (see :mod:`toolkit.sandbox.cmdlets`); this module
holds the data, looks objects up the way Exchange resolves identities, and saves and loads.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
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


def save(path: Path, organisation: Organisation, *, unless: str | None = None) -> None:
    """Write atomically: a temporary file in the same folder, flushed and fsynced, then renamed over the target.
    Nothing is written when the organisation's text equals ``unless`` (what was loaded: nothing changed)."""
    text = organisation.to_json()
    if unless is not None and text == unless:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
