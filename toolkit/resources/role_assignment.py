"""Direct management role assignments (New-/Get-/Set-/Remove-ManagementRoleAssignment)."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from typing import Any

from toolkit.resources.base import Resource

KIND = "ManagementRoleAssignment"
TEMPLATE = "role_assignment.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    resources = []
    for assignment in playbook.role_assignments:
        scope = playbook.scope_named(assignment.scope)
        group = next((g for g in playbook.role_groups
                      if assignment.role_group and g.name.lower() == assignment.role_group.lower()), None)
        resources.append(Resource(KIND, assignment.assignment_name, TEMPLATE, {
            "name": assignment.assignment_name,
            "role": assignment.role,
            "assignee": group.name if group else assignment.assignee,
            "assignee_kind": assignment.assignee_kind,
            "scope": scope.name if scope else None,
        }))
    return resources


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    assignment = org.assignment(resource.fields["name"])
    if assignment is None:
        return None
    return {"role": assignment.role, "assignee": assignment.role_assignee,
            "scope": assignment.custom_recipient_write_scope or assignment.recipient_organizational_unit_scope
            or "(organisation)"}
