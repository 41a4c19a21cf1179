"""One apply or destroy on one target, accounted for whatever ends it: the run record is opened before the first
change and completed on success, failure, refusal, timeout, Ctrl-C, SIGTERM or a crash, and an interrupted run
says what is done, not started and unknown, and how to find out."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from toolkit.errors import ExkitError
from toolkit.fleet import records
from toolkit.fleet.signals import ExitNow, Signals, Stopped, exit_code
from toolkit.playbook.diagnostics import PlaybookError
from toolkit.render.engine import RenderError
from toolkit.targets.base import RunResult, TargetError
from toolkit.targets.waits import RUN, Interrupted, TimedOut

if TYPE_CHECKING:
    from toolkit.workflow import Prepared


def stop_status() -> str:
    return "timed-out" if RUN.reason == "timeout" else "interrupted"


def failure_status(exc: BaseException) -> str:
    if isinstance(exc, TimedOut):
        return "timed-out"
    if isinstance(exc, Interrupted | Stopped | ExitNow) or RUN.stopping:
        return stop_status()
    return "failed"


@contextmanager
def before_changes(record: records.RunRecord) -> Iterator[None]:
    """Until the script starts: a run that ends here changed nothing; its record says why (``refused`` with the
    reason, or ``interrupted`` / ``timed-out``)."""
    try:
        yield
    except PlaybookError:
        record.close("refused", error="the playbook has errors (printed with their positions)")
        raise
    except (ExkitError, TargetError, RenderError) as exc:
        status = failure_status(exc)
        record.close("refused" if status == "failed" else status, error=str(exc),
                     exit_code=getattr(exc, "exit_code", 1))
        raise
    except (Stopped, ExitNow) as exc:
        record.close(stop_status(), error=f"stopped by {exc.reason} before any change: nothing changed",
                     exit_code=exit_code(exc.reason))
        raise


def execute_recorded(prepared: Prepared, record: records.RunRecord, run: Callable[[], RunResult],
                     signals: Signals | None = None) -> RunResult:
    """Open the record, run the script (in a worker thread the main thread watches when ``signals`` is given),
    and complete the record whatever ends it. Exceptions are re-raised after the record is written."""
    target = prepared.target.target
    record.planned(prepared.plan, prepared.script.sha256, prepared.playbook.name, target)
    record.open()
    record.script_started = True
    started = time.monotonic()

    def seconds() -> float:
        return round(time.monotonic() - started, 3)

    try:
        if signals is not None:
            result = signals.wait_for(run, [target], f"the script on {target.describe()}")
        else:
            result = run()
    except ExitNow as exc:
        record.close(stop_status(), error=f"a second {exc.reason}: exkit exited at once; what was in flight is "
                     "unknown", exit_code=exit_code(exc.reason), duration_s=seconds())
        raise
    except Stopped as exc:
        record.close(stop_status(), error=f"{exc.reason}: no answer within the grace period; what was in flight "
                     "is unknown", exit_code=exit_code(exc.reason), duration_s=seconds())
        raise
    except (TargetError, ExkitError, RenderError) as exc:
        status = failure_status(exc)
        record.close(status, error=str(exc), duration_s=seconds(),
                     exit_code=exit_code(RUN.reason) if status == "interrupted" else 1)
        raise
    except Exception as exc:
        record.close("crashed", error=f"{type(exc).__name__}: {exc}", duration_s=seconds())
        raise
    status = "ok" if result.ok else "failed"
    if RUN.stopping:
        status = stop_status()
    record.close(status, results=result.results, duration_s=seconds(), notices=result.notices,
                 exit_code=0 if status == "ok" else exit_code(RUN.reason) if status == "interrupted" else 1,
                 error=result.stderr.strip()[:2000] if status != "ok" else "")
    return result


def what_is_known(data: dict[str, object], find_out: str) -> list[str]:
    """Lines for the user after a run that did not end normally: done, not started, unknown, how to find out."""
    changes = [c for c in data.get("changes") or [] if isinstance(c, dict) and c.get("planned") != "noop"]
    groups: dict[str, list[str]] = {"done": [], "failed": [], "unknown": [], "not started": []}
    for change in changes:
        outcome = str(change.get("outcome"))
        group = ("done" if outcome in records.DONE else outcome if outcome in groups else "unknown")
        groups[group].append(f"{change.get('kind')} {change.get('name')!r} ({change.get('planned')}"
                             f"{': ' + outcome if group in ('done', 'failed') else ''})")
    lines = [f"  {name}: {len(items)}" + (": " + "; ".join(items[:10]) + (" …" if len(items) > 10 else "")
                                         if items else "")
             for name, items in groups.items() if items or name != "failed"]
    lines.append(f"  run record {data.get('id')} (exkit runs show {data.get('id')}). {find_out}")
    return lines
