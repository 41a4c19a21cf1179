"""Ctrl-C (SIGINT) and SIGTERM during a run: the first stops the run in order, a second ends the process at once.

First signal: nothing new starts (the run's stop switch, toolkit/targets/waits.py), each running target is asked to
stop its remote work where the protocol allows (``Target.interrupt``: WS-Management Signal terminate; no further
REST call), in-flight answers are awaited for at most GRACE_S seconds, then the run reports what is done, not
started and unknown. Outside a remote wait (a prompt, local rendering) the first signal stops at once: nothing
is in flight. A second signal completes the open run records with what is known and exits at once.

Exit codes: 130 after SIGINT, 143 after SIGTERM (128 + the signal's number, as shells report).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from toolkit.targets.base import Target
from toolkit.targets.waits import RUN

GRACE_S = 10.0  # the longest wait for in-flight answers after the first signal
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
T = TypeVar("T")


def exit_code(reason: str) -> int:
    return EXIT_CODES.get(reason, 130)


class Stopped(Exception):  # noqa: N818 - an event, not an error
    """The first signal arrived while nothing remote was in flight (or the grace period ran out)."""

    def __init__(self, reason: str, waited_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.waited_out = waited_out  # the grace period ran out: the in-flight work's outcome is unknown


class ExitNow(BaseException):
    """A second signal: exit at once (after completing the open run records)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Signals:
    """Installed for the duration of a command (main thread only; elsewhere it does nothing)."""

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self.count = 0
        self.waiting = False  # the main thread is in wait_for(): the first signal is noticed there
        self.notify = notify or (lambda message: None)

    @contextmanager
    def installed(self) -> Iterator[Signals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handler(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        RUN.request_stop(name)
        if self.count > 1:
            raise ExitNow(RUN.reason)
        if not self.waiting:
            raise Stopped(name)

    def wait_for(self, work: Callable[[], T], targets: Sequence[Target], what: str) -> T:
        """Run ``work`` in a worker thread while the main thread waits. On the first signal (or when the run's
        --timeout has passed): interrupt the targets and wait at most GRACE_S more; then raise Stopped."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = work()
            except BaseException as exc:  # handed to the main thread
                box["error"] = exc

        thread = threading.Thread(target=run, name="exkit-run", daemon=True)
        thread.start()
        stopping_since: float | None = None
        self.waiting = True
        try:
            while thread.is_alive():
                thread.join(0.1)
                if not thread.is_alive():
                    break
                remaining = RUN.remaining()
                if remaining is not None and remaining < -1.0 and not RUN.stopping:
                    RUN.request_stop("timeout")  # a backstop: connectors end their own waits at the deadline
                if RUN.stopping and stopping_since is None:
                    stopping_since = time.monotonic()
                    again = "" if RUN.reason == "timeout" else "; press Ctrl-C again to exit at once"
                    self.notify(f"{RUN.reason}: stopping — nothing new starts; {what} is being stopped (waiting up "
                                f"to {GRACE_S:g} s for answers in flight){again}")
                    for target in targets:
                        try:
                            target.interrupt()
                        except Exception:  # noqa: BLE001 - stopping must go on for the other targets
                            pass
                if stopping_since is not None and time.monotonic() - stopping_since > GRACE_S:
                    raise Stopped(RUN.reason, waited_out=True)
        finally:
            self.waiting = False
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]
