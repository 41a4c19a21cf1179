"""The playbook format as typed models (pydantic v2). ``exkit schema`` publishes their JSON Schema.

Field-level rules raise :class:`PydanticCustomError` of type ``exkit`` with a ``hint`` in the context, so the
validator can show a position, a message and a hint. Rules that span several objects (references, duplicates)
live in :mod:`toolkit.playbook.validate`; least-privilege advice in :mod:`toolkit.playbook.lint`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from toolkit import opath

FORMAT_VERSION = 1
EXCHANGE_NAME_LIMIT = 64

# Exchange Server's built-in management roles that matter here; others are allowed with a warning (custom roles).
KNOWN_ROLES = (
    "ApplicationImpersonation", "Mail Recipients", "Mail Recipient Creation", "Mailbox Import Export",
    "Mailbox Search", "Organization Client Access", "Recipient Policies", "Role Management", "Reset Password",
    "Security Group Creation and Membership", "User Options", "View-Only Configuration",
    "View-Only Recipients", "MyBaseOptions", "Distribution Groups", "Legal Hold", "Move Mailboxes",
)
IMPERSONATION_ROLE = "ApplicationImpersonation"

# Built-in RBAC-for-Applications roles of Exchange Online (each spelled with the "Application " prefix).
APPLICATION_ROLES = tuple("Application " + r for r in (
    "Mail.Read", "Mail.ReadBasic", "Mail.ReadWrite", "Mail.Send", "MailboxSettings.Read", "MailboxSettings.ReadWrite",
    "Calendars.Read", "Calendars.ReadWrite", "Contacts.Read", "Contacts.ReadWrite", "MailboxFolder.Read",
    "MailboxFolder.ReadWrite", "MailboxItem.Read", "MailboxItem.ReadWrite", "MailboxItem.Export",
    "MailboxItem.ImportExport", "Mail Full Access", "Exchange Full Access", "EWS.AccessAsApp", "SMTP.SendAsApp",
    "MailboxConfigItem.Read", "MailboxConfigItem.ReadWrite", "MailTips.ReadBasic.All", "Mail-Advanced.ReadWrite.All",
))
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\u2018\u2019-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_DN_COMPONENT = re.compile(r"^(CN|OU|DC|O|L|ST|C)=.+$", re.IGNORECASE)


def problem(message: str, hint: str = "", offset: int | None = None) -> PydanticCustomError:
    context: dict[str, Any] = {"message": message, "hint": hint}
    if offset is not None:
        context["offset"] = offset
    return PydanticCustomError("exkit", "{message}", context)


def check_name(value: str, what: str) -> str:
    if not value.strip():
        raise problem(f"the {what} name is empty", f"give the {what} a name")
    if "*" in value:  # -Identity 'Room*' is a wildcard lookup (Get-ManagementScope, Example 1: Redmond*)
        raise problem(f"the {what} name {value!r} contains '*', which Exchange reads as a wildcard when the name is "
                      "used as -Identity (it could match other objects)", "choose a name without '*'")
    if len(value) > EXCHANGE_NAME_LIMIT:
        raise problem(f"the {what} name is {len(value)} characters; Exchange allows at most {EXCHANGE_NAME_LIMIT}",
                      f"shorten it to {EXCHANGE_NAME_LIMIT} characters or fewer")
    return value


def check_address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise problem(f"{value!r} is not a valid user principal name or e-mail address",
                      "write it as user@domain, e.g. svc-rooms@contoso.com")
    return value


def check_distinguished_name(value: str, what: str) -> str:
    parts = [p.strip() for p in re.split(r"(?<!\\),", value)]
    if not parts or not all(_DN_COMPONENT.match(p) for p in parts):
        raise problem(f"{what} {value!r} is not a distinguished name",
                      "write it as OU=Tenant1,OU=Hosting,DC=hoster,DC=local")
    return value


Address = Annotated[str, AfterValidator(lambda value: check_address(value))]


def check_principal(value: str) -> str:
    """A role-group member: a security principal, mail-enabled (its address) or not (its distinguished name) —
    Add-RoleGroupMember -Member takes a SecurityPrincipalIdParameter."""
    if "@" in value or "=" not in value:
        return check_address(value)
    return check_distinguished_name(value, "member")


Principal = Annotated[str, AfterValidator(lambda value: check_principal(value))]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)


CustomAttributeName = Literal[
    "CustomAttribute1", "CustomAttribute2", "CustomAttribute3", "CustomAttribute4", "CustomAttribute5",
    "CustomAttribute6", "CustomAttribute7", "CustomAttribute8", "CustomAttribute9", "CustomAttribute10",
    "CustomAttribute11", "CustomAttribute12", "CustomAttribute13", "CustomAttribute14", "CustomAttribute15",
]


class ManagementScope(_Model):
    """A recipient write scope. Either structured selectors (combined with -and) or a raw OPATH ``filter``."""

    name: str = Field(description="Scope name (at most 64 characters).")
    rooms: bool = Field(False, description="Room mailboxes (RecipientTypeDetails -eq 'RoomMailbox').")
    equipment: bool = Field(False, description="Equipment mailboxes; with rooms: true, rooms or equipment.")
    office: list[str] | None = Field(None, description="Only recipients whose Office is one of these.")
    custom_attributes: dict[CustomAttributeName, str] | None = Field(
        None, description="CustomAttribute1..15 values that must match (all of them).")
    member_of: str | None = Field(
        None, description="Distinguished name of a room list or group whose direct members are in scope.")
    filter: str | None = Field(None, description="Raw OPATH filter for experts; excludes the selectors above.")
    recipient_root: str | None = Field(None, description="OU the scope is limited to (hosted Exchange tenants).")
    exclusive: bool = Field(False, description="Create an exclusive scope (only on creation).")

    _office_list = field_validator("office", mode="before")(_as_list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "management scope")

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                opath.parse(value)
            except opath.OpathError as exc:
                raise problem(f"OPATH filter does not parse: {exc.message}", exc.hint, exc.offset) from None
        return value

    @field_validator("member_of")
    @classmethod
    def _member_of(cls, value: str | None) -> str | None:
        return None if value is None else check_distinguished_name(value, "member_of")

    @field_validator("recipient_root")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        return None if value is None else check_distinguished_name(value, "recipient_root")

    @model_validator(mode="after")
    def _selectors(self) -> ManagementScope:
        structured = self.rooms or self.equipment or self.office or self.custom_attributes or self.member_of
        if self.filter is not None and structured:
            raise problem("use either 'filter' or the structured selectors (rooms, equipment, office, "
                          "custom_attributes, member_of), not both",
                          "move the conditions into the filter, or drop the filter")
        if self.filter is None and not structured:
            raise problem("the scope selects nothing: it has no selector and no filter",
                          "add 'rooms: true' to limit the scope to room mailboxes")
        if self.filter is None:
            try:
                self.filter_text()
            except opath.OpathError as exc:
                raise problem(f"scope {self.name!r}: {exc.message}", exc.hint) from None
        return self

    def filter_tree(self) -> opath.Node:
        """The scope's OPATH filter as a tree (structured selectors are combined with -and)."""
        if self.filter is not None:
            return opath.parse(self.filter)
        parts: list[opath.Node] = []
        types = [t for t, wanted in (("RoomMailbox", self.rooms), ("EquipmentMailbox", self.equipment)) if wanted]
        if types:
            parts.append(opath.disjunction(opath.Comparison("RecipientTypeDetails", "eq", t) for t in types))
        if self.office:
            parts.append(opath.disjunction(opath.Comparison("Office", "eq", o) for o in self.office))
        for attribute, value in sorted((self.custom_attributes or {}).items(), key=lambda kv: int(kv[0][15:])):
            parts.append(opath.Comparison(attribute, "eq", value))
        if self.member_of:
            parts.append(opath.Comparison("MemberOfGroup", "eq", self.member_of))
        return opath.conjunction(parts)

    def filter_text(self) -> str:
        """The filter exkit writes to Exchange: the raw filter as given, or the canonical structured one."""
        return self.filter if self.filter is not None else opath.to_text(self.filter_tree())


class RoleGroup(_Model):
    """A role group: roles, members, and the write scope its role assignments carry."""

    name: str = Field(description="Role group name (at most 64 characters).")
    description: str | None = None
    roles: Annotated[list[str], Field(min_length=1, description="Management roles, e.g. ApplicationImpersonation.")]
    members: list[Principal] = Field(default_factory=list, description="Members: security principals, by primary "
                                     "SMTP address, or by distinguished name when they have no address.")
    scope: str | None = Field(None, description="Name of a management scope declared in this playbook.")
    all_mailboxes: bool = Field(
        False, description="Deliberately organisation-wide (no scope), e.g. for 'End Event Early'.")

    _members_list = field_validator("members", "roles", mode="before")(_as_list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "role group")

    @model_validator(mode="after")
    def _scope_or_all(self) -> RoleGroup:
        if self.scope is not None and self.all_mailboxes:
            raise problem("'scope' and 'all_mailboxes: true' contradict each other",
                          "keep the scope to limit the group to rooms, or drop it for organisation-wide access")
        return self


class RoleAssignment(_Model):
    """A direct management role assignment to a user, a security group, or a role group of this playbook."""

    name: str | None = Field(None, description="Assignment name (at most 64 characters); default <Role>-<assignee>.")
    role: str
    user: str | None = Field(None, description="Assignee: a user principal name.")
    security_group: str | None = Field(None, description="Assignee: an existing security group.")
    role_group: str | None = Field(None, description="Assignee: a role group declared in this playbook.")
    scope: str | None = Field(None, description="Name of a management scope declared in this playbook.")
    all_mailboxes: bool = Field(False, description="Deliberately organisation-wide (no scope).")

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    @model_validator(mode="after")
    def _assignee(self) -> RoleAssignment:
        given = [k for k in ("user", "security_group", "role_group") if getattr(self, k)]
        if len(given) != 1:
            raise problem("a role assignment needs exactly one assignee: user, security_group or role_group"
                          + (f" (found {', '.join(given)})" if given else ""),
                          "e.g. 'user: svc-rooms@contoso.com'")
        if self.scope is not None and self.all_mailboxes:
            raise problem("'scope' and 'all_mailboxes: true' contradict each other",
                          "keep the scope, or drop it for organisation-wide access")
        check_name(self.assignment_name, "role assignment")
        return self

    @property
    def assignee(self) -> str:
        return self.user or self.security_group or self.role_group or ""

    @property
    def assignee_kind(self) -> Literal["User", "SecurityGroup"]:
        return "User" if self.user else "SecurityGroup"

    @property
    def assignment_name(self) -> str:
        return self.name or f"{self.role}-{self.assignee}"


class Delegate(_Model):
    """Delegate access (FullAccess on each listed mailbox). Discouraged: prefer impersonation."""

    user: str = Field(description="The account that gets access.")
    mailboxes: Annotated[list[Address], Field(min_length=1)]
    access_rights: list[Literal["FullAccess"]] = Field(default_factory=lambda: ["FullAccess"])
    auto_mapping: bool = Field(False, description="Outlook auto-mapping; off for service accounts.")

    _mailbox_list = field_validator("mailboxes", mode="before")(_as_list)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        return check_address(value)


def check_guid(value: str, what: str) -> str:
    if not _GUID.match(value):
        raise problem(f"{what} {value!r} is not a GUID", "copy it from the Entra admin centre, e.g. "
                                                          "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f")
    return value.lower()


class Application(_Model):
    """An Entra application registered in Exchange Online as a service principal (New-ServicePrincipal)."""

    name: str = Field(description="Display name of the service principal in Exchange (at most 64 characters).")
    app_id: str = Field(description="Application (client) id of the app registration.")
    object_id: str = Field(description="Object id of the enterprise application (service principal), not of the "
                                       "app registration.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "application")

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str) -> str:
        return check_guid(value, "app_id")

    @field_validator("object_id")
    @classmethod
    def _object_id(cls, value: str) -> str:
        return check_guid(value, "object_id")


class ApplicationRoleAssignment(_Model):
    """RBAC for Applications: an 'Application …' role for an application, limited by a management scope."""

    name: str | None = Field(None, description="Assignment name (at most 64); default <role>-<application>.")
    application: str = Field(description="Name of an application declared in this playbook.")
    role: str = Field(description="An 'Application …' role, e.g. Application Calendars.ReadWrite.")
    scope: str | None = Field(None, description="Name of a management scope declared in this playbook.")
    all_mailboxes: bool = Field(False, description="Deliberately tenant-wide (no scope).")

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value in APPLICATION_ROLES:
            return value
        import difflib

        candidates = {r.lower(): r for r in APPLICATION_ROLES}
        wanted = value if value.lower().startswith("application ") else "Application " + value
        exact = candidates.get(wanted.lower())
        close = [exact] if exact else difflib.get_close_matches(wanted, APPLICATION_ROLES, n=1, cutoff=0.75)
        raise problem(f"{value!r} is not a built-in RBAC-for-Applications role",
                      f"did you mean {close[0]!r}?" if close else "e.g. 'Application Calendars.ReadWrite'")

    @model_validator(mode="after")
    def _scope_or_all(self) -> ApplicationRoleAssignment:
        if self.scope is not None and self.all_mailboxes:
            raise problem("'scope' and 'all_mailboxes: true' contradict each other",
                          "keep the scope to limit the application to rooms")
        check_name(self.assignment_name, "application role assignment")
        return self

    @property
    def assignment_name(self) -> str:
        return self.name or f"{self.role.removeprefix('Application ')}-{self.application}"


class ApplicationAccessPolicy(_Model):
    """The older Application Access Policy: the app may reach only the members of a mail-enabled security group."""

    application: str = Field(description="Name of an application declared in this playbook.")
    group: Address = Field(description="Address of the mail-enabled security group holding the rooms.")
    access_right: Literal["RestrictAccess", "DenyAccess"] = "RestrictAccess"
    description: str | None = None


VariableValue = str | int | bool | list[str]


class Playbook(_Model):
    """An exkit playbook."""

    model_config = ConfigDict(
        extra="forbid", frozen=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "exkit playbook"},
    )

    exkit: Literal[1] = Field(description="Format version of this playbook.")
    name: str = Field(description="Playbook name, shown in scripts and reports.")
    description: str | None = None
    platform: Literal["exchange-server", "exchange-online"] = Field(
        "exchange-server", description="exchange-server (2016/2019/SE, hosted Exchange) or exchange-online.")
    vars: dict[str, VariableValue] = Field(default_factory=dict, description="Default values for {{ variables }}.")
    requires: dict[str, str] = Field(
        default_factory=dict, description="Variables each target must supply (from the inventory or --var), with no "
                                          "default: name → what it is. A target without one is an error.")
    scopes: list[ManagementScope] = Field(default_factory=list)
    role_groups: list[RoleGroup] = Field(default_factory=list)
    role_assignments: list[RoleAssignment] = Field(default_factory=list)
    delegates: list[Delegate] = Field(default_factory=list)
    applications: list[Application] = Field(default_factory=list, description="Exchange Online only.")
    application_role_assignments: list[ApplicationRoleAssignment] = Field(
        default_factory=list, description="Exchange Online only: RBAC for Applications.")
    application_access_policies: list[ApplicationAccessPolicy] = Field(
        default_factory=list, description="Exchange Online only: Application Access Policies.")

    def application_named(self, name: str | None) -> Application | None:
        if name is None:
            return None
        return next((a for a in self.applications if a.name.lower() == name.lower()), None)

    def scope_named(self, name: str | None) -> ManagementScope | None:
        if name is None:
            return None
        return next((s for s in self.scopes if s.name.lower() == name.lower()), None)


# Section name → what one entry is called in messages.
SECTION_NOUNS = {
    "scopes": "management scope", "role_groups": "role group", "role_assignments": "role assignment",
    "delegates": "delegate entry", "applications": "application",
    "application_role_assignments": "application role assignment",
    "application_access_policies": "application access policy",
}
EXCHANGE_ONLINE_SECTIONS = ("applications", "application_role_assignments", "application_access_policies")
