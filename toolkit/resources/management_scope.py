"""Management scopes (New-/Get-/Set-/Remove-ManagementScope)."""

from __future__ import annotations

from toolkit import opath
from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from typing import Any

from toolkit.resources.base import Resource

KIND = "ManagementScope"
TEMPLATE = "management_scope.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    return [
        Resource(KIND, scope.name, TEMPLATE, {
            "name": scope.name,
            # Canonical form: what the sandbox stores and what a re-run compares against.
            "filter": opath.to_text(scope.filter_tree()),
            "recipient_root": scope.recipient_root,
            "exclusive": scope.exclusive,
        })
        for scope in playbook.scopes
    ]


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    scope = org.scope(resource.fields["name"])
    if scope is None:
        return None
    return {"filter": scope.recipient_filter, "recipient_root": scope.recipient_root, "exclusive": scope.exclusive}
