"""Direct management role assignments (New-/Get-/Set-/Remove-ManagementRoleAssignment)."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import FieldChange, Resource, assignment_changes

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


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    fields = resource.fields
    return assignment_changes(fact, fields["role"], fields["assignee"], fields["scope"], "assignee")
