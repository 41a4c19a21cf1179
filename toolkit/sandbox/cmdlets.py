"""Exchange Server cmdlets as the sandbox performs them: parameters, behaviour and error wording.

Every cmdlet the templates emit is here. Parameter names and types follow the cmdlet reference (including its
traps: ``-RecipientRestrictionFilter`` on New-ManagementScope, no ``-Exclusive`` on Set-ManagementScope,
``-Member`` vs ``-Members``); errors are worded like Exchange's ("couldn't be found", "already exists").
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from toolkit import opath
from toolkit.boundary import canonical_name
from toolkit.sandbox.commands import CmdletError, Command, ParamType
from toolkit.sandbox.model import (
    LINKED_GROUP_MEMBERS,
    ApplicationAccessPolicy,
    MailboxPermission,
    ManagementScope,
    Organisation,
    Recipient,
    RoleAssignment,
    RoleGroup,
    ServicePrincipal,
)
from toolkit.sandbox.remoting import RemoteLogon, check_second_hop
from toolkit.sandbox.values import PSObject

Run = Callable[[dict[str, Any], list[Any]], list[Any]]


def _not_found(org: Organisation, identity: str) -> CmdletError:
    return CmdletError(f"The operation couldn't be performed because object '{identity}' couldn't be found on "
                       f"'{org.domain_controller}'.", "NotSpecified", "ManagementObjectNotFoundException")


def _read_fault(org: Organisation, bound: dict[str, Any]) -> None:
    """A read the organisation is told to fail (throttled, access denied): not a "not found" (see
    Organisation.failing_reads)."""
    identity = str(bound.get("Identity") or "").lower()
    if identity and identity in org.failing_reads:
        raise CmdletError(org.failing_reads[identity], "ReadError", "ADTransientException")


def _unbound(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
    raise AssertionError("a cmdlet prototype runs nothing: ExchangeCmdlets.commands binds it to an organisation")


def _exists(what: str) -> CmdletError:
    return CmdletError(f"{what} already exists.", "NotSpecified", "ADObjectAlreadyExistsException")


class ExchangeCmdlets:
    """The cmdlet table for one organisation."""

    def __init__(self, org: Organisation, logon: RemoteLogon | None = None) -> None:
        self.org = org
        self.logon = logon  # a WinRM session's logon (the second hop's check); None: an interactive one

    def commands(self) -> dict[str, Command]:
        """The cmdlet table, doing its work on this organisation. Each cmdlet's name, parameters and binding are
        built once per platform (a plan and a REST run each take a table, per tenant); only what it runs is bound
        here."""
        table: dict[str, Command] = {}
        for prototype, function in ExchangeCmdlets._prototypes(self.org.platform):
            run = function.__get__(self)
            table[prototype.name] = prototype.with_run(self._refusable(run) if prototype.should_process else run)
        return table

    @classmethod
    @lru_cache(maxsize=4)
    def _prototypes(cls, platform: str) -> tuple[tuple[Command, Callable[..., list[Any]]], ...]:
        """Each cmdlet of the platform without what it runs, and the method that runs it (not bound to an
        organisation yet)."""
        table: list[tuple[str, dict[str, ParamType], Run, tuple[str, ...], bool, tuple[str, ...]]] = [
            ("Get-ManagementScope", {"Identity": "string", "Exclusive": "bool", "Orphan": "switch",
                                     "DomainController": "string"}, cls.get_scope, ("Identity",), False, ()),
            ("New-ManagementScope", {"Name": "string", "RecipientRestrictionFilter": "string",
                                     "RecipientRoot": "string", "Exclusive": "switch", "Force": "switch",
                                     "DomainController": "string"}, cls.new_scope, ("Name",), True,
             ("Name", "RecipientRestrictionFilter")),
            ("Set-ManagementScope", {"Identity": "string", "Name": "string", "RecipientRestrictionFilter": "string",
                                     "RecipientRoot": "string", "Force": "switch", "DomainController": "string"},
             cls.set_scope, ("Identity",), True, ("Identity",)),
            ("Remove-ManagementScope", {"Identity": "string", "Force": "switch", "DomainController": "string"},
             cls.remove_scope, ("Identity",), True, ("Identity",)),
            ("Get-RoleGroup", {"Identity": "string", "Filter": "string", "ResultSize": "string",
                               "DomainController": "string"}, cls.get_role_group, ("Identity",), False, ()),
            ("New-RoleGroup", {"Name": "string", "Roles": "string[]", "Members": "string[]",
                               "CustomRecipientWriteScope": "string", "RecipientOrganizationalUnitScope": "string",
                               "Description": "string", "DisplayName": "string", "ManagedBy": "string[]",
                               "DomainController": "string"}, cls.new_role_group, ("Name",), True, ("Name",)),
            ("Set-RoleGroup", {"Identity": "string", "Description": "string", "DisplayName": "string",
                               "ManagedBy": "string[]", "Name": "string", "BypassSecurityGroupManagerCheck": "switch",
                               "Force": "switch", "DomainController": "string"}, cls.set_role_group, ("Identity",),
             True, ("Identity",)),
            ("Remove-RoleGroup", {"Identity": "string", "BypassSecurityGroupManagerCheck": "switch",
                                  "DomainController": "string"}, cls.remove_role_group, ("Identity",), True,
             ("Identity",)),
            ("Add-RoleGroupMember", {"Identity": "string", "Member": "string",
                                     "BypassSecurityGroupManagerCheck": "switch", "DomainController": "string"},
             cls.add_member, ("Identity",), True, ("Identity", "Member")),
            ("Remove-RoleGroupMember", {"Identity": "string", "Member": "string",
                                        "BypassSecurityGroupManagerCheck": "switch", "DomainController": "string"},
             cls.remove_member, ("Identity",), True, ("Identity", "Member")),
            ("Get-RoleGroupMember", {"Identity": "string", "ResultSize": "string", "DomainController": "string"},
             cls.get_members, ("Identity",), False, ("Identity",)),
            ("New-ManagementRoleAssignment", {
                "Name": "string", "Role": "string", "User": "string", "SecurityGroup": "string", "Policy": "string",
                "CustomRecipientWriteScope": "string", "RecipientOrganizationalUnitScope": "string",
                "ExclusiveRecipientWriteScope": "string", "RecipientRelativeWriteScope": "string",
                "Delegating": "switch", "DomainController": "string"}, cls.new_assignment, ("Name",), True,
             ("Role",)),
            ("Get-ManagementRoleAssignment", {
                "Identity": "string", "Role": "string", "RoleAssignee": "string", "Delegating": "bool",
                "Enabled": "bool", "GetEffectiveUsers": "switch", "WritableRecipient": "string",
                "CustomRecipientWriteScope": "string", "DomainController": "string"}, cls.get_assignments,
             ("Identity",), False, ()),
            ("Set-ManagementRoleAssignment", {
                "Identity": "string", "CustomRecipientWriteScope": "string",
                "RecipientOrganizationalUnitScope": "string", "RecipientRelativeWriteScope": "string",
                "Enabled": "bool", "Force": "switch", "DomainController": "string"}, cls.set_assignment,
             ("Identity",), True, ("Identity",)),
            ("Remove-ManagementRoleAssignment", {"Identity": "string", "Force": "switch",
                                                 "DomainController": "string"}, cls.remove_assignment,
             ("Identity",), True, ("Identity",)),
            ("Add-MailboxPermission", {"Identity": "string", "User": "string", "AccessRights": "string[]",
                                       "InheritanceType": "string", "AutoMapping": "bool", "Deny": "switch",
                                       "Owner": "string", "DomainController": "string"}, cls.add_permission,
             ("Identity",), True, ("Identity",)),
            ("Get-MailboxPermission", {"Identity": "string", "User": "string", "Owner": "switch",
                                       "ResultSize": "string", "DomainController": "string"}, cls.get_permissions,
             ("Identity",), False, ("Identity",)),
            ("Remove-MailboxPermission", {"Identity": "string", "User": "string", "AccessRights": "string[]",
                                          "InheritanceType": "string", "Deny": "switch",
                                          "DomainController": "string"}, cls.remove_permission, ("Identity",),
             True, ("Identity",)),
            ("Get-Recipient", {"Identity": "string", "RecipientPreviewFilter": "string", "Filter": "string",
                               "RecipientTypeDetails": "string[]", "OrganizationalUnit": "string",
                               "ResultSize": "string", "DomainController": "string"}, cls.get_recipients,
             ("Identity",), False, ()),
            ("Get-User", {"Identity": "string", "ResultSize": "string", "DomainController": "string"},
             cls.get_users, ("Identity",), False, ()),
            ("Get-Group", {"Identity": "string", "ResultSize": "string", "DomainController": "string"},
             cls.get_groups, ("Identity",), False, ()),
            ("Get-OrganizationalUnit", {"Identity": "string", "SingleNodeOnly": "switch",
                                        "DomainController": "string"}, cls.get_ou, ("Identity",), False, ()),
            # Remoting: how a script loads the Exchange cmdlets from an Exchange server's /PowerShell/ endpoint.
            ("New-PSSession", {"ConfigurationName": "string", "ConnectionUri": "string", "Authentication": "string",
                               "Credential": "object", "SessionOption": "object"}, cls.new_session, (), False,
             ("ConfigurationName", "ConnectionUri")),
            ("Import-PSSession", {"Session": "object", "DisableNameChecking": "switch", "AllowClobber": "switch",
                                  "CommandName": "string[]"}, cls.import_session, ("Session",), False, ("Session",)),
            ("Remove-PSSession", {"Session": "object"}, cls.remove_session, ("Session",), False, ("Session",)),
        ]
        if platform == "exchange-online":
            table = [cls._online(entry) for entry in table] + cls._online_only()
        local = {"New-PSSession", "Import-PSSession", "Remove-PSSession"}  # PowerShell's own cmdlets
        return tuple((Command(name, params, _unbound, positional, should_process, mandatory,
                              module_function=name not in local), run)
                     for name, params, run, positional, should_process, mandatory in table)

    def _refusable(self, run: Run) -> Run:
        def checked(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
            for key in ("Identity", "Name"):
                error = self.org.failing_writes.get(str(bound.get(key) or "").lower())
                if error:
                    raise CmdletError(error, "PermissionDenied", "OperationRequiresGroupManagerException")
            return run(bound, pipeline)

        return checked

    @staticmethod
    def _online(entry: tuple[str, dict[str, ParamType], Run, tuple[str, ...], bool, tuple[str, ...]]) -> tuple[
            str, dict[str, ParamType], Run, tuple[str, ...], bool, tuple[str, ...]]:
        """Exchange Online's parameter sets: no -DomainController; -App and resource scopes on assignments."""
        name, params, run, positional, should_process, mandatory = entry
        params = {k: v for k, v in params.items() if k != "DomainController"}
        if name == "New-ManagementRoleAssignment":
            params.update(App="string", CustomResourceScope="string", RecipientGroupScope="string",
                          RecipientAdministrativeUnitScope="string")
        elif name == "Set-ManagementRoleAssignment":
            params.update(CustomResourceScope="string")
        elif name == "Get-ManagementRoleAssignment":
            params.update(RoleAssigneeType="string")
        return name, params, run, positional, should_process, mandatory

    @classmethod
    def _online_only(cls) -> list[tuple[str, dict[str, ParamType], Run, tuple[str, ...], bool, tuple[str, ...]]]:
        return [
            ("Connect-ExchangeOnline", {"AppId": "string", "CertificateThumbprint": "string", "Certificate": "object",
                                        "CertificateFilePath": "string", "CertificatePassword": "object",
                                        "Organization": "string", "ShowBanner": "switch",
                                        "ExchangeEnvironmentName": "string", "AccessToken": "string"},
             cls.connect_online, (), False, ()),
            ("Disconnect-ExchangeOnline", {}, cls.disconnect_online, (), True, ()),
            ("Get-ServicePrincipal", {"Identity": "string"}, cls.get_principals, ("Identity",), False, ()),
            ("New-ServicePrincipal", {"AppId": "string", "ObjectId": "string", "DisplayName": "string",
                                      "ServiceId": "string"}, cls.new_principal, (), True, ("AppId", "ObjectId")),
            ("Set-ServicePrincipal", {"Identity": "string", "DisplayName": "string"}, cls.set_principal,
             ("Identity",), True, ("Identity",)),
            ("Remove-ServicePrincipal", {"Identity": "string"}, cls.remove_principal, ("Identity",), True,
             ("Identity",)),
            ("Get-ApplicationAccessPolicy", {"Identity": "string"}, cls.get_policies, ("Identity",), False, ()),
            ("New-ApplicationAccessPolicy", {"AppId": "string[]", "PolicyScopeGroupId": "string",
                                             "AccessRight": "string", "Description": "string"}, cls.new_policy, (),
             True, ("AppId", "PolicyScopeGroupId", "AccessRight")),
            ("Set-ApplicationAccessPolicy", {"Identity": "string", "Description": "string"}, cls.set_policy,
             ("Identity",), True, ("Identity",)),
            ("Remove-ApplicationAccessPolicy", {"Identity": "string"}, cls.remove_policy, ("Identity",), True,
             ("Identity",)),
            ("Test-ServicePrincipalAuthorization", {"Identity": "string", "Resource": "string"},
             cls.test_authorization, ("Identity",), False, ("Identity",)),
        ]

    # --------------------------------------------------------------------------------------- objects out
    def _scope_object(self, scope: ManagementScope) -> PSObject:
        # RecipientRoot is an AD object reference, printed as a canonical name; the filter comes back in the stored
        # (parenthesised) form, not as it was written (/work/shared/reference/exchange.md, "Real-server behaviours").
        return PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.ManagementScope", {
            "Name": scope.name, "Identity": scope.name,
            "RecipientFilter": opath.to_stored_text(opath.parse(scope.recipient_filter)),
            "RecipientRoot": canonical_name(scope.recipient_root) if scope.recipient_root else None,
            "ScopeRestrictionType": "RecipientScope", "Exclusive": scope.exclusive})

    def _recipient_object(self, recipient: Recipient) -> PSObject:
        properties = dict(recipient.filter_properties())
        properties["Identity"] = recipient.distinguished_name
        properties["Guid"] = recipient.guid
        properties["MemberOfGroup"] = list(recipient.member_of)
        if not recipient.mail_enabled:  # no address of any kind: a security principal only
            for key in ("PrimarySmtpAddress", "WindowsEmailAddress", "UserPrincipalName", "Alias"):
                properties[key] = ""
            properties["EmailAddresses"] = []
        return PSObject("Microsoft.Exchange.Data.Directory.Management.ReducedRecipient", properties)

    def _assignment_object(self, assignment: RoleAssignment, effective_user: str | None = None) -> PSObject:
        assignee = reference = assignment.role_assignee
        if assignment.role_assignee_type in ("User", "SecurityGroup"):
            user = self.org.recipient(assignee)
            assignee = user.name if user else assignee  # Exchange shows the user's name, not the address
            reference = canonical_name(user.distinguished_name) if user else assignee
        elif assignment.role_assignee_type == "ServicePrincipal":
            # Microsoft365DSC reads the app from RoleAssignee (the service principal's object id); the name Exchange
            # shows is not the display name, so nothing may match on it.
            reference = assignee
        properties: dict[str, Any] = {
            "Name": assignment.name, "Identity": assignment.name, "Role": assignment.role,
            "RoleAssigneeName": assignee, "RoleAssignee": reference,
            "RoleAssigneeType": assignment.role_assignee_type,
            "CustomRecipientWriteScope": assignment.custom_recipient_write_scope,
            "CustomResourceScope": assignment.custom_resource_scope,
            "ExclusiveRecipientWriteScope": (assignment.custom_recipient_write_scope if self.org.scope(
                assignment.custom_recipient_write_scope or "") and self.org.scope(  # type: ignore[union-attr]
                assignment.custom_recipient_write_scope or "").exclusive else None),
            "RecipientOrganizationalUnitScope": assignment.recipient_organizational_unit_scope,
            "RecipientWriteScope": ("CustomRecipientScope" if assignment.custom_recipient_write_scope
                                    or assignment.custom_resource_scope
                                    else "OU" if assignment.recipient_organizational_unit_scope
                                    else "Organization"),
            "Enabled": assignment.enabled, "Delegating": assignment.delegating,
            "RoleAssignmentDelegationType": "DelegatingOrgWide" if assignment.delegating else "Regular",
        }
        if effective_user is not None:
            recipient = self.org.recipient(effective_user)  # Exchange shows the user's name here
            properties["EffectiveUserName"] = recipient.name if recipient else effective_user
        return PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.ExchangeRoleAssignmentPresentation",
                        properties)

    # --------------------------------------------------------------------------------------- scopes
    def get_scope(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            scope = self.org.scope(bound["Identity"])
            if scope is None:
                raise _not_found(self.org, bound["Identity"])
            return [self._scope_object(scope)]
        return [self._scope_object(s) for s in self.org.management_scopes]

    def _parse_filter(self, text: str) -> str:
        try:
            return opath.to_text(opath.parse(text))
        except opath.OpathError as exc:
            raise CmdletError(f"Cannot bind parameter 'RecipientRestrictionFilter' to the target. Exception setting "
                              f"\"RecipientRestrictionFilter\": \"Invalid filter syntax. {exc.message} "
                              f"(position {exc.offset + 1})\"", "InvalidArgument") from None

    def _check_root(self, root: str) -> str:
        """-RecipientRoot takes an OU by DN or canonical name; the organisation stores its DN."""
        found = next((ou for ou in self.org.organizational_units
                      if root.lower() in (ou.lower(), canonical_name(ou).lower())), None)
        if found is None:
            raise _not_found(self.org, root)
        return found

    def new_scope(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        name = bound["Name"]
        if self.org.scope(name):
            raise _exists(f"The management scope '{name}'")
        scope = ManagementScope(
            name=name, recipient_filter=self._parse_filter(bound["RecipientRestrictionFilter"]),
            recipient_root=self._check_root(bound["RecipientRoot"]) if bound.get("RecipientRoot") else None,
            exclusive=bool(bound.get("Exclusive")))
        self.org.management_scopes.append(scope)
        return [self._scope_object(scope)]

    def set_scope(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        scope = self.org.scope(bound["Identity"])
        if scope is None:
            raise _not_found(self.org, bound["Identity"])
        if "RecipientRestrictionFilter" in bound:
            scope.recipient_filter = self._parse_filter(bound["RecipientRestrictionFilter"])
        if "RecipientRoot" in bound:
            scope.recipient_root = self._check_root(bound["RecipientRoot"]) if bound["RecipientRoot"] else None
        if bound.get("Name"):
            scope.name = bound["Name"]
        return []

    def remove_scope(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        scope = self.org.scope(bound["Identity"])
        if scope is None:
            raise _not_found(self.org, bound["Identity"])
        users = [a.name for a in self.org.role_assignments
                 if scope.name.lower() in ((a.custom_recipient_write_scope or "").lower(),
                                           (a.custom_resource_scope or "").lower())]
        if users:
            raise CmdletError(f"Management scope \"{scope.name}\" can't be deleted because it's referenced by role "
                              f"assignments: {', '.join(users)}.", "InvalidOperation")
        self.org.management_scopes.remove(scope)
        return []

    # --------------------------------------------------------------------------------------- role groups
    def _group_object(self, group: RoleGroup) -> PSObject:
        assignments = [a for a in self.org.role_assignments if a.role_assignee.lower() == group.name.lower()]
        return PSObject("Microsoft.Exchange.Management.RbacTasks.RoleGroup", {
            "Name": group.name, "Identity": group.name, "DisplayName": group.name, "Description": group.description,
            "Members": list(group.members), "ManagedBy": list(group.managed_by),
            "Roles": sorted({a.role for a in assignments}), "RoleAssignments": [a.name for a in assignments],
            "RoleGroupType": "Standard"})

    def _group(self, identity: str) -> RoleGroup:
        group = self.org.role_group(identity)
        if group is None:
            raise _not_found(self.org, identity)
        return group

    def _member_address(self, identity: str) -> str:
        """-Member takes a security principal (mail-enabled or not); distribution groups and room lists are not."""
        recipient = self.org.recipient(identity)
        if recipient is None:
            raise _not_found(self.org, identity)
        if recipient.recipient_type_details in ("RoomList", "MailUniversalDistributionGroup"):
            raise CmdletError(f"The recipient \"{identity}\" isn't a security principal: only users and security "
                              "groups can be role group members.", "InvalidArgument")
        return recipient.member_id

    def get_role_group(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            return [self._group_object(self._group(bound["Identity"]))]
        return [self._group_object(g) for g in self.org.role_groups]

    def _scope_name(self, identity: str | None) -> str | None:
        if not identity:
            return None
        scope = self.org.scope(identity)
        if scope is None:
            raise _not_found(self.org, identity)
        return scope.name

    def new_role_group(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        name = bound["Name"]
        if self.org.role_group(name):
            raise _exists(f"The role group '{name}'")
        # Everything is checked before anything is created: New-RoleGroup does not half-create a group.
        members = [self._member_address(m) for m in bound.get("Members") or []]
        roles = [self._role(r) for r in bound.get("Roles") or []]
        scope = self._scope_name(bound.get("CustomRecipientWriteScope"))
        ou = bound.get("RecipientOrganizationalUnitScope")
        if scope and ou:
            raise CmdletError("The parameters CustomRecipientWriteScope and RecipientOrganizationalUnitScope can't "
                              "be used together.", "InvalidArgument")
        group = RoleGroup(name=name, description=bound.get("Description") or "", members=sorted(set(members)),
                          managed_by=list(bound.get("ManagedBy") or []))
        self.org.role_groups.append(group)
        for role in roles:
            self.org.role_assignments.append(RoleAssignment(
                name=self._free_assignment_name(f"{role}-{name}"), role=role, role_assignee=name,
                role_assignee_type="RoleGroup", custom_recipient_write_scope=scope,
                recipient_organizational_unit_scope=self._check_root(ou) if ou else None))
        return [self._group_object(group)]

    def set_role_group(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        group = self._group(bound["Identity"])
        if "Description" in bound:
            group.description = bound["Description"] or ""
        if "ManagedBy" in bound:
            group.managed_by = list(bound["ManagedBy"] or [])
        return []

    def remove_role_group(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        group = self._group(bound["Identity"])
        self.org.role_assignments = [a for a in self.org.role_assignments
                                     if a.role_assignee.lower() != group.name.lower()]
        self.org.role_groups.remove(group)
        return []

    def add_member(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        group = self._group(bound["Identity"])
        address = self._member_address(bound["Member"])
        if address in group.members:
            raise CmdletError(f"The recipient \"{bound['Member']}\" is already a member of the group "
                              f"\"{group.name}\".", "InvalidArgument", "MemberAlreadyExistsException")
        group.members.append(address)
        return []

    def remove_member(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        group = self._group(bound["Identity"])
        address = self._member_address(bound["Member"])
        if address not in group.members:
            raise CmdletError(f"The recipient \"{bound['Member']}\" isn't a member of the group \"{group.name}\".",
                              "InvalidArgument", "MemberNotFoundException")
        group.members.remove(address)
        return []

    def get_members(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        group = self._group(bound["Identity"])
        return [self._recipient_object(r) for r in (self.org.recipient(m) for m in group.members) if r]

    # --------------------------------------------------------------------------------------- principals, OUs
    def get_users(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        """User accounts, mail-enabled or not."""
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            found = self.org.recipient(bound["Identity"])
            if found is None or not found.is_user:
                raise _not_found(self.org, bound["Identity"])
            return [self._recipient_object(found)]
        return [self._recipient_object(r) for r in self.org.recipients if r.is_user]

    def get_groups(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        """Groups, mail-enabled or not."""
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            found = self.org.recipient(bound["Identity"])
            if found is None or found.is_user:
                raise _not_found(self.org, bound["Identity"])
            return [self._recipient_object(found)]
        return [self._recipient_object(r) for r in self.org.recipients if not r.is_user]

    def get_ou(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        wanted = str(bound.get("Identity") or "")
        found = [ou for ou in self.org.organizational_units
                 if not wanted or wanted.lower() in (ou.lower(), canonical_name(ou).lower())]
        if wanted and not found:
            raise _not_found(self.org, wanted)
        return [PSObject("Microsoft.Exchange.Data.Directory.Management.ExtendedOrganizationalUnit", {
            "Name": ou.split(",")[0].split("=", 1)[1], "Identity": canonical_name(ou), "DistinguishedName": ou})
            for ou in found]

    # --------------------------------------------------------------------------------------- role assignments
    def _role(self, identity: str) -> str:
        role = self.org.role(identity)
        if role is None:
            raise CmdletError(f"The operation couldn't be performed because object '{identity}' couldn't be found "
                              f"on '{self.org.domain_controller}'.", "NotSpecified",
                              "ManagementObjectNotFoundException")
        return role

    def _free_assignment_name(self, base: str) -> str:
        name, counter = base[:64], 1
        while self.org.assignment(name):
            suffix = str(counter)
            name = base[:64 - len(suffix)] + suffix
            counter += 1
        return name

    def new_assignment(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        role = self._role(bound["Role"])
        assignees = [k for k in ("User", "SecurityGroup", "Policy", "App") if bound.get(k)]
        if len(assignees) != 1:
            raise CmdletError("Specify exactly one of the parameters User, SecurityGroup, Policy or App.",
                              "InvalidArgument")
        if bound.get("App"):
            return self._new_app_assignment(role, bound)
        if role.startswith("Application "):
            raise CmdletError(f"The role '{role}' can only be assigned to a service principal (-App).",
                              "InvalidArgument")
        if bound.get("CustomRecipientWriteScope") and bound.get("RecipientOrganizationalUnitScope"):
            raise CmdletError("The parameters CustomRecipientWriteScope and RecipientOrganizationalUnitScope can't "
                              "be used together.", "InvalidArgument")
        exclusive = bound.get("ExclusiveRecipientWriteScope")
        if exclusive and (bound.get("CustomRecipientWriteScope") or bound.get("RecipientOrganizationalUnitScope")):
            raise CmdletError("The parameter ExclusiveRecipientWriteScope can't be used with other recipient write "
                              "scopes.", "InvalidArgument")
        if exclusive and not (self.org.scope(exclusive) and self.org.scope(exclusive).exclusive):  # type: ignore[union-attr]
            raise CmdletError(f"The management scope '{exclusive}' isn't an exclusive scope.", "InvalidArgument")
        if bound.get("User"):
            recipient = self.org.recipient(bound["User"])
            if recipient is None or not recipient.is_mailbox:
                raise _not_found(self.org, bound["User"])
            assignee, assignee_type = recipient.primary_smtp_address, "User"
        elif bound.get("SecurityGroup"):
            group = self.org.role_group(bound["SecurityGroup"])
            recipient = self.org.recipient(bound["SecurityGroup"])
            if group is not None:
                assignee, assignee_type = group.name, "RoleGroup"
            elif recipient is not None and recipient.recipient_type_details == "MailUniversalSecurityGroup":
                assignee, assignee_type = recipient.name, "SecurityGroup"
            else:
                raise _not_found(self.org, bound["SecurityGroup"])
        else:
            raise CmdletError("Assignment policies are not simulated by the sandbox.", "NotImplemented")
        name = bound.get("Name") or self._free_assignment_name(f"{role}-{assignee}")
        if len(name) > 64:
            raise CmdletError(f"The length of the property is too long. The maximum length is 64 and the length of "
                              f"the value provided is {len(name)}.", "InvalidArgument")
        if self.org.assignment(name):
            raise _exists(f"The role assignment '{name}'")
        ou = bound.get("RecipientOrganizationalUnitScope")
        assignment = RoleAssignment(
            name=name, role=role, role_assignee=assignee, role_assignee_type=assignee_type,
            custom_recipient_write_scope=self._scope_name(bound.get("CustomRecipientWriteScope") or exclusive),
            recipient_organizational_unit_scope=self._check_root(ou) if ou else None,
            delegating=bool(bound.get("Delegating")))
        self.org.role_assignments.append(assignment)
        return [self._assignment_object(assignment)]

    def _new_app_assignment(self, role: str, bound: dict[str, Any]) -> list[Any]:
        principal = self._principal(bound["App"])
        if not role.startswith("Application "):
            raise CmdletError(f"The role '{role}' can't be assigned to a service principal: only 'Application …' "
                              "roles can.", "InvalidArgument")
        if bound.get("CustomRecipientWriteScope") or bound.get("RecipientOrganizationalUnitScope"):
            raise CmdletError("With -App, use -CustomResourceScope, -RecipientAdministrativeUnitScope or "
                              "-RecipientGroupScope.", "InvalidArgument")
        name = bound.get("Name") or self._free_assignment_name(f"{role}-{principal.display_name}")
        if self.org.assignment(name):
            raise _exists(f"The role assignment '{name}'")
        assignment = RoleAssignment(name=name, role=role, role_assignee=principal.object_id,
                                    role_assignee_type="ServicePrincipal",
                                    custom_resource_scope=self._scope_name(bound.get("CustomResourceScope")))
        self.org.role_assignments.append(assignment)
        return [self._assignment_object(assignment)]

    def _effective_users(self, assignment: RoleAssignment) -> list[str]:
        """-GetEffectiveUsers: a role group's or security group's members, nested groups expanded (cmdlet reference;
        ../shared/reference/exchange.md "Effective access")."""
        if assignment.role_assignee_type == "RoleGroup":
            group = self.org.role_group(assignment.role_assignee)
            if group is not None and group.linked_foreign_group:
                return [LINKED_GROUP_MEMBERS]  # a placeholder, not a person (Get-ManagementRoleAssignment docs)
            members: list[str] = []
            for member in group.members if group else []:
                recipient = self.org.recipient(member)
                members += self._group_users(recipient) if recipient and recipient.is_group else [member]
            return sorted(set(members))
        if assignment.role_assignee_type == "SecurityGroup":
            group = self.org.recipient(assignment.role_assignee)
            return self._group_users(group) if group else []
        return [assignment.role_assignee]

    def _group_users(self, group: Recipient, seen: frozenset[str] = frozenset()) -> list[str]:
        if group.distinguished_name.lower() in seen:
            return []
        users: list[str] = []
        for member in self.org.group_members(group.distinguished_name):
            users += (self._group_users(member, seen | {group.distinguished_name.lower()}) if member.is_group
                      else [member.primary_smtp_address])
        return sorted(set(users))

    def _in_scope(self, scope: ManagementScope, recipient: Recipient) -> bool:
        root_ok = (not scope.recipient_root or
                   recipient.distinguished_name.lower().endswith("," + scope.recipient_root.lower()))
        return root_ok and opath.evaluate(opath.parse(scope.recipient_filter), recipient.filter_properties())

    def _can_write(self, assignment: RoleAssignment, recipient: Recipient) -> bool:
        """Regular scopes add up; a recipient matched by an exclusive scope is writable only through assignments
        whose scope is exclusive and matches it (learn.microsoft.com "Understanding exclusive scopes")."""
        scope = self.org.scope(assignment.custom_recipient_write_scope or "")
        if assignment.custom_recipient_write_scope and scope is None:
            return False
        if any(s.exclusive and self._in_scope(s, recipient) for s in self.org.management_scopes):
            return scope is not None and scope.exclusive and self._in_scope(scope, recipient)
        if scope is not None:
            return self._in_scope(scope, recipient)
        if assignment.recipient_organizational_unit_scope:
            return recipient.distinguished_name.lower().endswith(
                "," + assignment.recipient_organizational_unit_scope.lower())
        return True

    def get_assignments(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            found = self.org.assignment(bound["Identity"])
            if found is None:
                raise _not_found(self.org, bound["Identity"])
            candidates = [found]
        else:
            candidates = list(self.org.role_assignments)
        if bound.get("Role"):
            candidates = [a for a in candidates if a.role.lower() == bound["Role"].lower()]
        if bound.get("RoleAssignee"):
            wanted = bound["RoleAssignee"].lower()
            recipient = self.org.recipient(bound["RoleAssignee"])
            names = {wanted} | ({recipient.primary_smtp_address.lower(), recipient.name.lower()} if recipient else set())
            principal = self._principal_or_none(bound["RoleAssignee"])
            if principal is not None:
                names.add(principal.object_id)
            candidates = [a for a in candidates if a.role_assignee.lower() in names]
        if "Delegating" in bound:
            candidates = [a for a in candidates if a.delegating == bound["Delegating"]]
        if bound.get("RoleAssigneeType"):
            # The documented values (Get-ManagementRoleAssignment, -RoleAssigneeType); ServicePrincipal is not one of
            # them, so a client must filter service principals' assignments itself (as Microsoft365DSC does).
            documented = {"user", "securitygroup", "roleassignmentpolicy", "foreignsecurityprincipal", "rolegroup",
                          "linkedrolegroup", "computer"}
            if bound["RoleAssigneeType"].lower() not in documented:
                raise CmdletError(f"Cannot bind parameter 'RoleAssigneeType'. Cannot convert value "
                                  f"\"{bound['RoleAssigneeType']}\" to type \"Microsoft.Exchange.Data.Directory."
                                  "SystemConfiguration.RoleAssigneeType\".", "InvalidArgument")
            candidates = [a for a in candidates if a.role_assignee_type.lower() == bound["RoleAssigneeType"].lower()]
        if "Enabled" in bound:
            candidates = [a for a in candidates if a.enabled == bound["Enabled"]]
        if bound.get("CustomRecipientWriteScope"):
            candidates = [a for a in candidates
                          if (a.custom_recipient_write_scope or "").lower() == bound["CustomRecipientWriteScope"].lower()]
        if bound.get("WritableRecipient"):
            recipient = self.org.recipient(bound["WritableRecipient"])
            if recipient is None:
                raise _not_found(self.org, bound["WritableRecipient"])
            candidates = [a for a in candidates if not a.delegating and self._can_write(a, recipient)]
        if bound.get("GetEffectiveUsers"):
            return [self._assignment_object(a, user) for a in candidates for user in self._effective_users(a)]
        return [self._assignment_object(a) for a in candidates]

    def set_assignment(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        assignment = self.org.assignment(bound["Identity"])
        if assignment is None:
            raise _not_found(self.org, bound["Identity"])
        if bound.get("CustomResourceScope"):
            if assignment.role_assignee_type != "ServicePrincipal":
                raise CmdletError("-CustomResourceScope applies only to assignments of service principals.",
                                  "InvalidArgument")
            assignment.custom_resource_scope = self._scope_name(bound["CustomResourceScope"])
        if bound.get("CustomRecipientWriteScope"):
            assignment.custom_recipient_write_scope = self._scope_name(bound["CustomRecipientWriteScope"])
            assignment.recipient_organizational_unit_scope = None
        if bound.get("RecipientOrganizationalUnitScope"):
            assignment.recipient_organizational_unit_scope = self._check_root(bound["RecipientOrganizationalUnitScope"])
            assignment.custom_recipient_write_scope = None
        relative = bound.get("RecipientRelativeWriteScope")
        if relative is not None:
            # "The available types are: None, Organization, MyGAL, Self and MyDistributionGroups" (cmdlet reference)
            if relative.lower() not in ("organization", "self", "none", "mygal", "mydistributiongroups"):
                raise CmdletError(f"Cannot bind parameter 'RecipientRelativeWriteScope'. Cannot convert value "
                                  f"\"{relative}\" to type \"RecipientWriteScopeType\".", "InvalidArgument")
            assignment.custom_recipient_write_scope = None
            assignment.recipient_organizational_unit_scope = None
        if "Enabled" in bound:
            assignment.enabled = bool(bound["Enabled"])
        return []

    def remove_assignment(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        assignment = self.org.assignment(bound["Identity"])
        if assignment is None:
            raise _not_found(self.org, bound["Identity"])
        self.org.role_assignments.remove(assignment)
        return []

    # --------------------------------------------------------------------------------------- mailbox permissions
    def _mailbox(self, identity: str) -> Recipient:
        recipient = self.org.recipient(identity)
        if recipient is None or not recipient.is_mailbox:
            raise _not_found(self.org, identity)
        return recipient

    def _permission_object(self, permission: MailboxPermission) -> PSObject:
        return PSObject("Microsoft.Exchange.Management.RecipientTasks.MailboxAcePresentationObject", {
            "Identity": permission.identity, "User": permission.user, "AccessRights": list(permission.access_rights),
            "IsInherited": permission.is_inherited, "Deny": permission.deny,
            "InheritanceType": permission.inheritance_type})

    def add_permission(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        mailbox = self._mailbox(bound["Identity"])
        if not bound.get("User") or not bound.get("AccessRights"):
            raise CmdletError("The parameters User and AccessRights are required.", "InvalidArgument")
        user = self.org.recipient(bound["User"])
        if user is None:
            raise _not_found(self.org, bound["User"])
        rights = self._rights(bound["AccessRights"])
        inheritance = self._inheritance(bound.get("InheritanceType") or "All")
        existing = self._find_permission(mailbox, user, bool(bound.get("Deny")))
        if existing is not None:
            existing.access_rights = sorted(set(existing.access_rights) | set(rights))
            return [self._permission_object(existing)]
        permission = MailboxPermission(identity=mailbox.primary_smtp_address, user=user.primary_smtp_address,
                                       access_rights=rights, inheritance_type=inheritance,
                                       deny=bool(bound.get("Deny")), auto_mapping=bound.get("AutoMapping", True))
        self.org.mailbox_permissions.append(permission)
        return [self._permission_object(permission)]

    def _find_permission(self, mailbox: Recipient, user: Recipient, deny: bool) -> MailboxPermission | None:
        return next((p for p in self.org.mailbox_permissions
                     if p.identity == mailbox.primary_smtp_address and p.user == user.primary_smtp_address
                     and p.deny == deny), None)

    def _rights(self, rights: list[str]) -> list[str]:
        known = {r.lower(): r for r in ("FullAccess", "ReadPermission", "ChangePermission", "ChangeOwner",
                                        "DeleteItem", "ExternalAccount", "SendAs")}
        out = []
        for right in rights:
            if right.lower() not in known:
                raise CmdletError(f"Cannot bind parameter 'AccessRights' to the target. Cannot convert value "
                                  f"\"{right}\" to type \"MailboxRights\".", "InvalidArgument")
            out.append(known[right.lower()])
        return sorted(set(out))

    def _inheritance(self, value: str) -> str:
        known = {v.lower(): v for v in ("None", "All", "Children", "Descendents", "SelfAndChildren")}
        if value.lower() not in known:
            raise CmdletError(f"Cannot bind parameter 'InheritanceType'. Cannot convert value \"{value}\" to type "
                              "\"ActiveDirectorySecurityInheritance\".", "InvalidArgument")
        return known[value.lower()]

    def get_permissions(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        mailbox = self._mailbox(bound["Identity"])
        found = [p for p in self.org.mailbox_permissions if p.identity == mailbox.primary_smtp_address]
        if bound.get("User"):
            user = self.org.recipient(bound["User"])
            if user is None:
                raise _not_found(self.org, bound["User"])
            found = [p for p in found if p.user == user.primary_smtp_address]
        self_permission = MailboxPermission(identity=mailbox.primary_smtp_address, user="NT AUTHORITY\\SELF",
                                            access_rights=["FullAccess", "ReadPermission"])
        if not bound.get("User"):
            found = [self_permission, *found]
        return [self._permission_object(p) for p in found]

    def remove_permission(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        mailbox = self._mailbox(bound["Identity"])
        user = self.org.recipient(bound.get("User") or "")
        if user is None:
            raise _not_found(self.org, bound.get("User") or "")
        permission = self._find_permission(mailbox, user, bool(bound.get("Deny")))
        rights = self._rights(bound.get("AccessRights") or [])
        if permission is None or not set(rights) & set(permission.access_rights):
            raise CmdletError(f"Can't remove the access control entry on the object \"{mailbox.distinguished_name}\" "
                              f"for account \"{user.primary_smtp_address}\" because the ACE doesn't exist on the "
                              "object.", "InvalidOperation")
        permission.access_rights = [r for r in permission.access_rights if r not in rights]
        if not permission.access_rights:
            self.org.mailbox_permissions.remove(permission)
        return []

    # --------------------------------------------------------------------------------------- recipients
    def get_recipients(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            recipient = self.org.recipient(bound["Identity"])
            if recipient is None or not recipient.mail_enabled:
                raise _not_found(self.org, bound["Identity"])
            return [self._recipient_object(recipient)]
        candidates = [r for r in self.org.recipients if r.mail_enabled]
        text = bound.get("RecipientPreviewFilter") or bound.get("Filter")
        if text:
            try:
                tree = opath.parse(text)
            except opath.OpathError as exc:
                raise CmdletError(f"Invalid filter syntax. {exc.message} (position {exc.offset + 1})",
                                  "InvalidArgument") from None
            candidates = [r for r in candidates if opath.evaluate(tree, r.filter_properties())]
        if bound.get("RecipientTypeDetails"):
            wanted = {t.lower() for t in bound["RecipientTypeDetails"]}
            candidates = [r for r in candidates if r.recipient_type_details.lower() in wanted]
        if bound.get("OrganizationalUnit"):  # an OU identity: its DN or canonical name (as RecipientRoot prints)
            ou = canonical_name(bound["OrganizationalUnit"]).lower() + "/"
            candidates = [r for r in candidates if canonical_name(r.distinguished_name).lower().startswith(ou)]
        return [self._recipient_object(r) for r in candidates]

    # --------------------------------------------------------------------------------------- remoting
    def new_session(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        if bound["ConfigurationName"].lower() != "microsoft.exchange":
            raise CmdletError(f"The WS-Management service cannot process the request. Cannot find the "
                              f"{bound['ConfigurationName']} session configuration.", "OpenError")
        if (bound.get("Authentication") or "Default").lower() not in ("kerberos", "credssp", "default", "negotiate"):
            raise CmdletError(f"Cannot convert value \"{bound['Authentication']}\" to type "
                              "\"System.Management.Automation.Runspaces.AuthenticationMechanism\".", "InvalidArgument")
        check_second_hop(self.logon, bound["ConnectionUri"], bound.get("Credential"))
        self.sessions = getattr(self, "sessions", 0) + 1
        return [PSObject("System.Management.Automation.Runspaces.PSSession", {
            "Id": self.sessions, "Name": f"WinRM{self.sessions}", "ComputerName": bound["ConnectionUri"],
            "ConfigurationName": "Microsoft.Exchange", "State": "Opened"})]

    def _session(self, value: Any) -> PSObject:
        if not isinstance(value, PSObject) or value.type_name != "System.Management.Automation.Runspaces.PSSession":
            raise CmdletError("Cannot bind parameter 'Session'. The value is not a PSSession.", "InvalidArgument")
        return value

    def import_session(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        session = self._session(bound["Session"])
        if session.get("State") != "Opened":
            raise CmdletError("The session is closed.", "InvalidOperation")
        return [PSObject("System.Management.Automation.PSModuleInfo", {"Name": "tmp_exchange_session"})]

    def remove_session(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        self._session(bound["Session"]).properties["State"] = "Closed"
        return []

    # --------------------------------------------------------------------------------------- Exchange Online
    def disconnect_online(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        return []

    def connect_online(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        if not (bound.get("AccessToken") or (bound.get("AppId") and bound.get("Organization"))):
            raise CmdletError("Connect-ExchangeOnline needs -AppId with a certificate and -Organization, or "
                              "-AccessToken.", "InvalidArgument")
        return []

    def _principal_or_none(self, identity: str) -> ServicePrincipal | None:
        wanted = identity.lower()
        return next((p for p in self.org.service_principals
                     if wanted in (p.app_id.lower(), p.object_id.lower(), p.display_name.lower())), None)

    def _principal(self, identity: str) -> ServicePrincipal:
        principal = self._principal_or_none(identity)
        if principal is None:
            raise _not_found(self.org, identity)
        return principal

    def _principal_object(self, principal: ServicePrincipal) -> PSObject:
        return PSObject("Microsoft.Exchange.Data.Directory.Management.ServicePrincipal", {
            "Identity": principal.object_id, "Name": principal.object_id, "AppId": principal.app_id,
            "ObjectId": principal.object_id, "DisplayName": principal.display_name})

    def get_principals(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            return [self._principal_object(self._principal(bound["Identity"]))]
        return [self._principal_object(p) for p in self.org.service_principals]

    def new_principal(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        app_id, object_id = bound["AppId"].lower(), bound["ObjectId"].lower()
        if self._principal_or_none(app_id) or self._principal_or_none(object_id):
            raise _exists(f"A service principal with AppId '{app_id}' or ObjectId '{object_id}'")
        principal = ServicePrincipal(app_id=app_id, object_id=object_id,
                                     display_name=bound.get("DisplayName") or app_id)
        self.org.service_principals.append(principal)
        return [self._principal_object(principal)]

    def set_principal(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        principal = self._principal(bound["Identity"])
        if bound.get("DisplayName"):
            principal.display_name = bound["DisplayName"]
        return []

    def remove_principal(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        principal = self._principal(bound["Identity"])
        self.org.role_assignments = [a for a in self.org.role_assignments if a.role_assignee != principal.object_id]
        self.org.service_principals.remove(principal)
        return []

    def _policy_identity(self, policy: ApplicationAccessPolicy) -> str:
        return policy.identity or f"{self.org.name}\\{policy.app_id}:{policy.scope_identity}"

    def _policy_object(self, policy: ApplicationAccessPolicy) -> PSObject:
        group = self.org.recipient(policy.scope_identity)
        return PSObject("Microsoft.Exchange.Data.ApplicationAccessPolicy", {
            "Identity": self._policy_identity(policy), "AppId": policy.app_id,
            # Microsoft365DSC matches a policy on AppId + ScopeIdentity (the group's identity, its name); ScopeName
            # is what the admin centre shows, the display name.
            "ScopeName": (group.display_name or group.name) if group else policy.scope_identity,
            "ScopeIdentity": group.name if group else policy.scope_identity,
            "AccessRight": policy.access_right, "Description": policy.description, "IsValid": group is not None})

    def _policy(self, identity: str) -> ApplicationAccessPolicy:
        found = next((p for p in self.org.application_access_policies
                      if self._policy_identity(p).lower() == identity.lower()), None)
        if found is None:
            raise _not_found(self.org, identity)
        return found

    def get_policies(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        _read_fault(self.org, bound)
        if bound.get("Identity") is not None:
            return [self._policy_object(self._policy(bound["Identity"]))]
        return [self._policy_object(p) for p in self.org.application_access_policies]

    def new_policy(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        right = bound["AccessRight"]
        if right.lower() not in ("restrictaccess", "denyaccess"):
            raise CmdletError(f"Cannot convert value \"{right}\" to type \"ApplicationAccessPolicyAccessRight\".",
                              "InvalidArgument")
        group = self.org.recipient(bound["PolicyScopeGroupId"])
        if group is None:
            raise _not_found(self.org, bound["PolicyScopeGroupId"])
        if group.recipient_type_details not in ("MailUniversalSecurityGroup", "UserMailbox", "MailUser"):
            raise CmdletError(f"The PolicyScopeGroupId '{bound['PolicyScopeGroupId']}' must be a mail-enabled "
                              f"security group, a user mailbox or a mail user; it is a {group.recipient_type_details}.",
                              "InvalidArgument")
        created = []
        for app_id in bound["AppId"]:
            policy = ApplicationAccessPolicy(app_id=app_id.lower(), scope_identity=group.primary_smtp_address,
                                             access_right="RestrictAccess" if right.lower() == "restrictaccess"
                                             else "DenyAccess", description=bound.get("Description") or "")
            if any(self._policy_identity(p) == self._policy_identity(policy)
                   for p in self.org.application_access_policies):
                raise _exists(f"An application access policy for app '{app_id}' and group '{group.name}'")
            self.org.application_access_policies.append(policy)
            created.append(self._policy_object(policy))
        return created

    def set_policy(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        policy = self._policy(bound["Identity"])
        if "Description" in bound:
            policy.description = bound["Description"] or ""
        return []

    def remove_policy(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        self.org.application_access_policies.remove(self._policy(bound["Identity"]))
        return []

    def test_authorization(self, bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        """Per application role of the service principal: its scope and whether -Resource is in it."""
        principal = self._principal(bound["Identity"])
        resource = None
        if bound.get("Resource"):
            resource = self.org.recipient(bound["Resource"])
            if resource is None or not resource.is_mailbox:
                raise _not_found(self.org, bound["Resource"])
        rows = []
        for assignment in self.org.role_assignments:
            if assignment.role_assignee != principal.object_id:
                continue
            in_scope: Any = "Not Run"
            if resource is not None:
                scope = self.org.scope(assignment.custom_resource_scope or "")
                in_scope = scope is None and not assignment.custom_resource_scope or bool(
                    scope and self._in_scope(scope, resource))
            rows.append(PSObject("Microsoft.Exchange.Management.RbacTasks.ServicePrincipalAuthorization", {
                "RoleName": assignment.role, "GrantedPermissions": assignment.role.removeprefix("Application "),
                "AllowedResourceScope": assignment.custom_resource_scope or "Organization",
                "ScopeType": "CustomRecipientScope" if assignment.custom_resource_scope else "Organization",
                "InScope": in_scope}))
        return rows
