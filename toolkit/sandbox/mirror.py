"""An organisation rebuilt from objects as Exchange prints them: what a plan knows of a real target.

The facts script of a playbook prints every object its apply script would read, one ``EXKIT-OBJECT {json}`` line
each, with the properties Exchange's cmdlets output (``Get-ManagementScope`` → Name, RecipientFilter, RecipientRoot,
…). The Exchange Online connector gets the same objects from the REST endpoint. From them this module builds a
sandbox :class:`Organisation` holding just those objects; the plan then runs the apply script against it in the
sandbox (``what-if``), so the script's own logic decides what a plan shows.

What Exchange prints is not what it was given (canonical RecipientRoot, normalised filters, assignees by name):
each conversion below reads the printed form back into the sandbox's stored form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from toolkit import opath
from toolkit.boundary import canonical_name
from toolkit.sandbox.model import (
    ApplicationAccessPolicy,
    MailboxPermission,
    ManagementScope,
    Organisation,
    Recipient,
    RoleAssignment,
    RoleGroup,
    ServicePrincipal,
)
from toolkit.sandbox.seed import platform_roles

OBJECT_PREFIX = "EXKIT-OBJECT "
# The object types a facts script may print, and so what this module reads back.
OBJECT_TYPES = frozenset({"OrganizationalUnit", "Recipient", "RoleGroupMember", "ManagementScope", "RoleGroup",
                          "ServicePrincipal", "RoleAssignment", "MailboxPermission", "ApplicationAccessPolicy"})


def parse_objects(stdout: str) -> list[dict[str, Any]]:
    """The ``EXKIT-OBJECT`` lines of a facts script's output."""
    return [json.loads(line.strip()[len(OBJECT_PREFIX):]) for line in stdout.splitlines()
            if line.strip().startswith(OBJECT_PREFIX)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


def _flag(value: Any) -> bool:
    return value is True or _text(value).lower() == "true"


def organisation_from_objects(platform: str, objects: Iterable[dict[str, Any]]) -> Organisation:
    """An organisation holding exactly the given objects (and the platform's built-in roles)."""
    org = Organisation(name="mirror", platform=platform, management_roles=platform_roles(platform),
                       domain_controller="(the target)")
    add_objects(org, objects)
    return org


def add_objects(org: Organisation, objects: Iterable[dict[str, Any]]) -> None:
    """Add objects as Exchange printed them; an object the organisation already holds is kept as it is."""
    pending_members: list[tuple[str, str]] = []
    pending: list[dict[str, Any]] = []
    for item in objects:
        kind = item.get("type")
        if kind == "OrganizationalUnit":
            dn = _text(item.get("DistinguishedName"))
            if dn and dn.lower() not in (ou.lower() for ou in org.organizational_units):
                org.organizational_units.append(dn)
        elif kind in ("Recipient", "RoleGroupMember"):
            recipient = _recipient(org, item)
            if kind == "RoleGroupMember":
                pending_members.append((_text(item.get("Group")), recipient.member_id))
        else:
            pending.append(item)
    for item in pending:  # after the recipients and OUs they refer to
        kind = item.get("type")
        if kind == "ManagementScope":
            if org.scope(_text(item.get("Name"))) is None:
                org.management_scopes.append(_scope(org, item))
        elif kind == "RoleGroup":
            if org.role_group(_text(item.get("Name"))) is None:
                org.role_groups.append(RoleGroup(name=_text(item.get("Name")),
                                                 description=_text(item.get("Description"))))
        elif kind == "ServicePrincipal":
            app_id = _text(item.get("AppId")).lower()
            if not any(p.app_id == app_id for p in org.service_principals):
                org.service_principals.append(ServicePrincipal(
                    app_id=app_id, object_id=_text(item.get("ObjectId")).lower(),
                    display_name=_text(item.get("DisplayName"))))
    for item in pending:
        kind = item.get("type")
        if kind == "RoleAssignment":
            if org.assignment(_text(item.get("Name"))) is None:
                org.role_assignments.append(_assignment(org, item))
        elif kind == "MailboxPermission":
            permission = _permission(org, item)
            if permission is not None:
                org.mailbox_permissions.append(permission)
        elif kind == "ApplicationAccessPolicy":
            org.application_access_policies.append(_policy(org, item))
    for group_name, member in pending_members:
        group = org.role_group(group_name)
        if group is not None and member not in group.members:
            group.members.append(member)
    org.normalise()


def _recipient(org: Organisation, item: dict[str, Any]) -> Recipient:
    dn = _text(item.get("DistinguishedName")) or f"CN={_text(item.get('Name'))},(unknown)"
    found = next((r for r in org.recipients if r.distinguished_name.lower() == dn.lower()), None)
    if found is not None:
        return found
    recipient = Recipient(name=_text(item.get("Name")), alias=_text(item.get("Alias")),
                          primary_smtp_address=_text(item.get("PrimarySmtpAddress")).lower(),
                          recipient_type_details=_text(item.get("RecipientTypeDetails")) or "User",
                          display_name=_text(item.get("DisplayName")), distinguished_name=dn)
    org.recipients.append(recipient)
    return recipient


def _ou_dn(org: Organisation, printed: str) -> str:
    """A RecipientRoot as printed (canonical name) → the OU's DN, when the facts read that OU."""
    for ou in org.organizational_units:
        if printed.lower() in (ou.lower(), canonical_name(ou).lower()):
            return ou
    return printed


def _scope(org: Organisation, item: dict[str, Any]) -> ManagementScope:
    printed = _text(item.get("RecipientFilter"))
    try:
        stored = opath.to_text(opath.parse(printed))
    except opath.OpathError:
        stored = printed
    root = _text(item.get("RecipientRoot"))
    return ManagementScope(name=_text(item.get("Name")), recipient_filter=stored,
                           recipient_root=_ou_dn(org, root) if root else None, exclusive=_flag(item.get("Exclusive")))


def _assignee(org: Organisation, item: dict[str, Any]) -> str:
    kind = _text(item.get("RoleAssigneeType"))
    name = _text(item.get("RoleAssigneeName"))
    if kind == "ServicePrincipal":
        return (_text(item.get("RoleAssignee")) or name).lower()
    if kind == "User":
        for candidate in (name, _text(item.get("RoleAssignee"))):
            user = org.recipient(candidate) if candidate else None
            if user is not None:
                return user.primary_smtp_address or user.distinguished_name
    return name


def _assignment(org: Organisation, item: dict[str, Any]) -> RoleAssignment:
    return RoleAssignment(
        name=_text(item.get("Name")), role=_text(item.get("Role")), role_assignee=_assignee(org, item),
        role_assignee_type=_text(item.get("RoleAssigneeType")) or "User",
        custom_recipient_write_scope=_text(item.get("CustomRecipientWriteScope")) or None,
        custom_resource_scope=_text(item.get("CustomResourceScope")) or None,
        recipient_organizational_unit_scope=_text(item.get("RecipientOrganizationalUnitScope")) or None,
        delegating=_flag(item.get("Delegating")), enabled=not item.get("Enabled") is False)


def _permission(org: Organisation, item: dict[str, Any]) -> MailboxPermission | None:
    mailbox = org.recipient(_text(item.get("Mailbox")) or _text(item.get("Identity")))
    user = org.recipient(_text(item.get("Trustee")) or _text(item.get("User")))
    if mailbox is None or user is None:
        return None
    rights = item.get("AccessRights")
    rights = [str(r) for r in rights] if isinstance(rights, list) else _text(rights).replace(",", " ").split()
    return MailboxPermission(identity=mailbox.primary_smtp_address, user=user.primary_smtp_address,
                             access_rights=rights, inheritance_type=_text(item.get("InheritanceType")) or "All",
                             is_inherited=_flag(item.get("IsInherited")), deny=_flag(item.get("Deny")))


def _policy(org: Organisation, item: dict[str, Any]) -> ApplicationAccessPolicy:
    scope = _text(item.get("ScopeIdentity")) or _text(item.get("ScopeName"))
    group = org.recipient(scope)
    return ApplicationAccessPolicy(app_id=_text(item.get("AppId")).lower(),
                                   scope_identity=group.primary_smtp_address if group else scope,
                                   access_right=_text(item.get("AccessRight")),
                                   description=_text(item.get("Description")),
                                   identity=_text(item.get("Identity")) or None)
