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
