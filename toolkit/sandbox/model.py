"""The simulated Exchange organisation's state: recipients, scopes, role groups, assignments, permissions,
service principals and access policies (pydantic models; lookups resolve identities the way Exchange does)."""

from __future__ import annotations

import uuid
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

LINKED_GROUP_MEMBERS = "All Linked Group Members"  # -GetEffectiveUsers' placeholder for a linked role group
# Recipient types of security principals that are not mail-enabled: Get-Recipient does not return them (it lists
# mail-enabled objects only), Get-User / Get-Group and Get-RoleGroupMember do (cmdlet reference: Get-Recipient,
# Get-User, Get-Group; Add-RoleGroupMember -Member takes a SecurityPrincipalIdParameter).
NOT_MAIL_ENABLED = ("User", "UniversalSecurityGroup")


@lru_cache(maxsize=65536)
def _guid_of(distinguished_name: str) -> str:
    """A sandbox object's Guid (a name-based UUID of its DN): every lookup index of every script asks again."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "exkit-sandbox:" + distinguished_name))


@lru_cache(maxsize=65536)
def _identities_of(name: str, alias: str, address: str, distinguished_name: str) -> frozenset[str]:
    """A recipient's identities (see Recipient.identities): asked for every recipient by every script's index."""
    return frozenset(v.lower() for v in (name, alias, address, distinguished_name,
                                         _guid_of(distinguished_name.lower())) if v)


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recipient(_State):
    name: str
    alias: str = ""
    primary_smtp_address: str = ""  # empty for principals that are not mail-enabled
    recipient_type_details: str  # UserMailbox, RoomMailbox, EquipmentMailbox, SharedMailbox, RoomList, User, ...
    display_name: str = ""
    office: str = ""
    distinguished_name: str
    custom_attributes: dict[str, str] = Field(default_factory=dict)  # "CustomAttribute1" → value
    member_of: list[str] = Field(default_factory=list)  # DNs of the groups the recipient is a direct member of

    @property
    def recipient_type(self) -> str:
        return {"RoomList": "MailUniversalDistributionGroup",
                "MailUniversalDistributionGroup": "MailUniversalDistributionGroup",
                "MailUniversalSecurityGroup": "MailUniversalSecurityGroup"}.get(self.recipient_type_details,
                                                                                "UserMailbox")

    @property
    def is_mailbox(self) -> bool:
        return self.recipient_type_details.endswith("Mailbox")

    @property
    def mail_enabled(self) -> bool:
        return self.recipient_type_details not in NOT_MAIL_ENABLED

    @property
    def is_user(self) -> bool:
        """A user account (mailbox user or not): what Get-User lists."""
        return self.recipient_type_details in ("UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox",
                                               "MailUser", "User")

    @property
    def guid(self) -> str:
        """The object's Guid: stable for the object (derived from its distinguished name in the sandbox)."""
        return _guid_of(self.distinguished_name.lower())

    @property
    def member_id(self) -> str:
        """How the organisation stores a role-group membership: the address, or the DN of a principal without one."""
        return (self.primary_smtp_address or self.distinguished_name).lower()

    def identities(self) -> frozenset[str]:
        """Every string Exchange resolves to this object (name, alias, address, DN, Guid), lower case."""
        return _identities_of(self.name, self.alias, self.primary_smtp_address, self.distinguished_name)

    @property
    def is_group(self) -> bool:
        return not self.is_mailbox

    def filter_properties(self) -> dict[str, object]:
        """The properties OPATH filters see."""
        properties: dict[str, object] = {
            "Name": self.name, "Alias": self.alias, "DisplayName": self.display_name or self.name,
            "PrimarySmtpAddress": self.primary_smtp_address, "WindowsEmailAddress": self.primary_smtp_address,
            "UserPrincipalName": self.primary_smtp_address, "EmailAddresses": ["SMTP:" + self.primary_smtp_address],
            "RecipientTypeDetails": self.recipient_type_details, "RecipientType": self.recipient_type,
            "Office": self.office, "DistinguishedName": self.distinguished_name, "MemberOfGroup": self.member_of,
            "ResourceType": {"RoomMailbox": "Room", "EquipmentMailbox": "Equipment"}.get(
                self.recipient_type_details, ""),
        }
        for index in range(1, 16):
            properties[f"CustomAttribute{index}"] = self.custom_attributes.get(f"CustomAttribute{index}", "")
        return properties


class ManagementScope(_State):
    name: str
    recipient_filter: str
    recipient_root: str | None = None
    exclusive: bool = False


class RoleGroup(_State):
    name: str
    description: str = ""
    members: list[str] = Field(default_factory=list)  # Recipient.member_id of each member (lower case)
    managed_by: list[str] = Field(default_factory=list)
    # A linked role group (New-RoleGroup -LinkedForeignGroup): its members are a group of another forest, which
    # -GetEffectiveUsers shows as one placeholder row, "All Linked Group Members" (Get-ManagementRoleAssignment docs).
    linked_foreign_group: str | None = None


class RoleAssignment(_State):
    name: str
    role: str
    role_assignee: str  # a role group name, a user's address or a security group's name
    role_assignee_type: str  # User, RoleGroup, SecurityGroup, ServicePrincipal
    custom_recipient_write_scope: str | None = None
    custom_resource_scope: str | None = None  # Exchange Online, application assignments
    recipient_organizational_unit_scope: str | None = None
    delegating: bool = False
    enabled: bool = True


class MailboxPermission(_State):
    identity: str  # the mailbox's primary SMTP address
    user: str
    access_rights: list[str]
    inheritance_type: str = "All"
    is_inherited: bool = False
    deny: bool = False
    auto_mapping: bool = True


class ServicePrincipal(_State):
    app_id: str
    object_id: str
    display_name: str


class ApplicationAccessPolicy(_State):
    app_id: str
    scope_identity: str  # the scope group's primary SMTP address
    access_right: str
    description: str = ""
    identity: str | None = None  # as the target printed it (organisations rebuilt from a target's objects)


class Organisation(_State):
    """Everything the sandbox holds. Lists are kept sorted by identity so the saved JSON is stable."""

    name: str = "contoso"
    platform: str = "exchange-server"  # or exchange-online: decides which cmdlets and parameters exist
    domain_controller: str = "DC01.contoso.com"
    organizational_units: list[str] = Field(default_factory=list)
    management_roles: list[str] = Field(default_factory=list)
    recipients: list[Recipient] = Field(default_factory=list)
    management_scopes: list[ManagementScope] = Field(default_factory=list)
    role_groups: list[RoleGroup] = Field(default_factory=list)
    role_assignments: list[RoleAssignment] = Field(default_factory=list)
    mailbox_permissions: list[MailboxPermission] = Field(default_factory=list)
    service_principals: list[ServicePrincipal] = Field(default_factory=list)
    application_access_policies: list[ApplicationAccessPolicy] = Field(default_factory=list)
    # Test switch: reads of these identities (lower case) fail with this error instead of answering, as a
    # throttled or access-denied Get-* does (Microsoft365DSC #6936: such a failure is not "does not exist").
    failing_reads: dict[str, str] = Field(default_factory=dict)
    _index: tuple[int, dict[str, Recipient]] = PrivateAttr(default=(-1, {}))
    # Test switch: changes naming these identities (-Identity, -Name) fail with this error, as a change the account
    # may read but not make is refused (RBAC write scope, a DC that rejects it). A plan cannot see this coming.
    failing_writes: dict[str, str] = Field(default_factory=dict)

    # ------------------------------------------------------------------------------------------- lookups
    def recipient(self, identity: str) -> Recipient | None:
        """Resolve an identity as Exchange does: name, alias, address, distinguished name or Guid (any principal,
        mail-enabled or not: the cmdlets decide which kinds they accept)."""
        if self._index[0] != len(self.recipients):  # recipients are only ever added: rebuild when one was
            index: dict[str, Recipient] = {}
            for recipient in reversed(self.recipients):  # the first one wins, as the loop it replaces did
                index.update(dict.fromkeys(recipient.identities(), recipient))
            self._index = (len(self.recipients), index)
        return self._index[1].get(identity.lower())

    def scope(self, identity: str) -> ManagementScope | None:
        return next((s for s in self.management_scopes if s.name.lower() == identity.lower()), None)

    def role_group(self, identity: str) -> RoleGroup | None:
        return next((g for g in self.role_groups if g.name.lower() == identity.lower()), None)

    def assignment(self, identity: str) -> RoleAssignment | None:
        return next((a for a in self.role_assignments if a.name.lower() == identity.lower()), None)

    def role(self, identity: str) -> str | None:
        return next((r for r in self.management_roles if r.lower() == identity.lower()), None)

    def group_members(self, group_dn: str) -> list[Recipient]:
        return [r for r in self.recipients if any(dn.lower() == group_dn.lower() for dn in r.member_of)]

    def normalise(self) -> None:
        self.recipients.sort(key=lambda r: r.primary_smtp_address.lower())
        for recipient in self.recipients:  # (set only when out of order: pydantic's __setattr__ is not free)
            attributes = recipient.custom_attributes
            if len(attributes) > 1 and list(attributes) != sorted(attributes):
                recipient.custom_attributes = dict(sorted(attributes.items()))
        self.management_scopes.sort(key=lambda s: s.name.lower())
        self.role_groups.sort(key=lambda g: g.name.lower())
        for group in self.role_groups:
            group.members.sort()
        self.role_assignments.sort(key=lambda a: a.name.lower())
        self.mailbox_permissions.sort(key=lambda p: (p.identity.lower(), p.user.lower()))
        self.service_principals.sort(key=lambda p: p.app_id.lower())
        self.application_access_policies.sort(key=lambda p: (p.app_id, p.scope_identity))

    def to_json(self) -> str:
        """The state file's text: lists in a stable order, fields in the models' order (pydantic's serializer)."""
        self.normalise()
        return self.model_dump_json(indent=2) + "\n"
