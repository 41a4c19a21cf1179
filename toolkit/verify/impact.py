"""Access impact of a change: who gains or loses which mailboxes, with which right, before → after.

Computed by the one evaluator (:mod:`toolkit.verify.access`) over the same organisation twice — once with the old
desired state laid over it, once with the new — for the principals the playbooks grant something to (users, the
members of groups, applications). Used by ``exkit diff`` (offline, a recipients CSV), ``exkit plan`` (the live target),
``exkit check`` and the change-board report. Entry points:

- :func:`change_impact` — a playbook's old and new desired state (either may be None: added or deleted) over an
  organisation (recipients only when offline; the target's state when live);
- :func:`compare` — any two organisations, for callers that build the before/after states themselves.

A **widening** is a principal gaining a mailbox outside the playbooks' intent: the types their scopes declare
(``rooms: true`` → room mailboxes, ``equipment: true`` → equipment mailboxes), or room and equipment mailboxes when
a playbook declares none (raw filters, ``all_mailboxes``); and, when their scopes declare a RecipientRoot, below one of
those OUs. Each finding names the grant that causes it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolkit.verify import access
from toolkit.verify.access import ALL_MAILBOXES, Organisation, RESOURCE_TYPES, ROOM_TYPES

SAMPLE = 5


@dataclass(frozen=True)
class Finding:
    principal: str
    right: str
    counts: dict[str, int]  # gained mailboxes outside the intent, by type
    rules: list[str]  # the grants that give them

    def text(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        return f"WIDENING: {self.principal} gains {kinds} ({self.right}) through " + "; ".join(self.rules)

    def as_dict(self) -> dict[str, Any]:
        return {"principal": self.principal, "right": self.right, "counts": self.counts, "rules": self.rules}


@dataclass
class Row:
    principal: str
    right: str
    before: list[str]  # mailbox addresses
    after: list[str]
    types: dict[str, str]  # address → RecipientTypeDetails
    total: int  # mailboxes in the organisation
    finding: Finding | None = None

    @property
    def added(self) -> list[str]:
        return sorted(set(self.after) - set(self.before))

    @property
    def removed(self) -> list[str]:
        return sorted(set(self.before) - set(self.after))

    @property
    def kept(self) -> list[str]:
        return sorted(set(self.after) & set(self.before))

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def counts(self, addresses: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for address in addresses:
            kind = self.types.get(address, "?")
            out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))

    def reach(self, addresses: list[str]) -> str:
        """'17 mailboxes' or 'ALL MAILBOXES (70)'."""
        if self.total and len(addresses) == self.total:
            return f"{ALL_MAILBOXES} ({self.total})"
        return f"{len(addresses)} mailbox" + ("" if len(addresses) == 1 else "es")

    def as_dict(self) -> dict[str, Any]:
        return {"principal": self.principal, "right": self.right,
                "before": {"count": len(self.before), "all_mailboxes": bool(self.total) and len(self.before) == self.total,
                           "by_type": self.counts(self.before)},
                "after": {"count": len(self.after), "all_mailboxes": bool(self.total) and len(self.after) == self.total,
                          "by_type": self.counts(self.after)},
                "kept": self.counts(self.kept), "added": self.added, "removed": self.removed,
                "widening": self.finding.as_dict() if self.finding else None}


@dataclass
class Impact:
    rows: list[Row] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [r.finding for r in self.rows if r.finding]

    @property
    def widening(self) -> bool:
        return bool(self.findings)

    @property
    def changed(self) -> list[Row]:
        return [r for r in self.rows if r.changed]

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "notes": self.notes, "widening": self.widening,
                "rows": [r.as_dict() for r in self.rows]}


# ----------------------------------------------------------------------------------------------------- computing
@dataclass(frozen=True)
class Intent:
    """What the playbooks mean to reach: mailbox types, and the OUs their scopes are rooted in (hosted tenants)."""

    types: frozenset[str] = RESOURCE_TYPES
    roots: frozenset[str] = frozenset()  # lower-case DNs; empty: anywhere

    def outside(self, recipient: access.Recipient | None) -> bool:
        if recipient is None:
            return True
        if recipient.type not in self.types:
            return True
        dn = recipient.distinguished_name.lower()
        return bool(self.roots) and not any(dn.endswith("," + root) for root in self.roots)


def intent_of(*playbooks: Any) -> Intent:
    """The mailbox types the playbooks' scopes declare (room and equipment mailboxes when they declare none) and the
    RecipientRoots they use: a mailbox outside every declared root is outside the intent, so a dropped RecipientRoot
    that reaches another tenant's rooms is a widening."""
    types: set[str] = set()
    roots: set[str] = set()
    for playbook in playbooks:
        for scope in getattr(playbook, "scopes", []) if playbook is not None else []:
            if scope.rooms:
                types |= ROOM_TYPES
            if scope.equipment:
                types.add("EquipmentMailbox")
            if scope.recipient_root:
                roots.add(scope.recipient_root.lower())
    return Intent(frozenset(types) or RESOURCE_TYPES, frozenset(roots))


def principals_of(org: Organisation, playbook: Any) -> set[str]:
    """The principal keys a playbook grants something to, in an organisation where it is applied."""
    if playbook is None:
        return set()
    keys: set[str] = set()
    declared = {a.lower() for a in _assignment_names(playbook)}
    for assignment in org.assignments.values():
        if assignment.name.lower() in declared:
            keys |= {f"app:{assignment.assignee.lower()}" if assignment.assignee_type == "ServicePrincipal" else u
                     for u in access.effective_users(org, assignment)}
    for delegate in playbook.delegates:
        trustee = org.recipient(delegate.user)
        keys |= set(org.group_members(delegate.user)) if trustee is not None and not trustee.is_mailbox else {
            delegate.user.lower()}
    keys |= {f"app:{app.app_id}" for app in playbook.applications}
    return keys


def _assignment_names(playbook: Any) -> list[str]:
    names = [f"{role}-{group.name}" for group in playbook.role_groups for role in group.roles]
    names += [a.assignment_name for a in playbook.role_assignments]
    names += [a.assignment_name for a in playbook.application_role_assignments]
    return names


def compare(before: Organisation, after: Organisation, principals: set[str], intent: Intent = Intent(),
            source: str = "") -> Impact:
    """The access of ``principals`` in two states of an organisation (same recipients), right by right."""
    before_access, before_names = access.evaluate(before, principals)
    after_access, after_names = access.evaluate(after, principals)
    types = {r.address: r.type for r in after.recipients}
    recipients = {r.address: r for r in after.recipients}
    total = len(after.mailboxes())
    labels = {**{k: p.label for k, p in before_names.items()}, **{k: p.label for k, p in after_names.items()}}
    rows = []
    for key, right in sorted({k for k in (*before_access, *after_access) if k[0] in principals},
                             key=lambda k: (labels.get(k[0], k[0]).lower(), k[1].lower())):
        was = sorted(before_access.get((key, right), {}))
        now = after_access.get((key, right), {})
        row = Row(labels.get(key, key), right, was, sorted(now), types, total)
        outside = [m for m in row.added if intent.outside(recipients.get(m))]
        if outside:
            rules = list(dict.fromkeys(reason for m in outside for reason in now[m]))
            row.finding = Finding(row.principal, right, row.counts(outside), rules[:3])
        rows.append(row)
    notes = []
    if not after.membership_known and _uses_groups(before, after):
        notes.append("group membership is not in a Get-Recipient export: security groups and access policy groups "
                     "count as empty offline (add a MemberOfGroup column, or run plan against the target)")
    return Impact(rows, source or after.source, notes)


def _uses_groups(*orgs: Organisation) -> bool:
    return any(a.assignee_type == "SecurityGroup" for org in orgs for a in org.assignments.values()) or any(
        org.policies for org in orgs)


def change_impact(org: Organisation, old: Any, new: Any) -> Impact:
    """The impact of replacing playbook ``old`` by ``new`` (either None: added or deleted) on ``org``."""
    before = access.overlay(org, old) if old is not None else org
    base = access.overlay(org, old, present=False) if old is not None else org
    after = access.overlay(base, new) if new is not None else base
    principals = principals_of(before, old) | principals_of(after, new)
    return compare(before, after, principals, intent_of(old, new))


def plan_impact(org: Organisation, playbook: Any, destroy: bool = False) -> Impact:
    """Apply (or destroy) a playbook on a live organisation's state."""
    after = access.overlay(org, playbook, present=not destroy)
    principals = principals_of(after if not destroy else org, playbook)
    return compare(org, after, principals, intent_of(playbook))


def live_impact(playbook: Any, snapshot: Any, source: str, destroy: bool = False) -> Impact:
    """``exkit plan``'s access impact on a live target: its state as one snapshot read it (toolkit.workflow.
    read_snapshot: every recipient with its filter attributes, the RBAC objects, on Exchange Online the apps' Entra
    consent), then the playbook applied (or destroyed) on it by the evaluator."""
    return plan_impact(access.from_snapshot(snapshot, source), playbook, destroy)


# ----------------------------------------------------------------------------------------------------- sources
def offline_source(path: Path) -> str:
    """Which CSV, and when it was exported as far as we can tell (its last commit, else its modification time)."""
    when = ""
    try:
        where = path.parent if str(path.parent) else None
        result = subprocess.run(["git", "log", "-1", "--format=%cI %h", "--", path.name], capture_output=True,
                                text=True, cwd=where, timeout=20)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", path.name], capture_output=True, text=True,
                               cwd=where, timeout=20).stdout.strip()
        if result.returncode == 0 and result.stdout.strip() and not dirty:
            stamp, sha = result.stdout.split()
            when = f"exported by {stamp} (committed in {sha})"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    if not when:
        try:
            stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            when = f"file written {stamp}"
        except OSError:
            when = "date unknown"
    return f"offline: {path}, {when}"


# ----------------------------------------------------------------------------------------------------- showing
def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items()) or "none"


def _sample(addresses: list[str]) -> str:
    shown = ", ".join(addresses[:SAMPLE])
    return shown + (f", … ({len(addresses) - SAMPLE} more)" if len(addresses) > SAMPLE else "")


def text_lines(impact: Impact, title: str = "Access impact") -> list[tuple[str, str]]:
    """(line, style) pairs for a terminal or a log."""
    lines = [(f"{title} ({impact.source}):", "bold")]
    if not impact.rows:
        lines.append(("  no principal is granted access to mailboxes by these playbooks", ""))
    for row in impact.rows:
        flag = "  WIDENING" if row.finding else "" if row.changed else "  (unchanged)"
        lines.append((f"  {row.principal} — {row.right}: {row.reach(row.before)} → {row.reach(row.after)}{flag}",
                      "bold red" if row.finding else "bold" if row.changed else "dim"))
        if not row.changed:
            continue
        lines.append((f"      kept: {_kinds(row.counts(row.kept))}", ""))
        if row.added:
            lines.append((f"      gained: {_kinds(row.counts(row.added))} (e.g. {_sample(row.added)})",
                          "red" if row.finding else "green"))
        if row.removed:
            lines.append((f"      lost: {_kinds(row.counts(row.removed))} (e.g. {_sample(row.removed)})", "yellow"))
        if row.finding:
            lines.append((f"      {row.finding.text()}", "bold red"))
    lines += [(f"  note: {note}", "yellow") for note in impact.notes]
    lines.append(verdict(impact))
    return lines


def verdict(impact: Impact) -> tuple[str, str]:
    if impact.widening:
        count = len({f.principal for f in impact.findings})
        return (f"Widening: {count} principal(s) gain mailboxes outside the playbooks' intent.", "bold red")
    return ("No widening: no principal gains a mailbox outside the playbooks' intent.", "bold green")


def _cell(value: str) -> str:
    from toolkit.markdown import cell

    return cell(value)


def markdown(impact: Impact, title: str = "Access impact") -> str:
    """A compact table for a pull-request comment (GitHub / Azure DevOps Markdown)."""
    lines = [f"### {title}", "", f"Recipients: {_cell(impact.source)}", "",
             "| principal | right | before → after | by type (after) | added | removed | widening |",
             "|---|---|---|---|---|---|---|"]
    for row in impact.rows:
        flag = (f"**:red_circle: {_cell(_kinds(row.finding.counts))}** via {_cell(row.finding.rules[0])}"
                if row.finding else " ")  # markup of its own around escaped text
        lines.append("| " + " | ".join([*(_cell(c) for c in (
            row.principal, row.right, f"{row.reach(row.before)} → {row.reach(row.after)}", _kinds(row.counts(row.after)),
            f"{len(row.added)}: {_sample(row.added)}" if row.added else "0",
            f"{len(row.removed)}: {_sample(row.removed)}" if row.removed else "0")), flag]) + " |")
    if not impact.rows:
        lines.append("| (none) | | | | | | |")
    if impact.notes:
        lines += [""] + [f"> note: {_cell(n)}" for n in impact.notes]
    text, _ = verdict(impact)
    lines += ["", f"**{text}**" if impact.widening else text, ""]
    return "\n".join(lines)
