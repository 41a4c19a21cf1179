"""Run records: every apply and destroy appends one JSON line (when, who, target, playbook and script sha256, the
reviewed sha256, per-resource results, duration). No secrets: only names, hashes and results are written.

Records live in $EXKIT_RUNS_DIR, else $XDG_STATE_HOME/exkit/runs (~/.local/state/exkit/runs), one file per month.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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


def new_record(**fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"id": uuid.uuid4().hex[:12], "started": now.isoformat(timespec="seconds"), "user": _who(),
            "host": socket.gethostname(), **fields}


def append(record: dict[str, Any]) -> Path:
    """Append one record (one line, under an exclusive lock so parallel runs never interleave)."""
    directory = runs_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"runs-{str(record['started'])[:7]}.jsonl"
    line = json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n"
    # 0600: no secrets are in records, but operator, host and errors are nobody else's business; no link following
    with open(path, "a", encoding="utf-8", opener=_private) as stream:
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
    records = []
    for path in sorted(runs_dir().glob("runs-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by a crash: the others stand
    return sorted(records, key=lambda r: str(r.get("started", "")))
