"""Many targets at once: plan, apply or verify one playbook on every selected target with a bounded worker pool.

Each target runs on its own (its own connection, its own state); an error on one is recorded as that target's
outcome and never stops or touches the others. The workers (``--forks``) are threads, spread over several processes
on Linux (see worker_processes).
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from toolkit.errors import ExkitError
from toolkit.fleet import records as runs
from toolkit.fleet.signals import GRACE_S
from toolkit.fleet.lifecycle import execute_recorded
from toolkit.inventory import ResolvedTarget
from toolkit.playbook.diagnostics import PlaybookError
from toolkit.render.engine import RenderError
from toolkit.targets.base import TargetError
from toolkit.targets.waits import RUN
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
        outcome = TargetOutcome(target.name, False, str(exc), duration_s=round(time.monotonic() - started, 3))
        if RUN.stopping:  # stopped by Ctrl-C / SIGTERM / --timeout while this target ran
            outcome.details["status"] = "interrupted"
        return outcome


def _plan_apply_verify(action: Action, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
                       templates: Path | None, started: float) -> TargetOutcome:
    if action == "verify":
        from toolkit.verify.checks import check_summary
        from toolkit.workflow import load_for_target, verify_target

        model, _ = load_for_target(playbook, target, cli_vars)
        checks = verify_target(model, target, templates, cli_vars)
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
    spread over up to two processes per CPU (with one per CPU, a CPU whose process's threads all wait on the network
    or on its lock idles while the other process's threads queue for theirs: the Exchange Online benchmark ran
    0.06–0.19 nearer its floor with two per CPU, the WinRM one the same). One process when there is nothing to gain
    or it would be unsafe: no fork(), a global --rate (one bucket is exact; several processes would split it) or a
    target asking for a password on the terminal."""
    if requested is not None:
        wanted = requested
    elif rate or not sys.platform.startswith("linux") or any(t.target.prompts() for t in targets):
        wanted = 1
    else:
        wanted = 2 * len(os.sched_getaffinity(0))  # the CPUs this process may use (taskset, container cpusets)
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
    if count > 1:
        return _run_in_processes(action, playbook, targets, cli_vars, templates, forks, progress, count)
    return _run_in_threads(action, playbook, targets, cli_vars, templates, forks, progress)


def _interrupt(targets: list[ResolvedTarget], indexes: set[int]) -> None:
    """Ask each running target to stop its remote work (WinRM: Signal terminate; REST: no further call)."""
    for index in indexes:
        try:
            targets[index].target.interrupt()
        except Exception:  # noqa: BLE001 - stopping goes on for the other targets
            pass


def _waited_out(target: ResolvedTarget) -> TargetOutcome:
    return TargetOutcome(target.name, False, f"interrupted: no answer within {GRACE_S:g} s of the stop; what was in "
                         "flight is unknown: run exkit plan", details={"status": "interrupted"})


def _run_in_threads(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                    templates: Path | None, forks: int,
                    progress: Callable[[TargetOutcome, int, int], None] | None) -> list[TargetOutcome]:
    """A thread per fork. Once the run is told to stop (RUN.stop: the first Ctrl-C / SIGTERM, or --timeout), no
    further target starts, the running ones are asked to stop their remote work and get GRACE_S seconds to say how
    far they got; then the run reports every target (FleetInterrupted)."""
    outcomes: dict[int, TargetOutcome] = {}
    running: set[int] = set()
    lock = threading.Lock()

    def job(index: int) -> TargetOutcome | None:
        if RUN.stopping:  # stopped before this target was taken (the loop cancels the rest): it never starts
            return None
        with lock:
            running.add(index)
        try:
            return _run_one_safely(action, playbook, targets[index], cli_vars, templates)
        finally:
            with lock:
                running.discard(index)

    pool = ThreadPoolExecutor(max_workers=max(1, forks), thread_name_prefix="exkit")
    stopped_at: float | None = None
    try:
        futures = {pool.submit(job, i): i for i in range(len(targets))}
        pending = set(futures)
        while pending:
            if RUN.stopping and stopped_at is None:
                stopped_at = time.monotonic()
                pool.shutdown(wait=False, cancel_futures=True)  # no new targets
                with lock:
                    _interrupt(targets, set(running))
            if stopped_at is not None and time.monotonic() - stopped_at > GRACE_S:
                break  # the rest get no more time: their outcome is unknown
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            pending = {f for f in pending if not f.cancelled()}  # wait() never counts a cancelled future as done
            for future in done:
                if future.cancelled() or (outcome := future.result()) is None:
                    continue  # reported as not started
                outcomes[futures[future]] = outcome
                if progress is not None:
                    progress(outcome, len(outcomes), len(targets))
        for future in pending:
            outcomes[futures[future]] = _waited_out(targets[futures[future]])
        if pending:
            runs.close_open("interrupted", f"{RUN.reason}: no answer within {GRACE_S:g} s of the stop; what was "
                                              "in flight is unknown")
    finally:
        pool.shutdown(wait=stopped_at is None)  # after a stop, a thread still waiting on the network is left behind
    if RUN.stopping:
        raise FleetInterrupted(_with_not_started(targets, outcomes))
    return [outcomes[i] for i in range(len(targets))]


class FleetInterrupted(Exception):
    """The fleet run was stopped (Ctrl-C, SIGTERM, --timeout): every target's outcome, the ones that never started
    included."""

    def __init__(self, outcomes: list[TargetOutcome]) -> None:
        super().__init__("interrupted")
        self.outcomes = outcomes


def _with_not_started(targets: list[ResolvedTarget], outcomes: dict[int, TargetOutcome]) -> list[TargetOutcome]:
    return [outcomes.get(i) or TargetOutcome(t.name, False, "not started: the run was interrupted",
                                             details={"status": "not started"})
            for i, t in enumerate(targets)]


def _run_in_processes(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                      templates: Path | None, forks: int, progress: Callable[[TargetOutcome, int, int], None] | None,
                      count: int) -> list[TargetOutcome]:
    """Forked worker processes, each with its share of the forks as threads, take targets from one queue (a slow
    tenant holds up nobody) and send each outcome back over their own pipe. A worker that dies fails only the
    targets it had started; the others take what is left."""
    context = multiprocessing.get_context("fork")  # the workers inherit the resolved targets: nothing is re-read
    stopping = context.Event()  # set on a stop: the workers stop their running targets and take no more
    reason = context.Array("c", 16)  # why: SIGINT, SIGTERM or timeout
    tasks: Any = context.Queue()
    for index in range(len(targets)):
        tasks.put(index)
    for _ in range(forks):
        tasks.put(None)  # one stop sign per thread
    workers, pipes = [], {}
    # What the workers inherit (the resolved targets, the loaded modules) stays as it is in them: frozen objects are
    # left out of their garbage collections, which would otherwise walk them all again and again and write to their
    # pages, copying them (the gc.freeze documentation's advice for fork without exec).
    gc.freeze()
    try:
        for number in range(count):
            threads = forks // count + (1 if number < forks % count else 0)
            receiving, sending = context.Pipe(duplex=False)
            worker = context.Process(target=_worker, name=f"exkit-worker-{number}", daemon=True,
                                     args=(action, playbook, targets, cli_vars, templates, threads, tasks, sending,
                                           stopping, reason))
            worker.start()
            sending.close()  # the worker holds the only sending end: its exit reads as end-of-file here
            workers.append(worker)
            pipes[receiving] = number
    finally:
        gc.unfreeze()
    outcomes: dict[int, TargetOutcome] = {}
    running: dict[int, int] = {}  # target index → worker number

    def record(index: int, outcome: TargetOutcome) -> None:
        outcomes[index] = outcome
        if progress is not None:
            progress(outcome, len(outcomes), len(targets))

    def lost(index: int, exit_code: int | None) -> TargetOutcome:
        return TargetOutcome(targets[index].name, False, "the worker process running this target stopped (exit "
                             f"code {exit_code}); some resources may have been applied: run exkit plan")

    stopped_at: float | None = None
    try:
        while pipes:
            if RUN.stopping and not stopping.is_set():
                reason.value = RUN.reason.encode()[:16]
                stopping.set()  # the workers stop their targets; a second signal ends them at once (below)
                stopped_at = time.monotonic()
            if stopped_at is not None and time.monotonic() - stopped_at > GRACE_S + 2:
                for index in list(running):
                    record(index, _waited_out(targets[index]))
                break  # the workers closed their open records when their own grace ran out
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
        if RUN.stopping:
            raise FleetInterrupted(_with_not_started(targets, outcomes))
        for index in range(len(targets)):  # taken by a worker that died before saying it started them
            if index not in outcomes:
                record(index, lost(index, next((w.exitcode for w in workers if w.exitcode), None)))
    finally:
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGUSR1)  # type: ignore[arg-type]  # complete its records, exit now
                worker.join(timeout=2)
            if worker.is_alive():
                worker.kill()
            worker.join()
    return [outcomes[i] for i in range(len(targets))]


def _worker(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
            templates: Path | None, threads: int, tasks: Any, pipe: Any, stopping: Any, reason: Any) -> None:
    """A worker process: ``threads`` threads take target indexes from ``tasks`` until a stop sign (None), or until
    the parent sets ``stopping``: then the running targets are asked to stop their remote work, and after GRACE_S
    the records still open are completed and the worker exits. SIGUSR1 from the parent (a second Ctrl-C) completes
    the open records and exits at once."""
    # Ctrl-C and a SIGTERM to the process group reach every process: the parent decides and tells the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def exit_now(signum: int, frame: Any) -> None:
        runs.close_open("interrupted", "exkit was ended at once (a second signal); what was in flight is unknown")
        os._exit(130)

    signal.signal(signal.SIGUSR1, exit_now)
    # Fresh standard streams: a lock one of the parent's threads held at fork() time must not block a warning here.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 — outcomes go to the parent; nothing is printed here
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)
    sending = threading.Lock()
    running: set[int] = set()

    def send(message: tuple[str, int, TargetOutcome | None]) -> None:
        with sending:
            pipe.send(message)  # written before the target runs: a crash cannot hide which targets were running

    def loop() -> None:
        while (index := tasks.get()) is not None and not stopping.is_set():
            send(("started", index, None))
            with sending:
                running.add(index)
            outcome = _run_one_safely(action, playbook, targets[index], cli_vars, templates)
            with sending:
                running.discard(index)
            send(("done", index, outcome))

    def watch() -> None:
        stopping.wait()
        RUN.request_stop(reason.value.decode() or "SIGINT")
        with sending:
            _interrupt(targets, set(running))
        time.sleep(GRACE_S)
        runs.close_open("interrupted", f"{RUN.reason}: no answer within {GRACE_S:g} s of the stop; what was in "
                                       "flight is unknown")
        os._exit(130)

    threading.Thread(target=watch, name="exkit-stop", daemon=True).start()
    pool = [threading.Thread(target=loop, name=f"exkit-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
