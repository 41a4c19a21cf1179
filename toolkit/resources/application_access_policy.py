"""Application Access Policies (New-/Get-/Set-/Remove-ApplicationAccessPolicy): the older way to limit an app."""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from toolkit.resources.base import Resource

KIND = "ApplicationAccessPolicy"
TEMPLATE = "application_access_policy.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    resources = []
    for policy in playbook.application_access_policies:
        app = playbook.application_named(policy.application)
        app_id = app.app_id if app else ""
        resources.append(Resource(KIND, f"{policy.application}:{policy.group.lower()}", TEMPLATE, {
            "app_id": app_id, "group": policy.group.lower(), "access_right": policy.access_right,
            "description": policy.description or f"exkit: {policy.application} may reach members of {policy.group}",
        }))
    return resources


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    group = org.recipient(resource.fields["group"])
    address = group.primary_smtp_address if group else resource.fields["group"]
    policy = next((p for p in org.application_access_policies
                   if p.app_id == resource.fields["app_id"].lower() and p.scope_identity.lower() == address), None)
    if policy is None:
        return None
    return {"access_right": policy.access_right, "description": policy.description}
