"""OPATH in exact terms: every parse error's offset, message and hint; printing; evaluation at its boundaries; the
recipient types a filter can reach."""

from __future__ import annotations

import pytest

from toolkit import opath
from toolkit.opath import And, Comparison, Not, Or, OpathError, parse, to_text

EXAMPLE = "write a filter such as RecipientTypeDetails -eq 'RoomMailbox'"
A_PROPERTY = "a condition starts with a property, e.g. RecipientTypeDetails"
OPERATORS = "use one of -eq, -ne, -like, -notlike, -gt, -lt, -ge, -le"
QUOTES = "put text values in single quotes, e.g. 'RoomMailbox'"
END = "the end of the filter"


@pytest.mark.parametrize("text, offset, message, hint", [
    ("", 0, "the filter is empty", EXAMPLE),
    ("   ", 0, "the filter is empty", EXAMPLE),
    ("Name -eq 'a", 9, "unterminated quoted value starting with '", "close the value with a matching '"),
    ('Name -eq "a', 9, 'unterminated quoted value starting with "', 'close the value with a matching "'),
    ("Name -eq $foo", 9, "unknown variable $foo", "only $null, $true and $false can appear in a filter"),
    ("Name -eq 5 x", 11, "unexpected 'x' after a complete condition", "join conditions with -and or -or"),
    ("(Name -eq 1", 11, "missing closing parenthesis", "add ')' to close the '(' at position 1"),
    ("Office -eq 1 -and (Name -eq 1", 29, "missing closing parenthesis", "add ')' to close the '(' at position 19"),
    ("Nme -eq 1", 0, "unknown filterable property 'Nme'", "did you mean Name?"),
    ("Zzzzzz -eq 1", 0, "unknown filterable property 'Zzzzzz'", "see the filterable properties in the README"),
    ("Name -xx 1", 5, "expected a comparison operator after Name, found '-xx'", OPERATORS),
    ("Name 'x'", 5, "expected a comparison operator after Name, found \"'x'\"", OPERATORS),
    ("Name", 4, f"expected a comparison operator after Name, found '{END}'", OPERATORS),
    ("Name -eq", 8, f"expected a quoted value after -eq, found '{END}'", QUOTES),
    ("Name -eq -and", 9, "expected a quoted value after -eq, found '-and'", QUOTES),
    ("Name -like 5", 11, "-like needs a text value", "e.g. Office -like 'Berlin*'"),
    ("Name -notlike $true", 14, "-notlike needs a text value", "e.g. Office -like 'Berlin*'"),
    ("Name -like $null", 11, "-like needs a text value", "e.g. Office -like 'Berlin*'"),
    ("-and", 0, "expected a property name, found '-and'", A_PROPERTY),
    ("Name -eq 1 -or", 14, f"expected a property name, found '{END}'", A_PROPERTY),
    ("(", 1, f"expected a property name, found '{END}'", A_PROPERTY),
    (" # ", 1, "unexpected character '#'", "OPATH filters look like: RecipientTypeDetails -eq 'RoomMailbox'"),
    # a value where a property or an operator belongs is named as written, at its offset
    ("5 -eq 1", 0, "expected a property name, found '5'", A_PROPERTY),
    ("$true -eq 1", 0, "expected a property name, found '$true'", A_PROPERTY),
    ('"x" -eq 1', 0, "expected a property name, found '\"x\"'", A_PROPERTY),
    ("Name 7", 5, "expected a comparison operator after Name, found '7'", OPERATORS),
    ("Name xeq 'a'", 5, "expected a comparison operator after Name, found 'xeq'", OPERATORS),
    ('Name -eq "a" "b"', 13, "unexpected '\"b\"' after a complete condition", "join conditions with -and or -or"),
])
def test_every_parse_error_exactly(text, offset, message, hint):
    with pytest.raises(OpathError) as caught:
        parse(text)
    error = caught.value
    assert (error.offset, error.message, error.hint) == (offset, message, hint)
    assert str(error) == message


@pytest.mark.parametrize("text, node", [
    ("Name -eq 'O''Brien'", Comparison("Name", "eq", "O'Brien")),
    ('Name -eq "say ""hi"""', Comparison("Name", "eq", 'say "hi"')),
    ("Name -eq ''", Comparison("Name", "eq", "")),
    ("Name -eq $NULL", Comparison("Name", "eq", None)),
    ("Name -eq $True", Comparison("Name", "eq", True)),
    ("Name -eq $false", Comparison("Name", "eq", False)),
    ("Name -ge 42", Comparison("Name", "ge", 42)),
    ("customattribute7 -NotLike 'x*'", Comparison("CustomAttribute7", "notlike", "x*")),
    ("Name -eq 1 -and Office -eq 2 -and City -eq 3",
     And((Comparison("Name", "eq", 1), Comparison("Office", "eq", 2), Comparison("City", "eq", 3)))),
    ("Name -eq 1 -or Office -eq 2 -and City -eq 3",  # -and binds tighter
     Or((Comparison("Name", "eq", 1), And((Comparison("Office", "eq", 2), Comparison("City", "eq", 3)))))),
    ("-not -not Name -eq 1", Not(Not(Comparison("Name", "eq", 1)))),
    ("((Name -eq 1))", Comparison("Name", "eq", 1)),
])
def test_parse_trees(text, node):
    assert parse(text) == node


@pytest.mark.parametrize("value, text", [
    (None, "$null"), (True, "$true"), (False, "$false"), (0, "0"), (12, "12"), ("", "''"), ("O'Brien", "'O''Brien'"),
])
def test_quote_value(value, text):
    assert opath.quote_value(value) == text


def test_printing_nests_parentheses_only_where_needed():
    text = "Name -eq 1 -or (Office -eq 'a' -and City -eq $null) -or -not (Title -eq $false)"
    assert to_text(parse(text)) == text
    assert to_text(parse("-not (Name -eq 1 -and Office -eq 'x')")) == "-not (Name -eq 1 -and Office -eq 'x')"
    assert to_text(parse("(Name -eq 1 -or Office -eq 2) -and City -eq 3")) == \
        "(Name -eq 1 -or Office -eq 2) -and City -eq 3"


def test_conjunction_and_disjunction():
    a, b = Comparison("Name", "eq", 1), Comparison("Office", "eq", 2)
    assert opath.conjunction([a]) is a and opath.disjunction([b]) is b
    assert opath.conjunction(iter([a, b])) == And((a, b))
    assert opath.disjunction(iter([a, b])) == Or((a, b))


R = {"Name": "Room 1", "office": "Berlin", "CustomAttribute1": "", "CustomAttribute2": 5,
     "EmailAddresses": ["smtp:a@x.com", "SMTP:b@x.com"]}


@pytest.mark.parametrize("text, result", [
    ("Office -eq 'BERLIN'", True),  # property names and text compare case-insensitively
    ("Office -ne 'berlin'", False),
    ("Office -gt 'Aachen'", True), ("Office -gt 'Berlin'", False), ("Office -ge 'Berlin'", True),
    ("Office -lt 'Cottbus'", True), ("Office -lt 'Berlin'", False), ("Office -le 'Berlin'", True),
    ("CustomAttribute2 -gt 4", True), ("CustomAttribute2 -gt 5", False), ("CustomAttribute2 -ge 5", True), ("CustomAttribute2 -ge 6", False),
    ("CustomAttribute2 -lt 6", True), ("CustomAttribute2 -lt 5", False), ("CustomAttribute2 -le 5", True), ("CustomAttribute2 -le 4", False),
    ("CustomAttribute2 -eq 5", True), ("CustomAttribute2 -ne 5", False), ("CustomAttribute2 -eq '5'", True),
    ("CustomAttribute2 -eq $true", False),  # no error for a comparison of unlike values
    ("Office -like 'ber*'", True), ("Office -like '*lin'", True), ("Office -like 'B?rlin'", True),
    ("Office -notlike 'ber*'", False), ("Office -like 'Berlin*x'", False),
    ("Name -like 'Room [1]'", False),  # [ is literal in OPATH, not a character class
    ("Office -eq $null", False), ("Office -ne $null", True), ("Office -gt $null", False),
    ("CustomAttribute1 -eq $null", True), ("CustomAttribute1 -ne $null", False),  # empty text is no value
    ("Title -eq $null", True), ("Title -eq 'x'", False), ("Title -ne 'x'", True), ("Title -notlike 'x*'", True),
    ("EmailAddresses -eq 'smtp:b@x.com'", True),  # one of the values
    ("EmailAddresses -ne 'smtp:b@x.com'", False),  # -ne: none of the values
    ("EmailAddresses -notlike '*@y.com'", True), ("EmailAddresses -notlike 'smtp:a*'", False),
    ("EmailAddresses -like 'smtp:a*'", True),
    ("Office -eq 'Berlin' -and CustomAttribute2 -eq 5", True), ("Office -eq 'Berlin' -and CustomAttribute2 -eq 6", False),
    ("Office -eq 'Paris' -or CustomAttribute2 -eq 5", True), ("Office -eq 'Paris' -or CustomAttribute2 -eq 6", False),
    ("-not (Office -eq 'Paris')", True), ("-not (Office -eq 'Berlin')", False),
])
def test_evaluate_boundaries(text, result):
    assert opath.evaluate(parse(text), R) is result


def test_values_that_cannot_be_ordered_match_nothing():
    odd = {"CustomAttribute2": [{"a": 1}]}
    assert opath.evaluate(parse("CustomAttribute2 -gt 4"), odd) is False
    assert opath.evaluate(parse("CustomAttribute2 -le 4"), odd) is False


def test_an_error_without_a_hint_has_an_empty_one():
    error = OpathError("bad", 3)
    assert (error.message, error.offset, error.hint, str(error)) == ("bad", 3, "", "bad")


def test_name_with_brackets_matches_literally():
    assert opath.evaluate(parse("Name -like 'Room [1]*'"), {"Name": "Room [1] north"}) is True


@pytest.mark.parametrize("text, types", [
    ("RecipientTypeDetails -eq 'roommailbox'", {"RoomMailbox"}),
    ("RecipientTypeDetails -eq 'equipmentmailbox'", {"EquipmentMailbox"}),
    ("RecipientTypeDetails -eq 'linkedroommailbox'", {"LinkedRoomMailbox"}),
    ("RecipientTypeDetails -eq 'usermailbox'", {"UserMailbox"}),
    ("RecipientTypeDetails -eq 'sharedmailbox'", {"SharedMailbox"}),
    ("RecipientTypeDetails -eq 'Other'", {"Other"}),
    ("ResourceType -eq 'ROOM'", {"RoomMailbox", "LinkedRoomMailbox"}),
    ("ResourceType -eq 'Equipment'", {"EquipmentMailbox"}),
    ("ResourceType -eq 'x'", set()),
    ("RecipientTypeDetails -like '*Mailbox'",
     {"RoomMailbox", "LinkedRoomMailbox", "EquipmentMailbox", "UserMailbox", "SharedMailbox"}),
    ("RecipientTypeDetails -like 'room*'", {"RoomMailbox", "RoomList"}),
    ("RecipientTypeDetails -like 'mail*'", {"MailUser", "MailUniversalSecurityGroup",
                                            "MailUniversalDistributionGroup"}),
    ("RecipientTypeDetails -eq 'RoomMailbox' -and RecipientTypeDetails -eq 'EquipmentMailbox'", set()),
    ("RecipientTypeDetails -eq 'RoomMailbox' -and Office -eq 'x'", {"RoomMailbox"}),
    ("(RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'SharedMailbox') -and "
     "(RecipientTypeDetails -eq 'SharedMailbox' -or ResourceType -eq 'Equipment')", {"SharedMailbox"}),
    ("RecipientTypeDetails -eq 'RoomMailbox' -or ResourceType -eq 'Equipment'",
     {"RoomMailbox", "EquipmentMailbox"}),
])
def test_possible_recipient_types(text, types):
    assert opath.possible_recipient_types(parse(text)) == frozenset(types)


@pytest.mark.parametrize("text", [
    "Office -eq 'x'", "RecipientTypeDetails -ne 'UserMailbox'", "RecipientTypeDetails -eq 1",
    "-not (RecipientTypeDetails -eq 'RoomMailbox')", "Office -like 'R*'",
    "RecipientTypeDetails -eq 'RoomMailbox' -or Office -eq 'x'", "Office -eq 'x' -and City -eq 'y'",
])
def test_filters_that_constrain_no_type(text):
    assert opath.possible_recipient_types(parse(text)) is None


@pytest.mark.parametrize("text, only", [
    ("RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'LinkedRoomMailbox' -or "
     "RecipientTypeDetails -eq 'EquipmentMailbox'", True),  # exactly the resource types
    ("ResourceType -eq 'x'", True),  # matches nothing at all
    ("RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq 'SharedMailbox'", False),
    ("Office -eq 'x'", False),
])
def test_matches_only_resources(text, only):
    assert opath.matches_only_resources(parse(text)) is only


TYPOGRAPHIC = "use a plain apostrophe (') instead, or leave it out"


@pytest.mark.parametrize("text, offset, char", [
    ("Name -eq 'a\u2019b'", 11, "\u2019"),
    ('Office -eq "x\u201cy"', 13, "\u201c"),
    ("Name -eq 'ok' -or Office -eq '\u201a'", 30, "\u201a"),
])
def test_typographic_quotes_in_a_value_are_refused_where_they_stand(text, offset, char):
    with pytest.raises(OpathError) as caught:
        parse(text)
    assert (caught.value.offset, caught.value.message, caught.value.hint) == (
        offset, f"the value holds the typographic quote {char} (U+{ord(char):04X}), which Exchange may read as the "
                "end of the value", TYPOGRAPHIC)


def test_quote_value_refuses_a_typographic_quote_at_its_index():
    with pytest.raises(OpathError) as caught:
        opath.quote_value("ab\u2018")
    assert (caught.value.offset, caught.value.hint) == (2, TYPOGRAPHIC)
    assert caught.value.message.startswith("the value holds the typographic quote \u2018 (U+2018)")


@pytest.mark.parametrize("text, stored", [
    ("Name -eq 1", "(Name -eq 1)"),
    ("Name -eq 1 -and Office -eq 'a'", "((Name -eq 1) -and (Office -eq 'a'))"),
    ("Name -eq 1 -or -not (Office -eq 'a' -and City -eq 'b')",
     "((Name -eq 1) -or (-not ((Office -eq 'a') -and (City -eq 'b'))))"),
    ("-not Name -eq $null", "(-not (Name -eq $null))"),
])
def test_to_stored_text_parenthesises_every_comparison_and_group(text, stored):
    assert opath.to_stored_text(parse(text)) == stored
    assert parse(stored) == parse(text)
