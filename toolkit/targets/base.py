"""The connector interface, and the parsing of what a run printed (shared by every connector)."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.render.engine import Connection, RenderedScript
    from toolkit.sandbox.model import Organisation

RESULT_PREFIX = "EXKIT-RESULT "
FACT_PREFIX = "EXKIT-FACT "
SUMMARY_PREFIX = "EXKIT-SUMMARY "


@dataclass(frozen=True)
class ResourceResult:
    kind: str
    name: str
    action: str  # created, updated, unchanged, removed, absent, failed
    error: str = ""


@dataclass
class RunResult:
    """What one script run did: per-resource results, raw streams, exit code."""

    exit_code: int
    stdout: str
    stderr: str
    results: list[ResourceResult] = field(default_factory=list)
    facts: list[dict[str, Any]] = field(default_factory=list)
    script_sha256: str = ""
    notices: list[str] = field(default_factory=list)  # e.g. retries after throttling, shown to the user

    @property
    def failed(self) -> list[ResourceResult]:
        return [r for r in self.results if r.action == "failed"]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.failed


def parse_output(stdout: str) -> tuple[list[ResourceResult], list[dict[str, Any]]]:
    """Read the EXKIT-RESULT and EXKIT-FACT lines of a run's standard output; other lines are ignored."""
    results, facts = [], []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX):])
            results.append(ResourceResult(str(data.get("kind", "")), str(data.get("name", "")),
                                          str(data.get("action", "")), str(data.get("error") or "")))
        elif line.startswith(FACT_PREFIX):
            facts.append(json.loads(line[len(FACT_PREFIX):]))
    return results, facts


class TargetError(Exception):
    """A connector could not run a script at all (unreachable, refused, broken state). Nothing ran."""


_THROTTLED_LOCK = threading.Lock()


class Target(ABC):
    """Where scripts run. ``describe`` names the target for people; ``run_script`` runs one whole script."""

    name: str
    platform: str = "exchange-server"
    limiters: tuple[Any, ...] = ()  # RateLimiter: the target's own and the run's global one
    throttled_s: float = 0.0

    def throttle(self) -> None:
        """Wait for every rate limit that applies before a round trip; the waiting time is reported (summed under a
        lock: a tenant's concurrent reads wait at once)."""
        for limiter in self.limiters:
            waited = limiter.acquire()
            with _THROTTLED_LOCK:
                self.throttled_s += waited

    @abstractmethod
    def describe(self) -> str: ...

    def where(self) -> dict[str, str]:
        """For run records: the endpoint scripts or calls go to, and how (transport)."""
        return {"endpoint": self.describe(), "transport": "local"}

    # What happens to work that was running when the run was told to stop: WinRM scripts may have gone on
    # ("unknown"); REST calls after the stop are never sent ("not started").
    after_stop: str = "unknown"

    def interrupt(self) -> None:
        """Called from another thread once the run is told to stop: stop the remote work where the protocol
        allows (e.g. WS-Management Signal terminate). Must return quickly; by default nothing to do."""

    def note(self, result: ResourceResult) -> None:
        """A connector reports each resource's result as soon as it is known, so that a run cut short still
        records what was done."""
        self.__dict__.setdefault("live_results", []).append(result)

    @property
    def known_results(self) -> list[ResourceResult]:
        return list(self.__dict__.get("live_results", []))

    def prompts(self) -> bool:
        """Whether connecting asks for a secret on the terminal (a ``prompt`` reference)."""
        return False

    @contextmanager
    def session(self) -> Iterator[None]:
        """Scripts run inside may share one connection (plan's facts script, then apply's); by default each run
        stands alone."""
        yield

    def connection(self) -> Connection:
        """How this target's scripts load the Exchange cmdlets (rendered into the script's preamble)."""
        from toolkit.render.engine import Connection

        return Connection()

    @abstractmethod
    def run_script(self, script: str, *, read_only: bool = False) -> RunResult:
        """Run a rendered script and return what it did. ``read_only`` promises the script changes nothing."""

    def apply(self, script: RenderedScript) -> RunResult:
        """Bring the target to the rendered state: by default, run the script."""
        return self.run_script(script.text)

    def read_snapshot(self, script: RenderedScript, playbook: Any) -> list[dict[str, Any]]:
        """The facts of the snapshot script (see toolkit/verify/snapshot.py); by default, run it (one round trip)."""
        result = self.run_script(script.text, read_only=True)
        if result.exit_code != 0:
            raise TargetError(f"reading the current state from {self.describe()} failed: "
                              f"{_first_error(result.stderr) or 'exit code ' + str(result.exit_code)}")
        return result.facts

    def observe(self, facts: RenderedScript, script: RenderedScript) -> Organisation:
        """What the target has of every object ``script`` reads, as an organisation a plan can run ``script``
        against: by default, run the ``facts`` script (one round trip) and rebuild its objects."""
        from toolkit.sandbox.mirror import organisation_from_objects, parse_objects

        result = self.run_script(facts.text, read_only=True)
        if result.exit_code != 0:
            raise TargetError(f"reading the current state from {self.describe()} failed: "
                              f"{_first_error(result.stderr) or 'exit code ' + str(result.exit_code)}")
        return organisation_from_objects(self.platform, parse_objects(result.stdout))


def _first_error(stderr: str) -> str:
    return stderr.strip().splitlines()[0] if stderr.strip() else ""
