"""The sandbox's cmdlets as a script meets them, compared whole: parameter binding by name and prefix, mandatory
parameters, the errors Exchange writes (message, category, object and domain controller). (Mutation testing found
these read only in part.)"""

from __future__ import annotations

import textwrap

import pytest

from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.interpreter import Interpreter, ScriptError
from toolkit.sandbox.seed import seed_organisation

ONLINE_DC = "EURPR01A001DC01.eurprd01.prod.outlook.com"
APP = "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11"
POLICY = f"contoso.onmicrosoft.com\\{APP}:bookable-rooms@contoso.com"


@pytest.fixture(autouse=True)
def _shapes_as_found():
    """These tests run many one-off scripts: each leaves the interpreter's cache of checked script shapes (bounded,
    least recently used dropped first) as it found it, so a test that counts on a shape staying remembered
    (test_interpreter.py) does not depend on how many scripts ran here before it."""
    from toolkit.sandbox import interpreter

    with interpreter._SHAPES_LOCK:
        kept = dict(interpreter._SHAPES_INSIDE)
    yield
    with interpreter._SHAPES_LOCK:
        interpreter._SHAPES_INSIDE.clear()
        interpreter._SHAPES_INSIDE.update(kept)


def online():
    return Interpreter(ExchangeCmdlets(seed_organisation("exchange-online")).commands())


def run(interpreter, script):
    outcome = interpreter.run(textwrap.dedent(script))
    return outcome.exit_code, outcome.output, outcome.errors


def test_an_ambiguous_parameter_prefix_lists_every_match_by_its_name():
    with pytest.raises(ScriptError) as refused:
        online().run("Connect-ExchangeOnline -Cert x")
    assert str(refused.value) == (
        "1:24: Connect-ExchangeOnline: Parameter cannot be processed because the parameter name 'Cert' is ambiguous. "
        "Possible matches include: -Certificate -CertificateFilePath -CertificatePassword -CertificateThumbprint.")


@pytest.mark.parametrize("arguments, errors", [
    ("", ["Connect-ExchangeOnline needs -AppId with a certificate and -Organization, or -AccessToken.\n"
          "    At line:1 char:1"]),
    (f"-AppId {APP}", ["Connect-ExchangeOnline needs -AppId with a certificate and -Organization, or -AccessToken.\n"
                       "    At line:1 char:1"]),
    (f"-AppId {APP} -Organization contoso.onmicrosoft.com -CertificateThumbprint AB12 -ShowBanner:$false", []),
    ("-AccessToken eyJ0", []),
])
def test_connect_exchange_online_needs_an_app_and_organisation_or_a_token(arguments, errors):
    assert run(online(), f"Connect-ExchangeOnline {arguments}") == (0, [], errors)


def test_an_access_policy_is_removed_by_identity_named_or_positional():
    interpreter = online()
    assert run(interpreter, "Remove-ApplicationAccessPolicy") == (1, [], [
        "Remove-ApplicationAccessPolicy: Cannot process command because of one or more missing mandatory "
        "parameters: Identity.\n    At line:1 char:1\n    + CategoryInfo: InvalidArgument"])
    created = f"""\
        $p = New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com `
            -AccessRight RestrictAccess -Description d
        $p.Identity
        """
    assert run(interpreter, created + "Remove-ApplicationAccessPolicy -Identity $p.Identity -Confirm:$false\n"
               "@(Get-ApplicationAccessPolicy).Count") == (0, [POLICY, "0"], [])
    assert run(interpreter, created + "Remove-ApplicationAccessPolicy $p.Identity -Confirm:$false\n"
               "@(Get-ApplicationAccessPolicy).Count") == (0, [POLICY, "0"], [])


@pytest.mark.parametrize("cmdlet, identity", [
    ("Get-User", "nobody@contoso.com"),
    ("Get-User", "bookable-rooms@contoso.com"),  # a group is no user
    ("Get-Group", "nobody@contoso.com"),
    ("Get-Group", "info@contoso.com"),  # a mailbox user is no group
])
def test_a_principal_that_is_not_there_is_not_found_on_the_tenants_domain_controller(cmdlet, identity):
    assert run(online(), f"{cmdlet} -Identity {identity}") == (0, [], [
        f"The operation couldn't be performed because object '{identity}' couldn't be found on '{ONLINE_DC}'.\n"
        "    At line:1 char:1"])


# ------------------------------------------------------------------------------------------------ error records
ROOMS = "$r = New-ManagementScope -Name 'Rooms' -RecipientRestrictionFilter \"RecipientTypeDetails -eq 'RoomMailbox'\""
APP_PRINCIPAL = (f"New-ServicePrincipal -AppId {APP} -ObjectId 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21 "
                 "-DisplayName App")
SERVER_DC, FILTER_END = "DC01.contoso.com", "expected a quoted value after -eq, found 'the end of the filter' (position 11)"
EXISTS, INVALID = ("NotSpecified", "ADObjectAlreadyExistsException"), ("InvalidArgument", "RuntimeException")
NOT_FOUND = ("NotSpecified", "ManagementObjectNotFoundException")


@pytest.mark.parametrize("platform, setup, line, record", [
    ("exchange-server", ROOMS, "New-ManagementScope -Name 'rooms' -RecipientRestrictionFilter \"Office -eq 'X'\"",
     (*EXISTS, "The management scope 'rooms' already exists.")),
    ("exchange-server", "", "New-ManagementScope -Name 'Bad' -RecipientRestrictionFilter \"Office -eq\"",
     (*INVALID, "Cannot bind parameter 'RecipientRestrictionFilter' to the target. Exception setting "
                f"\"RecipientRestrictionFilter\": \"Invalid filter syntax. {FILTER_END}\"")),
    ("exchange-server", ROOMS + "\n$a = New-ManagementRoleAssignment -Name 'A' -Role ApplicationImpersonation -User "
                                "info@contoso.com -CustomRecipientWriteScope Rooms",
     "Remove-ManagementScope -Identity Rooms -Confirm:$false",
     ("InvalidOperation", "RuntimeException",
      "Management scope \"Rooms\" can't be deleted because it's referenced by role assignments: A.")),
    ("exchange-server", "", "New-RoleGroup -Name 'organization management' -Roles 'View-Only Recipients'",
     (*EXISTS, "The role group 'organization management' already exists.")),
    ("exchange-server", ROOMS, "New-RoleGroup -Name 'G' -Roles 'View-Only Recipients' -CustomRecipientWriteScope Rooms "
                               "-RecipientOrganizationalUnitScope 'contoso.com/Users'",
     (*INVALID, "The parameters CustomRecipientWriteScope and RecipientOrganizationalUnitScope can't be used "
                "together.")),
    ("exchange-server", "", "Add-RoleGroupMember -Identity 'Organization Management' -Member admin@contoso.com",
     ("InvalidArgument", "MemberAlreadyExistsException",
      'The recipient "admin@contoso.com" is already a member of the group "Organization Management".')),
    ("exchange-server", "", "Remove-RoleGroupMember -Identity 'Organization Management' -Member info@contoso.com "
                            "-Confirm:$false",
     ("InvalidArgument", "MemberNotFoundException",
      'The recipient "info@contoso.com" isn\'t a member of the group "Organization Management".')),
    ("exchange-server", "", "Set-ManagementScope -Identity 'No scope' -RecipientRestrictionFilter \"Office -eq 'X'\"",
     (*NOT_FOUND, f"The operation couldn't be performed because object 'No scope' couldn't be found on '{SERVER_DC}'.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role 'No Such Role' -User info@contoso.com",
     (*NOT_FOUND, "The operation couldn't be performed because object 'No Such Role' couldn't be found on "
                  f"'{SERVER_DC}'.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com "
                            "-SecurityGroup 'Organization Management'",
     (*INVALID, "Specify exactly one of the parameters User, SecurityGroup, Policy or App.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role ApplicationImpersonation",
     (*INVALID, "Specify exactly one of the parameters User, SecurityGroup, Policy or App.")),
    ("exchange-server", ROOMS, "New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com "
                               "-ExclusiveRecipientWriteScope Rooms -CustomRecipientWriteScope Rooms",
     (*INVALID, "The parameter ExclusiveRecipientWriteScope can't be used with other recipient write scopes.")),
    ("exchange-server", ROOMS, "New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com "
                               "-ExclusiveRecipientWriteScope Rooms",
     (*INVALID, "The management scope 'Rooms' isn't an exclusive scope.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com "
                            "-CustomRecipientWriteScope X -RecipientOrganizationalUnitScope 'contoso.com/Users'",
     (*INVALID, "The parameters CustomRecipientWriteScope and RecipientOrganizationalUnitScope can't be used "
                "together.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role ApplicationImpersonation -Policy 'Default Role "
                            "Assignment Policy'",
     ("NotImplemented", "RuntimeException", "Assignment policies are not simulated by the sandbox.")),
    ("exchange-server", "", f"New-ManagementRoleAssignment -Name '{'x' * 65}' -Role ApplicationImpersonation "
                            "-User info@contoso.com",
     (*INVALID, "The length of the property is too long. The maximum length is 64 and the length of the value "
                "provided is 65.")),
    ("exchange-server", "$a = New-ManagementRoleAssignment -Name 'A' -Role ApplicationImpersonation -User "
                        "info@contoso.com",
     "New-ManagementRoleAssignment -Name 'a' -Role ApplicationImpersonation -User admin@contoso.com",
     (*EXISTS, "The role assignment 'a' already exists.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role ApplicationImpersonation -User nobody@contoso.com",
     (*NOT_FOUND, "The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found on "
                  f"'{SERVER_DC}'.")),
    ("exchange-server", "", "New-ManagementRoleAssignment -Role ApplicationImpersonation -SecurityGroup 'No Group'",
     (*NOT_FOUND, f"The operation couldn't be performed because object 'No Group' couldn't be found on '{SERVER_DC}'.")),
    ("exchange-server", "$a = New-ManagementRoleAssignment -Name 'A' -Role ApplicationImpersonation -User "
                        "info@contoso.com",
     "Set-ManagementRoleAssignment -Identity A -RecipientRelativeWriteScope Bad",
     (*INVALID, "Cannot bind parameter 'RecipientRelativeWriteScope'. Cannot convert value \"Bad\" to type "
                "\"RecipientWriteScopeType\".")),
    ("exchange-server", "", "Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com",
     (*INVALID, "The parameters User and AccessRights are required.")),
    ("exchange-server", "", "Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com "
                            "-AccessRights Everything",
     (*INVALID, "Cannot bind parameter 'AccessRights' to the target. Cannot convert value \"Everything\" to type "
                "\"MailboxRights\".")),
    ("exchange-server", "", "Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com "
                            "-AccessRights FullAccess -InheritanceType Sideways",
     (*INVALID, "Cannot bind parameter 'InheritanceType'. Cannot convert value \"Sideways\" to type "
                "\"ActiveDirectorySecurityInheritance\".")),
    ("exchange-server", "", "Get-Recipient -Filter \"Office -eq\"", (*INVALID, f"Invalid filter syntax. {FILTER_END}")),
    ("exchange-server", "", "New-PSSession -ConfigurationName Other -ConnectionUri http://ex01/PowerShell/",
     ("OpenError", "RuntimeException",
      "The WS-Management service cannot process the request. Cannot find the Other session configuration.")),
    ("exchange-server", "", "New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri http://ex01/PowerShell/ "
                            "-Authentication Digest",
     (*INVALID, "Cannot convert value \"Digest\" to type "
                "\"System.Management.Automation.Runspaces.AuthenticationMechanism\".")),
    ("exchange-server", "", "Import-PSSession -Session 'x'",
     (*INVALID, "Cannot bind parameter 'Session'. The value is not a PSSession.")),
    ("exchange-server", "$s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri "
                        "http://ex01/PowerShell/\nRemove-PSSession -Session $s",
     "Import-PSSession -Session $s", ("InvalidOperation", "RuntimeException", "The session is closed.")),
    ("exchange-online", "", "New-ManagementRoleAssignment -Role 'Application Mail.Read' -User info@contoso.com",
     (*INVALID, "The role 'Application Mail.Read' can only be assigned to a service principal (-App).")),
    ("exchange-online", "$p = " + APP_PRINCIPAL, "New-ManagementRoleAssignment -Role ApplicationImpersonation -App App",
     (*NOT_FOUND, "The operation couldn't be performed because object 'ApplicationImpersonation' couldn't be found "
                  f"on '{ONLINE_DC}'.")),
    ("exchange-online", "$p = " + APP_PRINCIPAL,
     "New-ManagementRoleAssignment -Role 'Application Mail.Read' -App App -CustomRecipientWriteScope X",
     (*INVALID, "With -App, use -CustomResourceScope, -RecipientAdministrativeUnitScope or -RecipientGroupScope.")),
    ("exchange-online", "$p = " + APP_PRINCIPAL + "\n$a = New-ManagementRoleAssignment -Name 'A' -Role "
                                                  "'Application Mail.Read' -App App",
     "New-ManagementRoleAssignment -Name 'a' -Role 'Application Mail.Read' -App App",
     (*EXISTS, "The role assignment 'a' already exists.")),
    ("exchange-online", "$a = New-ManagementRoleAssignment -Name 'A' -Role 'View-Only Recipients' -User "
                        "info@contoso.com",
     "Set-ManagementRoleAssignment -Identity A -CustomResourceScope X",
     (*INVALID, "-CustomResourceScope applies only to assignments of service principals.")),
    ("exchange-online", "$p = " + APP_PRINCIPAL,
     f"New-ServicePrincipal -AppId {APP.upper()} -ObjectId 11111111-9d1a-4e5f-8c3b-7a6d5e4f3c21 -DisplayName Other",
     (*EXISTS, f"A service principal with AppId '{APP}' or ObjectId '11111111-9d1a-4e5f-8c3b-7a6d5e4f3c21' already "
               "exists.")),
    ("exchange-online", "", f"New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com "
                            "-AccessRight AllowEverything",
     (*INVALID, "Cannot convert value \"AllowEverything\" to type \"ApplicationAccessPolicyAccessRight\".")),
    ("exchange-online", "", f"New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId info@contoso.com "
                            "-AccessRight RestrictAccess",
     (*INVALID, "The PolicyScopeGroupId 'info@contoso.com' must be a mail-enabled security group, a user mailbox or "
                "a mail user; it is a SharedMailbox.")),
    ("exchange-online", f"$p = New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com "
                        "-AccessRight RestrictAccess",
     f"New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId Bookable-Rooms@contoso.com -AccessRight DenyAccess",
     (*EXISTS, f"An application access policy for app '{APP}' and group 'Bookable Rooms' already exists.")),
])
def test_a_refused_cmdlet_writes_exchanges_error_record(platform, setup, line, record):
    interpreter = Interpreter(ExchangeCmdlets(seed_organisation(platform)).commands())
    caught = setup + "\ntry { " + line + " -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.CategoryInfo.Reason; " \
                               "$_.Exception.Message }"
    assert run(interpreter, caught) == (0, list(record), [])


# ------------------------------------------------------------------------------------------------ objects out
ROLE_ASSIGNMENT_TYPE = "Microsoft.Exchange.Data.Directory.SystemConfiguration.ExchangeRoleAssignmentPresentation"
UNSET = {"CustomRecipientWriteScope": None, "CustomResourceScope": None, "ExclusiveRecipientWriteScope": None,
         "RecipientOrganizationalUnitScope": None}


def objects(organisation, cmdlet, bound):
    return [(o.type_name, o.properties) for o in ExchangeCmdlets(organisation).commands()[cmdlet].run(bound, [])]


def test_the_objects_exchange_server_cmdlets_return_have_exchanges_properties():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        {ROOMS} -RecipientRoot 'contoso.com/Users'
        $g = New-RoleGroup -Name 'Bookers' -Roles ApplicationImpersonation -Members info@contoso.com `
            -CustomRecipientWriteScope Rooms -Description 'd'
        $p = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com -AccessRights FullAccess `
            -InheritanceType All -AutoMapping $false
        """)[2] == []
    assert objects(organisation, "Get-RoleGroup", {"Identity": "bookers"}) == [(
        "Microsoft.Exchange.Management.RbacTasks.RoleGroup",
        {"Name": "Bookers", "Identity": "Bookers", "DisplayName": "Bookers", "Description": "d",
         "Members": ["info@contoso.com"], "ManagedBy": [], "Roles": ["ApplicationImpersonation"],
         "RoleAssignments": ["ApplicationImpersonation-Bookers"], "RoleGroupType": "Standard"})]
    assert objects(organisation, "Get-ManagementScope", {"Identity": "rooms"}) == [(
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.ManagementScope",
        {"Name": "Rooms", "Identity": "Rooms", "RecipientFilter": "(RecipientTypeDetails -eq 'RoomMailbox')",
         "RecipientRoot": "contoso.com/Users", "ScopeRestrictionType": "RecipientScope", "Exclusive": False})]
    assert objects(organisation, "Get-ManagementRoleAssignment", {"RoleAssignee": "Bookers"}) == [(
        ROLE_ASSIGNMENT_TYPE,
        {"Name": "ApplicationImpersonation-Bookers", "Identity": "ApplicationImpersonation-Bookers",
         "Role": "ApplicationImpersonation", "RoleAssigneeName": "Bookers", "RoleAssignee": "Bookers",
         "RoleAssigneeType": "RoleGroup", **UNSET, "CustomRecipientWriteScope": "Rooms",
         "RecipientWriteScope": "CustomRecipientScope", "Enabled": True, "Delegating": False,
         "RoleAssignmentDelegationType": "Regular"})]
    assert objects(organisation, "Get-MailboxPermission", {"Identity": "room-berlin-1@contoso.com",
                                                           "User": "info@contoso.com"}) == [(
        "Microsoft.Exchange.Management.RecipientTasks.MailboxAcePresentationObject",
        {"Identity": "room-berlin-1@contoso.com", "User": "info@contoso.com", "AccessRights": ["FullAccess"],
         "IsInherited": False, "Deny": False, "InheritanceType": "All"})]
    [(kind, recipient)] = objects(organisation, "Get-Recipient", {"Identity": "info@contoso.com"})
    assert kind == "Microsoft.Exchange.Data.Directory.Management.ReducedRecipient"
    assert recipient == {
        "Name": "Info", "Alias": "info", "DisplayName": "Info", "PrimarySmtpAddress": "info@contoso.com",
        "WindowsEmailAddress": "info@contoso.com", "UserPrincipalName": "info@contoso.com",
        "EmailAddresses": ["SMTP:info@contoso.com"], "RecipientTypeDetails": "SharedMailbox",
        "RecipientType": "UserMailbox", "Office": "Munich", "DistinguishedName": "CN=Info,OU=Users,DC=contoso,DC=com",
        "MemberOfGroup": [], "ResourceType": "", **{f"CustomAttribute{n}": "" for n in range(1, 16)},
        "Identity": "CN=Info,OU=Users,DC=contoso,DC=com", "Guid": "39bcf734-634e-59bb-afc6-39268cde2cc1"}


def test_the_objects_exchange_online_cmdlets_return_have_exchanges_properties():
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = {APP_PRINCIPAL}
        {ROOMS}
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App App -CustomResourceScope Rooms
        $q = New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com `
            -AccessRight RestrictAccess -Description d
        """)[2] == []
    principal = "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21"
    assert objects(organisation, "Get-ServicePrincipal", {"Identity": "App"}) == [(
        "Microsoft.Exchange.Data.Directory.Management.ServicePrincipal",
        {"Identity": principal, "Name": principal, "AppId": APP, "ObjectId": principal, "DisplayName": "App"})]
    assert objects(organisation, "Get-ManagementRoleAssignment", {"Role": "Application Mail.Read"}) == [(
        ROLE_ASSIGNMENT_TYPE,
        {"Name": "Application Mail.Read-App", "Identity": "Application Mail.Read-App", "Role": "Application Mail.Read",
         "RoleAssigneeName": principal, "RoleAssignee": principal, "RoleAssigneeType": "ServicePrincipal", **UNSET,
         "CustomResourceScope": "Rooms", "RecipientWriteScope": "CustomRecipientScope", "Enabled": True,
         "Delegating": False, "RoleAssignmentDelegationType": "Regular"})]
    assert objects(organisation, "Get-ApplicationAccessPolicy", {}) == [(
        "Microsoft.Exchange.Data.ApplicationAccessPolicy",
        {"Identity": POLICY, "AppId": APP, "ScopeName": "Bookable rooms (all sites)", "ScopeIdentity": "Bookable Rooms",
         "AccessRight": "RestrictAccess", "Description": "d", "IsValid": True})]
    assert objects(organisation, "Test-ServicePrincipalAuthorization",
                   {"Identity": "App", "Resource": "room-berlin-1@contoso.com"}) == [(
        "Microsoft.Exchange.Management.RbacTasks.ServicePrincipalAuthorization",
        {"RoleName": "Application Mail.Read", "GrantedPermissions": "Mail.Read", "AllowedResourceScope": "Rooms",
         "ScopeType": "CustomRecipientScope", "InScope": True})]


@pytest.mark.parametrize("bound, names", [
    ({"Delegating": True}, ["Mail Recipients-Organization Management-Delegating",
                            "Mailbox Import Export-Organization Management-Delegating",
                            "Role Management-Organization Management-Delegating",
                            "View-Only Configuration-Organization Management-Delegating"]),
    ({"Delegating": False}, ["Mail Recipients-Organization Management", "Mail Recipients-Recipient Management",
                             "Mailbox Import Export-Organization Management", "Role Management-Organization Management",
                             "View-Only Configuration-Organization Management",
                             "View-Only Configuration-View-Only Organization Management", "Rooms A"]),
    ({"CustomRecipientWriteScope": "rooms"}, ["Rooms A"]),
    ({"Enabled": False}, ["Rooms A"]),
    ({"Role": "applicationimpersonation", "RoleAssignee": "info@contoso.com"}, ["Rooms A"]),
    ({"Role": "ApplicationImpersonation", "RoleAssignee": "admin@contoso.com"}, []),
])
def test_role_assignments_are_filtered_like_exchange_filters_them(bound, names):
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        {ROOMS}
        $a = New-ManagementRoleAssignment -Name 'Rooms A' -Role ApplicationImpersonation -User info@contoso.com `
            -CustomRecipientWriteScope Rooms
        Set-ManagementRoleAssignment -Identity 'Rooms A' -Enabled $false
        """)[2] == []
    assert [properties["Name"] for _, properties in objects(organisation, "Get-ManagementRoleAssignment", bound)] == names


@pytest.mark.parametrize("written, stored", [("none", "None"), ("ALL", "All"), ("children", "Children"),
                                             ("descendents", "Descendents"), ("selfandchildren", "SelfAndChildren")])
def test_an_inheritance_type_is_stored_in_exchanges_spelling(written, stored):
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               "$p = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com "
               f"-AccessRights FullAccess -InheritanceType {written}")[2] == []
    [(_, permission)] = objects(organisation, "Get-MailboxPermission", {"Identity": "room-berlin-1@contoso.com",
                                                                         "User": "info@contoso.com"})
    assert permission["InheritanceType"] == stored


def test_a_user_without_mail_has_no_address_of_any_kind():
    operator = "CN=Room Sync Operator,OU=Users,DC=contoso,DC=com"
    [(_, user)] = objects(seed_organisation(), "Get-User", {"Identity": operator})
    assert user == {
        "Name": "Room Sync Operator", "Alias": "", "DisplayName": "Room Sync Operator", "PrimarySmtpAddress": "",
        "WindowsEmailAddress": "", "UserPrincipalName": "", "EmailAddresses": [], "RecipientTypeDetails": "User",
        "RecipientType": "UserMailbox", "Office": "", "DistinguishedName": operator, "MemberOfGroup": [],
        "ResourceType": "", **{f"CustomAttribute{n}": "" for n in range(1, 16)}, "Identity": operator,
        "Guid": "e1e35787-9094-5214-955c-5bda796d7829"}


def test_recipients_are_listed_by_their_type_details_in_any_case():
    found = objects(seed_organisation(), "Get-Recipient", {"RecipientTypeDetails": ["roommailbox", "EquipmentMailbox"]})
    assert [properties["Name"] for _, properties in found] == [
        "Pool Car Munich 1", "Projector Berlin 1", "Fabrikam Projector", "Tailspin Projector", "Fabrikam Room 1",
        "Tailspin Room 1", "Fabrikam Room 2", "Tailspin Room 2", "Fabrikam Room 3", "Tailspin Room 3", "Room Berlin 1",
        "Room Berlin 2", "Room Berlin 3", "Room Berlin 4", "Room London 1", "Room London 2", "Room Munich 1",
        "Room Munich 2", "Room Munich 3", "Room New York 1", "Room New York 2"]


def test_mailbox_rights_are_stored_in_exchanges_spelling_once_each():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               "$p = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com "
               "-AccessRights @('sendas', 'FULLACCESS', 'readpermission', 'changepermission', 'changeowner', "
               "'deleteitem', 'externalaccount', 'SendAs')")[2] == []
    [(_, permission)] = objects(organisation, "Get-MailboxPermission", {"Identity": "room-berlin-1@contoso.com",
                                                                         "User": "info@contoso.com"})
    assert permission["AccessRights"] == ["ChangeOwner", "ChangePermission", "DeleteItem", "ExternalAccount",
                                          "FullAccess", "ReadPermission", "SendAs"]


def test_a_positional_identity_binds_after_a_switch_and_without_a_name():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        {ROOMS}
        $g = New-RoleGroup -Name 'Bookers' -Roles ApplicationImpersonation -CustomRecipientWriteScope Rooms
        Set-RoleGroup -Force 'Bookers' -Description 'set after a switch'
        $a = New-ManagementRoleAssignment -Name 'Rooms A' -Role ApplicationImpersonation -User info@contoso.com
        Set-ManagementRoleAssignment 'Rooms A' -Enabled $false
        """)[2] == []
    assert [p["Description"] for _, p in objects(organisation, "Get-RoleGroup", {"Identity": "Bookers"})] == [
        "set after a switch"]
    assert [p["Name"] for _, p in objects(organisation, "Get-ManagementRoleAssignment", {"Enabled": False})] == [
        "Rooms A"]


@pytest.mark.parametrize("cmdlet", ["Get-MailboxPermission -Identity room-berlin-1@contoso.com", "Get-Recipient",
                                    "Get-RoleGroup", "Get-ManagementScope", "Get-ManagementRoleAssignment"])
def test_a_read_takes_no_confirm_or_whatif(cmdlet):
    """Reads change nothing: Exchange gives them no -WhatIf / -Confirm (ShouldProcess), and plan does not list
    them among the calls that change the target."""
    name = cmdlet.split()[0]
    for switch in ("WhatIf", "Confirm"):
        with pytest.raises(ScriptError) as refused:
            Interpreter(ExchangeCmdlets(seed_organisation()).commands()).run(f"{cmdlet} -{switch}")
        assert str(refused.value) == (f"1:{len(cmdlet) + 2}: {name}: A parameter cannot be found that matches "
                                      f"parameter name '{switch}'.")
    assert not ExchangeCmdlets(seed_organisation()).commands()[name].should_process


@pytest.mark.parametrize("mechanism", ["Negotiate", "kerberos", "CredSSP", "Default"])
def test_a_remote_session_opens_with_each_mechanism_exchange_accepts(mechanism):
    outcome = run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()),
                  "$s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri "
                  f"http://ex01.contoso.com/PowerShell/ -Authentication {mechanism}\n"
                  "$s.Name\n$s.State\n$s.ComputerName")
    assert outcome == (0, ["WinRM1", "Opened", "http://ex01.contoso.com/PowerShell/"], [])


# ------------------------------------------------------------------------------------------------ names as spelled
# Each cmdlet's parameters as the Exchange cmdlet reference (learn.microsoft.com/powershell/module/exchange) spells
# them. Binding ignores case, but PowerShell names a parameter in its own spelling in every binding error: a
# parameter given twice is refused naming it so (whatever case the script wrote it in).
SERVER_PARAMETERS = {
    "Get-ManagementScope": "Identity Exclusive Orphan",
    "New-ManagementScope": "Name RecipientRestrictionFilter RecipientRoot Exclusive Force",
    "Set-ManagementScope": "Identity Name RecipientRestrictionFilter RecipientRoot Force",
    "Remove-ManagementScope": "Identity Force",
    "Get-RoleGroup": "Identity Filter ResultSize",
    "New-RoleGroup": "Name Roles Members CustomRecipientWriteScope RecipientOrganizationalUnitScope Description "
                     "DisplayName ManagedBy",
    "Set-RoleGroup": "Identity Description DisplayName ManagedBy Name BypassSecurityGroupManagerCheck Force",
    "Remove-RoleGroup": "Identity BypassSecurityGroupManagerCheck",
    "Add-RoleGroupMember": "Identity Member BypassSecurityGroupManagerCheck",
    "Remove-RoleGroupMember": "Identity Member BypassSecurityGroupManagerCheck",
    "Get-RoleGroupMember": "Identity ResultSize",
    "New-ManagementRoleAssignment": "Name Role User SecurityGroup Policy CustomRecipientWriteScope "
                                    "RecipientOrganizationalUnitScope ExclusiveRecipientWriteScope "
                                    "RecipientRelativeWriteScope Delegating",
    "Get-ManagementRoleAssignment": "Identity Role RoleAssignee Delegating Enabled GetEffectiveUsers WritableRecipient "
                                    "CustomRecipientWriteScope",
    "Set-ManagementRoleAssignment": "Identity CustomRecipientWriteScope RecipientOrganizationalUnitScope "
                                    "RecipientRelativeWriteScope Enabled Force",
    "Remove-ManagementRoleAssignment": "Identity Force",
    "Add-MailboxPermission": "Identity User AccessRights InheritanceType AutoMapping Deny Owner",
    "Get-MailboxPermission": "Identity User Owner ResultSize",
    "Remove-MailboxPermission": "Identity User AccessRights InheritanceType Deny",
    "Get-Recipient": "Identity RecipientPreviewFilter Filter RecipientTypeDetails OrganizationalUnit ResultSize",
    "Get-User": "Identity ResultSize",
    "Get-Group": "Identity ResultSize",
    "Get-OrganizationalUnit": "Identity SingleNodeOnly",
    "New-PSSession": "ConfigurationName ConnectionUri Authentication Credential SessionOption",
    "Import-PSSession": "Session DisableNameChecking AllowClobber CommandName",
    "Remove-PSSession": "Session",
}
ONLINE_PARAMETERS = {
    **SERVER_PARAMETERS,
    "New-ManagementRoleAssignment": SERVER_PARAMETERS["New-ManagementRoleAssignment"]
    + " App CustomResourceScope RecipientGroupScope RecipientAdministrativeUnitScope",
    "Get-ManagementRoleAssignment": SERVER_PARAMETERS["Get-ManagementRoleAssignment"] + " RoleAssigneeType",
    "Set-ManagementRoleAssignment": SERVER_PARAMETERS["Set-ManagementRoleAssignment"] + " CustomResourceScope",
    "Connect-ExchangeOnline": "AppId CertificateThumbprint Certificate CertificateFilePath CertificatePassword "
                              "Organization ShowBanner ExchangeEnvironmentName AccessToken",
    "Disconnect-ExchangeOnline": "",
    "Get-ServicePrincipal": "Identity",
    "New-ServicePrincipal": "AppId ObjectId DisplayName ServiceId",
    "Set-ServicePrincipal": "Identity DisplayName",
    "Remove-ServicePrincipal": "Identity",
    "Get-ApplicationAccessPolicy": "Identity",
    "New-ApplicationAccessPolicy": "AppId PolicyScopeGroupId AccessRight Description",
    "Set-ApplicationAccessPolicy": "Identity Description",
    "Remove-ApplicationAccessPolicy": "Identity",
    "Test-ServicePrincipalAuthorization": "Identity Resource",
}
REMOTING = {"New-PSSession", "Import-PSSession", "Remove-PSSession"}  # PowerShell's own: no -DomainController


@pytest.mark.parametrize("platform, table", [("exchange-server", SERVER_PARAMETERS),
                                             ("exchange-online", ONLINE_PARAMETERS)])
def test_each_cmdlet_and_parameter_is_named_in_exchanges_spelling(platform, table):
    """One script per platform (a fleet-sized number of distinct scripts would crowd the interpreter's shape
    cache): each cmdlet named in lower case, each parameter given twice in lower case, each refusal caught."""
    names = {cmdlet: names.split() + (["DomainController"] if platform == "exchange-server" and cmdlet not in REMOTING
                                      else []) for cmdlet, names in table.items()}
    script = "".join(f"(Get-Command {cmdlet.lower()}).Name\n" for cmdlet in names) + "".join(
        f"try {{ {cmdlet.upper()} -{name.lower()} $true -{name.lower()} $true }} catch {{ $_.Exception.Message }}\n"
        for cmdlet, parameters in names.items() for name in parameters)
    assert run(Interpreter(ExchangeCmdlets(seed_organisation(platform)).commands()), script) == (
        0, list(names) + [f"{cmdlet}: Cannot bind parameter because parameter '{name}' is specified more than once."
                          for cmdlet, parameters in names.items() for name in parameters], [])


def test_exchange_online_has_no_domain_controller_parameter():
    """Exchange Online's cmdlets take no -DomainController (the service picks its own; cmdlet reference, "This
    parameter is available only in on-premises Exchange"): every such call is refused before the script runs."""
    cmdlets = sorted(SERVER_PARAMETERS.keys() - REMOTING)
    with pytest.raises(ScriptError) as refused:
        online().run("".join(f"{cmdlet} -DomainController dc01\n" for cmdlet in cmdlets))
    assert str(refused.value) == "\n".join(
        f"{line}:{len(cmdlet) + 2}: {cmdlet}: A parameter cannot be found that matches parameter name "
        "'DomainController'." for line, cmdlet in enumerate(cmdlets, 1))


@pytest.mark.parametrize("cmdlet", ["Get-ServicePrincipal", "Get-ApplicationAccessPolicy"])
def test_an_online_read_takes_no_confirm_or_whatif(cmdlet):
    """Get-ServicePrincipal's and Get-ApplicationAccessPolicy's syntax (cmdlet reference) has no -WhatIf / -Confirm:
    reads change nothing."""
    for switch in ("WhatIf", "Confirm"):
        with pytest.raises(ScriptError) as refused:
            online().run(f"{cmdlet} -{switch}")
        assert str(refused.value) == (f"1:{len(cmdlet) + 2}: {cmdlet}: A parameter cannot be found that matches "
                                      f"parameter name '{switch}'.")


# ------------------------------------------------------------------------------------------------ OUs, scopes, groups
OU_TYPE = "Microsoft.Exchange.Data.Directory.Management.ExtendedOrganizationalUnit"


@pytest.mark.parametrize("identity", ["OU=Rooms,DC=contoso,DC=com", "CONTOSO.COM/rooms", None])
def test_an_organizational_unit_is_found_by_distinguished_or_canonical_name(identity):
    rooms = (OU_TYPE, {"Name": "Rooms", "Identity": "contoso.com/Rooms",
                       "DistinguishedName": "OU=Rooms,DC=contoso,DC=com"})
    found = objects(seed_organisation(), "Get-OrganizationalUnit", {} if identity is None else {"Identity": identity})
    if identity is not None:
        assert found == [rooms]
    else:
        assert [properties["Identity"] for _, properties in found] == [
            "contoso.com/Users", "contoso.com/Rooms", "hoster.local/Hosting", "hoster.local/Hosting/Fabrikam",
            "hoster.local/Hosting/Tailspin"]
        assert found[1] == rooms


def test_an_organizational_unit_that_is_not_there_is_not_found():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()),
               "Get-OrganizationalUnit 'contoso.com/Nowhere'") == (0, [], [
        f"The operation couldn't be performed because object 'contoso.com/Nowhere' couldn't be found on '{SERVER_DC}'."
        "\n    At line:1 char:1"])


@pytest.mark.parametrize("ou", ["OU=Fabrikam,OU=Hosting,DC=hoster,DC=local", "HOSTER.LOCAL/hosting/fabrikam"])
def test_recipients_are_listed_by_the_organizational_unit_they_are_in(ou):
    found = objects(seed_organisation(), "Get-Recipient", {"OrganizationalUnit": ou})
    assert [properties["Name"] for _, properties in found] == [
        "Anna (Fabrikam)", "Ben (Fabrikam)", "Clara (Fabrikam)", "Fabrikam Projector", "Fabrikam Room 1",
        "Fabrikam Room 2", "Fabrikam Room 3", "Fabrikam Room Booking"]


def test_an_exclusive_scope_is_stored_exclusive():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        $s = New-ManagementScope -Name 'VIP' -RecipientRestrictionFilter "Office -eq 'Berlin'" -Exclusive -Force
        $a = New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com `
            -ExclusiveRecipientWriteScope VIP
        """)[2] == []
    assert objects(organisation, "Get-ManagementScope", {"Identity": "VIP"}) == [(
        "Microsoft.Exchange.Data.Directory.SystemConfiguration.ManagementScope",
        {"Name": "VIP", "Identity": "VIP", "RecipientFilter": "(Office -eq 'Berlin')", "RecipientRoot": None,
         "ScopeRestrictionType": "RecipientScope", "Exclusive": True})]
    [(_, assignment)] = objects(organisation, "Get-ManagementRoleAssignment", {"RoleAssignee": "info@contoso.com"})
    assert (assignment["CustomRecipientWriteScope"], assignment["ExclusiveRecipientWriteScope"]) == ("VIP", "VIP")


def test_a_role_groups_description_is_cleared_with_an_empty_string():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        $g = New-RoleGroup -Name 'Bookers' -Description 'Room booking'
        Set-RoleGroup -Identity 'Bookers' -Description ''
        """)[2] == []
    assert [p["Description"] for _, p in objects(organisation, "Get-RoleGroup", {"Identity": "Bookers"})] == [""]


def test_an_organisation_wide_application_role_is_reported_in_scope_for_every_mailbox():
    """Test-ServicePrincipalAuthorization, per role: an assignment without a resource scope reaches the whole
    organisation (RBAC for Applications); "Not Run" without -Resource (cmdlet reference)."""
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = {APP_PRINCIPAL}
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App App
        """)[2] == []
    row = ("Microsoft.Exchange.Management.RbacTasks.ServicePrincipalAuthorization",
           {"RoleName": "Application Mail.Read", "GrantedPermissions": "Mail.Read",
            "AllowedResourceScope": "Organization", "ScopeType": "Organization", "InScope": True})
    assert objects(organisation, "Test-ServicePrincipalAuthorization",
                   {"Identity": APP, "Resource": "room-berlin-1@contoso.com"}) == [row]
    assert objects(organisation, "Test-ServicePrincipalAuthorization", {"Identity": APP}) == [
        (row[0], {**row[1], "InScope": "Not Run"})]


@pytest.mark.parametrize("deny_first", [True, False])
def test_a_deny_entry_is_kept_apart_from_the_allow_entry_of_the_same_user(deny_first):
    """Add-MailboxPermission -Deny (a switch) adds a Deny ACE; the user's Allow ACE on the same mailbox stays its own
    entry (cmdlet reference, -Deny), whichever came first."""
    organisation = seed_organisation()
    deny = "$p = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com -Deny -AccessRights SendAs"
    allow = "$q = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User info@contoso.com -AccessRights FullAccess"
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               "\n".join([deny, allow] if deny_first else [allow, deny]))[2] == []
    entry = {"Identity": "room-berlin-1@contoso.com", "User": "info@contoso.com", "IsInherited": False,
             "InheritanceType": "All"}
    entries = [{**entry, "AccessRights": ["SendAs"], "Deny": True}, {**entry, "AccessRights": ["FullAccess"],
                                                                      "Deny": False}]
    assert [p for _, p in objects(organisation, "Get-MailboxPermission", {"Identity": "room-berlin-1@contoso.com",
                                                                           "User": "info@contoso.com"})] == (
        entries if deny_first else entries[::-1])


def test_connect_exchange_online_takes_no_confirm_or_whatif():
    """Connect-ExchangeOnline changes nothing in the organisation: its syntax (ExchangeOnlineManagement cmdlet
    reference) has no -WhatIf / -Confirm."""
    for switch in ("WhatIf", "Confirm"):
        with pytest.raises(ScriptError) as refused:
            online().run(f"Connect-ExchangeOnline -AccessToken eyJ0 -{switch}")
        assert str(refused.value) == ("1:42: Connect-ExchangeOnline: A parameter cannot be found that matches parameter "
                                      f"name '{switch}'.")


@pytest.mark.parametrize("relative", ["None", "organization", "MyGAL", "Self", "MyDistributionGroups"])
def test_a_relative_write_scope_replaces_the_custom_scope(relative):
    """Set-ManagementRoleAssignment -RecipientRelativeWriteScope: "The available types are: None, Organization,
    MyGAL, Self and MyDistributionGroups. If you specify a predefined scope, any custom scope or configured OU …
    is overwritten" (cmdlet reference)."""
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        {ROOMS}
        $a = New-ManagementRoleAssignment -Name 'Rooms A' -Role ApplicationImpersonation -User info@contoso.com `
            -CustomRecipientWriteScope Rooms
        Set-ManagementRoleAssignment -Identity 'Rooms A' -RecipientRelativeWriteScope {relative}
        """)[2] == []
    [(_, assignment)] = objects(organisation, "Get-ManagementRoleAssignment", {"Identity": "Rooms A"})
    assert (assignment["CustomRecipientWriteScope"], assignment["RecipientOrganizationalUnitScope"]) == (None, None)


def test_an_ou_scope_replaces_the_custom_scope():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        {ROOMS}
        $a = New-ManagementRoleAssignment -Name 'Rooms A' -Role ApplicationImpersonation -User info@contoso.com `
            -CustomRecipientWriteScope Rooms
        Set-ManagementRoleAssignment -Identity 'Rooms A' -RecipientOrganizationalUnitScope 'contoso.com/Rooms'
        """)[2] == []
    [(_, assignment)] = objects(organisation, "Get-ManagementRoleAssignment", {"Identity": "Rooms A"})
    assert (assignment["CustomRecipientWriteScope"], assignment["RecipientWriteScope"]) == (None, "OU")


def test_a_deny_access_policy_is_stored_as_deny_access():
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               f"$q = New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com "
               "-AccessRight denyaccess")[2] == []
    assert [p["AccessRight"] for _, p in objects(organisation, "Get-ApplicationAccessPolicy", {})] == ["DenyAccess"]


def test_new_role_assignments_to_a_role_group_an_ou_and_delegating_have_exchanges_properties():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        $d = New-ManagementRoleAssignment -Name 'Delegate' -Role ApplicationImpersonation `
            -SecurityGroup 'organization management' -Delegating
        $o = New-ManagementRoleAssignment -Name 'Rooms OU' -Role ApplicationImpersonation -User info@contoso.com `
            -RecipientOrganizationalUnitScope 'contoso.com/Rooms'
        """)[2] == []
    common = {"Role": "ApplicationImpersonation", **UNSET, "Enabled": True}
    assert objects(organisation, "Get-ManagementRoleAssignment", {"Identity": "Delegate"}) == [(ROLE_ASSIGNMENT_TYPE, {
        "Name": "Delegate", "Identity": "Delegate", **common, "RoleAssigneeName": "Organization Management",
        "RoleAssignee": "Organization Management", "RoleAssigneeType": "RoleGroup",
        "RecipientWriteScope": "Organization", "Delegating": True, "RoleAssignmentDelegationType": "DelegatingOrgWide"})]
    [(_, ou_scoped)] = objects(organisation, "Get-ManagementRoleAssignment", {"Identity": "Rooms OU"})
    assert (ou_scoped["RecipientWriteScope"], ou_scoped["Delegating"], ou_scoped["RoleAssigneeType"]) == (
        "OU", False, "User")
    assert [(p["Name"], p["EffectiveUserName"]) for _, p in objects(
        organisation, "Get-ManagementRoleAssignment", {"Identity": "Rooms OU", "GetEffectiveUsers": True})] == [
        ("Rooms OU", "Info")]


# Required: True in each cmdlet reference's parameter list (in the parameter set exkit's templates use).
MANDATORY = {
    "New-ManagementScope": "Name RecipientRestrictionFilter", "Set-ManagementScope": "Identity",
    "Remove-ManagementScope": "Identity", "New-RoleGroup": "Name", "Set-RoleGroup": "Identity",
    "Remove-RoleGroup": "Identity", "Add-RoleGroupMember": "Identity Member",
    "Remove-RoleGroupMember": "Identity Member", "Get-RoleGroupMember": "Identity",
    "New-ManagementRoleAssignment": "Role", "Set-ManagementRoleAssignment": "Identity",
    "Remove-ManagementRoleAssignment": "Identity", "Add-MailboxPermission": "Identity",
    "Get-MailboxPermission": "Identity", "Remove-MailboxPermission": "Identity",
    "New-PSSession": "ConfigurationName ConnectionUri", "Import-PSSession": "Session", "Remove-PSSession": "Session",
    "New-ServicePrincipal": "AppId ObjectId", "Set-ServicePrincipal": "Identity", "Remove-ServicePrincipal": "Identity",
    "New-ApplicationAccessPolicy": "AppId PolicyScopeGroupId AccessRight", "Set-ApplicationAccessPolicy": "Identity",
    "Remove-ApplicationAccessPolicy": "Identity", "Test-ServicePrincipalAuthorization": "Identity",
}


def test_a_cmdlet_called_without_its_mandatory_parameters_names_each_of_them():
    script = "".join(f"try {{ {cmdlet} }} catch {{ $_.Exception.Message }}\n" for cmdlet in MANDATORY)
    assert run(online(), script) == (0, [
        f"{cmdlet}: Cannot process command because of one or more missing mandatory parameters: {names}."
        for cmdlet, names in MANDATORY.items()], [])


def test_a_role_group_is_removed_with_its_role_assignments():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        $g = New-RoleGroup -Name 'Bookers' -Roles @('ApplicationImpersonation', 'View-Only Recipients')
        Remove-RoleGroup -Identity 'bookers' -Confirm:$false
        Get-RoleGroup -Identity 'Bookers'
        @(Get-ManagementRoleAssignment -RoleAssignee 'Bookers').Count
        """) == (0, ["0"], [f"The operation couldn't be performed because object 'Bookers' couldn't be found on "
                            f"'{SERVER_DC}'.\n    At line:3 char:1"])


def test_users_and_groups_are_listed_apart():
    """Get-User lists user accounts (mail-enabled or not), Get-Group groups (cmdlet reference)."""
    commands = ExchangeCmdlets(seed_organisation("exchange-online")).commands()
    groups = [o.properties["Name"] for o in commands["Get-Group"].run({}, [])]
    users = [o.properties["Name"] for o in commands["Get-User"].run({}, [])]
    assert groups == ["Room Admins", "Berlin Rooms", "Bookable Rooms"]
    assert (len(users), users[:3], set(users) & set(groups)) == (
        42, ["Room Sync Operator", "Exchange Admin", "Anna Adler"], set())


def test_a_service_principals_display_name_is_changed():
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               f"$p = {APP_PRINCIPAL}\nSet-ServicePrincipal -Identity {APP} -DisplayName 'Room booking'")[2] == []
    assert [p["DisplayName"] for _, p in objects(organisation, "Get-ServicePrincipal", {})] == ["Room booking"]


def test_a_role_groups_managers_are_a_list_even_of_one():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               "$g = New-RoleGroup -Name 'Bookers' -ManagedBy admin@contoso.com")[2] == []
    assert [p["ManagedBy"] for _, p in objects(organisation, "Get-RoleGroup", {"Identity": "Bookers"})] == [
        ["admin@contoso.com"]]


def test_a_security_groups_assignments_are_found_by_the_groups_address():
    """-RoleAssignee takes any identity of the assignee: a mail-enabled security group's address finds the
    assignments made to it by name."""
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               "$a = New-ManagementRoleAssignment -Name 'Group viewer' -Role 'View-Only Recipients' "
               "-SecurityGroup bookable-rooms@contoso.com")[2] == []
    assert [p["Name"] for _, p in objects(organisation, "Get-ManagementRoleAssignment",
                                          {"RoleAssignee": "bookable-rooms@contoso.com"})] == ["Group viewer"]


def test_a_management_role_is_assigned_to_a_service_principal_only_if_it_is_an_application_role():
    interpreter = online()
    assert run(interpreter, f"""\
        $p = {APP_PRINCIPAL}
        try {{ New-ManagementRoleAssignment -Role 'View-Only Recipients' -App App -ErrorAction Stop }} catch {{
            $_.CategoryInfo.Category; $_.Exception.Message }}
        """) == (0, ["InvalidArgument", "The role 'View-Only Recipients' can't be assigned to a service principal: only "
                     "'Application …' roles can."], [])


# ------------------------------------------------------------------------------------------------ effective access
def _access_organisation():
    """Two OUs; a Berlin room in an exclusive scope and a Munich room outside it; two security groups that are
    members of each other (a cycle); a role group with a user and a group as members; a linked role group."""
    from toolkit.sandbox.model import ManagementScope, Organisation, Recipient, RoleAssignment, RoleGroup
    users, rooms = "OU=Users,DC=c,DC=com", "OU=Rooms,DC=c,DC=com"
    group_a, group_b = f"CN=Group A,{users}", f"CN=Group B,{users}"

    def box(name, kind, ou, office="", member_of=()):
        alias = name.lower().replace(" ", "-")
        return Recipient(name=name, alias=alias, primary_smtp_address=f"{alias}@c.com", recipient_type_details=kind,
                         office=office, distinguished_name=f"CN={name},{ou}", member_of=list(member_of))

    def grant(name, assignee, kind, **scope):
        return RoleAssignment(name=name, role="Mail Recipients", role_assignee=assignee, role_assignee_type=kind,
                              **scope)

    return Organisation(
        organizational_units=[users, rooms], management_roles=["Mail Recipients"],
        recipients=[box("Room Berlin", "RoomMailbox", rooms, "Berlin"), box("Room Munich", "RoomMailbox", rooms),
                    box("Ulla", "UserMailbox", users), box("Anna", "UserMailbox", users, member_of=[group_a]),
                    box("Ben", "UserMailbox", users, member_of=[group_b]),
                    box("Group A", "MailUniversalSecurityGroup", users, member_of=[group_b]),
                    box("Group B", "MailUniversalSecurityGroup", users, member_of=[group_a])],
        management_scopes=[ManagementScope(name="Berlin", recipient_filter="Office -eq 'Berlin'", exclusive=True),
                           ManagementScope(name="Rooms root", recipient_filter="RecipientTypeDetails -eq 'RoomMailbox'",
                                           recipient_root=rooms)],
        role_groups=[RoleGroup(name="RG", members=["group-a@c.com", "ulla@c.com"]),
                     RoleGroup(name="Linked", linked_foreign_group="FOREST\\Admins")],
        role_assignments=[grant("Org", "RG", "RoleGroup"), grant("OU", "ulla@c.com", "User",
                                                                 recipient_organizational_unit_scope=rooms),
                          grant("Exclusive", "Group B", "SecurityGroup", custom_recipient_write_scope="Berlin"),
                          grant("Gone", "ulla@c.com", "User", custom_recipient_write_scope="Deleted scope"),
                          grant("Delegating", "ulla@c.com", "User", delegating=True),
                          grant("Linked", "Linked", "RoleGroup"),
                          grant("Root", "ulla@c.com", "User", custom_recipient_write_scope="Rooms root"),
                          grant("Off", "ulla@c.com", "User", enabled=False)])


@pytest.mark.parametrize("recipient, rows", [
    # In the exclusive scope: only an assignment whose scope is exclusive and matches writes it ("Understanding
    # exclusive scopes": regular scopes no longer reach it); a group's nested members count once, the cycle ends.
    ("room-berlin@c.com", [("Exclusive", "Anna"), ("Exclusive", "Ben")]),
    # Outside it: organisation-wide (the role group's members, its group expanded), the OU, the scope with a
    # RecipientRoot; a disabled one too (-Enabled filters it, not -WritableRecipient); a deleted scope reaches
    # nothing; delegating assignments write nothing.
    ("room-munich@c.com", [("Org", "Anna"), ("Org", "Ben"), ("Org", "Ulla"), ("OU", "Ulla"),
                           ("Linked", "All Linked Group Members"), ("Root", "Ulla"), ("Off", "Ulla")]),
    ("ulla@c.com", [("Org", "Anna"), ("Org", "Ben"), ("Org", "Ulla"), ("Linked", "All Linked Group Members"),
                    ("Off", "Ulla")]),
])
def test_who_can_write_a_recipient_is_listed_per_assignment_and_effective_user(recipient, rows):
    """Get-ManagementRoleAssignment -WritableRecipient R -GetEffectiveUsers (cmdlet reference): every assignment
    whose write scope contains R, one row per user it reaches through role groups and nested security groups (a
    linked role group as the placeholder "All Linked Group Members")."""
    found = objects(_access_organisation(), "Get-ManagementRoleAssignment",
                    {"WritableRecipient": recipient, "GetEffectiveUsers": True})
    assert [(p["Name"], p["EffectiveUserName"]) for _, p in found] == rows


def test_effective_users_without_a_writable_recipient_list_every_assignment():
    found = objects(_access_organisation(), "Get-ManagementRoleAssignment", {"GetEffectiveUsers": True,
                                                                             "Enabled": True})
    assert [(p["Name"], p["EffectiveUserName"]) for _, p in found] == [
        ("Org", "Anna"), ("Org", "Ben"), ("Org", "Ulla"), ("OU", "Ulla"), ("Exclusive", "Anna"), ("Exclusive", "Ben"),
        ("Gone", "Ulla"), ("Delegating", "Ulla"), ("Linked", "All Linked Group Members"), ("Root", "Ulla")]


def test_a_writable_recipient_that_is_not_there_is_not_found():
    interpreter = Interpreter(ExchangeCmdlets(_access_organisation()).commands())
    assert run(interpreter, "Get-ManagementRoleAssignment -WritableRecipient nobody@c.com") == (0, [], [
        f"The operation couldn't be performed because object 'nobody@c.com' couldn't be found on '{SERVER_DC}'.\n"
        "    At line:1 char:1"])


def test_an_online_assignment_list_is_filtered_by_assignee_type_and_by_the_apps_id():
    """-RoleAssigneeType takes the documented RoleAssigneeType values (ServicePrincipal is none of them:
    Microsoft365DSC filters apps' assignments itself); -RoleAssignee takes an app's id as well as its object id."""
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = {APP_PRINCIPAL}
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App App
        $u = New-ManagementRoleAssignment -Name 'Viewer' -Role 'View-Only Recipients' -User info@contoso.com
        """)[2] == []
    assert [p["Name"] for _, p in objects(organisation, "Get-ManagementRoleAssignment", {"RoleAssignee": APP})] == [
        "Application Mail.Read-App"]
    assert [p["Name"] for _, p in objects(organisation, "Get-ManagementRoleAssignment",
                                          {"RoleAssigneeType": "user"})] == ["Viewer"]
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        try { Get-ManagementRoleAssignment -RoleAssigneeType ServicePrincipal -ErrorAction Stop } catch {
            $_.CategoryInfo.Category; $_.Exception.Message }
        """) == (0, ["InvalidArgument", "Cannot bind parameter 'RoleAssigneeType'. Cannot convert value "
                     "\"ServicePrincipal\" to type \"Microsoft.Exchange.Data.Directory.SystemConfiguration."
                     "RoleAssigneeType\"."], [])
    # every value the cmdlet reference documents is taken, in any case
    for kind in ("User", "SecurityGroup", "RoleAssignmentPolicy", "ForeignSecurityPrincipal", "RoleGroup",
                 "LinkedRoleGroup", "Computer", "roleassignmentpolicy"):
        assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
            $found = Get-ManagementRoleAssignment -RoleAssigneeType '{kind}' -ErrorAction Stop
            'taken'
            """) == (0, ["taken"], []), kind


def test_an_apps_resource_scope_is_changed_and_a_users_assignment_takes_none():
    organisation = seed_organisation("exchange-online")
    interpreter = Interpreter(ExchangeCmdlets(organisation).commands())
    assert run(interpreter, f"""\
        $p = {APP_PRINCIPAL}
        {ROOMS}
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App App
        Set-ManagementRoleAssignment -Identity 'Application Mail.Read-App' -CustomResourceScope rooms
        $u = New-ManagementRoleAssignment -Name 'Viewer' -Role 'View-Only Recipients' -User info@contoso.com
        try {{ Set-ManagementRoleAssignment -Identity Viewer -CustomResourceScope Rooms -ErrorAction Stop }} catch {{
            $_.Exception.Message }}
        """) == (0, ["-CustomResourceScope applies only to assignments of service principals."], [])
    [(_, app)] = objects(organisation, "Get-ManagementRoleAssignment", {"Identity": "Application Mail.Read-App"})
    assert (app["CustomResourceScope"], app["RecipientWriteScope"]) == ("Rooms", "CustomRecipientScope")
    [(_, viewer)] = objects(organisation, "Get-ManagementRoleAssignment", {"Identity": "Viewer"})
    assert (viewer["CustomResourceScope"], viewer["RecipientWriteScope"]) == (None, "Organization")


# ------------------------------------------------------------------------------------------------ refusals
def test_a_read_the_organisation_fails_is_a_read_error_not_a_not_found():
    """A throttled or access-denied Get-* names no missing object (Organisation.failing_reads); a read of the whole
    list, naming no identity, still answers."""
    organisation = seed_organisation()
    organisation.failing_reads["rooms"] = "The server is busy."
    interpreter = Interpreter(ExchangeCmdlets(organisation).commands())
    assert run(interpreter, f"""\
        {ROOMS}
        try {{ Get-ManagementScope -Identity ROOMS -ErrorAction Stop }} catch {{
            $_.CategoryInfo.Category; $_.CategoryInfo.Reason; $_.Exception.Message }}
        foreach ($s in @(Get-ManagementScope)) {{ $s.Name }}
        """) == (0, ["ReadError", "ADTransientException", "The server is busy.", "Hosting tenants", "Rooms"], [])


@pytest.mark.parametrize("line", ["Set-ManagementScope -Identity 'ROOMS' -RecipientRestrictionFilter \"Office -eq 'X'\"",
                                  "New-ManagementScope -Name Rooms -RecipientRestrictionFilter \"Office -eq 'X'\""])
def test_a_change_the_organisation_refuses_is_permission_denied(line):
    """A change the account may read but not make (Organisation.failing_writes), named by -Identity or -Name: the
    cmdlet is refused and nothing changes."""
    organisation = seed_organisation()
    organisation.failing_writes["rooms"] = "Active Directory operation failed: access denied."
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        try {{ {line} -ErrorAction Stop }} catch {{
            $_.CategoryInfo.Category; $_.CategoryInfo.Reason; $_.Exception.Message }}
        foreach ($s in @(Get-ManagementScope)) {{ $s.Name }}
        """) == (0, ["PermissionDenied", "OperationRequiresGroupManagerException",
                     "Active Directory operation failed: access denied.", "Hosting tenants"], [])


def test_a_scope_is_renamed_and_an_absent_one_is_not_removed():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        {ROOMS}
        Set-ManagementScope -Identity rooms -Name 'Room scope'
        Remove-ManagementScope -Identity Rooms -Confirm:$false
        """) == (0, [], [f"The operation couldn't be performed because object 'Rooms' couldn't be found on "
                         f"'{SERVER_DC}'.\n    At line:3 char:1"])
    assert [p["Name"] for _, p in objects(organisation, "Get-ManagementScope", {})] == ["Hosting tenants", "Room scope"]


def test_a_distribution_list_is_no_role_group_member():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        try { Add-RoleGroupMember -Identity 'Organization Management' -Member berlin-rooms@contoso.com `
            -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.Exception.Message }
        """) == (0, ["InvalidArgument", "The recipient \"berlin-rooms@contoso.com\" isn't a security principal: only "
                     "users and security groups can be role group members."], [])


def test_a_role_groups_managers_are_replaced():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        $g = New-RoleGroup -Name 'Bookers' -ManagedBy admin@contoso.com
        Set-RoleGroup -Identity Bookers -ManagedBy @('info@contoso.com', 'admin@contoso.com')
        """)[2] == []
    assert [p["ManagedBy"] for _, p in objects(organisation, "Get-RoleGroup", {"Identity": "Bookers"})] == [
        ["info@contoso.com", "admin@contoso.com"]]


def test_a_group_is_found_by_its_identity():
    [(_, group)] = objects(seed_organisation(), "Get-Group", {"Identity": "bookable-rooms@contoso.com"})
    assert (group["Name"], group["RecipientTypeDetails"]) == ("Bookable Rooms", "MailUniversalSecurityGroup")


# ------------------------------------------------------------------------------------------------ mailbox permissions
def test_mailbox_permissions_add_up_per_user_and_come_off_right_by_right():
    """Add-MailboxPermission for a user who holds an entry adds the rights to it; Remove-MailboxPermission takes off
    the rights named and drops the entry with its last right (cmdlet reference)."""
    organisation = seed_organisation()
    room = "room-berlin-1@contoso.com"
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = Add-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights SendAs
        $p = Add-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights @('FullAccess', 'DeleteItem')
        foreach ($right in $p.AccessRights) {{ $right }}
        Remove-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights fullaccess -Confirm:$false
        """) == (0, ["DeleteItem", "FullAccess", "SendAs"], [])
    assert [p["AccessRights"] for _, p in objects(organisation, "Get-MailboxPermission", {"Identity": room})] == [
        ["FullAccess", "ReadPermission"], ["DeleteItem", "SendAs"]]
    assert [p["User"] for _, p in objects(organisation, "Get-MailboxPermission", {"Identity": room})] == [
        "NT AUTHORITY\\SELF", "info@contoso.com"]
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        Remove-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights @('DeleteItem', 'SendAs') -Confirm:$false
        """) == (0, [], [])
    assert [p["User"] for _, p in objects(organisation, "Get-MailboxPermission", {"Identity": room})] == [
        "NT AUTHORITY\\SELF"]


@pytest.mark.parametrize("line", [
    "Add-MailboxPermission -Identity room-berlin-1@contoso.com -User nobody@contoso.com -AccessRights FullAccess",
    "Get-MailboxPermission -Identity room-berlin-1@contoso.com -User nobody@contoso.com",
    "Remove-MailboxPermission -Identity room-berlin-1@contoso.com -User nobody@contoso.com -AccessRights FullAccess "
    "-Confirm:$false",
])
def test_a_permission_for_a_user_who_is_not_there_is_not_found(line):
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), line) == (0, [], [
        f"The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found on "
        f"'{SERVER_DC}'.\n    At line:1 char:1"])


# ------------------------------------------------------------------------------------------------ sessions, online
def test_an_imported_session_is_a_module():
    """Import-PSSession returns the temporary module (PSModuleInfo, tmp_…); a removed session is closed."""
    commands = ExchangeCmdlets(seed_organisation()).commands()
    [session] = commands["New-PSSession"].run({"ConfigurationName": "Microsoft.Exchange",
                                               "ConnectionUri": "http://ex01.contoso.com/PowerShell/"}, [])
    assert [(o.type_name, o.properties) for o in commands["Import-PSSession"].run({"Session": session}, [])] == [
        ("System.Management.Automation.PSModuleInfo", {"Name": "tmp_exchange_session"})]


def test_an_imported_session_is_a_module_until_the_session_is_removed():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        $s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri http://ex01.contoso.com/PowerShell/
        (Import-PSSession $s -DisableNameChecking).Name
        Remove-PSSession $s
        $s.State
        try { Import-PSSession $s -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.Exception.Message }
        try { Import-PSSession 'ex01' -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.Exception.Message }
        """) == (0, ["tmp_exchange_session", "Closed", "InvalidOperation", "The session is closed.",
                     "InvalidArgument", "Cannot bind parameter 'Session'. The value is not a PSSession."], [])


@pytest.mark.parametrize("line, missing", [
    ("Get-ServicePrincipal -Identity nobody", "nobody"),
    ("Get-ApplicationAccessPolicy -Identity 'contoso.onmicrosoft.com\\nobody'", "contoso.onmicrosoft.com\\nobody"),
    (f"New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId nobody@contoso.com -AccessRight RestrictAccess",
     "nobody@contoso.com"),
    (f"Test-ServicePrincipalAuthorization -Identity {APP} -Resource nobody@contoso.com", "nobody@contoso.com"),
    (f"Test-ServicePrincipalAuthorization -Identity {APP} -Resource bookable-rooms@contoso.com",
     "bookable-rooms@contoso.com"),  # a group is no mailbox
])
def test_an_online_object_that_is_not_there_is_not_found(line, missing):
    interpreter = online()
    assert run(interpreter, f"$p = {APP_PRINCIPAL}\n{line}") == (0, [], [
        f"The operation couldn't be performed because object '{missing}' couldn't be found on '{ONLINE_DC}'.\n"
        "    At line:2 char:1"])


def test_an_access_policy_is_read_by_its_identity():
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               f"$q = New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com "
               "-AccessRight RestrictAccess")[2] == []
    assert [p["Identity"] for _, p in objects(organisation, "Get-ApplicationAccessPolicy",
                                              {"Identity": POLICY.upper()})] == [POLICY]


def test_import_pssession_is_powershells_own_cmdlet_and_stops_on_the_scripts_preference():
    """Import-PSSession is a compiled cmdlet of Microsoft.PowerShell.Utility, not a function of the imported
    module: a script-scope $ErrorActionPreference = 'Stop' makes its error stop the script (about_Preference_Variables;
    only script-module functions are blind to the caller's preference)."""
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        $s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri http://ex01.contoso.com/PowerShell/
        Remove-PSSession $s
        $ErrorActionPreference = 'Stop'
        Import-PSSession $s
        'not reached'
        """) == (1, [], ["The session is closed.\n    At line:4 char:1\n    + CategoryInfo: InvalidOperation"])


@pytest.mark.parametrize("line", ["Get-ServicePrincipal App", f"Set-ServicePrincipal {APP} -DisplayName 'Renamed'"])
def test_a_service_principal_is_named_by_position(line):
    """-Identity is positional: Get-ServicePrincipal's "Position: 0"; Set-ServicePrincipal's syntax
    "Set-ServicePrincipal [-Identity] <ServicePrincipalIdParameter>" (cmdlet reference)."""
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"$p = {APP_PRINCIPAL}\n"
               f"$r = {line}\n@($r).Count")[1:] == (["1" if line.startswith("Get") else "0"], [])
    assert [p["DisplayName"] for _, p in objects(organisation, "Get-ServicePrincipal", {})] == [
        "App" if line.startswith("Get") else "Renamed"]


# Each cmdlet's Boolean and SwitchParameter parameters, as each cmdlet reference types them. A Boolean or a switch
# takes only a Boolean or a number: the string 'maybe' is refused by the binder before the cmdlet runs.
TYPED = {
    "Get-ManagementScope": "Exclusive:bool Orphan:switch",
    "New-ManagementScope": "Exclusive:switch Force:switch",
    "Set-ManagementScope": "Force:switch", "Remove-ManagementScope": "Force:switch",
    "Set-RoleGroup": "BypassSecurityGroupManagerCheck:switch Force:switch",
    "Remove-RoleGroup": "BypassSecurityGroupManagerCheck:switch",
    "Add-RoleGroupMember": "BypassSecurityGroupManagerCheck:switch",
    "Remove-RoleGroupMember": "BypassSecurityGroupManagerCheck:switch",
    "New-ManagementRoleAssignment": "Delegating:switch",
    "Get-ManagementRoleAssignment": "Delegating:bool Enabled:bool GetEffectiveUsers:switch",
    "Set-ManagementRoleAssignment": "Enabled:bool Force:switch", "Remove-ManagementRoleAssignment": "Force:switch",
    "Add-MailboxPermission": "AutoMapping:bool Deny:switch", "Get-MailboxPermission": "Owner:switch",
    "Remove-MailboxPermission": "Deny:switch", "Get-OrganizationalUnit": "SingleNodeOnly:switch",
    "Import-PSSession": "DisableNameChecking:switch AllowClobber:switch", "Connect-ExchangeOnline": "ShowBanner:switch",
}


def test_each_boolean_and_switch_parameter_takes_only_a_boolean():
    typed = [(cmdlet, *item.split(":")) for cmdlet, items in TYPED.items() for item in items.split()]
    script = "".join(f"try {{ {cmdlet} -{name}:'maybe' }} catch {{ $_.Exception.Message }}\n"
                     for cmdlet, name, _ in typed)
    assert run(online(), script) == (0, [
        f"{cmdlet}: Cannot process argument transformation on parameter '{name}'. Cannot convert value \"maybe\" to "
        "type \"System.Boolean\". Boolean parameters accept only Boolean values and numbers, such as $True, $False, 1 "
        "or 0." for cmdlet, name, _ in typed], [])
    # A switch needs no value; a Boolean does.
    switches = [(cmdlet, name) for cmdlet, name, kind in typed if kind == "switch"]
    commands = ExchangeCmdlets(seed_organisation("exchange-online")).commands()
    assert [(cmdlet, name) for cmdlet, name, _ in typed if commands[cmdlet].is_switch(name)] == switches


def test_enabled_and_delegating_filters_take_booleans_as_a_script_writes_them():
    organisation = seed_organisation()
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        $a = New-ManagementRoleAssignment -Name 'Rooms A' -Role ApplicationImpersonation -User info@contoso.com
        Set-ManagementRoleAssignment 'Rooms A' -Enabled 0
        foreach ($a in @(Get-ManagementRoleAssignment -Enabled $false)) { $a.Name }
        foreach ($a in @(Get-ManagementRoleAssignment -Delegating $true -Role 'role management')) { $a.Name }
        """) == (0, ["Rooms A", "Role Management-Organization Management-Delegating"], [])


def test_an_assignment_that_is_not_there_is_not_found():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()),
               "Get-ManagementRoleAssignment -Identity 'No such assignment'") == (0, [], [
        f"The operation couldn't be performed because object 'No such assignment' couldn't be found on "
        f"'{SERVER_DC}'.\n    At line:1 char:1"])


def test_mailbox_permissions_are_read_for_one_user():
    organisation = seed_organisation()
    room = "room-berlin-1@contoso.com"
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = Add-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights FullAccess
        $p = Add-MailboxPermission -Identity {room} -User admin@contoso.com -AccessRights SendAs
        """)[2] == []
    assert [(p["User"], p["AccessRights"]) for _, p in objects(organisation, "Get-MailboxPermission",
                                                               {"Identity": room, "User": "Admin"})] == [
        ("admin@contoso.com", ["SendAs"])]


# ------------------------------------------------------------------------------------------------ more of each cmdlet
CHANGES = ["New-ManagementScope", "Set-ManagementScope", "Remove-ManagementScope", "New-RoleGroup", "Set-RoleGroup",
           "Remove-RoleGroup", "Add-RoleGroupMember", "Remove-RoleGroupMember", "New-ManagementRoleAssignment",
           "Set-ManagementRoleAssignment", "Remove-ManagementRoleAssignment", "Add-MailboxPermission",
           "Remove-MailboxPermission", "New-ServicePrincipal", "Set-ServicePrincipal", "Remove-ServicePrincipal",
           "New-ApplicationAccessPolicy", "Set-ApplicationAccessPolicy", "Remove-ApplicationAccessPolicy"]


def test_every_change_takes_confirm_and_whatif():
    """Every cmdlet that changes the organisation supports ShouldProcess (-Confirm, -WhatIf: each cmdlet
    reference's syntax): binding them fails nowhere; what is missing then is the cmdlet's own mandatory parameters."""
    script = "".join(f"try {{ {cmdlet} -Confirm:$false -WhatIf }} catch {{ $_.Exception.Message }}\n"
                     for cmdlet in CHANGES) + "Disconnect-ExchangeOnline -Confirm:$false\n"
    assert run(online(), script) == (0, [
        f"{cmdlet}: Cannot process command because of one or more missing mandatory parameters: {MANDATORY[cmdlet]}."
        for cmdlet in CHANGES], [])


POSITIONAL_IDENTITY = [
    "Get-ManagementScope", "Set-ManagementScope", "Remove-ManagementScope", "Get-RoleGroup", "Set-RoleGroup",
    "Remove-RoleGroup", "Add-RoleGroupMember", "Remove-RoleGroupMember", "Get-RoleGroupMember",
    "Get-ManagementRoleAssignment", "Set-ManagementRoleAssignment", "Remove-ManagementRoleAssignment",
    "Add-MailboxPermission", "Get-MailboxPermission", "Remove-MailboxPermission", "Get-Recipient", "Get-User",
    "Get-Group", "Get-OrganizationalUnit", "Get-ServicePrincipal", "Set-ServicePrincipal", "Remove-ServicePrincipal",
    "Get-ApplicationAccessPolicy", "Set-ApplicationAccessPolicy", "Remove-ApplicationAccessPolicy",
    "Test-ServicePrincipalAuthorization"]


def test_every_identity_binds_by_position():
    """-Identity is the first positional parameter of each of these cmdlets ([-Identity] in each cmdlet reference's
    syntax): an identity written without its name is looked up (and not found here)."""
    member = {"Add-RoleGroupMember": " -Member info@contoso.com", "Remove-RoleGroupMember": " -Member info@contoso.com"}
    script = "".join(f"try {{ {cmdlet} 'Nowhere'{member.get(cmdlet, '')} -ErrorAction Stop }} catch {{ "
                     "$_.Exception.Message }\n" for cmdlet in POSITIONAL_IDENTITY)
    assert run(online(), script) == (0, [f"The operation couldn't be performed because object 'Nowhere' couldn't be "
                                         f"found on '{ONLINE_DC}'."] * len(POSITIONAL_IDENTITY), [])


def test_a_service_principal_is_created_once_in_lower_case_and_removed_with_its_roles():
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = New-ServicePrincipal -AppId {APP.upper()} -ObjectId 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21
        $p.DisplayName
        try {{ New-ServicePrincipal -AppId x -ObjectId 0B7C2E44-9D1A-4E5F-8C3B-7A6D5E4F3C21 -ErrorAction Stop }} catch {{
            $_.CategoryInfo.Reason; $_.Exception.Message }}
        try {{ New-ServicePrincipal -AppId {APP} -ObjectId y -ErrorAction Stop }} catch {{ $_.Exception.Message }}
        {ROOMS}
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App $p.AppId -CustomResourceScope Rooms
        $a.Name
        try {{ Remove-ManagementScope Rooms -Confirm:$false -ErrorAction Stop }} catch {{ $_.Exception.Message }}
        foreach ($row in @(Test-ServicePrincipalAuthorization $p.AppId -Resource info@contoso.com)) {{ $row.InScope }}
        Remove-ServicePrincipal $p.AppId -Confirm:$false
        @(Get-ManagementRoleAssignment -Role 'Application Mail.Read').Count
        @(Get-ServicePrincipal).Count
        """) == (0, [
        APP, "ADObjectAlreadyExistsException",
        "A service principal with AppId 'x' or ObjectId '0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21' already exists.",
        f"A service principal with AppId '{APP}' or ObjectId 'y' already exists.",
        f"Application Mail.Read-{APP}",
        f"Management scope \"Rooms\" can't be deleted because it's referenced by role assignments: Application "
        f"Mail.Read-{APP}.",
        "False",  # a shared mailbox is outside the Rooms scope
        "0", "0"], [])


def test_access_policies_are_made_one_per_app_and_their_description_changes():
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $q = New-ApplicationAccessPolicy -AppId @('{APP}', 'AAAA') -PolicyScopeGroupId bookable-rooms@contoso.com `
            -AccessRight RestrictAccess
        foreach ($x in $q) {{ $x.Identity }}
        Set-ApplicationAccessPolicy -Identity $q[1].Identity -Description 'new'
        (Get-ApplicationAccessPolicy -Identity $q[1].Identity).Description
        Set-ApplicationAccessPolicy -Identity $q[1].Identity -Description ''
        (Get-ApplicationAccessPolicy -Identity $q[1].Identity).Description
        try {{ New-ApplicationAccessPolicy -AppId x -PolicyScopeGroupId bookable-rooms@contoso.com -AccessRight Allow `
            -ErrorAction Stop }} catch {{ $_.CategoryInfo.Category; $_.Exception.Message }}
        """) == (0, [POLICY, "contoso.onmicrosoft.com\\aaaa:bookable-rooms@contoso.com", "new", "", "InvalidArgument",
                     'Cannot convert value "Allow" to type "ApplicationAccessPolicyAccessRight".'], [])


def test_remote_sessions_are_numbered_and_refused_like_powershell_refuses_them():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        try { New-PSSession -ConfigurationName Microsoft.PowerShell -ConnectionUri http://ex01/PowerShell/ `
            -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.Exception.Message }
        try { New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri http://ex01/PowerShell/ `
            -Authentication Basic -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.Exception.Message }
        $s = New-PSSession -ConfigurationName Microsoft.Exchange -ConnectionUri http://ex01/PowerShell/
        $t = New-PSSession -ConfigurationName microsoft.exchange -ConnectionUri http://ex02/PowerShell/
        $t.Id
        $t.Name
        $t.ConfigurationName
        """) == (0, ["OpenError", "The WS-Management service cannot process the request. Cannot find the "
                                  "Microsoft.PowerShell session configuration.",
                     "InvalidArgument", 'Cannot convert value "Basic" to type '
                                        '"System.Management.Automation.Runspaces.AuthenticationMechanism".',
                     "2", "WinRM2", "Microsoft.Exchange"], [])


def test_role_assignments_get_free_names_and_their_scopes_are_checked():
    long_name = "x" * 65
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), f"""\
        {ROOMS}
        $a = New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com
        $b = New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com
        $a.Name
        $b.Name
        try {{ New-ManagementRoleAssignment -Name '{long_name}' -Role ApplicationImpersonation -User info@contoso.com `
            -ErrorAction Stop }} catch {{ $_.CategoryInfo.Category; $_.Exception.Message }}
        try {{ New-ManagementRoleAssignment -Role ApplicationImpersonation -Policy 'Default Role Assignment Policy' `
            -ErrorAction Stop }} catch {{ $_.CategoryInfo.Category; $_.Exception.Message }}
        try {{ New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com `
            -CustomRecipientWriteScope Nowhere -ErrorAction Stop }} catch {{ $_.Exception.Message }}
        try {{ New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com `
            -CustomRecipientWriteScope Rooms -RecipientOrganizationalUnitScope contoso.com/Rooms -ErrorAction Stop }} catch {{
            $_.Exception.Message }}
        try {{ New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com `
            -ExclusiveRecipientWriteScope Rooms -ErrorAction Stop }} catch {{ $_.Exception.Message }}
        try {{ New-ManagementRoleAssignment -Role ApplicationImpersonation -User info@contoso.com `
            -ExclusiveRecipientWriteScope Rooms -CustomRecipientWriteScope Rooms -ErrorAction Stop }} catch {{
            $_.Exception.Message }}
        @(Get-ManagementRoleAssignment -RoleAssignee info@contoso.com).Count
        """) == (0, [
        "ApplicationImpersonation-info@contoso.com", "ApplicationImpersonation-info@contoso.com1",
        "InvalidArgument", "The length of the property is too long. The maximum length is 64 and the length of the "
                           "value provided is 65.",
        "NotImplemented", "Assignment policies are not simulated by the sandbox.",
        f"The operation couldn't be performed because object 'Nowhere' couldn't be found on '{SERVER_DC}'.",
        "The parameters CustomRecipientWriteScope and RecipientOrganizationalUnitScope can't be used together.",
        "The management scope 'Rooms' isn't an exclusive scope.",
        "The parameter ExclusiveRecipientWriteScope can't be used with other recipient write scopes.", "2"], [])


def test_a_scopes_root_is_set_cleared_and_checked():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), f"""\
        {ROOMS} -RecipientRoot 'OU=Rooms,DC=contoso,DC=com'
        $r.RecipientRoot
        Set-ManagementScope Rooms -RecipientRoot ''
        $null -eq (Get-ManagementScope Rooms).RecipientRoot
        Set-ManagementScope Rooms -RecipientRoot 'contoso.com/Users' -RecipientRestrictionFilter "Office -eq 'Berlin'"
        (Get-ManagementScope Rooms).RecipientRoot
        (Get-ManagementScope Rooms).RecipientFilter
        try {{ New-ManagementScope -Name R2 -RecipientRestrictionFilter "Office -eq 'x'" `
            -RecipientRoot 'contoso.com/Nowhere' -ErrorAction Stop }} catch {{ $_.Exception.Message }}
        """) == (0, ["contoso.com/Rooms", "True", "contoso.com/Users", "(Office -eq 'Berlin')",
                     "The operation couldn't be performed because object 'contoso.com/Nowhere' couldn't be found on "
                     f"'{SERVER_DC}'."], [])


def test_mailbox_permission_arguments_are_checked():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        try { Add-MailboxPermission room-berlin-1@contoso.com -User info@contoso.com -ErrorAction Stop } catch {
            $_.CategoryInfo.Category; $_.Exception.Message }
        try { Add-MailboxPermission room-berlin-1@contoso.com -User info@contoso.com -AccessRights Read `
            -ErrorAction Stop } catch { $_.Exception.Message }
        try { Add-MailboxPermission room-berlin-1@contoso.com -User info@contoso.com -AccessRights FullAccess `
            -InheritanceType Some -ErrorAction Stop } catch { $_.Exception.Message }
        try { Remove-MailboxPermission room-berlin-1@contoso.com -User info@contoso.com -AccessRights FullAccess `
            -Confirm:$false -ErrorAction Stop } catch { $_.CategoryInfo.Category; $_.Exception.Message }
        """) == (0, ["InvalidArgument", "The parameters User and AccessRights are required.",
                     "Cannot bind parameter 'AccessRights' to the target. Cannot convert value \"Read\" to type "
                     "\"MailboxRights\".",
                     "Cannot bind parameter 'InheritanceType'. Cannot convert value \"Some\" to type "
                     "\"ActiveDirectorySecurityInheritance\".",
                     "InvalidOperation", "Can't remove the access control entry on the object \"CN=Room Berlin 1,"
                     "OU=Rooms,DC=contoso,DC=com\" for account \"info@contoso.com\" because the ACE doesn't exist on "
                     "the object."], [])


def test_recipients_are_filtered_by_opath_and_only_mail_enabled_ones_are_recipients():
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        try { Get-Recipient -RecipientPreviewFilter "Office -eq" -ErrorAction Stop } catch {
            $_.CategoryInfo.Category; $_.Exception.Message }
        foreach ($x in @(Get-Recipient -Filter "Office -eq 'London'")) { $x.Name }
        foreach ($x in @(Get-Recipient -RecipientPreviewFilter "Office -eq 'London'" -Filter "Office -eq 'Oslo'")) {
            $x.Name }
        Get-Recipient 'CN=Room Sync Operator,OU=Users,DC=contoso,DC=com'
        """) == (0, ["InvalidArgument", "Invalid filter syntax. expected a quoted value after -eq, found 'the end of "
                                        "the filter' (position 11)"]
                 + ["Clara Costa", "Greta Adler", "Karla Engel", "Olga Costa", "Room London 1", "Room London 2",
                    "Sven Adler", "Willem Engel"] * 2,
                 ["The operation couldn't be performed because object 'CN=Room Sync Operator,OU=Users,DC=contoso,"
                  f"DC=com' couldn't be found on '{SERVER_DC}'.\n    At line:6 char:1"])


def test_a_role_group_with_a_member_that_cannot_be_one_is_not_created():
    """Everything New-RoleGroup is given is checked before the group exists: no half-made group."""
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        try { New-RoleGroup -Name G -Members @('info@contoso.com', 'berlin-rooms@contoso.com') -ErrorAction Stop }
        catch { $_.Exception.Message }
        @(Get-RoleGroup -Identity G -ErrorAction SilentlyContinue).Count
        """) == (0, ["The recipient \"berlin-rooms@contoso.com\" isn't a security principal: only users and security "
                     "groups can be role group members.", "0"], [])


def test_a_scope_no_assignment_uses_is_removed_whatever_its_name():
    """Remove-ManagementScope refuses only a scope an assignment uses ("You can't remove a management scope if it's
    associated with a management role assignment", cmdlet reference): organisation-wide assignments use none, so a
    scope is removed whatever its name, even one that reads like a placeholder."""
    assert run(Interpreter(ExchangeCmdlets(seed_organisation()).commands()), """\
        $s = New-ManagementScope -Name XXXX -RecipientRestrictionFilter "Office -eq 'Oslo'"
        Remove-ManagementScope XXXX -Confirm:$false
        foreach ($s in @(Get-ManagementScope)) { $s.Name }
        """) == (0, ["Hosting tenants"], [])


@pytest.mark.parametrize("scope, kind", [("bookable-rooms@contoso.com", "MailUniversalSecurityGroup"),
                                         ("anna.adler@contoso.com", "UserMailbox"),
                                         ("partner@fabrikam.com", "MailUser")])
def test_an_access_policy_is_scoped_to_any_security_principal_with_mail(scope, kind):
    """-PolicyScopeGroupId: "Valid recipient types are security principals …: UserMailbox, MailUser,
    MailUniversalSecurityGroup" (New-ApplicationAccessPolicy reference); a shared mailbox is refused (see above)."""
    from toolkit.sandbox.model import Recipient

    organisation = seed_organisation("exchange-online")
    organisation.recipients.append(Recipient(name="Partner", alias="partner", primary_smtp_address="partner@fabrikam.com",
                                             recipient_type_details="MailUser",
                                             distinguished_name="CN=Partner,OU=Users,DC=contoso,DC=com"))
    assert organisation.recipient(scope).recipient_type_details == kind
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()),
               f"$q = New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId {scope} -AccessRight DenyAccess\n"
               "$q.IsValid") == (0, ["True"], [])


def test_connect_exchange_online_without_an_app_or_a_token_is_an_invalid_argument():
    assert run(online(), "try { Connect-ExchangeOnline -Organization contoso.onmicrosoft.com -ErrorAction Stop } "
                         "catch { $_.CategoryInfo.Category; $_.Exception.Message }") == (0, [
        "InvalidArgument", "Connect-ExchangeOnline needs -AppId with a certificate and -Organization, or -AccessToken."],
        [])


def test_a_deny_entry_is_removed_with_deny_and_the_allow_entry_stays():
    """Remove-MailboxPermission -Deny removes the Deny ACE (cmdlet reference, -Deny); the Allow ACE of the same
    user and right is another entry and stays."""
    organisation = seed_organisation()
    room = "room-berlin-1@contoso.com"
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = Add-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights FullAccess
        $q = Add-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights FullAccess -Deny
        Remove-MailboxPermission -Identity {room} -User info@contoso.com -AccessRights FullAccess -Deny -Confirm:$false
        """)[2] == []
    assert [(p["AccessRights"], p["Deny"]) for _, p in objects(organisation, "Get-MailboxPermission",
                                                               {"Identity": room, "User": "info@contoso.com"})] == [
        (["FullAccess"], False)]


def test_import_pssession_takes_no_confirm_or_whatif():
    """Import-PSSession's syntax (Microsoft.PowerShell.Utility reference) has no -WhatIf / -Confirm."""
    for switch in ("WhatIf", "Confirm"):
        with pytest.raises(ScriptError) as refused:
            Interpreter(ExchangeCmdlets(seed_organisation()).commands()).run(f"Import-PSSession $s -{switch}")
        assert str(refused.value) == (f"1:21: Import-PSSession: A parameter cannot be found that matches parameter "
                                      f"name '{switch}'.")


def test_a_distribution_group_is_no_role_group_member():
    """Add-RoleGroupMember -Member takes a security principal (a SecurityPrincipalIdParameter): a distribution group
    (MailUniversalDistributionGroup) is none, and is refused like a room list."""
    from toolkit.sandbox.model import Recipient

    organisation = seed_organisation()
    organisation.recipients.append(Recipient(name="All Staff", alias="all-staff",
                                             primary_smtp_address="all-staff@contoso.com",
                                             recipient_type_details="MailUniversalDistributionGroup",
                                             distinguished_name="CN=All Staff,OU=Users,DC=contoso,DC=com"))
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), """\
        try { Add-RoleGroupMember 'Organization Management' -Member all-staff@contoso.com -ErrorAction Stop } catch {
            $_.Exception.Message }
        """) == (0, ["The recipient \"all-staff@contoso.com\" isn't a security principal: only users and security "
                     "groups can be role group members."], [])


def test_a_generated_assignment_name_is_cut_to_64_characters():
    """A role assignment's name is at most 64 characters ("The maximum length is 64"): the name made from the role
    and a long assignee is cut to 64, and a second one ends in a number within the 64."""
    display = "Room booking service for the Berlin, Munich and London offices"
    organisation = seed_organisation("exchange-online")
    assert run(Interpreter(ExchangeCmdlets(organisation).commands()), f"""\
        $p = New-ServicePrincipal -AppId {APP} -ObjectId 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21 -DisplayName '{display}'
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App {APP}
        $b = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App {APP}
        $a.Name
        $b.Name
        """) == (0, [f"Application Mail.Read-{display}"[:64], f"Application Mail.Read-{display}"[:63] + "1"], [])
