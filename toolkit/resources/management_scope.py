"""Management scopes (New-/Get-/Set-/Remove-ManagementScope)."""

from __future__ import annotations

from toolkit import opath
from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import Call, FieldChange, Resource, differs_text

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


def calls(resource: Resource, fact: dict[str, Any], action: str) -> list[Call]:
    """The cmdlets that bring the scope to its desired state (used where scripts cannot run: Exchange Online REST)."""
    fields = resource.fields
    if action == "create":
        parameters: dict[str, Any] = {"Name": fields["name"], "RecipientRestrictionFilter": fields["filter"]}
        if fields["recipient_root"]:
            parameters["RecipientRoot"] = fields["recipient_root"]
        if fields["exclusive"]:
            parameters.update(Exclusive=True, Force=True)
        return [Call("New-ManagementScope", parameters)]
    if action == "delete":
        return [Call("Remove-ManagementScope", {"Identity": fields["name"], "Confirm": False})]
    changed = {c.field for c in compare(resource, fact)}
    parameters = {"Identity": fields["name"]}
    if "filter" in changed:
        parameters["RecipientRestrictionFilter"] = fields["filter"]
    if "recipient_root" in changed:
        parameters["RecipientRoot"] = fields["recipient_root"]
    return [Call("Set-ManagementScope", parameters)] if len(parameters) > 1 else []
