import pytest

from toolkit import opath

ROOMS = {"RecipientTypeDetails": "RoomMailbox", "Office": "Berlin", "CustomAttribute1": "bookable",
         "MemberOfGroup": ["CN=All Rooms,OU=Rooms,DC=contoso,DC=com"]}
EQUIPMENT = {"RecipientTypeDetails": "EquipmentMailbox", "Office": "Munich"}
USER = {"RecipientTypeDetails": "UserMailbox", "Office": "Berlin", "CustomAttribute1": ""}
SHARED = {"RecipientTypeDetails": "SharedMailbox", "Office": "Berlin Mitte"}


@pytest.mark.parametrize("text, canonical", [
    ("RecipientTypeDetails -eq 'RoomMailbox'", "RecipientTypeDetails -eq 'RoomMailbox'"),
    ("recipienttypedetails -EQ \"RoomMailbox\"", "RecipientTypeDetails -eq 'RoomMailbox'"),
    ("(RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'EquipmentMailbox') -and Office -like 'Ber*'",
     "(RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'EquipmentMailbox') -and Office -like 'Ber*'"),
    ("-not (Office -eq 'O''Brien')", "-not (Office -eq 'O''Brien')"),
    ("CustomAttribute1 -ne $null", "CustomAttribute1 -ne $null"),
])
def test_parse_and_print_canonical(text, canonical):
    node = opath.parse(text)
    assert opath.to_text(node) == canonical
    assert opath.parse(opath.to_text(node)) == node


@pytest.mark.parametrize("text, offset, fragment", [
    ("", 0, "empty"),
    ("RecipientTypeDetails -eq 'RoomMailbox", 25, "unterminated"),
    ("RecipientTypeDetails -equals 'RoomMailbox'", 21, "expected a comparison operator"),
    ("RecipientTypeDetail -eq 'RoomMailbox'", 0, "unknown filterable property"),
    ("(Office -eq 'Berlin'", 20, "missing closing parenthesis"),
    ("Office -eq 'Berlin' Office -eq 'x'", 20, "after a complete condition"),
    ("Office -eq", 10, "expected a quoted value"),
    ("Office -eq $user", 11, "unknown variable"),
    ("Office -like $true", 13, "needs a text value"),
])
def test_parse_errors_have_offsets(text, offset, fragment):
    with pytest.raises(opath.OpathError) as caught:
        opath.parse(text)
    assert fragment in caught.value.message
    assert caught.value.offset == offset


def test_did_you_mean_property():
    with pytest.raises(opath.OpathError) as caught:
        opath.parse("RecipientTypeDetail -eq 'RoomMailbox'")
    assert "RecipientTypeDetails" in caught.value.hint


@pytest.mark.parametrize("text, expected", [
    ("RecipientTypeDetails -eq 'RoomMailbox'", [True, False, False, False]),
    ("RecipientTypeDetails -eq 'roommailbox' -or RecipientTypeDetails -eq 'EquipmentMailbox'", [True, True, False, False]),
    ("Office -like 'Berlin*'", [True, False, True, True]),
    ("Office -notlike 'Berlin*'", [False, True, False, False]),
    ("-not (RecipientTypeDetails -eq 'UserMailbox')", [True, True, False, True]),
    ("CustomAttribute1 -eq $null", [False, True, True, True]),
    ("CustomAttribute1 -ne $null", [True, False, False, False]),
    ("MemberOfGroup -eq 'cn=all rooms,ou=rooms,dc=contoso,dc=com'", [True, False, False, False]),
    ("ResourceType -eq 'Room'", [False, False, False, False]),
])
def test_evaluate_table(text, expected):
    node = opath.parse(text)
    assert [opath.evaluate(node, r) for r in (ROOMS, EQUIPMENT, USER, SHARED)] == expected


@pytest.mark.parametrize("text, rooms_only", [
    ("RecipientTypeDetails -eq 'RoomMailbox'", True),
    ("RecipientTypeDetails -eq 'RoomMailbox' -and Office -eq 'Berlin'", True),
    ("RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'EquipmentMailbox'", True),
    ("ResourceType -eq 'Room'", True),
    ("RecipientTypeDetails -eq 'RoomMailbox' -or Office -eq 'Berlin'", False),
    ("Office -eq 'Berlin'", False),
    ("MemberOfGroup -eq 'CN=Rooms,DC=x'", False),
    ("-not (RecipientTypeDetails -eq 'UserMailbox')", False),
    ("RecipientTypeDetails -like 'R*'", False),
    ("RecipientTypeDetails -like '*RoomMailbox'", True),
    ("RecipientTypeDetails -eq 'UserMailbox'", False),
])
def test_rooms_only_analysis(text, rooms_only):
    assert opath.matches_only_resources(opath.parse(text)) is rooms_only
