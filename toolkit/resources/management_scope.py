"""Management scopes (New-/Get-/Set-/Remove-ManagementScope)."""

from __future__ import annotations

from toolkit import opath
from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import FieldChange, Resource, differs_text

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


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    changes = []
    before = fact.get("filter") or ""
    try:
        before = opath.to_text(opath.parse(before))
    except opath.OpathError:
        pass
    if before != resource.fields["filter"]:
        changes.append(FieldChange("filter", fact.get("filter") or None, resource.fields["filter"]))
    if resource.fields["recipient_root"]:
        changes += differs_text("recipient_root", fact.get("recipient_root"), resource.fields["recipient_root"])
    return changes
