"""Effective access: which principal can act on which mailbox, with which right, and through which grant.

The one evaluator behind ``verify`` (effective access now), ``scope preview`` (what a scope contains) and the access
impact of a change (``diff``, ``plan``, ``check``). Its input is an :class:`Organisation` — recipients and RBAC
objects — built from a sandbox organisation, from a target's snapshot, from a recipients CSV, or from any of these
with a playbook's objects laid over it (:func:`overlay`). A property test checks it against the sandbox's
``Get-ManagementRoleAssignment -WritableRecipient -GetEffectiveUsers`` and ``Test-ServicePrincipalAuthorization``.

Exchange's semantics, each with its source (../shared/reference/exchange.md, "Effective access"):

- A management scope contains a recipient when its filter matches and the recipient is under its RecipientRoot
  (learn.microsoft.com "Understanding management role scopes"; New-ManagementScope -RecipientRoot).
- Regular scopes add up: a principal reaches a mailbox when any role assignment it holds — directly, through a role
  group or a security group it is a member of (nested groups expanded, as -GetEffectiveUsers does) — has the role
  and a write scope containing the mailbox. Write scope = the custom scope, the OU scope, or the whole organisation
  when the assignment names none. Disabled and delegating assignments grant nothing.
- Exclusive scopes subtract: a mailbox matched by any exclusive scope is reachable only through assignments whose
  own scope is exclusive and matches it ("Understanding exclusive scopes": like a deny ACE; an "equivalent"
  exclusive scope is one matching some of the same objects).
- RBAC for Applications: an ``Application …`` role reaches the mailboxes of its resource scope, or every mailbox
  without one (Test-ServicePrincipalAuthorization: InScope; "RBAC for Applications in Exchange Online"). Exclusive
  scopes are an RBAC-for-administrators feature and do not apply to resource scopes.
- Tenant-wide application permissions consented in Entra reach every mailbox regardless of any scope; Application
  Access Policies constrain only those (RestrictAccess: only the group's members; DenyAccess: everyone but them;
  Deny wins over Restrict) — learn.microsoft.com "Limiting application permissions to specific Exchange Online
  mailboxes". Entra grants come from Microsoft Graph (issue 14): :attr:`Organisation.entra` is the hook. Where a
  playbook declares an access policy but no Graph data was read, the app is assumed to hold the permission the
  policy exists to limit, and the reason says so.
- FullAccess (Add-MailboxPermission) is a per-mailbox ACE, independent of scopes; a group trustee extends to its
  members.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toolkit import opath
from toolkit.boundary import canonical_name
from toolkit.errors import ExkitError
from toolkit.resources.base import ALL_MAILBOXES

ORGANIZATION = "Organization"
ENTRA_RIGHT = "Entra application permissions"
RESOURCE_TYPES = frozenset({"RoomMailbox", "LinkedRoomMailbox", "EquipmentMailbox"})
ROOM_TYPES = frozenset({"RoomMailbox", "LinkedRoomMailbox"})


# ----------------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Recipient:
    address: str  # primary SMTP address, lower case
    name: str
    type: str  # RecipientTypeDetails
    distinguished_name: str
    properties: Mapping[str, object]  # what OPATH filters see (MemberOfGroup: the DNs of its direct groups)

    @property
    def is_mailbox(self) -> bool:
        return self.type.endswith("Mailbox")

    @property
    def member_of(self) -> list[str]:
        value = self.properties.get("MemberOfGroup") or []
        return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


@dataclass(frozen=True)
class Scope:
    name: str
    filter: str  # canonical OPATH
    recipient_root: str | None = None
    exclusive: bool = False

    def tree(self) -> opath.Node:
        return _parse(self.filter)

    def contains(self, recipient: Recipient) -> bool:
        return in_scope(self.tree(), self.recipient_root, recipient)


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> opath.Node:
    return opath.parse(text)


@dataclass(frozen=True)
class Assignment:
    name: str
    role: str
    assignee: str  # a user's address, a role group's name, a security group's name or address, an app's key
    assignee_type: str  # User, RoleGroup, SecurityGroup, ServicePrincipal
    scope: str | None = None  # custom recipient write scope, or an app assignment's custom resource scope
    ou_scope: str | None = None
    enabled: bool = True
    delegating: bool = False


@dataclass(frozen=True)
class Application:
    key: str  # app id (lower case)
    name: str
    object_id: str = ""


@dataclass(frozen=True)
class AccessPolicy:
    app: str  # app id
    group: str  # the scope group's address
    access_right: str  # RestrictAccess | DenyAccess


@dataclass(frozen=True)
class EntraGrant:
    """A tenant-wide application permission an app holds in Entra (admin consent), from Microsoft Graph."""

    app: str  # app id
    permission: str  # e.g. Calendars.ReadWrite
    resource: str = "Microsoft Graph"
    assumed: bool = False  # not read from Graph: implied by an access policy that exists to limit it


@dataclass(frozen=True)
class Permission:
    mailbox: str  # address
    user: str  # address (or a group's address)
    rights: tuple[str, ...] = ("FullAccess",)


@dataclass
class Organisation:
    recipients: list[Recipient] = field(default_factory=list)
    scopes: dict[str, Scope] = field(default_factory=dict)  # lower-case name →
    role_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case name → member addresses
    role_group_names: dict[str, str] = field(default_factory=dict)  # lower-case name → name as written
    assignments: dict[str, Assignment] = field(default_factory=dict)  # lower-case name →
    permissions: list[Permission] = field(default_factory=list)
    applications: dict[str, Application] = field(default_factory=dict)  # app id →
    policies: list[AccessPolicy] = field(default_factory=list)
    entra: list[EntraGrant] = field(default_factory=list)
    membership_known: bool = True  # False: the recipients' source has no group membership (a Get-Recipient CSV)
    entra_read: bool = False  # True: the apps' Entra grants were read (Microsoft Graph); nothing is assumed then
    memo: dict[Any, bool] = field(default_factory=dict, repr=False, compare=False)  # scope membership, computed once
    source: str = ""

    def copy(self) -> Organisation:
        return replace(self, recipients=list(self.recipients), scopes=dict(self.scopes),
                       role_groups=dict(self.role_groups), role_group_names=dict(self.role_group_names),
                       assignments=dict(self.assignments), permissions=list(self.permissions),
                       applications=dict(self.applications), policies=list(self.policies), entra=list(self.entra))

    def recipient(self, identity: str) -> Recipient | None:
        wanted = identity.lower()
        return next((r for r in self.recipients if wanted in (r.address, r.name.lower(),
                                                              r.distinguished_name.lower())), None)

    def mailboxes(self) -> list[Recipient]:
        return [r for r in self.recipients if r.is_mailbox]

    def group_members(self, group: str, _seen: frozenset[str] = frozenset()) -> list[str]:
        """The addresses of a group's members, nested groups expanded (a group is known by name, address or DN)."""
        found = self.recipient(group)
        if found is None or found.is_mailbox or found.distinguished_name.lower() in _seen:
            return []
        dn = found.distinguished_name.lower()
        members: list[str] = []
        for recipient in self.recipients:
            if any(g.lower() == dn for g in recipient.member_of):
                if recipient.is_mailbox:
                    members.append(recipient.address)
                else:
                    members += self.group_members(recipient.address, _seen | {dn})
        return sorted(set(members))


def in_scope(tree: opath.Node, recipient_root: str | None, recipient: Recipient) -> bool:
    """A scope's filter and RecipientRoot against one recipient: the one place scope membership is decided."""
    # RecipientRoot comes as the playbook's DN or as Exchange prints it (the OU's canonical name): compare both as
    # canonical names, where "below the OU" is a path prefix.
    if recipient_root and not canonical_name(recipient.distinguished_name).lower().startswith(
            canonical_name(recipient_root).lower() + "/"):
        return False
    return opath.evaluate(tree, recipient.properties)


# ----------------------------------------------------------------------------------------------------- sources
def from_sandbox(org: Any) -> Organisation:
    """The sandbox organisation's state (toolkit.sandbox.model.Organisation)."""
    model = Organisation(source="sandbox")
    model.recipients = [Recipient(r.primary_smtp_address.lower(), r.name, r.recipient_type_details,
                                  r.distinguished_name, r.filter_properties()) for r in org.recipients]
    for scope in org.management_scopes:
        model.scopes[scope.name.lower()] = Scope(scope.name, _canonical(scope.recipient_filter), scope.recipient_root,
                                                 scope.exclusive)
    for group in org.role_groups:
        model.role_groups[group.name.lower()] = tuple(m.lower() for m in group.members)
        model.role_group_names[group.name.lower()] = group.name
    for principal in org.service_principals:
        model.applications[principal.app_id.lower()] = Application(principal.app_id.lower(), principal.display_name,
                                                                   principal.object_id.lower())
    by_object = {a.object_id: a.key for a in model.applications.values()}
    for a in org.role_assignments:
        assignee = by_object.get(a.role_assignee.lower(), a.role_assignee) if a.role_assignee_type == \
            "ServicePrincipal" else a.role_assignee
        model.assignments[a.name.lower()] = Assignment(
            a.name, a.role, assignee.lower() if a.role_assignee_type == "User" else assignee, a.role_assignee_type,
            a.custom_resource_scope or a.custom_recipient_write_scope, a.recipient_organizational_unit_scope,
            a.enabled, a.delegating)
    model.permissions = [Permission(p.identity.lower(), p.user.lower(), tuple(p.access_rights))
                         for p in org.mailbox_permissions if not p.deny]
    model.policies = [AccessPolicy(p.app_id.lower(), p.scope_identity.lower(), p.access_right)
                      for p in org.application_access_policies]
    return model


class RecipientsFileError(ExkitError):
    pass


MAX_CSV_BYTES = 64 * 1024 * 1024  # 64 MiB: an export of every column is 2-3 KiB a recipient
MAX_CSV_ROWS = 200_000
MAX_CSV_COLUMNS = 1_000


def read_recipients_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of an Export-Csv file (a leading '#TYPE …' line is skipped), within bounds: a hostile or broken file is
    refused with its line, never read past MAX_CSV_BYTES or MAX_CSV_ROWS (a field over 128 KiB is the csv module's own
    bound, refused the same way)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise RecipientsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CSV_BYTES:
        raise RecipientsFileError(f"{path}:1:1: the file is larger than the limit of {MAX_CSV_BYTES // 1024 // 1024} "
                                  "MiB: export only the columns a scope filter uses (Select-Object … | Export-Csv)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise RecipientsFileError(f"{path}:{line}:1: not UTF-8 text (Export-Csv -Encoding UTF8)") from None
    lines = text.splitlines()
    skipped = 1 if lines and lines[0].startswith("#TYPE") else 0
    reader = csv.DictReader(lines[skipped:])
    rows: list[dict[str, Any]] = []
    try:
        for row in reader:
            if len(rows) == MAX_CSV_ROWS:
                raise RecipientsFileError(f"{path}:{reader.line_num + skipped}:1: more than {MAX_CSV_ROWS:,} "
                                          "recipients, the limit: preview a part (Get-Recipient -Filter …)")
            if len(row) > MAX_CSV_COLUMNS:
                raise RecipientsFileError(f"{path}:{reader.line_num + skipped}:1: more than {MAX_CSV_COLUMNS} "
                                          "columns, the limit")
            rows.append(row)
    except csv.Error as exc:
        line = reader.line_num + skipped + 1  # the line that failed is not counted yet
        raise RecipientsFileError(f"{path}:{line}:1: not a readable CSV line: {exc}") from None
    if not rows or "RecipientTypeDetails" not in rows[0]:
        raise RecipientsFileError(f"{path} is not a Get-Recipient export: it needs a RecipientTypeDetails column "
                                  "(Get-Recipient -ResultSize Unlimited | Export-Csv -NoTypeInformation FILE)")
    return rows


def recipient_from_row(row: Mapping[str, Any]) -> Recipient:
    """One recipient from a CSV row or a snapshot fact (Get-Recipient's property names). A MemberOfGroup column
    (DNs separated by ';'), which Get-Recipient does not export, is used when a row has one."""
    properties: dict[str, object] = {k: v for k, v in row.items() if k and v not in (None, "")}
    member_of = row.get("MemberOfGroup")
    if isinstance(member_of, str):
        properties["MemberOfGroup"] = [g.strip() for g in member_of.split(";") if g.strip()]
    address = str(row.get("PrimarySmtpAddress") or "").lower()
    properties.setdefault("ResourceType", {"RoomMailbox": "Room", "EquipmentMailbox": "Equipment"}.get(
        str(row.get("RecipientTypeDetails")), ""))
    return Recipient(address, str(row.get("Name") or address), str(row.get("RecipientTypeDetails") or ""),
                     str(row.get("DistinguishedName") or ""), properties)


def from_recipients(rows: Iterable[Mapping[str, Any]], source: str = "") -> Organisation:
    rows = list(rows)
    recipients = [recipient_from_row(r) for r in rows]
    return Organisation(recipients=recipients, membership_known=any("MemberOfGroup" in r for r in rows),
                        source=source)


def _true(value: Any, default: bool) -> bool:
    text = str(value if value is not None else "").strip().lower()
    return default if not text else text == "true"


def from_snapshot(snapshot: Any, source: str = "") -> Organisation:
    """A target's state as read by the snapshot (toolkit.verify.snapshot.Snapshot): every recipient, scope, role
    group, assignment, FullAccess grant, service principal, access policy and — on Exchange Online, where Microsoft
    Graph was read — the apps' tenant-wide application permissions that reach mailboxes."""
    from toolkit.verify.overlap import MAILBOX_PERMISSIONS

    model = from_recipients(snapshot.recipients, source)
    model.membership_known = any(r.get("MemberOfGroup") for r in snapshot.recipients)
    for scope in snapshot.scopes.values():
        name = str(scope.get("name"))
        model.scopes[name.lower()] = Scope(name, _canonical(str(scope.get("filter") or "")),
                                           str(scope.get("recipient_root") or "") or None,
                                           _true(scope.get("exclusive"), False))
    for group in snapshot.groups.values():
        model.role_groups[str(group["name"]).lower()] = tuple(group.get("members") or [])
        model.role_group_names[str(group["name"]).lower()] = str(group["name"])
    for principal in snapshot.principals:
        app_id = str(principal.get("app_id") or "").lower()
        model.applications[app_id] = Application(app_id, str(principal.get("display_name") or app_id),
                                                 str(principal.get("object_id") or "").lower())
    apps = {key: a.key for a in model.applications.values() for key in (a.name.lower(), a.object_id, a.key)}
    for row in snapshot.assignments:
        kind = str(row.get("assignee_type") or "")
        assignee = str(row.get("assignee") or "")
        if kind == "User":
            assignee = str(row.get("user") or assignee).lower()
        elif kind == "ServicePrincipal":
            assignee = apps.get(assignee.lower(), assignee.lower())
        scope = row.get("resource_scope") if kind == "ServicePrincipal" else (row.get("exclusive_scope")
                                                                             or row.get("scope"))
        model.assignments[str(row["name"]).lower()] = Assignment(
            str(row["name"]), str(row.get("role")), assignee, kind, str(scope or "") or None,
            str(row.get("ou_scope") or "") or None, _true(row.get("enabled"), True))
    for permission in snapshot.permissions:
        rights = tuple(str(permission.get("rights") or "").replace(",", " ").split())
        user = str(permission.get("user") or permission.get("user_name") or "").lower()
        model.permissions.append(Permission(str(permission.get("mailbox") or "").lower(), user, rights))
    for policy in snapshot.policies:
        group = model.recipient(str(policy.get("scope_name") or ""))
        model.policies.append(AccessPolicy(str(policy.get("app_id") or "").lower(),
                                           group.address if group else str(policy.get("scope_name") or "").lower(),
                                           str(policy.get("access_right") or "")))
    if snapshot.entra and snapshot.entra.get("status") == "read":
        model.entra_read = True
        model.entra = [EntraGrant(str(p.get("app_id")).lower(), str(p.get("permission")), str(p.get("resource")))
                       for p in snapshot.entra_permissions
                       if (str(p.get("resource_app_id")), str(p.get("permission"))) in MAILBOX_PERMISSIONS]
    return model


def _canonical(text: str) -> str:
    try:
        return opath.to_text(opath.parse(text))
    except opath.OpathError:
        return text


# ----------------------------------------------------------------------------------------------------- a playbook
def overlay(org: Organisation, playbook: Any, present: bool = True) -> Organisation:
    """The organisation after a playbook is applied (``present``) or destroyed: its scopes, role groups and their
    assignments, direct assignments, delegates, applications, application assignments and access policies replace
    the objects of the same names."""
    out = org.copy()
    for scope in playbook.scopes:
        if present:
            out.scopes[scope.name.lower()] = Scope(scope.name, opath.to_text(scope.filter_tree()),
                                                   scope.recipient_root, scope.exclusive)
        else:
            out.scopes.pop(scope.name.lower(), None)
    for group in playbook.role_groups:
        key = group.name.lower()
        out.assignments = {k: a for k, a in out.assignments.items()
                           if not (a.assignee_type == "RoleGroup" and a.assignee.lower() == key)}
        out.role_groups.pop(key, None)
        if present:
            out.role_groups[key] = tuple(dict.fromkeys(m.lower() for m in group.members))
            out.role_group_names[key] = group.name
            for role in dict.fromkeys(group.roles):
                name = f"{role}-{group.name}"
                out.assignments[name.lower()] = Assignment(name, role, group.name, "RoleGroup", group.scope)
    for assignment in playbook.role_assignments:
        key = assignment.assignment_name.lower()
        out.assignments.pop(key, None)
        if present:
            if assignment.user:
                assignee, kind = assignment.user.lower(), "User"
            elif assignment.role_group or assignment.security_group.lower() in out.role_groups:
                assignee, kind = assignment.role_group or assignment.security_group, "RoleGroup"
            else:
                assignee, kind = assignment.security_group, "SecurityGroup"
            out.assignments[key] = Assignment(assignment.assignment_name, assignment.role, assignee, kind,
                                              assignment.scope)
    for delegate in playbook.delegates:
        for mailbox in delegate.mailboxes:
            pair = (mailbox.lower(), delegate.user.lower())
            out.permissions = [p for p in out.permissions if (p.mailbox, p.user) != pair]
            if present:
                out.permissions.append(Permission(*pair, tuple(delegate.access_rights)))
    for app in playbook.applications:
        if present:
            out.applications[app.app_id] = Application(app.app_id, app.name, app.object_id)
    for assignment in playbook.application_role_assignments:
        key = assignment.assignment_name.lower()
        out.assignments.pop(key, None)
        app = playbook.application_named(assignment.application)
        if present and app is not None:
            out.assignments[key] = Assignment(assignment.assignment_name, assignment.role, app.app_id,
                                              "ServicePrincipal", assignment.scope)
    for policy in playbook.application_access_policies:
        app = playbook.application_named(policy.application)
        if app is None:
            continue
        out.policies = [p for p in out.policies if (p.app, p.group) != (app.app_id, policy.group.lower())]
        if present:
            out.policies.append(AccessPolicy(app.app_id, policy.group.lower(), policy.access_right))
    return out


# ----------------------------------------------------------------------------------------------------- evaluation
def effective_users(org: Organisation, assignment: Assignment) -> list[str]:
    """Who an assignment reaches (as -GetEffectiveUsers): a role group's members, a security group's members (nested
    groups expanded), the user itself, or the application."""
    if assignment.assignee_type == "RoleGroup":
        members: list[str] = []
        for member in org.role_groups.get(assignment.assignee.lower(), ()):
            found = org.recipient(member)
            members += [member] if found is None or found.is_mailbox else org.group_members(member)
        return sorted(set(members))
    if assignment.assignee_type == "SecurityGroup":
        return org.group_members(assignment.assignee)
    return [assignment.assignee.lower()]


def _contains(org: Organisation, scope: Scope, recipient: Recipient) -> bool:
    """scope.contains(recipient), remembered per organisation state (scopes are immutable values)."""
    key = (scope, recipient.address, recipient.distinguished_name)
    found = org.memo.get(key)
    if found is None:
        found = org.memo[key] = scope.contains(recipient)
    return found


def can_write(org: Organisation, assignment: Assignment, recipient: Recipient,
              exclusive: list[Scope] | None = None) -> bool:
    """Does the assignment's write scope (or an app assignment's resource scope) contain the recipient?"""
    if not assignment.enabled or assignment.delegating:
        return False
    scope = org.scopes.get((assignment.scope or "").lower()) if assignment.scope else None
    if assignment.scope and scope is None:
        return False  # a scope that does not exist contains nothing
    if assignment.assignee_type == "ServicePrincipal":
        return scope is None or _contains(org, scope, recipient)
    if exclusive is None:
        exclusive = [s for s in org.scopes.values() if s.exclusive]
    if any(_contains(org, s, recipient) for s in exclusive):
        return scope is not None and scope.exclusive and _contains(org, scope, recipient)
    if scope is not None:
        return _contains(org, scope, recipient)
    if assignment.ou_scope:
        return recipient.distinguished_name.lower().endswith("," + assignment.ou_scope.lower())
    return True


def writable_by(org: Organisation, recipient: Recipient) -> list[tuple[str, str]]:
    """(assignment name, effective user) pairs that can write a recipient: what ``Get-ManagementRoleAssignment
    -WritableRecipient R -GetEffectiveUsers`` lists for users and groups."""
    exclusive = [s for s in org.scopes.values() if s.exclusive]
    return sorted((a.name, user) for a in org.assignments.values() if a.assignee_type != "ServicePrincipal"
                  and can_write(org, a, recipient, exclusive) for user in effective_users(org, a))


def app_authorization(org: Organisation, app: str, recipient: Recipient) -> list[tuple[str, bool]]:
    """(role, in scope) per application role assignment of an app: ``Test-ServicePrincipalAuthorization``."""
    return sorted((a.role, can_write(org, a, recipient)) for a in org.assignments.values()
                  if a.assignee_type == "ServicePrincipal" and a.assignee.lower() == app.lower() and a.enabled)


@dataclass(frozen=True)
class Principal:
    key: str  # an address, or "app:<app id>"
    label: str  # what a reviewer reads

    @property
    def is_app(self) -> bool:
        return self.key.startswith("app:")


# (principal key, right) → mailbox address → the grants that give it
Access = dict[tuple[str, str], dict[str, list[str]]]


def _scope_words(org: Organisation, assignment: Assignment) -> str:
    if assignment.scope:
        scope = org.scopes.get(assignment.scope.lower())
        if scope is None:
            return f"scope {assignment.scope!r} (missing: contains nothing)"
        root = f", under {scope.recipient_root}" if scope.recipient_root else ""
        kind = "exclusive scope" if scope.exclusive else "scope"
        return f"{kind} {scope.name!r} ({scope.filter}{root})"
    if assignment.ou_scope:
        return f"OU {assignment.ou_scope}"
    return f"{ALL_MAILBOXES} (no write scope)"


def grant_reason(org: Organisation, assignment: Assignment) -> str:
    via = {"RoleGroup": f"role group {org.role_group_names.get(assignment.assignee.lower(), assignment.assignee)!r}",
           "SecurityGroup": f"security group {assignment.assignee!r}", "User": "direct assignment",
           "ServicePrincipal": "application assignment"}.get(assignment.assignee_type, assignment.assignee_type)
    return f"{via}, assignment {assignment.name!r} on {_scope_words(org, assignment)}"


def evaluate(org: Organisation, only: set[str] | None = None) -> tuple[Access, dict[str, Principal]]:
    """Every principal's reach over the organisation's mailboxes, per right, with the grants that give it (``only``:
    just these principal keys — a large organisation's other assignments are not walked)."""
    access: Access = {}
    principals: dict[str, Principal] = {}
    mailboxes = org.mailboxes()
    exclusive = [s for s in org.scopes.values() if s.exclusive]

    def add(key: str, label: str, right: str, mailbox: str, reason: str) -> None:
        principals.setdefault(key, Principal(key, label))
        reasons = access.setdefault((key, right), {}).setdefault(mailbox, [])
        if reason not in reasons:
            reasons.append(reason)

    for assignment in org.assignments.values():
        if not assignment.enabled or assignment.delegating:
            continue
        if assignment.assignee_type == "ServicePrincipal":
            app = org.applications.get(assignment.assignee.lower())
            users = [(f"app:{assignment.assignee.lower()}", app.name if app else assignment.assignee)]
        else:
            users = [(u, u) for u in effective_users(org, assignment)]
        users = [(key, label) for key, label in users if only is None or key in only]
        if not users:
            continue
        reached = [m for m in mailboxes if can_write(org, assignment, m, exclusive)]
        reason = grant_reason(org, assignment)
        for key, label in users:
            principals.setdefault(key, Principal(key, label))
            access.setdefault((key, assignment.role), {})
            for mailbox in reached:
                add(key, label, assignment.role, mailbox.address, reason)
    for permission in org.permissions:
        if "FullAccess" not in permission.rights:
            continue
        trustee = org.recipient(permission.user)
        users = org.group_members(permission.user) if trustee is not None and not trustee.is_mailbox else [
            permission.user]
        for user in (u for u in users if only is None or u in only):
            add(user, user, "FullAccess", permission.mailbox, f"FullAccess on {permission.mailbox} "
                                                              f"(Add-MailboxPermission, trustee {permission.user})")
    for app_id, grants in _entra_grants(org).items():
        app = org.applications.get(app_id)
        key, label = f"app:{app_id}", app.name if app else app_id
        if only is not None and key not in only:
            continue
        allowed = _policy_filter(org, app_id)
        for grant in grants:
            right = f"{grant.permission} (Entra consent)" if not grant.assumed else ENTRA_RIGHT
            principals.setdefault(key, Principal(key, label))
            access.setdefault((key, right), {})
            for mailbox in mailboxes:
                why = allowed(mailbox)
                if why is not None:
                    add(key, label, right, mailbox.address, why)
    return access, principals


def _entra_grants(org: Organisation) -> dict[str, list[EntraGrant]]:
    grants: dict[str, list[EntraGrant]] = {}
    for grant in org.entra:
        grants.setdefault(grant.app.lower(), []).append(grant)
    for policy in org.policies:
        if policy.app not in grants and not org.entra_read:
            grants[policy.app] = [EntraGrant(policy.app, ENTRA_RIGHT, assumed=True)]
    return grants


def _policy_filter(org: Organisation, app_id: str) -> Any:
    """mailbox → the reason it is reachable under the app's access policies, or None when a policy blocks it."""
    policies = [p for p in org.policies if p.app == app_id]
    groups = {p.group: set(org.group_members(p.group)) for p in policies}
    assumed = not any(g.app.lower() == app_id for g in org.entra)
    base = ("tenant-wide application permission (Entra consent)" if not assumed else
            "the Entra application permission the access policy limits (assumed: Graph not read)")

    def reason(mailbox: Recipient) -> str | None:
        denied = [p for p in policies if p.access_right == "DenyAccess" and mailbox.address in groups[p.group]]
        if denied:
            return None  # Deny wins over Restrict
        restricts = [p for p in policies if p.access_right == "RestrictAccess"]
        if restricts:
            hit = [p for p in restricts if mailbox.address in groups[p.group]]
            if not hit:
                return None
            return f"{base}, RestrictAccess to members of {hit[0].group}"
        deny = [p for p in policies if p.access_right == "DenyAccess"]
        if deny:
            return f"{base}, DenyAccess to members of {', '.join(p.group for p in deny)} (not a member)"
        return base + f": {ALL_MAILBOXES}"

    return reason
