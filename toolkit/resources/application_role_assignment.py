"""RBAC for Applications: New-ManagementRoleAssignment -App … -Role 'Application …' -CustomResourceScope …"""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.resources.base import Call, FieldChange, Resource, assignment_calls, assignment_changes

KIND = "ApplicationRoleAssignment"
TEMPLATE = "application_role_assignment.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    resources = []
    for assignment in playbook.application_role_assignments:
        app = playbook.application_named(assignment.application)
        scope = playbook.scope_named(assignment.scope)
        resources.append(Resource(KIND, assignment.assignment_name, TEMPLATE, {
            "name": assignment.assignment_name, "role": assignment.role,
            "application": app.name if app else assignment.application, "app_id": app.app_id if app else "",
            "scope": scope.name if scope else None,
        }))
    return resources


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    fields = resource.fields
    return assignment_changes(fact, fields["role"], fields["application"], fields["scope"], "application")


def calls(resource: Resource, fact: dict[str, Any], action: str, app_object_id: str = "") -> list[Call]:
    fields = resource.fields
    parameters: dict[str, Any] = {"Name": fields["name"], "App": app_object_id, "Role": fields["role"]}
    if fields["scope"]:
        parameters["CustomResourceScope"] = fields["scope"]
    changed = {c.field for c in compare(resource, fact)} if action == "update" else set()
    # Exchange Online cannot drop a resource scope in place either: that is a replacement too.
    replace = "role/application (replaced)" in changed or ("scope" in changed and not fields["scope"])
    whole = assignment_calls(fields["name"], parameters, action, replace)
    if whole is not None:
        return whole
    if "scope" in changed:
        return [Call("Set-ManagementRoleAssignment", {"Identity": fields["name"],
                                                      "CustomResourceScope": fields["scope"]})]
    return []
