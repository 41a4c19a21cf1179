"""Delegate access: mailbox permissions (Add-/Get-/Remove-MailboxPermission), one resource per mailbox and user."""

from __future__ import annotations

from toolkit.playbook.model import Playbook
from toolkit.sandbox.model import Organisation
from typing import Any

from toolkit.resources.base import Resource

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


def view(org: Organisation, resource: Resource) -> dict[str, Any] | None:
    mailbox, user = org.recipient(resource.fields["mailbox"]), org.recipient(resource.fields["user"])
    if mailbox is None or user is None:
        return None
    rights = sorted({r for p in org.mailbox_permissions
                     if p.identity == mailbox.primary_smtp_address and p.user == user.primary_smtp_address
                     and not p.deny and not p.is_inherited for r in p.access_rights})
    return {"access_rights": rights} if "FullAccess" in rights else None
