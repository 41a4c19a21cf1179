"""Many targets at once: plan, apply or verify one playbook on every selected target with a bounded worker pool.

Each target runs on its own (its own connection, its own state); an error on one is recorded as that target's
outcome and never stops or touches the others. The workers (``--forks``) are threads, spread over several processes
on Linux (see worker_processes).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from toolkit.errors import ExkitError
from toolkit.fleet import records as runs
from toolkit.fleet.lifecycle import execute_recorded
from toolkit.inventory import ResolvedTarget
from toolkit.playbook.diagnostics import PlaybookError
from toolkit.render.engine import RenderError
from toolkit.targets.base import TargetError
from toolkit.workflow import execute, prepare

Action = Literal["plan", "plan-destroy", "apply", "destroy", "verify"]


@dataclass
class TargetOutcome:
    target: str
    ok: bool
    summary: str
    pending: int = 0
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "summary": self.summary, "pending": self.pending,
                "duration_s": self.duration_s, **self.details}


def _count(items: list[str]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "nothing"


def run_one(action: Action, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
            templates: Path | None) -> TargetOutcome:
    outcome = _run_one(action, playbook, target, cli_vars, templates)
    waited = target.target.throttled_s
    if waited > 0.05:
        outcome.summary += f" (waited {waited:.1f} s for rate limits)"
        outcome.details["throttled_s"] = round(waited, 3)
    return outcome


def _run_one(action: Action, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
             templates: Path | None) -> TargetOutcome:
    started = time.monotonic()
    try:
        with target.target.session():  # plan's facts script and apply's script share one connection
            return _plan_apply_verify(action, playbook, target, cli_vars, templates, started)
    except PlaybookError as exc:
        errors = sorted(exc.diagnostics.errors, key=lambda d: (d.file, d.position))
        message = errors[0].format().splitlines()[0] if errors else "invalid playbook"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more: exkit validate -i INVENTORY -t {target.name})"
        details: dict[str, Any] = {"diagnostics": [d.as_dict() for d in errors]}
        if any(d.code == "outside-boundary" for d in errors):
            details["boundary"] = "violated"
        if action in ("apply", "destroy"):  # an apply that did not start is still accounted for
            runs.append({**runs.new_record(command=action, target=target.name, platform=target.target.platform,
                                           playbook=str(playbook), status="refused"),
                         "duration_s": round(time.monotonic() - started, 3), "exit_code": 1, "error": message,
                         "results": []})
        return TargetOutcome(target.name, False, message, duration_s=round(time.monotonic() - started, 3),
                             details=details)
    except (ExkitError, TargetError, RenderError) as exc:
        return TargetOutcome(target.name, False, str(exc), duration_s=round(time.monotonic() - started, 3))


def _plan_apply_verify(action: Action, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
                       templates: Path | None, started: float) -> TargetOutcome:
    if action == "verify":
        from toolkit.verify.checks import check_summary
        from toolkit.workflow import load_for_target, verify_target

        model, _ = load_for_target(playbook, target, cli_vars)
        checks = verify_target(model, target, templates)
        failed = [c for c in checks if not c.ok]  # failures and checks not done
        failed.sort(key=lambda c: c.subject != "boundary")  # a boundary crossed is what the summary shows first
        summary = _boundary_word(target, not any(c.subject == "boundary" for c in failed)) + (
            check_summary(checks)) + (
            f": {failed[0].subject}: {failed[0].message}" if failed else "")
        details: dict[str, Any] = {"checks": [c.as_dict() for c in checks]}
        if target.boundary is not None:
            details["boundary"] = "violated" if any(c.subject == "boundary" for c in failed) else "ok"
        return TargetOutcome(target.name, not failed, summary, duration_s=round(time.monotonic() - started, 3),
                             details=details)
    prepared = prepare(playbook, target, cli_vars, templates=templates, destroy=action in ("destroy", "plan-destroy"))
    pending = len(prepared.plan.pending)
    checked = {"boundary": "ok"} if target.boundary is not None else {}
    if prepared.plan.errors:  # what the target would refuse: nothing starts on this target
        first = prepared.plan.errors[0]
        summary = (f"the target would refuse {len(prepared.plan.errors)} change(s), first {first.kind} "
                   f"{first.name!r} would fail: {first.error}")
        if action not in ("plan", "plan-destroy"):  # an apply that did not start is still accounted for
            runs.append({**runs.new_record(command=action, target=target.name, platform=target.target.platform,
                                           playbook=str(playbook), playbook_name=prepared.playbook.name,
                                           script_sha256=prepared.script.sha256, status="refused"),
                         "duration_s": round(time.monotonic() - started, 3), "exit_code": 1, "error": summary,
                         "results": []})
        return TargetOutcome(target.name, False, summary, pending, round(time.monotonic() - started, 3),
                             {"plan": prepared.plan.as_dict()})
    if action in ("plan", "plan-destroy"):
        counts = prepared.plan.counts()
        verb = "to remove" if prepared.plan.destroy else "to create"
        number = counts["delete"] if prepared.plan.destroy else counts["create"]
        return TargetOutcome(target.name, True, _boundary_word(target, True) + f"{number} {verb}, {counts['update']} "
                             f"to update, {counts['noop']} unchanged", pending, round(time.monotonic() - started, 3),
                             {"plan": prepared.plan.as_dict(), **checked})
    record = runs.RunRecord(**runs.invocation(action, playbook, variables=cli_vars, templates=templates,
                                              inventory=target.inventory, target=target),
                            reviewed_sha256=target.pin.scripts.get(action) if target.pin else None,
                            **(target.pin.record() if target.pin else {}))
    result = execute_recorded(prepared, record, lambda: execute(prepared))
    summary = _boundary_word(target, True) + _count([r.action for r in result.results])
    if not result.ok:
        failed = result.failed[0] if result.failed else None
        summary += f": {failed.kind} {failed.name!r} failed: {failed.error}" if failed else f": {result.stderr}"
    return TargetOutcome(target.name, result.ok, summary, pending, round(time.monotonic() - started, 3),
                         {"results": [r.__dict__ for r in result.results], "notices": result.notices,
                          "script_sha256": result.script_sha256, "plan": prepared.plan.as_dict(), **checked})


def _boundary_word(target: ResolvedTarget, ok: bool) -> str:
    """How a bounded tenant's summary starts ('boundary ok: …'); nothing for a target without a boundary."""
    if target.boundary is None:
        return ""
    return "boundary ok: " if ok else "BOUNDARY CROSSED: "


def _run_one_safely(action: Action, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
                    templates: Path | None) -> TargetOutcome:
    try:
        return run_one(action, playbook, target, cli_vars, templates)
    except Exception as exc:  # a bug in one target's run must not take the others down
        return TargetOutcome(target.name, False, f"internal error: {type(exc).__name__}: {exc}")


def worker_processes(targets: list[ResolvedTarget], forks: int, rate: float | None, requested: int | None) -> int:
    """How many processes share a run's workers. One Python process runs one thread at a time (the GIL), and a
    large fleet keeps a process busy with TLS, NTLM, WS-Management XML and rendering: on Linux the workers are
    spread over up to one process per CPU. One process when there is nothing to gain or it would be unsafe: no
    fork(), a global --rate (one bucket is exact; several processes would split it) or a target asking for a
    password on the terminal."""
    if requested is not None:
        wanted = requested
    elif rate or not sys.platform.startswith("linux") or any(t.target.prompts() for t in targets):
        wanted = 1
    else:
        wanted = len(os.sched_getaffinity(0))  # the CPUs this process may use (taskset, container cpusets)
    return max(1, min(wanted, forks, len(targets)))


def run_many(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
             templates: Path | None, forks: int,
             progress: Callable[[TargetOutcome, int, int], None] | None = None,
             rate: float | None = None, processes: int | None = None) -> list[TargetOutcome]:
    """Run on every target with at most ``forks`` at a time and at most ``rate`` round trips per second across all
    of them; outcomes in the targets' order. ``processes``: how many processes share the forks (None: see
    worker_processes)."""
    count = worker_processes(targets, forks, rate, processes)
    if rate:
        from toolkit.fleet.throttle import RateLimiter

        # Each worker process gets a copy of the bucket: with several, each takes its share of the rate.
        shared = RateLimiter(rate / count, burst=max(1, min(forks // count, int(rate / count))))
        for target in targets:
            target.target.limiters = (*target.target.limiters, shared)
    ctrl_c = _CtrlC()
    with ctrl_c.counted():
        if count > 1:
            return _run_in_processes(action, playbook, targets, cli_vars, templates, forks, progress, count, ctrl_c)
        return _run_in_threads(action, playbook, targets, cli_vars, templates, forks, progress, ctrl_c)


class _CtrlC:
    """Ctrl-C during a run: the first asks it to start no more targets (those running finish), a second one
    interrupts at once. Counted by a signal handler, so it is noticed wherever the main thread is."""

    def __init__(self) -> None:
        self.presses = 0

    @contextmanager
    def counted(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread receives signals
            return

        def handler(signum: int, frame: Any) -> None:
            self.presses += 1
            if self.presses > 1:
                raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _run_in_threads(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                    templates: Path | None, forks: int, progress: Callable[[TargetOutcome, int, int], None] | None,
                    ctrl_c: _CtrlC) -> list[TargetOutcome]:
    outcomes: dict[int, TargetOutcome] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, forks), thread_name_prefix="exkit")
    try:
        futures = {pool.submit(_run_one_safely, action, playbook, t, cli_vars, templates): i
                   for i, t in enumerate(targets)}
        pending, stopped = set(futures), False
        while pending:
            if ctrl_c.presses and not stopped:
                pool.shutdown(wait=False, cancel_futures=True)  # no new targets; the running ones finish
                stopped = True
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            pending = {f for f in pending if not f.cancelled()}  # wait() never counts a cancelled future as done
            for future in done:
                if future.cancelled():
                    continue
                outcomes[futures[future]] = outcome = future.result()
                if progress is not None:
                    progress(outcome, len(outcomes), len(targets))
    finally:
        pool.shutdown(wait=True)
    if ctrl_c.presses:
        raise FleetInterrupted(_with_not_started(targets, outcomes))
    return [outcomes[i] for i in range(len(targets))]


class FleetInterrupted(Exception):
    """Ctrl-C during a fleet run: the targets that were running finished; the others did not start."""

    def __init__(self, outcomes: list[TargetOutcome]) -> None:
        super().__init__("interrupted")
        self.outcomes = outcomes


def _with_not_started(targets: list[ResolvedTarget], outcomes: dict[int, TargetOutcome]) -> list[TargetOutcome]:
    return [outcomes.get(i) or TargetOutcome(t.name, False, "not started: the run was interrupted")
            for i, t in enumerate(targets)]


def _run_in_processes(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                      templates: Path | None, forks: int, progress: Callable[[TargetOutcome, int, int], None] | None,
                      count: int, ctrl_c: _CtrlC) -> list[TargetOutcome]:
    """Forked worker processes, each with its share of the forks as threads, take targets from one queue (a slow
    tenant holds up nobody) and send each outcome back over their own pipe. A worker that dies fails only the
    targets it had started; the others take what is left."""
    context = multiprocessing.get_context("fork")  # the workers inherit the resolved targets: nothing is re-read
    stopping = context.Event()  # set on Ctrl-C: the workers finish their running targets and take no more
    tasks: Any = context.Queue()
    for index in range(len(targets)):
        tasks.put(index)
    for _ in range(forks):
        tasks.put(None)  # one stop sign per thread
    workers, pipes = [], {}
    for number in range(count):
        threads = forks // count + (1 if number < forks % count else 0)
        receiving, sending = context.Pipe(duplex=False)
        worker = context.Process(target=_worker, name=f"exkit-worker-{number}", daemon=True,
                                 args=(action, playbook, targets, cli_vars, templates, threads, tasks, sending,
                                       stopping))
        worker.start()
        sending.close()  # the worker holds the only sending end: its exit reads as end-of-file here
        workers.append(worker)
        pipes[receiving] = number
    outcomes: dict[int, TargetOutcome] = {}
    running: dict[int, int] = {}  # target index → worker number

    def record(index: int, outcome: TargetOutcome) -> None:
        outcomes[index] = outcome
        if progress is not None:
            progress(outcome, len(outcomes), len(targets))

    def lost(index: int, exit_code: int | None) -> TargetOutcome:
        return TargetOutcome(targets[index].name, False, "the worker process running this target stopped (exit "
                             f"code {exit_code}); some resources may have been applied: run exkit plan")

    try:
        while pipes:
            if ctrl_c.presses and not stopping.is_set():
                stopping.set()  # a second Ctrl-C raises KeyboardInterrupt: the workers are killed below
            for pipe in multiprocessing.connection.wait(list(pipes), timeout=0.2):
                try:
                    kind, index, outcome = pipe.recv()  # type: ignore[union-attr]
                except EOFError:  # the worker is gone: after its stop sign, or killed
                    worker = workers[pipes.pop(pipe)]  # type: ignore[index]
                    worker.join()
                    for index in [i for i, n in running.items() if workers[n] is worker]:
                        del running[index]
                        record(index, lost(index, worker.exitcode))
                    continue
                if kind == "started":
                    running[index] = pipes[pipe]  # type: ignore[index]
                else:
                    running.pop(index, None)
                    record(index, outcome)
        if ctrl_c.presses:
            raise FleetInterrupted(_with_not_started(targets, outcomes))
        for index in range(len(targets)):  # taken by a worker that died before saying it started them
            if index not in outcomes:
                record(index, lost(index, next((w.exitcode for w in workers if w.exitcode), None)))
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            worker.join()
    return [outcomes[i] for i in range(len(targets))]


def _worker(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
            templates: Path | None, threads: int, tasks: Any, pipe: Any, stopping: Any) -> None:
    """A worker process: ``threads`` threads take target indexes from ``tasks`` until a stop sign (None), or until
    the parent sets ``stopping``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    # Fresh standard streams: a lock one of the parent's threads held at fork() time must not block a warning here.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 — outcomes go to the parent; nothing is printed here
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    sending = threading.Lock()

    def send(message: tuple[str, int, TargetOutcome | None]) -> None:
        with sending:
            pipe.send(message)  # written before the target runs: a crash cannot hide which targets were running

    def loop() -> None:
        while (index := tasks.get()) is not None and not stopping.is_set():
            send(("started", index, None))
            send(("done", index, _run_one_safely(action, playbook, targets[index], cli_vars, templates)))

    pool = [threading.Thread(target=loop, name=f"exkit-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
