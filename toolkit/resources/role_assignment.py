"""Direct management role assignments (New-/Get-/Set-/Remove-ManagementRoleAssignment)."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import (
    Call, FieldChange, Resource, assignment_calls, assignment_changes, write_scope_call,
)

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


def calls(resource: Resource, fact: dict[str, Any], action: str) -> list[Call]:
    """The cmdlets the template's logic would run, from the facts (Exchange Online REST)."""
    fields = resource.fields
    assignee = "User" if fields["assignee_kind"] == "User" else "SecurityGroup"
    parameters: dict[str, Any] = {"Name": fields["name"], "Role": fields["role"], assignee: fields["assignee"]}
    if fields["scope"]:
        parameters["CustomRecipientWriteScope"] = fields["scope"]
    changed = {c.field for c in compare(resource, fact)} if action == "update" else set()
    whole = assignment_calls(fields["name"], parameters, action, "role/assignee (replaced)" in changed)
    if whole is not None:
        return whole
    return [write_scope_call(fields["name"], fields["scope"])] if "scope" in changed else []
