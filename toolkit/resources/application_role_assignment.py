"""RBAC for Applications: New-ManagementRoleAssignment -App … -Role 'Application …' -CustomResourceScope …"""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.resources.base import Call, FieldChange, Resource, assignment_changes

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
    remove = Call("Remove-ManagementRoleAssignment", {"Identity": fields["name"], "Confirm": False})
    create_parameters: dict[str, Any] = {"Name": fields["name"], "App": app_object_id, "Role": fields["role"]}
    if fields["scope"]:
        create_parameters["CustomResourceScope"] = fields["scope"]
    create = Call("New-ManagementRoleAssignment", create_parameters)
    if action == "create":
        return [create]
    if action == "delete":
        return [remove]
    changed = {c.field for c in compare(resource, fact)}
    if "role/application (replaced)" in changed:
        return [remove, create]
    if "scope" in changed:
        if fields["scope"]:
            return [Call("Set-ManagementRoleAssignment", {"Identity": fields["name"],
                                                          "CustomResourceScope": fields["scope"]})]
        return [remove, create]  # Exchange Online cannot drop a resource scope in place
    return []
