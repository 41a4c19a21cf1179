"""Bounded waits and the run's stop switch, shared by every connector.

Every network wait of a run has a bound the user can see and set (an inventory setting, or ``--timeout`` for the
whole run), and a bound is a total: the attempts of a retried request and the pauses between them all count against
it, and no retry starts whose pause would end past it. When a bound is hit, the message says what was waited for,
for how long in total, over how many attempts, and which setting bounds it.

The stop switch is set by the first SIGINT / SIGTERM (toolkit/fleet/signals.py): connectors start nothing new once it
is set (no further REST call, no new script) and stop what runs where the protocol allows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from toolkit.targets.base import TargetError

# The shortest attempt worth starting: a retry whose pause leaves less than this before the bound is not started.
MIN_ATTEMPT_S = 0.5


class TimedOut(TargetError):
    """A bounded wait ran out (an inventory timeout, or the run's --timeout)."""


class Interrupted(TargetError):
    """The run was asked to stop (Ctrl-C, SIGTERM, or its --timeout): nothing further was started."""


class RunControl:
    """The run's deadline (``--timeout``) and stop switch. One per process; fleet worker processes get their own."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # time.monotonic() value
        self.timeout_s: float | None = None
        self.stop = threading.Event()
        self.reason = ""  # "SIGINT", "SIGTERM", "timeout"

    def set_timeout(self, seconds: float | None) -> None:
        self.timeout_s = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        """Before starting something new: refuse when the run is stopping or past its deadline."""
        if self.stop.is_set():
            raise Interrupted(f"{what} was not started: the run was interrupted ({self.reason})")
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise TimedOut(f"{what} was not started: the run's --timeout ({self.timeout_s:g} s) has passed")


RUN = RunControl()


@dataclass
class Wait:
    """One bounded wait for an answer: ``what`` is waited for (e.g. "InvokeCommand Get-ManagementScope at …"),
    at most ``bound`` seconds in total (the setting named ``setting``) and never past the run's deadline."""

    what: str
    bound: float
    setting: str
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _limit(self) -> tuple[float, str]:
        """Seconds left, and which bound sets them."""
        left, by = self.bound - self.elapsed, "setting"
        run_left = RUN.remaining()
        if run_left is not None and run_left < left:
            left, by = run_left, "run"
        return left, by

    def timeout(self) -> float:
        """The timeout for the next attempt (what is left of the bound); counts the attempt. Raises TimedOut when
        nothing is left, Interrupted when the run is stopping."""
        RUN.check(self.what)
        left, _ = self._limit()
        if left <= 0:
            raise self.expired()
        self.attempts += 1
        return left

    def answered(self) -> None:
        """An answer came: the next wait for this kind of answer starts afresh."""
        self.started, self.attempts = time.monotonic(), 0

    def may_retry(self, pause: float) -> bool:
        """Whether a retry after ``pause`` seconds could still get an answer before the bound."""
        left, _ = self._limit()
        return not RUN.stopping and pause + MIN_ATTEMPT_S < left

    def expired(self, detail: str = "") -> TimedOut:
        _, by = self._limit()
        bound = (f"the run's --timeout of {RUN.timeout_s:g} s" if by == "run" else
                 f"{self.setting} {self.bound:g} s")
        return TimedOut(f"no answer from {self.what}: waited {self.elapsed:.1f} s in total over {self.attempts} "
                        f"attempt(s) ({bound}){'; ' + detail if detail else ''}")

    def summary(self) -> str:
        return f"waited {self.elapsed:.1f} s in total over {self.attempts} attempt(s)"
