"""The fleet run report: one page for an apply on many targets — per tenant its status, boundary, plan, results and
verify outcome, with the changes identical across tenants folded at the top.

The page's data (:func:`fleet_page`, plain dicts a template can lay out) is assembled apart from its layout
(:func:`render_fleet_page`), so the layout can move to the run report's templates without touching the data.
"""

from __future__ import annotations

import html as escape
from collections.abc import Mapping
from typing import Any

from toolkit.fleet.summary import change_lines, fold


def fleet_page(*, action: str, playbook: str, outcomes: list[Any], variables: Mapping[str, Mapping[str, Any]],
               checks: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """``outcomes``: the fleet run's TargetOutcome per target; ``checks``: target → verify's checks (as dicts) after
    the run, where verify ran."""
    checks = checks or {}
    tenants = []
    for outcome in outcomes:
        details = outcome.details
        verified = checks.get(outcome.target)
        tenants.append({
            "target": outcome.target, "ok": outcome.ok, "summary": outcome.summary,
            "boundary": details.get("boundary") or "", "seconds": outcome.duration_s,
            "script_sha256": details.get("script_sha256", ""),
            "changes": change_lines(details["plan"]) if "plan" in details else [],
            "results": [{"kind": r.get("kind"), "name": r.get("name"), "action": r.get("action"),
                         "error": r.get("error") or ""} for r in details.get("results", [])],
            "diagnostics": [f"{d['file']}:{d['line']}:{d['column']}: {d['message']}"
                            for d in details.get("diagnostics", [])],
            "verify": "not run" if verified is None else "passed" if all(c["ok"] for c in verified) else "FAILED",
            "checks": verified or [],
        })
    plans = {o.target: o.details["plan"] for o in outcomes if o.ok and "plan" in o.details}
    failed = sum(not t["ok"] for t in tenants)
    return {"title": f"exkit {action} report: {playbook} on {len(tenants)} target(s)", "action": action,
            "playbook": playbook, "total": len(tenants), "failed": failed,
            "boundary_ok": sum(t["boundary"] == "ok" for t in tenants),
            "verify_failed": sum(t["verify"] == "FAILED" for t in tenants),
            "folded": fold(plans, variables), "tenants": tenants}


def render_fleet_page(page: Mapping[str, Any], html: bool) -> str:
    """The page as HTML (one document, a section per tenant linked from the summary table) or Markdown."""
    tenants = page["tenants"]
    counts = (f"{page['total'] - page['failed']} ok, {page['failed']} failed; boundary ok on {page['boundary_ok']}; "
              f"verify failed on {page['verify_failed']}")
    if not html:
        lines = [f"# {page['title']}", "", counts, "", "| target | result | boundary | verify | detail |",
                 "|---|---|---|---|---|"]
        lines += [f"| [{t['target']}](#{t['target']}) | {'ok' if t['ok'] else 'FAILED'} | {t['boundary'] or '—'} | "
                  f"{t['verify']} | {_cell(t['summary'])} |" for t in tenants]
        lines += ["", "## Changes", "", "```", *page["folded"], "```"]
        for t in tenants:
            lines += ["", f"## {t['target']}", "", f"- **result**: {'ok' if t['ok'] else 'FAILED'}: {_cell(t['summary'])}",
                      f"- **script sha256**: {t['script_sha256'] or '—'}"]
            lines += [f"- {_cell(d)}" for d in t["diagnostics"]]
            if t["changes"]:
                lines += ["", "```", *t["changes"], "```"]
            if t["results"]:
                lines += ["", "| kind | name | result | error |", "|---|---|---|---|"]
                lines += [f"| {r['kind']} | {_cell(r['name'])} | {r['action']} | {_cell(r['error'])} |"
                          for r in t["results"]]
            if t["checks"]:
                lines += ["", "| verify | subject | detail |", "|---|---|---|"]
                lines += [f"| {c['status'] if 'status' in c else ('pass' if c['ok'] else 'fail')} | "
                          f"{_cell(c['subject'])} | {_cell(c['message'])} |" for c in t["checks"]]
        return "\n".join(lines) + "\n"
    e = escape.escape
    rows = "".join(f"<tr><td><a href=\"#t-{e(t['target'])}\">{e(t['target'])}</a></td>"
                   f"<td>{'ok' if t['ok'] else '<b>FAILED</b>'}</td><td>{e(t['boundary'] or '—')}</td>"
                   f"<td>{e(t['verify'])}</td><td>{e(t['summary'])}</td></tr>" for t in tenants)
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{e(page['title'])}</title></head><body>",
             f"<h1>{e(page['title'])}</h1><p>{e(counts)}</p>",
             "<table border=\"1\" cellpadding=\"4\"><tr><th>target</th><th>result</th><th>boundary</th>"
             f"<th>verify</th><th>detail</th></tr>{rows}</table>",
             "<h2>Changes</h2><pre>" + e("\n".join(page["folded"])) + "</pre>"]
    for t in tenants:
        parts.append(f"<h2 id=\"t-{e(t['target'])}\">{e(t['target'])}</h2><p>{'ok' if t['ok'] else 'FAILED'}: "
                     f"{e(t['summary'])}<br>script sha256: {e(t['script_sha256'] or '—')}</p>")
        parts += [f"<p>{e(d)}</p>" for d in t["diagnostics"]]
        if t["changes"]:
            parts.append("<pre>" + e("\n".join(t["changes"])) + "</pre>")
        if t["results"]:
            parts.append(_html_table(("kind", "name", "result", "error"),
                                     [(r["kind"], r["name"], r["action"], r["error"]) for r in t["results"]]))
        if t["checks"]:
            parts.append(_html_table(("verify", "subject", "detail"),
                                     [(c.get("status") or ("pass" if c["ok"] else "fail"), c["subject"],
                                       c["message"]) for c in t["checks"]]))
    return "".join(parts) + "</body></html>\n"


def _html_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{escape.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape.escape(str(c or ''))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table border=\"1\" cellpadding=\"4\"><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    from toolkit.markdown import cell  # names are text, never markup

    return cell(value)
