"""Exchange Online service principals (New-/Get-/Set-/Remove-ServicePrincipal) for the playbook's applications."""

from __future__ import annotations

from typing import Any

from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from toolkit.resources.base import Resource

KIND = "ServicePrincipal"
TEMPLATE = "service_principal.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    return [Resource(KIND, app.name, TEMPLATE, {"display_name": app.name, "app_id": app.app_id,
                                                "object_id": app.object_id})
            for app in playbook.applications]


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    principal = next((p for p in org.service_principals if p.app_id == resource.fields["app_id"].lower()), None)
    if principal is None:
        return None
    return {"display_name": principal.display_name, "object_id": principal.object_id}
