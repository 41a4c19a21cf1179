"""The effective-access evaluator agrees with the sandbox's own cmdlets on generated organisations.

For every generated organisation (recipients in two OUs, security groups with nested members, scopes with random
filters, RecipientRoots and exclusive flags, role groups, direct and group assignments with custom, OU and
organisation-wide write scopes, service principals with scoped application roles) and every recipient:

- ``Get-ManagementRoleAssignment -WritableRecipient R -GetEffectiveUsers -Enabled $true`` run by the sandbox's
  PowerShell interpreter lists the same (assignment, user) pairs as :func:`access.writable_by`;
- ``Test-ServicePrincipalAuthorization -Identity SP -Resource R`` says InScope for the same roles as
  :func:`access.app_authorization`.

``EXKIT_PROPERTY_EXAMPLES`` raises the number of examples (default 25, for CI).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit import opath
from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.interpreter import Interpreter
from toolkit.sandbox.model import (
    ManagementScope, Organisation, Recipient, RoleAssignment, RoleGroup, ServicePrincipal,
)
from toolkit.verify import access

EXAMPLES = int(os.environ.get("EXKIT_PROPERTY_EXAMPLES", "25"))
OUS = ("OU=Users,DC=contoso,DC=com", "OU=Rooms,DC=contoso,DC=com")
TYPES = ("UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox")
OFFICES = ("Berlin", "Munich", "")
ROLES = ("ApplicationImpersonation", "Mail Recipients")
APP_ROLES = ("Application Calendars.ReadWrite", "Application Mail.Read")


def comparisons() -> st.SearchStrategy[opath.Node]:
    return st.one_of(
        st.builds(opath.Comparison, st.just("RecipientTypeDetails"), st.sampled_from(["eq", "ne"]),
                  st.sampled_from(TYPES)),
        st.builds(opath.Comparison, st.just("RecipientTypeDetails"), st.just("like"), st.sampled_from(["Room*",
                                                                                                       "*Mailbox"])),
        st.builds(opath.Comparison, st.just("Office"), st.sampled_from(["eq", "ne"]), st.sampled_from(OFFICES[:2])),
        st.builds(opath.Comparison, st.just("CustomAttribute1"), st.just("eq"), st.just("bookable")),
        st.builds(opath.Comparison, st.just("MemberOfGroup"), st.just("eq"), st.just(f"CN=Group 0,{OUS[0]}")),
    )


filters = st.recursive(comparisons(), lambda inner: st.one_of(
    st.builds(lambda items: opath.And(tuple(items)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(lambda items: opath.Or(tuple(items)), st.lists(inner, min_size=2, max_size=3)),
    st.builds(opath.Not, inner)), max_leaves=4)


@st.composite
def organisations(draw: st.DrawFn) -> Organisation:
    recipients = []
    count = draw(st.integers(3, 9))
    for index in range(count):
        kind = draw(st.sampled_from(TYPES))
        ou = draw(st.sampled_from(OUS))
        attributes = {"CustomAttribute1": "bookable"} if draw(st.booleans()) else {}
        recipients.append(Recipient(name=f"Box {index}", alias=f"box{index}", primary_smtp_address=f"box{index}@c.com",
                                    recipient_type_details=kind, office=draw(st.sampled_from(OFFICES)),
                                    distinguished_name=f"CN=Box {index},{ou}", custom_attributes=attributes))
    groups = []
    for index in range(draw(st.integers(0, 2))):
        group = Recipient(name=f"Group {index}", alias=f"group{index}", primary_smtp_address=f"group{index}@c.com",
                          recipient_type_details="MailUniversalSecurityGroup",
                          distinguished_name=f"CN=Group {index},{OUS[0]}")
        groups.append(group)
        for member in draw(st.lists(st.sampled_from(recipients), max_size=4, unique_by=lambda r: r.name)):
            member.member_of.append(group.distinguished_name)
    if len(groups) == 2 and draw(st.booleans()):
        groups[1].member_of.append(groups[0].distinguished_name)  # nested: Group 1 is a member of Group 0
    scopes = [ManagementScope(name=f"Scope {i}", recipient_filter=opath.to_text(draw(filters)),
                              recipient_root=draw(st.sampled_from([None, *OUS])), exclusive=draw(st.booleans()))
              for i in range(draw(st.integers(0, 3)))]
    scope_names = [None] + [s.name for s in scopes]
    mailboxes = [r.primary_smtp_address for r in recipients]
    role_groups = [RoleGroup(name=f"RG {i}", members=sorted(set(draw(st.lists(st.sampled_from(mailboxes),
                                                                               max_size=3)))))
                   for i in range(draw(st.integers(0, 2)))]
    assignments = []

    def write_scope() -> dict[str, str | None]:
        which = draw(st.sampled_from(["custom", "ou", "organisation"]))
        if which == "custom" and scopes:
            return {"custom_recipient_write_scope": draw(st.sampled_from(scope_names[1:]))}
        if which == "ou":
            return {"recipient_organizational_unit_scope": draw(st.sampled_from(OUS))}
        return {}

    for index, group in enumerate(role_groups):
        for role in draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True)):
            assignments.append(RoleAssignment(name=f"{role}-{group.name}", role=role, role_assignee=group.name,
                                              role_assignee_type="RoleGroup", **write_scope()))
    for index in range(draw(st.integers(0, 3))):
        if groups and draw(st.booleans()):
            assignee, kind = draw(st.sampled_from(groups)).name, "SecurityGroup"
        else:
            assignee, kind = draw(st.sampled_from(mailboxes)), "User"
        assignments.append(RoleAssignment(name=f"Direct {index}", role=draw(st.sampled_from(ROLES)),
                                          role_assignee=assignee, role_assignee_type=kind, enabled=draw(st.booleans()),
                                          **write_scope()))
    principals = [ServicePrincipal(app_id=f"0000000{i}-0000-0000-0000-000000000000",
                                   object_id=f"1111111{i}-0000-0000-0000-000000000000", display_name=f"App {i}")
                  for i in range(draw(st.integers(0, 2)))]
    for principal in principals:
        for index, role in enumerate(draw(st.lists(st.sampled_from(APP_ROLES), min_size=1, max_size=2, unique=True))):
            assignments.append(RoleAssignment(name=f"{role}-{principal.display_name}", role=role,
                                              role_assignee=principal.object_id, role_assignee_type="ServicePrincipal",
                                              custom_resource_scope=draw(st.sampled_from(scope_names))))
    return Organisation(platform="exchange-online", organizational_units=list(OUS),
                        management_roles=[*ROLES, *APP_ROLES], recipients=recipients + groups,
                        management_scopes=scopes, role_groups=role_groups, role_assignments=assignments,
                        service_principals=principals)


def sandbox_lines(org: Organisation, script: str) -> list[str]:
    outcome = Interpreter(ExchangeCmdlets(org).commands()).run("$ErrorActionPreference = 'Stop'\n" + script)
    assert outcome.exit_code == 0, outcome.errors
    return [str(line) for line in outcome.output]


WRITABLE = """
foreach ($r in @(Get-Recipient -ResultSize 'Unlimited')) {
    foreach ($a in @(Get-ManagementRoleAssignment -WritableRecipient ([string]$r.PrimarySmtpAddress) -GetEffectiveUsers -Enabled $true)) {
        if ([string]$a.RoleAssigneeType -ne 'ServicePrincipal') {
            Write-Output ([string]$r.PrimarySmtpAddress + '|' + [string]$a.Name + '|' + [string]$a.EffectiveUserName)
        }
    }
}
"""

AUTHORIZATION = """
foreach ($p in @(Get-ServicePrincipal)) {
    foreach ($r in @(Get-Recipient -ResultSize 'Unlimited')) {
        if ([string]$r.RecipientTypeDetails -like '*Mailbox') {
            foreach ($row in @(Test-ServicePrincipalAuthorization -Identity ([string]$p.AppId) -Resource ([string]$r.PrimarySmtpAddress))) {
                Write-Output ([string]$p.AppId + '|' + [string]$r.PrimarySmtpAddress + '|' + [string]$row.RoleName + '|' + [string]$row.InScope)
            }
        }
    }
}
"""


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(organisations())
def test_evaluator_agrees_with_the_sandbox_cmdlets(org: Organisation) -> None:
    model = access.from_sandbox(org)
    names = {r.primary_smtp_address: r.name for r in org.recipients}
    expected = sorted(f"{r.address}|{name}|{names.get(user, user)}" for r in model.recipients
                      for name, user in access.writable_by(model, r))
    assert sorted(sandbox_lines(org, WRITABLE)) == expected
    authorized = sorted(f"{app}|{r.address}|{role}|{in_scope}" for app in model.applications
                        for r in model.mailboxes() for role, in_scope in access.app_authorization(model, app, r))
    assert sorted(sandbox_lines(org, AUTHORIZATION)) == authorized


def test_exclusive_scope_takes_a_mailbox_away_from_organisation_wide_grants() -> None:
    """Named example of the rule the property test covers: a room in an exclusive scope is reachable only through
    that scope, even for an organisation-wide assignment."""
    room = Recipient(name="Room", alias="room", primary_smtp_address="room@c.com", recipient_type_details="RoomMailbox",
                     distinguished_name=f"CN=Room,{OUS[1]}")
    user = Recipient(name="User", alias="user", primary_smtp_address="user@c.com", recipient_type_details="UserMailbox",
                     distinguished_name=f"CN=User,{OUS[0]}")
    org = Organisation(organizational_units=list(OUS), management_roles=list(ROLES), recipients=[room, user],
                       management_scopes=[ManagementScope(name="VIP", recipient_filter="Name -eq 'Room'",
                                                          exclusive=True)],
                       role_assignments=[
                           RoleAssignment(name="Everything", role=ROLES[0], role_assignee="user@c.com",
                                          role_assignee_type="User"),
                           RoleAssignment(name="Exclusive", role=ROLES[0], role_assignee="user@c.com",
                                          role_assignee_type="User", custom_recipient_write_scope="VIP")])
    model = access.from_sandbox(org)
    assert access.writable_by(model, model.recipient("room@c.com")) == [("Exclusive", "user@c.com")]
    assert access.writable_by(model, model.recipient("user@c.com")) == [("Everything", "user@c.com")]
    assert sorted(sandbox_lines(org, WRITABLE)) == ["room@c.com|Exclusive|User", "user@c.com|Everything|User"]
