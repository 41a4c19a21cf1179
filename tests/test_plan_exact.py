"""The plan as a reviewer and a pipeline read it, compared whole with literals: every key of ``plan --output json``,
each state-changing call as PowerShell text, the error a refused change carries, and what a script that stops
leaves unplanned. (Mutation testing found these read only in part.)"""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from toolkit.resources import FieldChange
from toolkit.plan import describe_call, make_plan, unresolved, what_if
from toolkit.playbook.validate import require_playbook
from toolkit.render.engine import render_script
from toolkit.sandbox.seed import seed_organisation
from toolkit.sandbox.values import Hashtable, PSObject

CLASSIC = REPO / "playbooks" / "classic.yaml"
SCOPE_CALL = ("New-ManagementScope -Name 'Room mailboxes' -RecipientRestrictionFilter "
              "'RecipientTypeDetails -eq ''RoomMailbox'''")
GROUP_CALL = ("New-RoleGroup -Name 'Room booking service accounts' -Roles @('ApplicationImpersonation') "
              "-Members @('svc-rooms@contoso.com') -CustomRecipientWriteScope 'Room mailboxes' "
              "-Description 'Impersonation of room mailboxes for the room-booking system.'")
DESCRIPTION = "Impersonation of room mailboxes for the room-booking system."


def test_the_json_plan_of_a_first_apply(cli, sandbox_state):
    planned = cli("plan", CLASSIC, "--output", "json")
    assert planned.exit_code == 0, planned.stderr
    assert json.loads(planned.stdout) == {
        "playbook": "room-booking-impersonation", "target": "sandbox", "destroy": False,
        "counts": {"create": 2, "update": 0, "delete": 0, "noop": 0, "error": 0},
        "changes": [
            {"kind": "ManagementScope", "name": "Room mailboxes", "action": "create",
             "fields": [{"field": "filter", "before": None, "after": "RecipientTypeDetails -eq 'RoomMailbox'"}],
             "calls": [SCOPE_CALL]},
            {"kind": "RoleGroup", "name": "Room booking service accounts", "action": "create",
             "fields": [{"field": "description", "before": None, "after": DESCRIPTION},
                        {"field": "members", "before": None, "after": ["svc-rooms@contoso.com"]},
                        {"field": "roles", "before": None, "after": ["ApplicationImpersonation"]},
                        {"field": "scope", "before": None, "after": "Room mailboxes"}],
             "calls": [GROUP_CALL]},
        ],
    }


def test_the_json_plan_of_an_update_names_switches_and_leaves_the_unchanged_alone(cli, sandbox_state):
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    planned = cli("plan", CLASSIC, "--var", "service_account=info@contoso.com", "--output", "json")
    assert planned.exit_code == 0, planned.stderr
    assert json.loads(planned.stdout)["changes"] == [
        {"kind": "ManagementScope", "name": "Room mailboxes", "action": "noop", "fields": [], "calls": []},
        {"kind": "RoleGroup", "name": "Room booking service accounts", "action": "update",
         "fields": [{"field": "members", "before": ["svc-rooms@contoso.com"], "after": ["info@contoso.com"]}],
         "calls": ["Add-RoleGroupMember -Identity 'Room booking service accounts' -Member 'info@contoso.com' "
                   "-BypassSecurityGroupManagerCheck",
                   "Remove-RoleGroupMember -Identity 'Room booking service accounts' -Member "
                   "'CN=Room Booking Service,OU=Users,DC=contoso,DC=com' -BypassSecurityGroupManagerCheck"]},
    ]


def classic_script(state: str = "present"):
    model, _ = require_playbook(CLASSIC, {})
    return render_script(model, state=state)


def test_a_change_exchange_refuses_is_an_error_with_exchanges_message():
    script = classic_script()
    organisation = seed_organisation()
    organisation.failing_writes["room booking service accounts"] = "Active Directory operation failed: access denied."
    before = organisation.to_json()
    plan = make_plan(script.resources, what_if(script.text, organisation))
    assert organisation.to_json() == before  # the what-if ran on a copy
    assert plan.as_dict() == {
        "destroy": False,
        "counts": {"create": 1, "update": 0, "delete": 0, "noop": 0, "error": 1},
        "changes": [
            {"kind": "ManagementScope", "name": "Room mailboxes", "action": "create",
             "fields": [{"field": "filter", "before": None, "after": "RecipientTypeDetails -eq 'RoomMailbox'"}],
             "calls": [SCOPE_CALL]},
            {"kind": "RoleGroup", "name": "Room booking service accounts", "action": "error", "fields": [],
             "calls": [GROUP_CALL], "error": "Active Directory operation failed: access denied."},
        ],
    }
    assert [c.name for c in plan.pending] == ["Room mailboxes"]
    assert [c.name for c in plan.errors] == ["Room booking service accounts"]
    assert plan.after is not None and plan.after.scope("Room mailboxes") is not None
    assert plan.after.role_group("Room booking service accounts") is None


def test_a_destroy_plan_of_objects_that_exist_removes_them_in_reverse_order():
    organisation = seed_organisation()
    applied = what_if(classic_script().text, organisation).after
    script = classic_script("absent")
    plan = make_plan(script.resources, what_if(script.text, applied), destroy=True)
    assert plan.as_dict() == {
        "destroy": True,
        "counts": {"create": 0, "update": 0, "delete": 2, "noop": 0, "error": 0},
        "changes": [
            {"kind": "RoleGroup", "name": "Room booking service accounts", "action": "delete", "fields": [],
             "calls": ["Remove-RoleGroup -Identity 'Room booking service accounts' -BypassSecurityGroupManagerCheck"]},
            {"kind": "ManagementScope", "name": "Room mailboxes", "action": "delete", "fields": [],
             "calls": ["Remove-ManagementScope -Identity 'Room mailboxes'"]},
        ],
    }


def test_a_script_the_sandbox_cannot_run_leaves_every_resource_unplanned_with_the_reason():
    script = classic_script()
    organisation = seed_organisation()
    outcome = what_if("exit 1", organisation)
    assert outcome.before is organisation and outcome.results == []
    plan = make_plan(script.resources, outcome)
    reason = ("not planned: the script cannot run in the sandbox: 1:1: unsupported PowerShell construct "
              "flow_control_statement ('exit 1')")
    assert plan.as_dict()["changes"] == [
        {"kind": "ManagementScope", "name": "Room mailboxes", "action": "error", "fields": [], "calls": [],
         "error": reason},
        {"kind": "RoleGroup", "name": "Room booking service accounts", "action": "error", "fields": [], "calls": [],
         "error": reason},
    ]
    assert plan.pending == []


@pytest.mark.parametrize("bound, shown", [
    ({"Identity": "O'Brien", "Members": ["a@contoso.com", "b‘c"]}, "-Identity 'O''Brien' -Members @('a@contoso.com', 'b‘‘c')"),
    ({"Bypass": True, "Enabled": False, "Count": 3, "Root": None}, "-Bypass -Enabled $false -Count 3 -Root $null"),
    ({"ErrorAction": "Stop", "Confirm": False, "Name": "x"}, "-Name 'x'"),
    ({"Name": "a\x00b"}, "-Name (a value that cannot be shown)"),
    ({"Identity": PSObject("RoleGroup", {"Name": "Room bookers"}), "Scope": Hashtable()},
     "-Identity 'Room bookers' -Scope 'System.Collections.Hashtable'"),
    ({}, ""),
])
def test_a_call_is_described_as_powershell_a_reviewer_reads(bound, shown):
    assert describe_call("Set-Thing", bound) == ("Set-Thing " + shown).rstrip()


# ------------------------------------------------------------------------------------------------ unresolved names
HINT = "    hint: create it first, or fix the name (Exchange resolves names, aliases, addresses and DNs)"
MISSING = """\
exkit: 1
name: missing-names
scopes:
  - name: Rooms
    rooms: true
role_groups:
  - name: Bookers
    roles: [ApplicationImpersonation]
    members: [svc-rooms@contoso.com, ghost1@contoso.com, ghost2@contoso.com]
    scope: Rooms
role_assignments:
  - name: By user
    role: ApplicationImpersonation
    user: ghost3@contoso.com
    scope: Rooms
  - name: By group
    role: ApplicationImpersonation
    security_group: Ghost Group
    scope: Rooms
  - name: Present
    role: ApplicationImpersonation
    user: info@contoso.com
    scope: Rooms
  - name: A role group, found as one
    role: ApplicationImpersonation
    security_group: Recipient Management
    scope: Rooms
delegates:
  - user: ghost4@contoso.com
    mailboxes: [room-berlin-1@contoso.com, ghost-room@contoso.com]
"""


def test_every_name_the_target_lacks_is_an_error_at_its_position(cli, sandbox_state, write_playbook):
    path = write_playbook(MISSING)
    result = cli("plan", path)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [
        f"{path}:9:38: error: member 'ghost1@contoso.com' does not exist on target 'sandbox'",
        f"{path}:9:58: error: member 'ghost2@contoso.com' does not exist on target 'sandbox'",
        f"{path}:14:11: error: user 'ghost3@contoso.com' does not exist on target 'sandbox'",
        f"{path}:18:21: error: security group 'Ghost Group' does not exist on target 'sandbox'",
        f"{path}:29:11: error: delegate 'ghost4@contoso.com' does not exist on target 'sandbox'",
        f"{path}:30:44: error: mailbox 'ghost-room@contoso.com' does not exist on target 'sandbox'",
    ]
    assert result.stderr.count(HINT + "\n") == 6


def test_unresolved_lists_each_path_name_and_what_it_is(write_playbook):
    model, _ = require_playbook(write_playbook(MISSING), {})
    assert unresolved(model, seed_organisation()) == [
        (("role_groups", 0, "members", 1), "ghost1@contoso.com", "member"),
        (("role_groups", 0, "members", 2), "ghost2@contoso.com", "member"),
        (("role_assignments", 0, "user"), "ghost3@contoso.com", "user"),
        (("role_assignments", 1, "security_group"), "Ghost Group", "security group"),
        (("delegates", 0, "user"), "ghost4@contoso.com", "delegate"),
        (("delegates", 0, "mailboxes", 1), "ghost-room@contoso.com", "mailbox"),
    ]


def test_an_application_access_policy_group_the_tenant_lacks_is_unresolved():
    model, _ = require_playbook(REPO / "playbooks" / "online-access-policy.yaml", {})
    organisation = seed_organisation("exchange-online")
    assert unresolved(model, organisation) == []
    organisation.recipients = [r for r in organisation.recipients
                               if r.primary_smtp_address != "bookable-rooms@contoso.com"]
    assert unresolved(model, organisation) == [
        (("application_access_policies", 0, "group"), "bookable-rooms@contoso.com", "group")]


def test_a_value_given_up_is_a_field_change_even_when_it_becomes_nothing(cli, sandbox_state):
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    playbook = sandbox_state.parent / "classic.yaml"
    playbook.write_text(CLASSIC.read_text().replace("    scope: Room mailboxes\n", "")
                        .replace('members: ["{{ service_account }}"]', "members: []"))
    planned = cli("plan", playbook, "--output", "json")
    assert planned.exit_code == 0, planned.stderr
    group = json.loads(planned.stdout)["changes"][1]
    assert (group["name"], group["action"]) == ("Room booking service accounts", "update")
    assert group["fields"] == [{"field": "members", "before": ["svc-rooms@contoso.com"], "after": []},
                               {"field": "scope", "before": "Room mailboxes", "after": "(organisation)"}]


def test_nothing_becoming_an_empty_text_is_no_field_change():
    """None, [], "" and False all read as "nothing": a policy the tenant shows with an empty description (the model's
    default) is created without a description change."""
    from toolkit.plan import WhatIf
    from toolkit.sandbox.model import ApplicationAccessPolicy
    from toolkit.targets.base import ResourceResult

    model, _ = require_playbook(REPO / "playbooks" / "online-access-policy.yaml", {})
    policy = next(r for r in render_script(model).resources if r.kind == "ApplicationAccessPolicy")
    before = seed_organisation("exchange-online")
    after = before.model_copy(deep=True)
    after.application_access_policies.append(ApplicationAccessPolicy(
        app_id=policy.fields["app_id"].lower(), scope_identity=policy.fields["group"], access_right="RestrictAccess"))
    outcome = WhatIf([ResourceResult("ApplicationAccessPolicy", policy.name, "created")], before, after, {})
    change = make_plan([policy], outcome).changes[0]
    assert (change.action, change.fields) == ("create", [FieldChange("access_right", None, "RestrictAccess")])


def test_a_script_that_stops_leaves_the_rest_unplanned_with_the_first_line_of_its_error():
    outcome = what_if("throw 'the tenant went away'", seed_organisation())
    assert outcome.error == "the tenant went away\n    At line:1 char:1\n    + CategoryInfo: OperationStopped"
    changes = make_plan(classic_script().resources, outcome).as_dict()["changes"]
    assert [(c["action"], c["error"]) for c in changes] == [("error", "not planned: the tenant went away")] * 2
    assert what_if("$done = 1", seed_organisation()).error == ""


def test_errors_a_script_writes_but_finishes_despite_are_not_the_plans_error():
    """A non-terminating error (written, the script goes on, exit code 0) does not make the plan an error."""
    outcome = what_if("Get-ManagementScope -Identity 'no such scope'\n$done = 1", seed_organisation())
    assert outcome.error == ""


def test_a_resource_the_script_gave_no_result_for_is_unplanned_because_it_stopped_before_it():
    from toolkit.plan import WhatIf
    from toolkit.targets.base import ResourceResult

    resources = classic_script().resources
    first = resources[0]
    organisation = seed_organisation()
    outcome = WhatIf([ResourceResult(first.kind, first.name, "created")], organisation, organisation, {})
    changes = make_plan(resources, outcome).as_dict()["changes"]
    assert [(c["action"], c.get("error")) for c in changes][1] == (
        "error", "not planned: the script stopped before this resource")


def test_a_script_that_stops_after_errors_it_wrote_keeps_each_on_its_lines():
    outcome = what_if("Get-ManagementScope -Identity 'no such scope'\nthrow 'the tenant went away'", seed_organisation())
    assert outcome.error == ("The operation couldn't be performed because object 'no such scope' couldn't be found on "
                             "'DC01.contoso.com'.\n    At line:1 char:1\nthe tenant went away\n    At line:2 char:1\n"
                             "    + CategoryInfo: OperationStopped")


def test_a_resource_whose_block_stopped_halfway_shows_the_calls_it_made():
    script = ("$exkitkind = 'ManagementScope'; $exkitname = 'Room mailboxes'\n"
              "New-ManagementScope -Name 'Room mailboxes' -RecipientRestrictionFilter \"RecipientTypeDetails -eq "
              "'RoomMailbox'\"\nthrow 'the tenant went away'")
    changes = make_plan(classic_script().resources, what_if(script, seed_organisation())).as_dict()["changes"]
    assert changes == [
        {"kind": "ManagementScope", "name": "Room mailboxes", "action": "error", "fields": [],
         "calls": ["New-ManagementScope -Name 'Room mailboxes' -RecipientRestrictionFilter 'RecipientTypeDetails -eq "
                   "''RoomMailbox'''"], "error": "not planned: the tenant went away"},
        {"kind": "RoleGroup", "name": "Room booking service accounts", "action": "error", "fields": [], "calls": [],
         "error": "not planned: the tenant went away"},
    ]


def test_a_field_that_was_true_and_becomes_false_is_a_change_and_an_unknown_result_an_error():
    from toolkit.plan import WhatIf
    from toolkit.sandbox.model import ManagementScope
    from toolkit.targets.base import ResourceResult

    scope, group = classic_script().resources
    before = seed_organisation()
    before.management_scopes.append(ManagementScope(name=scope.fields["name"], recipient_filter=scope.fields["filter"],
                                         exclusive=True))
    after = before.model_copy(deep=True)
    after.management_scopes[-1].exclusive = False
    outcome = WhatIf([ResourceResult(scope.kind, scope.name, "updated"),
                      ResourceResult(group.kind, group.name, "exploded")], before, after, {})
    plan = make_plan([scope, group], outcome)
    assert [(c.action, c.fields) for c in plan.changes] == [("update", [FieldChange("exclusive", True, False)]),
                                                            ("error", [])]
    assert plan.counts() == {"create": 0, "update": 1, "delete": 0, "noop": 0, "error": 1}


def test_a_script_that_cannot_run_leaves_the_plans_organisation_as_it_was():
    """what_if of a script outside the sandbox's subset: an error, no results, and the copy it would have run
    against, untouched (a plan's organisation is the one the script leaves: here the one it found)."""
    organisation = seed_organisation()
    outcome = what_if("$x = Get-Date | Invoke-Expression\n", organisation)
    assert (outcome.results, outcome.error.startswith("the script cannot run in the sandbox: ")) == ([], True)
    assert outcome.after is not organisation and outcome.after == organisation
