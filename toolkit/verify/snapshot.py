"""A snapshot of a target's RBAC state: what verify, scope preview and export reason about.

Read in one round trip (the snapshot script on the sandbox and over WinRM; whole collections over Exchange
Online's REST endpoint), then used by pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.sandbox.model import LINKED_GROUP_MEMBERS

RESOURCE_MAILBOXES = frozenset({"RoomMailbox", "EquipmentMailbox", "LinkedRoomMailbox"})


@dataclass
class Snapshot:
    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case name → scope
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case name → group (members lower)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    effective: list[dict[str, Any]] = field(default_factory=list)
    permissions: list[dict[str, Any]] = field(default_factory=list)
    previews: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # declared filter: scope → recipients
    live_previews: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # the target's stored filter
    principals: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[dict[str, Any]] = field(default_factory=list)
    # Entra ID (Exchange Online through Microsoft Graph; toolkit/targets/graph.py). entra is None where there is no
    # Entra to read (the sandbox, Exchange Server); else {"status": "read" | "not checked", "reason", "calls", …}.
    entra: dict[str, Any] | None = None
    entra_apps: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower-case app id → service principal
    entra_permissions: list[dict[str, Any]] = field(default_factory=list)  # application permissions (tenant-wide)
    entra_grants: list[dict[str, Any]] = field(default_factory=list)  # delegated grants (information)
    entra_grants_unread: dict[str, str] = field(default_factory=dict)  # lower-case app id → why not read
    # every recipient with the attributes filters use (Get-Recipient's property names): the access evaluator's input
    recipients: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_facts(cls, facts: list[dict[str, Any]]) -> Snapshot:
        snapshot = cls()
        for fact in facts:
            kind = fact.get("type")
            if kind == "scope":
                snapshot.scopes[str(fact["name"]).lower()] = fact
            elif kind == "group":
                members = fact.get("members") or []
                fact["members"] = sorted({str(m).lower() for m in (members if isinstance(members, list) else [members])})
                snapshot.groups[str(fact["name"]).lower()] = fact
            elif kind == "assignment":
                snapshot.assignments.append(fact)
            elif kind == "effective":
                # A linked role group's members live in another forest: -GetEffectiveUsers shows one placeholder
                # row for them, which is not a person (Get-ManagementRoleAssignment, -GetEffectiveUsers).
                if str(fact.get("user_name") or "") != LINKED_GROUP_MEMBERS:
                    snapshot.effective.append(fact)
            elif kind == "permission":
                snapshot.permissions.append(fact)
            elif kind in ("preview", "live_preview"):
                recipients = fact.get("recipients") or []
                target = snapshot.previews if kind == "preview" else snapshot.live_previews
                target[str(fact["scope"]).lower()] = recipients if isinstance(recipients, list) else [recipients]
            elif kind == "principal":
                snapshot.principals.append(fact)
            elif kind == "policy":
                snapshot.policies.append(fact)
            elif kind == "authorization":
                snapshot.authorizations.append(fact)
            elif kind == "recipient":
                snapshot.recipients.append(fact)
            elif kind == "entra":
                snapshot.entra = fact
            elif kind == "entra_app":
                snapshot.entra_apps[str(fact["app_id"]).lower()] = fact
            elif kind == "entra_permission":
                snapshot.entra_permissions.append(fact)
            elif kind == "entra_grant":
                snapshot.entra_grants.append(fact)
            elif kind == "entra_grants_unread":
                snapshot.entra_grants_unread[str(fact["app_id"]).lower()] = str(fact.get("reason", ""))
        return snapshot

    def assignments_of(self, assignee: str) -> list[dict[str, Any]]:
        wanted = assignee.lower()
        return [a for a in self.assignments if str(a.get("assignee", "")).lower() == wanted
                or str(a.get("user", "")).lower() == wanted]

    def principal(self, app_id: str) -> dict[str, Any] | None:
        return next((p for p in self.principals if str(p.get("app_id", "")).lower() == app_id.lower()), None)


def count_types(recipients: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for recipient in recipients:
        kind = str(recipient.get("type", ""))
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def beyond_resources(recipients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matched recipients that are not room or equipment mailboxes."""
    return [r for r in recipients if str(r.get("type", "")) not in RESOURCE_MAILBOXES]
