"""The shape every resource kind shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between the target (``before``) and the playbook (``after``)."""

    field: str
    before: Any
    after: Any


def differs_text(field: str, before: Any, after: Any) -> list[FieldChange]:
    """Case-insensitive comparison of optional text, as Exchange compares names."""
    if (before or "").lower() != (after or "").lower():
        return [FieldChange(field, before or None, after or None)]
    return []


def differs_set(field: str, before: list[str] | None, after: list[str]) -> list[FieldChange]:
    have = sorted({b.lower() for b in before or []})
    want = sorted({a.lower() for a in after})
    return [FieldChange(field, have, want)] if have != want else []


def assignment_changes(fact: dict[str, Any], role: str, assignee: str, scope: str | None,
                       assignee_word: str = "assignee") -> list[FieldChange]:
    """Drift of a role assignment: another role or assignee means replacing it; the scope can be changed."""
    changes = []
    if not fact.get("assignee_matches"):
        changes.append(FieldChange(f"role/{assignee_word} (replaced)", f"{fact.get('role')} → {fact.get('assignee')}",
                                   f"{role} → {assignee}"))
    return changes + differs_text("scope", fact.get("scope"), scope)


@dataclass(frozen=True)
class Call:
    """One cmdlet invocation, as the Exchange Online REST connector sends it (parameters by name)."""

    cmdlet: str
    parameters: dict[str, Any]


def assignment_calls(name: str, create: dict[str, Any], action: str, replace: bool) -> list[Call] | None:
    """The calls that create, delete or replace a management role assignment (role and assignee cannot change in
    place); None when the assignment stays and only its scope may need setting."""
    remove = Call("Remove-ManagementRoleAssignment", {"Identity": name, "Confirm": False})
    new = Call("New-ManagementRoleAssignment", create)
    if action == "create":
        return [new]
    if action == "delete":
        return [remove]
    return [remove, new] if replace else None


def write_scope_call(identity: str, scope: str | None) -> Call:
    """Set an assignment's write scope: a custom scope, or back to the whole organisation."""
    if scope:
        return Call("Set-ManagementRoleAssignment", {"Identity": identity, "CustomRecipientWriteScope": scope})
    return Call("Set-ManagementRoleAssignment", {"Identity": identity, "RecipientRelativeWriteScope": "Organization"})


@dataclass(frozen=True)
class Resource:
    """One desired Exchange object. ``fields`` are the values rendered into its template and compared for drift."""

    kind: str
    name: str
    template: str
    fields: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name.lower())

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "fields": self.fields}


ALL_MAILBOXES = "ALL MAILBOXES"  # how an organisation-wide grant is shown: loudly, everywhere
GRANT_KINDS = ("RoleGroup", "ManagementRoleAssignment", "ApplicationRoleAssignment")


def grant_text(resource: Resource) -> str:
    """What a grant gives to whom, where: role, assignee and scope; an organisation-wide one as ALL MAILBOXES."""
    f = resource.fields
    where = f"scope {f['scope']!r}" if f.get("scope") else ALL_MAILBOXES
    if resource.kind == "RoleGroup":
        members = ", ".join(f["members"]) or "no members"
        return f"{', '.join(f['roles'])} for {members} on {where}"
    if resource.kind == "ManagementRoleAssignment":
        kind = "user" if f["assignee_kind"] == "User" else "group"
        return f"{f['role']} for {kind} {f['assignee']} on {where}"
    if resource.kind == "ApplicationRoleAssignment":
        return f"{f['role']} for application {f['application']} on {where}"
    if resource.kind == "MailboxPermission":
        return f"{', '.join(f['access_rights'])} on {f['mailbox']} for {f['user']}"
    if resource.kind == "ApplicationAccessPolicy":
        return f"{f['access_right']} for app {f['app_id']} to members of {f['group']}"
    return ""
