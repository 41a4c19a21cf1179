"""Role groups (New-/Get-/Set-/Remove-RoleGroup, Add-/Remove-RoleGroupMember) and their write scope."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from typing import Any

from toolkit.resources.base import Resource

KIND = "RoleGroup"
TEMPLATE = "role_group.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    resources = []
    for group in playbook.role_groups:
        scope = playbook.scope_named(group.scope)
        resources.append(Resource(KIND, group.name, TEMPLATE, {
            "name": group.name,
            "description": group.description,
            "roles": list(dict.fromkeys(group.roles)),
            "members": list(dict.fromkeys(m.lower() for m in group.members)),
            "scope": scope.name if scope else None,
        }))
    return resources


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    group = org.role_group(resource.fields["name"])
    if group is None:
        return None
    assignments = [a for a in org.role_assignments
                   if a.role_assignee.lower() == group.name.lower() and not a.delegating]
    scopes = sorted({a.custom_recipient_write_scope or a.recipient_organizational_unit_scope or "(organisation)"
                     for a in assignments})
    return {"description": group.description or None, "members": sorted(group.members),
            "roles": sorted({a.role for a in assignments}), "scope": ", ".join(scopes) or None}
