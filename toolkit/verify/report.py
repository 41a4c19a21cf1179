"""How plans and run results look to people (rich) and to programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.plan import Plan
from toolkit.resources.base import ALL_MAILBOXES, grant_text
from toolkit.verify.checks import check_summary
from toolkit.targets.base import RunResult

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


def run_report(*, playbook: str, target: str, plan: Plan, result: RunResult, checks: list[Any], html: bool,
               reviewed_sha256: str = "", impact: Any = None) -> str:
    """A record of one apply that a change board can file: plan (each grant's role, assignee and scope), results,
    verify outcome, script sha256, and the access impact when it was computed (toolkit.verify.impact.Impact)."""
    rows_plan = [(c.action, c.kind, c.name, grant_text(c.resource),
                  "; ".join(f"{f.field}: {_value(f.before)} → {_value(f.after)}" for f in c.fields))
                 for c in plan.changes]
    rows_results = [(r.kind, r.name, r.action, r.error) for r in result.results]
    rows_checks = [(c.status.upper(), c.subject, c.message) for c in checks if c.area != "entra"]
    rows_entra = [(c.status.upper(), c.subject, c.message) for c in checks if c.area == "entra"]
    title = f"exkit run report: {playbook} on {target}"
    facts = [("Playbook", playbook), ("Target", target), ("Script sha256", result.script_sha256),
             ("Reviewed sha256", reviewed_sha256 or "(not pinned to a review)"),
             ("Outcome", "applied" if result.ok else "FAILED"),
             ("Verify", check_summary(checks))]
    sections = [("Plan", ("action", "kind", "name", "grant", "changes"), rows_plan),
                ("Results", ("kind", "name", "result", "error"), rows_results),
                ("Verify", ("result", "subject", "detail"), rows_checks)]
    if rows_entra:  # Exchange Online: what Entra ID grants the apps, read through Microsoft Graph
        sections.append(("Entra consent (Microsoft Graph)", ("result", "subject", "detail"), rows_entra))
    if impact is not None:  # who gains or loses which mailboxes (toolkit/verify/impact.py)
        facts.append(("Access impact", ("WIDENING: " if impact.widening else "no widening; ") + impact.source))
        sections.append(("Access impact", ("principal", "right", "before → after", "added", "removed", "widening"),
                         [(r.principal, r.right, f"{r.reach(r.before)} → {r.reach(r.after)}", len(r.added),
                           len(r.removed), r.finding.text() if r.finding else "") for r in impact.rows]))
    if html:
        import html as escape

        def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
            head = "".join(f"<th>{escape.escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{escape.escape(str(c))}</td>" for c in row) + "</tr>"
                           for row in rows)
            return f"<table border=\"1\" cellpadding=\"4\"><tr>{head}</tr>{body}</table>"

        parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{escape.escape(title)}</title></head>"
                 f"<body><h1>{escape.escape(title)}</h1>", table(("", ""), facts)]
        parts += [f"<h2>{name}</h2>" + table(header, rows) for name, header, rows in sections]
        return "".join(parts) + "</body></html>\n"

    from toolkit.markdown import cell  # names come from playbooks and targets: shown as text, never as markup

    lines = [f"# {cell(title)}", ""] + [f"- **{k}**: {cell(v)}" for k, v in facts]
    for name, header, rows in sections:
        lines += ["", f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
