"""Run records: an audit trail of every apply and destroy, whatever ended it. No secrets: only names, hashes,
values of the playbook's resources and results are written.

A run that may change a target appends a ``started`` line before its first change and a completed line (same id)
when it ends: ok, failed, refused, interrupted, timed-out or crashed. A run killed outright (SIGKILL, power loss)
leaves only its ``started`` line: ``exkit runs list`` shows it as ``incomplete``. A run refused before any change
(review mismatch, unreachable target, refused credentials, invalid playbook, no confirmation) appends one
``refused`` line with the reason.

Records live in $EXKIT_RUNS_DIR, else $XDG_STATE_HOME/exkit/runs (~/.local/state/exkit/runs), one file per month.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit import __version__

if TYPE_CHECKING:
    from toolkit.plan import Plan
    from toolkit.targets.base import ResourceResult, Target

DONE = ("created", "updated", "removed", "unchanged", "absent")


def runs_dir() -> Path:
    explicit = os.environ.get("EXKIT_RUNS_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "exkit" / "runs"


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_record(**fields: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:12], "started": _now(), "user": _who(), "host": socket.gethostname(),
            "version": __version__, **fields}


@contextmanager
def _signals_held() -> Iterator[None]:
    """A signal handler that raises must not cut a record line in half: SIGINT and SIGTERM wait until it is
    written (only the main thread runs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def append(record: dict[str, Any]) -> Path:
    """Append one record (one line, under an exclusive lock so parallel runs never interleave)."""
    directory = runs_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"runs-{str(record['started'])[:7]}.jsonl"
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    # 0600: no secrets are in records, but operator, host and errors are nobody else's business; no link following
    with _signals_held(), open(path, "a", encoding="utf-8", opener=_private) as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        try:
            stream.write(line)
            stream.flush()
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)
        os.fdatasync(stream.fileno())  # on disk before the run is reported; outside the lock, so writers overlap
    return path


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o600)


def read_all() -> list[dict[str, Any]]:
    """Every run, one entry per id: the completed line if there is one, else the started line, shown as
    ``incomplete`` (the process ended without completing it)."""
    by_id: dict[str, dict[str, Any]] = {}
    for path in sorted(runs_dir().glob("runs-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash: the others stand
                key = str(record.get("id"))
                if record.get("status") != "started" or key not in by_id:
                    by_id[key] = record
    records = []
    for record in by_id.values():
        if record.get("status") == "started":
            record = {**record, "status": "incomplete"}
        records.append(record)
    return sorted(records, key=lambda r: str(r.get("started", "")))


def status_of(record: dict[str, Any]) -> str:
    """A record's status; records written before statuses existed have only an exit code."""
    return str(record.get("status") or ("ok" if record.get("exit_code") == 0 else "failed"))


# ----------------------------------------------------------------------------------------------- what is recorded
def file_sha256(path: Path | None) -> str | None:
    """The file's sha256; None when there is no file. A fleet records the same inventory and playbook for every
    target: a file is hashed once per process while it is unchanged (its inode, size, modification and change
    times), not once per target (a provider's inventory of 1000 tenants is ~330 KB: hashed for each target, a run
    read and hashed it a thousand times)."""
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return _file_sha256(str(path), status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


@lru_cache(maxsize=32)
def _file_sha256(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def git_commit(path: Path) -> dict[str, Any] | None:
    """The commit of the git repository holding ``path`` and whether the file differs from it; None outside one.
    A fleet records the same playbook for every target: git is asked once per process while the file is unchanged
    (two git processes per target were a sixth of a fleet's client CPU)."""
    resolved = path.resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return None
    found = _git_commit(resolved, stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return dict(found) if found is not None else None


@lru_cache(maxsize=32)
def _git_commit(path: Path, mtime_ns: int, size: int, inode: int) -> dict[str, Any] | None:
    folder = path.parent
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
        if head.returncode != 0:
            return None
        changed = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", str(path)],
                                 capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "playbook_modified": bool(changed.stdout.strip())}


def invocation(command: str, playbook: Path, *, variables: dict[str, Any], templates: Path | None,
               inventory: Path | None, target: Any, reviewed: Path | None = None,
               argv: list[str] | None = None) -> dict[str, Any]:
    """The fields of a record that say exactly what was asked: the command line, --var overrides, templates,
    inventory (path and sha256), the target's endpoint and transport, the playbook and its git commit."""
    connector: Target = target.target
    return {
        "command": command, "argv": list(sys.argv[1:] if argv is None else argv),
        "vars": dict(variables), "templates": [str(p) for p in target.template_layers(templates)],
        "inventory": str(inventory) if inventory else None, "inventory_sha256": file_sha256(inventory),
        "group": getattr(target, "group", None),
        "target": target.name, "platform": connector.platform, **connector.where(),
        "playbook": str(playbook), "playbook_sha256": file_sha256(playbook), "git": git_commit(playbook),
        "reviewed": str(reviewed) if reviewed else None,
        "pinned_to_review": reviewed is not None or getattr(target, "pin", None) is not None,
    }


def change_outcomes(plan: Plan, results: list[ResourceResult], *, started: bool,
                    after_stop: str = "unknown") -> list[dict[str, Any]]:
    """Each planned change with its before → after values and what became of it: the result the target reported
    (created, updated, removed, unchanged, absent, failed), else ``not started`` when the script never started,
    else ``unknown`` (no answer came) — on a connector that sends nothing after a stop, only the first change
    without a result is unknown and the others were not started."""
    # A result "failed" because the stop came before its call was sent is not an outcome: it is decided below.
    by_key = {(r.kind, r.name.lower()): r for r in results if "the run was interrupted" not in r.error}
    outcomes = []
    first_open = True
    for change in plan.changes:
        result = by_key.get((change.kind, change.name.lower()))
        entry = change.as_dict()
        entry["planned"] = entry.pop("action")
        if result is not None:
            entry["outcome"] = result.action
            if result.error:
                entry["error"] = result.error
        elif change.action == "noop":
            entry["outcome"] = "unchanged" if not plan.destroy else "absent"
        elif not started:
            entry["outcome"] = "not started"
        elif after_stop == "not started" and not first_open:
            entry["outcome"] = "not started"
        else:
            entry["outcome"] = "unknown"
            first_open = False
        outcomes.append(entry)
    return outcomes


# ----------------------------------------------------------------------------------------------- one run's record
_OPEN: dict[str, RunRecord] = {}
_OPEN_LOCK = threading.Lock()


class RunRecord:
    """One apply or destroy: ``open()`` before the first change (a ``started`` line), ``close()`` when it ends
    (the completed line). ``close_open()`` completes every record still open in this process (a second Ctrl-C,
    a grace period that ran out)."""

    def __init__(self, **fields: Any) -> None:
        self.data = new_record(**fields)
        self.opened = False
        self.closed = False
        self.plan: Plan | None = None
        self.target: Target | None = None
        self.script_started = False
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def planned(self, plan: Plan, script_sha256: str, playbook_name: str, target: Target) -> None:
        self.plan, self.target = plan, target
        self.data.update(script_sha256=script_sha256, playbook_name=playbook_name, plan=plan.as_dict())

    def open(self) -> None:
        """The ``started`` line, before the first change."""
        with _OPEN_LOCK:
            _OPEN[self.id] = self
        append({**self.data, "status": "started"})
        self.opened = True

    def close(self, status: str, *, results: list[ResourceResult] | None = None, error: str = "",
              exit_code: int = 1, **fields: Any) -> dict[str, Any]:
        """The completed line (once; later calls do nothing). ``results`` default to what the target reported
        so far."""
        with self._lock:
            if self.closed:
                return self.data
            self.closed = True
        if results is None and self.target is not None:
            results = self.target.known_results
        results = results or []
        self.data.update(status=status, finished=_now(), exit_code=exit_code, error=error or None,
                         results=[r.__dict__ for r in results], **fields)
        if self.plan is not None:
            after_stop = self.target.after_stop if self.target is not None else "unknown"
            self.data["changes"] = change_outcomes(self.plan, results, started=self.script_started,
                                                   after_stop=after_stop)
        append(self.data)
        with _OPEN_LOCK:
            _OPEN.pop(self.id, None)
        return self.data


def close_open(status: str, error: str) -> list[dict[str, Any]]:
    """Complete every record this process still has open, with what is known (used before exiting at once)."""
    with _OPEN_LOCK:
        open_records = list(_OPEN.values())
    return [record.close(status, error=error) for record in open_records]
