"""Exchange Online service principals (New-/Get-/Set-/Remove-ServicePrincipal) for the playbook's applications."""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.resources.base import Call, FieldChange, Resource, differs_text

KIND = "ServicePrincipal"
TEMPLATE = "service_principal.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    return [Resource(KIND, app.name, TEMPLATE, {"display_name": app.name, "app_id": app.app_id,
                                                "object_id": app.object_id})
            for app in playbook.applications]


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    changes = differs_text("display_name", fact.get("display_name"), resource.fields["display_name"])
    changes += differs_text("object_id", fact.get("object_id"), resource.fields["object_id"])
    return changes


def calls(resource: Resource, fact: dict[str, Any], action: str) -> list[Call]:
    fields = resource.fields
    if action == "create":
        return [Call("New-ServicePrincipal", {"AppId": fields["app_id"], "ObjectId": fields["object_id"],
                                              "DisplayName": fields["display_name"]})]
    if action == "delete":
        return [Call("Remove-ServicePrincipal", {"Identity": fields["app_id"], "Confirm": False})]
    changed = {c.field for c in compare(resource, fact)}
    out = []
    if "object_id" in changed:  # the object id cannot be changed: register the app again
        out += [Call("Remove-ServicePrincipal", {"Identity": fields["app_id"], "Confirm": False})]
        out += calls(resource, fact, "create")
    elif "display_name" in changed:
        out.append(Call("Set-ServicePrincipal", {"Identity": fields["app_id"], "DisplayName": fields["display_name"]}))
    return out
