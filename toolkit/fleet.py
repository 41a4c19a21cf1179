"""Many targets at once: plan, apply or verify one playbook on every selected target with a bounded worker pool.

Each target runs on its own (its own connection, its own state); an error on one is recorded as that target's
outcome and never stops or touches the others.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from toolkit import runs
from toolkit.errors import ExkitError
from toolkit.inventory import ResolvedTarget
from toolkit.playbook.diagnostics import PlaybookError
from toolkit.render.engine import RenderError
from toolkit.targets.base import TargetError
from toolkit.workflow import execute, prepare, read_snapshot

Action = Literal["plan", "apply", "verify"]


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
        first = exc.diagnostics.sorted()[0] if exc.diagnostics.items else None
        message = first.format().splitlines()[0] if first else "invalid playbook"
        return TargetOutcome(target.name, False, message, duration_s=round(time.monotonic() - started, 3))
    except (ExkitError, TargetError, RenderError) as exc:
        return TargetOutcome(target.name, False, str(exc), duration_s=round(time.monotonic() - started, 3))


def _plan_apply_verify(action: Action, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
                       templates: Path | None, started: float) -> TargetOutcome:
    if action == "verify":
        from toolkit.verify import verify
        from toolkit.workflow import load_for_target

        model, _ = load_for_target(playbook, target, cli_vars)
        checks = verify(model, read_snapshot(model, target, templates))
        failed = [c for c in checks if not c.ok]
        summary = f"{len(checks) - len(failed)} passed, {len(failed)} failed" + (
            f": {failed[0].subject}: {failed[0].message}" if failed else "")
        return TargetOutcome(target.name, not failed, summary, duration_s=round(time.monotonic() - started, 3),
                             details={"checks": [c.as_dict() for c in checks]})
    prepared = prepare(playbook, target, cli_vars, templates=templates)
    pending = len(prepared.plan.pending)
    if action == "plan":
        counts = prepared.plan.counts()
        return TargetOutcome(target.name, True, f"{counts['create']} to create, {counts['update']} to update, "
                             f"{counts['noop']} unchanged", pending, round(time.monotonic() - started, 3),
                             {"plan": prepared.plan.as_dict()})
    record = runs.new_record(command="apply", target=target.name, platform=target.target.platform,
                             playbook=str(playbook), playbook_name=prepared.playbook.name,
                             playbook_sha256=hashlib.sha256(playbook.read_bytes()).hexdigest(),
                             script_sha256=prepared.script.sha256, reviewed_sha256=None)
    try:
        result = execute(prepared)
    except TargetError as exc:
        runs.append({**record, "duration_s": round(time.monotonic() - started, 3), "exit_code": 1,
                     "error": str(exc), "results": []})
        raise
    runs.append({**record, "duration_s": round(time.monotonic() - started, 3),
                 "exit_code": 0 if result.ok else 1, "results": [r.__dict__ for r in result.results],
                 "notices": result.notices})
    summary = _count([r.action for r in result.results])
    if not result.ok:
        failed = result.failed[0] if result.failed else None
        summary += f": {failed.kind} {failed.name!r} failed: {failed.error}" if failed else f": {result.stderr}"
    return TargetOutcome(target.name, result.ok, summary, pending, round(time.monotonic() - started, 3),
                         {"results": [r.__dict__ for r in result.results], "notices": result.notices,
                          "script_sha256": result.script_sha256})


def run_many(action: Action, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
             templates: Path | None, forks: int,
             progress: Callable[[TargetOutcome, int, int], None] | None = None,
             rate: float | None = None) -> list[TargetOutcome]:
    """Run on every target with at most ``forks`` at a time and at most ``rate`` round trips per second across all
    of them; outcomes in the targets' order."""
    if rate:
        from toolkit.throttle import RateLimiter

        shared = RateLimiter(rate, burst=max(1, min(forks, int(rate))))
        for target in targets:
            target.target.limiters = (*target.target.limiters, shared)
    outcomes: dict[str, TargetOutcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, forks), thread_name_prefix="exkit") as pool:
        futures = {pool.submit(run_one, action, playbook, t, cli_vars, templates): t for t in targets}
        for done, future in enumerate(as_completed(futures), start=1):
            target = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # a bug in one target's run must not take the others down
                outcome = TargetOutcome(target.name, False, f"internal error: {type(exc).__name__}: {exc}")
            outcomes[target.name] = outcome
            if progress is not None:
                progress(outcome, done, len(targets))
    return [outcomes[t.name] for t in targets]
