"""How plans and run results look to people (rich) and to programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.plan import Plan
from toolkit.targets.base import RunResult

_SYMBOLS = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red"), "noop": ("=", "dim")}
_ACTION_STYLE = {"created": "green", "updated": "yellow", "removed": "red", "failed": "bold red",
                 "unchanged": "dim", "absent": "dim"}


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _value(value: Any) -> str:
    if value is None or value == [] or value == "":
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def show_plan(out: Console, plan: Plan, playbook: str, where: str) -> None:
    verb = "Destroy plan" if plan.destroy else "Plan"
    out.print(Text(f"{verb} for playbook {playbook!r} on {where}:", style="bold"))
    for change in plan.changes:
        symbol, style = _SYMBOLS[change.action]
        label = {"noop": "absent" if plan.destroy else "unchanged", "create": "create", "update": "update",
                 "delete": "remove"}[change.action]
        out.print(Text(f"  {symbol} {change.kind} {change.name!r} ({label})", style=style))
        for field in change.fields:
            out.print(Text(f"      {field.field}: {_value(field.before)} → {_value(field.after)}"))
    counts = plan.counts()
    out.print(Text(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to remove, "
                   f"{counts['noop']} unchanged.", style="bold"))


def show_results(out: Console, result: RunResult) -> None:
    table = Table(title="Results", title_justify="left", show_edge=False)
    table.add_column("kind")
    table.add_column("name")
    table.add_column("result")
    for item in result.results:
        table.add_row(Text(item.kind), Text(item.name), Text(item.action, style=_ACTION_STYLE.get(item.action, "")))
    if result.results:
        out.print(table)
    counts: dict[str, int] = {}
    for item in result.results:
        counts[item.action] = counts.get(item.action, 0) + 1
    for notice in result.notices:
        out.print(Text(f"Note: {notice}", style="yellow"))
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no resources"
    out.print(Text(f"Summary: {summary}. Script sha256 {result.script_sha256}.", style="bold"))


def failure_message(result: RunResult) -> str:
    applied = [r for r in result.results if r.action in ("created", "updated", "removed")]
    failed = result.failed
    lines = []
    if failed:
        lines.append(f"{failed[0].kind} {failed[0].name!r} failed: {failed[0].error}")
    else:
        lines.append(f"the script stopped with exit code {result.exit_code}: {result.stderr.strip()}")
    if applied:
        lines.append("changed before the failure: " + ", ".join(f"{r.kind} {r.name!r} ({r.action})" for r in applied))
    else:
        lines.append("nothing was changed before the failure")
    lines.append("fix the cause and run again: the script is idempotent and continues where it stopped")
    return "\n".join(lines)


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
