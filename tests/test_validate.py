"""One test per validation error kind: message, position and hint."""

from __future__ import annotations

import pytest

from toolkit.playbook.validate import load_and_validate

HEADER = """\
exkit: 1
name: test
"""


def problems(path, **supplied):
    _, diagnostics = load_and_validate(path, supplied)
    return [(d.severity.value, d.position.line, d.position.column, d.message, d.hint) for d in diagnostics.sorted()]


def only_error(path, **supplied):
    found = [p for p in problems(path, **supplied) if p[0] == "error"]
    assert len(found) == 1, found
    return found[0]


def test_clean_playbook_has_no_problems(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    rooms: true
role_groups:
  - name: G
    roles: [ApplicationImpersonation]
    members: [svc@contoso.com]
    scope: Rooms
""")
    assert problems(path) == []


def test_unknown_key_with_did_you_mean(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    rooms: true
    recipient_rot: OU=x,DC=y
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (7, 5)
    assert message == "unknown key 'recipient_rot' in management scope #1"
    assert hint == "did you mean 'recipient_root'?"


def test_unknown_top_level_key(write_playbook):
    path = write_playbook(HEADER + "role_group: []\n")
    _, line, col, message, hint = only_error(path)
    assert (line, col, message) == (3, 1, "unknown key 'role_group' in the playbook")
    assert hint == "did you mean 'role_groups'?"


def test_wrong_type(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    rooms: "yes please"
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (6, 12)
    assert message == "'rooms' in management scope #1 must be true or false, not 'yes please'"
    assert "true or false" in hint


def test_missing_field(write_playbook):
    path = write_playbook(HEADER + """
role_groups:
  - name: G
    members: [svc@contoso.com]
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (5, 5)
    assert message == "missing required key 'roles' in role group #1"
    assert hint == "add 'roles: …' here"


def test_missing_format_version(write_playbook):
    path = write_playbook("name: x\n")
    _, line, col, message, _ = only_error(path)
    assert (line, col, message) == (1, 1, "missing required key 'exkit' in the playbook")


def test_wrong_format_version(write_playbook):
    path = write_playbook("exkit: 2\nname: x\n")
    _, line, col, message, _ = only_error(path)
    assert (line, col) == (1, 8)
    assert message == "'exkit' in the playbook must be 1, not 2"


def test_duplicate_name(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    rooms: true
  - name: rooms
    equipment: true
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col, message) == (7, 11, "duplicate management scope name 'rooms'")
    assert "management scope #1" in hint


def test_dangling_scope_reference(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Room mailboxes
    rooms: true
role_groups:
  - name: G
    roles: [ApplicationImpersonation]
    scope: Room mailbox
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (10, 12)
    assert message == "role group #1 refers to management scope 'Room mailbox', which is not declared"
    assert hint == "did you mean 'Room mailboxes'?"


def test_dangling_role_group_reference(write_playbook):
    path = write_playbook(HEADER + """
role_assignments:
  - role: ApplicationImpersonation
    role_group: Nobody
    all_mailboxes: true
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (6, 17)
    assert message == "role assignment #1 refers to role group 'Nobody', which is not declared"
    assert hint == "declare the role group in this playbook"


def test_name_too_long(write_playbook):
    name = "R" * 65
    path = write_playbook(HEADER + f"""
scopes:
  - name: {name}
    rooms: true
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (5, 11)
    assert message == "the management scope name is 65 characters; Exchange allows at most 64"
    assert "64" in hint


def test_derived_assignment_name_too_long(write_playbook):
    path = write_playbook(HEADER + """
scopes: [{name: Rooms, rooms: true}]
role_assignments:
  - role: ApplicationImpersonation
    user: a-very-long-service-account-name@rooms.contoso.example.com
    scope: Rooms
""")
    _, _, _, message, _ = only_error(path)
    assert message.startswith("the role assignment name is 83 characters")


def test_malformed_address(write_playbook):
    path = write_playbook(HEADER + """
role_groups:
  - name: G
    roles: [ApplicationImpersonation]
    members: [svc-rooms, ok@contoso.com]
    all_mailboxes: true
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (7, 15)
    assert message == "'svc-rooms' is not a valid user principal name or e-mail address"
    assert "user@domain" in hint


def test_undefined_variable(write_playbook):
    path = write_playbook(HEADER + """
vars:
  service_account: svc@contoso.com
role_groups:
  - name: G
    roles: [ApplicationImpersonation]
    members: ["{{ service_acount }}"]
    all_mailboxes: true
""")
    found = [p for p in problems(path) if p[0] == "error"]
    assert found[0][1:4] == (9, 15, "undefined variable 'service_acount'")
    assert "did you mean 'service_account'?" in found[0][4]


def test_supplied_variable_overrides_default(write_playbook):
    path = write_playbook(HEADER + """
vars: {who: a@contoso.com}
role_groups:
  - {name: "G {{ who }}", roles: [ApplicationImpersonation], members: ["{{ who }}"], all_mailboxes: true}
""")
    playbook, _ = load_and_validate(path, {"who": "b@contoso.com"})
    assert playbook.role_groups[0].members == ["b@contoso.com"]
    assert playbook.role_groups[0].name == "G b@contoso.com"


def test_broken_filter_points_into_the_filter(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    filter: "RecipientTypeDetails -eq 'RoomMailbox' -and Ofice -eq 'Berlin'"
""")
    _, line, col, message, hint = only_error(path)
    # The filter value starts at column 13 (its quote); 'Ofice' is at offset 44 inside it.
    assert (line, col) == (6, 13 + 1 + 44)
    assert message == "OPATH filter does not parse: unknown filterable property 'Ofice'"
    assert hint == "did you mean Office?"


def test_filter_and_selectors_conflict(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    rooms: true
    filter: "Office -eq 'x'"
""")
    assert "either 'filter' or the structured selectors" in only_error(path)[3]


def test_scope_without_selector(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col, message) == (5, 5, "the scope selects nothing: it has no selector and no filter")
    assert hint == "add 'rooms: true' to limit the scope to room mailboxes"


def test_bad_distinguished_name(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - {name: Rooms, rooms: true, recipient_root: fabrikam.local/Hosting}
""")
    _, _, _, message, hint = only_error(path)
    assert message == "recipient_root 'fabrikam.local/Hosting' is not a distinguished name"
    assert "OU=" in hint


def test_control_character(write_playbook):
    path = write_playbook(HEADER + 'description: "line one\\nline two"\n')
    _, line, col, message, hint = only_error(path)
    assert (line, col) == (3, 14)
    assert message == "value contains the control character U+000A (control character)"
    assert "control characters" in hint


def test_assignment_needs_one_assignee(write_playbook):
    path = write_playbook(HEADER + """
role_assignments:
  - role: ApplicationImpersonation
    user: a@contoso.com
    security_group: Room bookers
    all_mailboxes: true
""")
    assert only_error(path)[3] == ("a role assignment needs exactly one assignee: user, security_group or role_group "
                                   "(found user, security_group)")


def test_misspelled_role(write_playbook):
    path = write_playbook(HEADER + """
role_groups:
  - {name: G, roles: [ApplicationImpersonaton], all_mailboxes: true}
""")
    _, line, col, message, hint = only_error(path)
    assert (line, col, message) == (5, 23, "unknown management role 'ApplicationImpersonaton'")
    assert hint == "did you mean 'ApplicationImpersonation'?"


def test_yaml_syntax_error(write_playbook):
    path = write_playbook(HEADER + "scopes:\n  - name: [unclosed\n")
    severity, line, _, message, _ = only_error(path)
    assert message.startswith("YAML syntax error")
    assert line == 5


def test_duplicate_yaml_key(write_playbook):
    path = write_playbook(HEADER + "name: again\n")
    _, line, col, message, _ = only_error(path)
    assert (line, col) == (3, 1)
    assert "duplicate key" in message


def test_missing_file(tmp_path):
    _, line, col, message, _ = only_error(tmp_path / "nope.yaml")
    assert message.startswith("no such playbook file")


def test_every_error_at_once(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - name: Rooms
    filter: "RecipientTypeDetails -eq 'RoomMailbox' -and ("
    colour: blue
role_groups:
  - name: G
    roles: [ApplicationImpersonation]
    scope: Roms
""")
    errors = [p for p in problems(path) if p[0] == "error"]
    assert [(line, col) for _, line, col, _, _ in errors] == [(6, 13 + 1 + 45), (7, 5), (11, 12)]


# ---------------------------------------------------------------- least-privilege lint

def warnings_of(path):
    return [(p[3], p[1]) for p in problems(path) if p[0] == "warning"]


def test_unscoped_impersonation_warns(write_playbook):
    path = write_playbook(HEADER + "role_groups:\n  - {name: G, roles: [ApplicationImpersonation]}\n")
    assert warnings_of(path) == [("role group 'G' grants ApplicationImpersonation organisation-wide (no scope)", 4)]


def test_all_mailboxes_is_a_note(write_playbook):
    path = write_playbook(HEADER + "role_groups:\n  - {name: G, roles: [ApplicationImpersonation], all_mailboxes: true}\n")
    found = problems(path)
    assert [p[0] for p in found] == ["note"]
    assert "End Event Early" in found[0][4]


def test_scope_matching_non_rooms_warns(write_playbook):
    path = write_playbook(HEADER + """
scopes:
  - {name: Berlin, office: Berlin}
  - {name: Rooms, filter: "RecipientTypeDetails -eq 'RoomMailbox' -or Office -eq 'Berlin'"}
  - {name: Fine, rooms: true, office: [Berlin]}
""")
    assert [w[1] for w in warnings_of(path)] == [5, 6]
    assert warnings_of(path)[0][0] == ("management scope 'Berlin' can match recipients other than room and "
                                       "equipment mailboxes")


def test_delegate_access_warns_and_many_mailboxes_warn_more(write_playbook):
    rooms = ", ".join(f"room{i}@contoso.com" for i in range(12))
    path = write_playbook(HEADER + f"delegates:\n  - user: svc@contoso.com\n    mailboxes: [{rooms}]\n")
    messages = [w[0] for w in warnings_of(path)]
    assert messages == ["delegate FullAccess for 'svc@contoso.com' on 12 mailbox(es)",
                        "'svc@contoso.com' gets delegate FullAccess on 12 mailboxes (more than 10)"]


@pytest.mark.parametrize("strict, code", [(False, 0), (True, 1)])
def test_warnings_fail_only_under_strict(write_playbook, cli, strict, code):
    path = write_playbook(HEADER + "role_groups:\n  - {name: G, roles: [ApplicationImpersonation]}\n")
    result = cli("validate", path, *(["--strict"] if strict else []))
    assert result.exit_code == code
    assert f"{path}:4:12: warning: role group 'G' grants ApplicationImpersonation" in result.stderr
