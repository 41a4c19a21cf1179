"""Role groups (New-/Get-/Set-/Remove-RoleGroup, Add-/Remove-RoleGroupMember) and their write scope."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
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
