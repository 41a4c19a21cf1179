"""Role groups (New-/Get-/Set-/Remove-RoleGroup, Add-/Remove-RoleGroupMember) and their write scope."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import Call, FieldChange, Resource, differs_set, write_scope_call

KIND = "RoleGroup"
TEMPLATE = "role_group.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    resources = []
    for group in playbook.role_groups:
        scope = playbook.scope_named(group.scope)
        resources.append(Resource(KIND, group.name, TEMPLATE, {
            "name": group.name,
            "description": group.description,
            "roles": list(dict.fromkeys(group.roles)),
            "members": list(dict.fromkeys(m.lower() for m in group.members)),
            "scope": scope.name if scope else None,
        }))
    return resources


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    fields = resource.fields
    changes = []
    if fields["description"] and (fact.get("description") or "") != fields["description"]:
        changes.append(FieldChange("description", fact.get("description") or None, fields["description"]))
    changes += differs_set("members", fact.get("members"), fields["members"])
    assignments = fact.get("assignments") or []
    changes += differs_set("roles", [a.get("role", "") for a in assignments], fields["roles"])
    wrong = sorted({a.get("scope") or "" for a in assignments} - {fields["scope"] or ""})
    if wrong:
        changes.append(FieldChange("scope", ", ".join(w or "(organisation)" for w in wrong),
                                   fields["scope"] or "(organisation)"))
    return changes


def calls(resource: Resource, fact: dict[str, Any], action: str) -> list[Call]:
    """The cmdlets the template's logic would run, from the facts (Exchange Online REST). The facts' assignments
    carry their ``identity`` there."""
    fields = resource.fields
    name = fields["name"]
    if action == "create":
        parameters: dict[str, Any] = {"Name": name, "Roles": fields["roles"]}
        if fields["members"]:
            parameters["Members"] = fields["members"]
        if fields["scope"]:
            parameters["CustomRecipientWriteScope"] = fields["scope"]
        if fields["description"]:
            parameters["Description"] = fields["description"]
        return [Call("New-RoleGroup", parameters)]
    if action == "delete":
        return [Call("Remove-RoleGroup", {"Identity": name, "BypassSecurityGroupManagerCheck": True,
                                          "Confirm": False})]
    out = []
    if fields["description"] and (fact.get("description") or "") != fields["description"]:
        out.append(Call("Set-RoleGroup", {"Identity": name, "Description": fields["description"]}))
    have = [str(m).lower() for m in fact.get("members") or []]
    out += [Call("Add-RoleGroupMember", {"Identity": name, "Member": m, "BypassSecurityGroupManagerCheck": True})
            for m in fields["members"] if m not in have]
    out += [Call("Remove-RoleGroupMember", {"Identity": name, "Member": m, "BypassSecurityGroupManagerCheck": True,
                                            "Confirm": False}) for m in have if m not in fields["members"]]
    wanted_roles = {r.lower() for r in fields["roles"]}
    scope = (fields["scope"] or "").lower()
    for assignment in fact.get("assignments") or []:
        identity = assignment.get("identity") or assignment.get("name")
        if str(assignment.get("role", "")).lower() not in wanted_roles:
            out.append(Call("Remove-ManagementRoleAssignment", {"Identity": identity, "Confirm": False}))
        elif str(assignment.get("scope") or "").lower() != scope:
            out.append(write_scope_call(identity, fields["scope"]))
    have_roles = {str(a.get("role", "")).lower() for a in fact.get("assignments") or []}
    for role in fields["roles"]:
        if role.lower() not in have_roles:
            parameters = {"SecurityGroup": name, "Role": role}
            if fields["scope"]:
                parameters["CustomRecipientWriteScope"] = fields["scope"]
            out.append(Call("New-ManagementRoleAssignment", parameters))
    return out
