"""Application Access Policies (New-/Get-/Set-/Remove-ApplicationAccessPolicy): the older way to limit an app."""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.resources.base import Call, FieldChange, Resource

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


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    fields = resource.fields
    changes = []
    if (fact.get("access_right") or "") != fields["access_right"]:
        changes.append(FieldChange("access_right (replaced)", fact.get("access_right"), fields["access_right"]))
    if (fact.get("description") or "") != fields["description"]:
        changes.append(FieldChange("description", fact.get("description"), fields["description"]))
    return changes


def calls(resource: Resource, fact: dict[str, Any], action: str) -> list[Call]:
    fields = resource.fields
    create = Call("New-ApplicationAccessPolicy", {"AppId": fields["app_id"], "PolicyScopeGroupId": fields["group"],
                                                  "AccessRight": fields["access_right"],
                                                  "Description": fields["description"]})
    remove = Call("Remove-ApplicationAccessPolicy", {"Identity": fact.get("identity", ""), "Confirm": False})
    if action == "create":
        return [create]
    if action == "delete":
        return [remove]
    changed = {c.field for c in compare(resource, fact)}
    if "access_right (replaced)" in changed:
        return [remove, create]
    if "description" in changed:
        return [Call("Set-ApplicationAccessPolicy", {"Identity": fact.get("identity", ""),
                                                     "Description": fields["description"]})]
    return []
