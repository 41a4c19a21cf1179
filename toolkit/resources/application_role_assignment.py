"""RBAC for Applications: New-ManagementRoleAssignment -App … -Role 'Application …' -CustomResourceScope …"""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from toolkit.resources.base import Resource

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


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    assignment = org.assignment(resource.fields["name"])
    if assignment is None:
        return None
    principal = next((p for p in org.service_principals if p.object_id == assignment.role_assignee), None)
    return {"role": assignment.role, "application": principal.display_name if principal else assignment.role_assignee,
            "scope": assignment.custom_resource_scope or "(organisation)"}
