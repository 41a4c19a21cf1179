"""Role groups (New-/Get-/Set-/Remove-RoleGroup, Add-/Remove-RoleGroupMember) and their write scope."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import FieldChange, Resource, differs_set

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


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    fields = resource.fields
    changes = []
    if fields["description"] and (fact.get("description") or "") != fields["description"]:
        changes.append(FieldChange("description", fact.get("description") or None, fields["description"]))
    changes += differs_set("members", fact.get("members"), fields["members"])
    assignments = fact.get("assignments") or []
    changes += differs_set("roles", [a.get("role", "") for a in assignments], fields["roles"])
    wrong = sorted({a.get("scope") or "" for a in assignments} - {fields["scope"] or ""})
    if wrong:
        changes.append(FieldChange("scope", ", ".join(w or "(organisation)" for w in wrong),
                                   fields["scope"] or "(organisation)"))
    return changes
