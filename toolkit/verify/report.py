"""How plans and run results look to people (rich) and to programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.plan import Plan
from toolkit.resources.base import ALL_MAILBOXES, grant_text
from toolkit.targets.base import RunResult
from toolkit.verify.checks import check_summary

_SYMBOLS = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red"), "noop": ("=", "dim"),
            "error": ("!", "bold red")}
_ACTION_STYLE = {"created": "green", "updated": "yellow", "removed": "red", "failed": "bold red",
                 "unchanged": "dim", "absent": "dim"}


def console(stderr: bool = False) -> Console:
    """Rich output; not on a terminal (CI logs, pipes) tables get 200 columns instead of wrapping at 80."""
    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
    return out


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
                 "delete": "remove", "error": "would fail"}[change.action]
        out.print(Text(f"  {symbol} {change.kind} {change.name!r} ({label})", style=style))
        grant = grant_text(change.resource)
        if grant:  # every grant says role, assignee and scope; organisation-wide ones loudly
            out.print(Text(f"      grant: {grant}", style="bold red" if ALL_MAILBOXES in grant else ""))
        for field in change.fields:
            out.print(Text(f"      {field.field}: {_value(field.before)} → {_value(field.after)}"))
        if change.error:
            out.print(Text(f"      {change.error}", style="red"))
    counts = plan.counts()
    errors = f", {counts['error']} that Exchange would refuse" if counts["error"] else ""
    out.print(Text(f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to remove, "
                   f"{counts['noop']} unchanged{errors}.", style="bold"))


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


_STATUS_STYLE = {"pass": "green", "fail": "bold red", "not checked": "bold magenta", "warning": "yellow",
                 "info": "dim"}


def show_checks(out: Console, checks: list[Any], where: str, title: str = "Verify") -> None:
    """A table on a terminal; elsewhere (CI logs, pipes, files) one line per check, which no width wraps into an
    unreadable column: ``FAIL principal 'svc-rooms@contoso.com': …``."""
    if not out.is_terminal:
        out.print(Text(f"{title} on {where}:"))
        for check in checks:
            out.print(Text(f"{check.status.upper()} {check.subject}: {check.message}"), soft_wrap=True)
        out.print(Text(f"{title}: {check_summary(checks)}."))
        return
    table = Table(title=f"{title} on {where}", title_justify="left", show_edge=False)
    table.add_column("result")
    table.add_column("subject")
    table.add_column("detail")
    for check in checks:
        table.add_row(Text(check.status.upper(), style=_STATUS_STYLE.get(check.status, "")),
                      Text(check.subject), Text(check.message))
    out.print(table)
    out.print(Text(f"{title}: {check_summary(checks)}.", style="bold"))


def show_previews(out: Console, previews: list[Any], where: str, entra: list[Any] | None = None) -> None:
    """The scopes' matches, then (Exchange Online) whether Entra consent lets the apps past them."""
    table = Table(title=f"Scope preview ({where})", title_justify="left", show_edge=False)
    for column in ("result", "scope", "matches", "sample"):
        table.add_column(column)
    for preview in previews:
        counts = ", ".join(f"{n} {k}" for k, n in preview.counts.items()) or "nothing"
        table.add_row(Text("FAIL" if preview.problem else "ok", style="bold red" if preview.problem else "green"),
                      Text(preview.scope), Text(counts), Text(preview.problem or ", ".join(preview.samples)))
    out.print(table)
    if entra:
        show_checks(out, entra, where, "Entra consent (Microsoft Graph)")


def run_report(*, playbook: str, target: str, plan: Plan, result: RunResult, checks: list[Any] | None, html: bool,
               reviewed_sha256: str = "", record: dict[str, Any] | None = None, endpoint: str = "",
               script: str = "", command: str = "apply", verify_not_run: str = "", impact: Any = None) -> str:
    """A record of one apply that a change board can file (HTML or Markdown): who, where, when, which run and
    version; the plan (each grant's role, assignee and scope) with before → after; the results; verify (or why it did
    not run); the access impact when it was computed (toolkit.verify.impact.Impact); the script and its sha256.
    The page's data and its layout live apart: toolkit/verify/run_report.py and templates/report/."""
    from toolkit.verify.run_report import render_page, run_page

    page = run_page(playbook=playbook, target=target, plan=plan, result=result, checks=checks,
                    reviewed_sha256=reviewed_sha256, record=record, endpoint=endpoint, script=script,
                    command=command, verify_not_run=verify_not_run, impact=impact)
    return render_page(page, html)
