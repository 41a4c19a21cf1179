"""Delegate access: mailbox permissions (Add-/Get-/Remove-MailboxPermission), one resource per mailbox and user."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from typing import Any

from toolkit.resources.base import Call, FieldChange, Resource

KIND = "MailboxPermission"
TEMPLATE = "mailbox_permission.ps1.j2"


def desired(playbook: Playbook) -> list[Resource]:
    resources: dict[tuple[str, str], Resource] = {}
    for delegate in playbook.delegates:
        for mailbox in delegate.mailboxes:
            name = f"{mailbox.lower()}:{delegate.user.lower()}"
            resources.setdefault((mailbox.lower(), delegate.user.lower()), Resource(KIND, name, TEMPLATE, {
                "mailbox": mailbox.lower(),
                "user": delegate.user.lower(),
                "access_rights": list(dict.fromkeys(delegate.access_rights)),
                "auto_mapping": delegate.auto_mapping,
            }))
    return list(resources.values())


def compare(resource: Resource, fact: dict[str, Any]) -> list[FieldChange]:
    return []  # present (FullAccess, explicit, not denied) or not: nothing else is managed


def calls(resource: Resource, fact: dict[str, Any], action: str) -> list[Call]:
    """The cmdlets that grant or remove the permission (where scripts cannot run: Exchange Online REST)."""
    fields = resource.fields
    grant = {"Identity": fields["mailbox"], "User": fields["user"], "AccessRights": fields["access_rights"],
             "InheritanceType": "All"}
    if action == "create":
        return [Call("Add-MailboxPermission", {**grant, "AutoMapping": fields["auto_mapping"]})]
    if action == "delete":
        return [Call("Remove-MailboxPermission", {**grant, "Confirm": False})]
    return []  # present or not: nothing else is managed (see compare)
