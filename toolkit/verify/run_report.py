"""The run report a change board files (``exkit apply --report r.html`` or ``r.md``).

Two halves, kept apart so others can add to the report without touching its layout:

- the data: :class:`ReportPage` — facts (who, where, when, which run, which version), and :class:`Section` s of rows
  whose cells carry a status (created, updated, unchanged, failed; PASS, FAIL, …) and, for the plan, the before →
  after value of each field. :func:`run_page` assembles a page for one apply; another report (a fleet run over many
  tenants, an Entra check) builds its own ``ReportPage`` or appends ``Section`` s to this one;
- the layout: Jinja2 templates in ``templates/report/`` (shipped in the wheel with the script templates), one for
  HTML — self-contained, inline CSS, status colours, the full script collapsible with its sha256, print CSS — and
  one for Markdown. HTML is autoescaped: every value from a playbook, a target or an error is text, never markup.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from toolkit import __version__
from toolkit.resources import FieldChange  # here with before and after as the text shown

# How results and checks are coloured (a CSS class per status, the same words in Markdown).
STATUS_OF_ACTION = {"created": "created", "updated": "updated", "removed": "removed", "unchanged": "unchanged",
                    "absent": "unchanged", "failed": "failed", "create": "created", "update": "updated",
                    "delete": "removed", "noop": "unchanged"}
STATUS_OF_CHECK = {"pass": "pass", "fail": "fail", "not checked": "notchecked", "warning": "warning",
                   "info": "info"}


@dataclass(frozen=True)
class Cell:
    text: str = ""
    status: str = ""  # a key of the CSS status classes: created, updated, removed, unchanged, failed, pass, fail, …
    changes: tuple[FieldChange, ...] = ()  # before → after per field (the plan)
    code: bool = False  # monospace (hashes, identifiers)


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    summary: str = ""  # one line under the title, e.g. "2 passed, 0 failed" or "verify not run: …"
    status: str = ""  # the section's overall status (colours its summary)
    empty: str = "nothing"  # shown instead of an empty table

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


@dataclass
class ReportPage:
    title: str
    status: str  # ok | failed: the page's banner
    headline: str  # one line beside the banner, e.g. "applied: 2 created" or "FAILED: RoleGroup 'x' …"
    facts: list[tuple[str, str]]
    sections: list[Section] = field(default_factory=list)
    script: str = ""
    script_sha256: str = ""
    script_title: str = "The script that ran"

    @property
    def script_lines(self) -> int:
        return self.script.count("\n") + (0 if self.script.endswith("\n") or not self.script else 1)


def _text(value: Any) -> str:
    if value is None or value == [] or value == "":
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _utc(value: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS UTC' (what a change board writes down)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value or "(unknown)")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def check_section(title: str, checks: Sequence[Any] | None, not_run: str) -> Section:
    """Checks (verify, Entra consent) as a section; ``None`` means they did not run, and the section says why —
    never "0 passed, 0 failed"."""
    from toolkit.verify.checks import check_summary

    section = Section(title, ["result", "subject", "detail"])
    if checks is None:
        section.summary, section.status = f"{title.lower()} not run: {not_run}", "notrun"
        section.empty = section.summary
        return section
    section.rows = [[Cell(c.status.upper(), STATUS_OF_CHECK.get(c.status, "")), Cell(c.subject), Cell(c.message)]
                    for c in checks]
    section.summary = check_summary(list(checks))
    section.status = "fail" if any(not c.ok for c in checks) else "pass"
    return section


def run_page(*, playbook: str, target: str, plan: Any, result: Any, checks: Sequence[Any] | None,
             reviewed_sha256: str = "", record: Mapping[str, Any] | None = None, endpoint: str = "",
             script: str = "", command: str = "apply", verify_not_run: str = "", impact: Any = None) -> ReportPage:
    """The page for one apply (or destroy): facts from the run record, the plan with before → after, the results,
    verify (or why it did not run), the access impact when computed, the script. ``checks=None``: verify did not run
    (``verify_not_run`` says why)."""
    from toolkit.resources.base import grant_text

    record = record or {}
    failed = not result.ok
    counts: dict[str, int] = {}
    for item in result.results:
        counts[item.action] = counts.get(item.action, 0) + 1
    done = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "no resources"
    if failed:
        first = result.failed[0] if result.failed else None
        headline = (f"{first.kind} {first.name!r}: {first.error}" if first
                    else f"the script stopped with exit code {result.exit_code}")
    else:
        headline = f"{'applied' if command == 'apply' else command + 'ed'}: {done}"
    exchange_checks = None if checks is None else [c for c in checks if getattr(c, "area", "exchange") != "entra"]
    entra_checks = [] if checks is None else [c for c in checks if getattr(c, "area", "exchange") == "entra"]
    verify = check_section("Verify", exchange_checks, verify_not_run or "not requested")
    culprit = next((c for c in checks or [] if not c.ok), None)
    if culprit is not None:
        headline += f"; verify FAILED: {culprit.subject}: {culprit.message}"
    if checks is not None:  # the summary of every check, Entra's included (as exkit verify prints it)
        from toolkit.verify.checks import check_summary

        verify_summary = check_summary(list(checks))
    else:
        verify_summary = verify.summary
    facts = [
        ("Playbook", f"{playbook}" + (f" ({record['playbook']})" if record.get("playbook") else "")),
        ("Target", target),
        ("Endpoint", endpoint or "(unknown)"),
        ("Operator", f"{record.get('user', '(unknown)')} on {record.get('host', '(unknown)')}"),
        ("Started", _utc(record.get("started", ""))),
        ("Finished", _utc(record.get("finished") or datetime.now(UTC))),
        ("Run id", str(record.get("id", "(no run record)"))),
        ("exkit version", str(record.get("version") or __version__)),
        ("Command", command),
        ("Playbook sha256", str(record.get("playbook_sha256") or "(none)")),
        ("Script sha256", result.script_sha256),
        ("Reviewed sha256", reviewed_sha256 or "(not pinned to a review)"),
        ("Outcome", ("FAILED" if failed else "applied" if command == "apply" else command + "ed")
         + f" (exit code {result.exit_code})"),
        ("Verify", verify_summary),
    ]
    plan_section = Section("Plan", ["action", "kind", "name", "grant", "before → after"],
                           summary=_plan_summary(plan), empty="no resources")
    for change in plan.changes:
        label = {"noop": "absent" if plan.destroy else "unchanged", "create": "create", "update": "update",
                 "delete": "remove"}[change.action]
        plan_section.rows.append([
            Cell(label, STATUS_OF_ACTION[change.action]), Cell(change.kind), Cell(change.name),
            Cell(grant_text(change.resource)),
            Cell(changes=tuple(FieldChange(f.field, _text(f.before), _text(f.after)) for f in change.fields))])
    results = Section("Results", ["kind", "name", "result", "error"], summary=f"{done}.",
                      status="failed" if failed else "ok", empty="no results (the script did not report any)")
    results.rows = [[Cell(r.kind), Cell(r.name), Cell(r.action, STATUS_OF_ACTION.get(r.action, "")), Cell(r.error)]
                    for r in result.results]
    sections = [plan_section, results, verify]
    if entra_checks:  # Exchange Online: what Entra ID grants the apps, read through Microsoft Graph
        sections.append(check_section("Entra consent (Microsoft Graph)", entra_checks, ""))
    if impact is not None:  # who gains or loses which mailboxes (toolkit/verify/impact.py)
        facts.append(("Access impact", ("WIDENING: " if impact.widening else "no widening; ") + impact.source))
        access = Section("Access impact", ["principal", "right", "before → after", "added", "removed", "widening"],
                         summary=("WIDENING: a principal gains mailboxes outside the playbooks' intent"
                                  if impact.widening else "no widening"),
                         status="fail" if impact.widening else "pass", empty="no principal gains or loses a mailbox")
        access.rows = [[Cell(r.principal), Cell(r.right), Cell(f"{r.reach(r.before)} → {r.reach(r.after)}"),
                        Cell(str(len(r.added))), Cell(str(len(r.removed))),
                        Cell(r.finding.text(), "fail") if r.finding else Cell("")] for r in impact.rows]
        sections.append(access)
    notices = list(getattr(result, "notices", []) or [])
    if notices:
        sections.append(Section("Notes", ["note"], rows=[[Cell(n)] for n in notices]))
    return ReportPage(title=f"exkit run report: {playbook} on {target}",
                      status="failed" if failed or culprit is not None or getattr(impact, "widening", False)
                      else "ok", headline=headline,
                      facts=facts, sections=sections, script=script, script_sha256=result.script_sha256)


def _plan_summary(plan: Any) -> str:
    counts = plan.counts()
    return (f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to remove, "
            f"{counts['noop']} unchanged.")


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    from toolkit.render.engine import builtin_templates_dir

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(builtin_templates_dir() / "report"),
                                     autoescape=jinja2.select_autoescape(["html.j2"]),
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                     keep_trailing_newline=True)
    from toolkit.markdown import cell

    environment.filters["md"] = cell  # the shared escape: names are text, never markup
    return environment


def render_page(page: ReportPage, html: bool) -> str:
    """The page as a self-contained HTML document or as Markdown."""
    template = _environment().get_template("run_report.html.j2" if html else "run_report.md.j2")
    return template.render(page=page)
