"""Loading playbooks: every YAML error and every loading error at its exact line AND column, with its hint; the
positions of keys and values; variable expansion."""

from __future__ import annotations

import pytest

from toolkit.playbook.diagnostics import Diagnostic, Diagnostics, PlaybookError, Position, Severity
from toolkit.playbook.load import Positions, load_playbook, parse_yaml, peek_platform

SYNTAX_HINT = "check indentation, colons and quotes around this place"


def parse_errors(text: str) -> list[tuple[int, int, str, str, str]]:
    diagnostics = Diagnostics()
    assert parse_yaml(text, "p.yaml", diagnostics) is None
    assert [d.file for d in diagnostics.items] == ["p.yaml"]
    return [(d.position.line, d.position.column, d.code, d.message, d.hint) for d in diagnostics.items]


@pytest.mark.parametrize("text, line, column, message", [
    # a tab where indentation is expected: line 3, the tab itself
    ("exkit: 1\nname: x\n\tscopes: []\n", 3, 1, "found character '\\t' that cannot start any token"),
    # the second colon of "name: a: b"
    ("exkit: 1\nname: a: b\n", 2, 8, "mapping values are not allowed here"),
    # an unclosed quote: the end of the stream, after the last line
    ("exkit: 1\nname: 'abc\n", 3, 1, "found unexpected end of stream"),
    # an unclosed flow sequence: the colon of the next line's key
    ("exkit: 1\nscopes: [a, b\nname: x\n", 3, 5, "expected ',' or ']', but got ':'"),
    # one space too many: the key that is indented wrongly
    ("exkit: 1\nscopes:\n  - name: a\n   rooms: true\n", 4, 4,
     "expected <block end>, but found '<block mapping start>'"),
    # an alias that names no anchor: the asterisk
    ("exkit: 1\nname: *nope\n", 2, 7, "found undefined alias 'nope'"),
    # an unknown escape in a double-quoted value: the escaped character
    ('exkit: 1\nname: "a\\qb"\n', 2, 10, "found unknown escape character 'q'"),
    # a list item inside a mapping
    ("exkit: 1\n- a\n", 2, 1, "expected <block end>, but found '-'"),
])
def test_yaml_syntax_errors_point_at_the_problem(text, line, column, message):
    assert parse_errors(text) == [(line, column, "yaml-syntax", f"YAML syntax error: {message}", SYNTAX_HINT)]


@pytest.mark.parametrize("text, line, column", [
    ("exkit: 1\nname: a\nname: b\n", 3, 1),
    ("exkit: 1\nscopes:\n  - name: a\n    name: b\n", 4, 5),
])
def test_a_duplicate_key_points_at_the_second_one(text, line, column):
    assert parse_errors(text) == [(line, column, "duplicate-key",
                                   'found duplicate key "name" with value "b" (original value: "a")',
                                   "each key may appear once in a mapping")]


def test_yaml_errors_through_the_cli(cli, write_playbook):
    path = write_playbook("exkit: 1\nname: ok\nscopes:\n  - name: a\n    rooms: true: yes\n")
    result = cli("validate", path)
    assert result.exit_code == 1
    assert f"{path}:5:16: error: YAML syntax error: mapping values are not allowed here\n" \
           f"    hint: {SYNTAX_HINT}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def load(write_playbook, text: str, supplied=None):
    path = write_playbook(text)
    diagnostics = Diagnostics()
    document = load_playbook(path, diagnostics, supplied)
    assert {d.file for d in diagnostics.items} <= {str(path)}  # every diagnostic names the file
    return document, [(d.position.line, d.position.column, d.code, d.message, d.hint) for d in diagnostics.items], path


def test_a_missing_file(tmp_path):
    diagnostics = Diagnostics()
    assert load_playbook(tmp_path / "nope.yaml", diagnostics) is None
    [d] = diagnostics.items
    assert d.format() == (f"{tmp_path / 'nope.yaml'}:1:1: error: no such playbook file: {tmp_path / 'nope.yaml'}\n"
                          "    hint: check the path; playbooks are YAML files such as playbooks/classic.yaml")
    assert d.code == "file-not-found"


@pytest.mark.parametrize("content", [b"\xff\xfe not utf-8", None])
def test_an_unreadable_file(tmp_path, content):
    path = tmp_path / "p.yaml"
    if content is None:
        path.mkdir()  # a folder where a file is expected
    else:
        path.write_bytes(content)
    diagnostics = Diagnostics()
    assert load_playbook(path, diagnostics) is None
    [d] = diagnostics.items
    assert (d.code, d.position, d.hint) == ("file-unreadable", Position(1, 1), "playbooks must be readable UTF-8 text")
    assert d.file == str(path)
    assert d.message.startswith("cannot read the playbook: ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_playbook_must_be_a_mapping(write_playbook, text):
    document, errors, _ = load(write_playbook, text)
    assert document is None
    assert errors == [(1, 1, "not-a-mapping", "a playbook must be a YAML mapping (key: value pairs)",
                       "start with 'exkit: 1' and 'name: …'")]


def test_bad_variable_names_point_at_the_name(write_playbook):
    document, errors, _ = load(write_playbook, "exkit: 1\nvars:\n  good: 1\n  9bad: 2\n  'a-b': 3\n")
    hint = "variable names are letters, digits and underscores, not starting with a digit"
    assert errors == [(4, 3, "bad-variable-name", "invalid variable name '9bad'", hint),
                      (5, 3, "bad-variable-name", "invalid variable name 'a-b'", hint)]
    assert document is not None


def test_undefined_variables_point_at_the_value_and_suggest(write_playbook):
    text = ("exkit: 1\nvars:\n  account: svc\nname: '{{ acount }}'\ndescription: x {{ acount }} y\n"
            "scopes:\n  - name: '{{ zzz }}'\n")
    document, errors, _ = load(write_playbook, text)
    hint = "did you mean 'account'? define it under 'vars:', in the inventory, or with --var acount=VALUE"
    assert errors == [
        (4, 7, "undefined-variable", "undefined variable 'acount'", hint),
        (5, 14, "undefined-variable", "undefined variable 'acount'", hint),
        (7, 11, "undefined-variable", "undefined variable 'zzz'",
         "define it under 'vars:', in the inventory, or with --var zzz=VALUE"),
    ]
    assert document.unresolved == {("name",), ("description",), ("scopes", 0, "name")}
    assert document.data["name"] == "{{ acount }}"  # left as written: later stages stay quiet there


def test_a_broken_template_points_at_the_value(write_playbook):
    _, errors, _ = load(write_playbook, "exkit: 1\nname: ok\ndescription: '{{ a b }}'\n")
    assert errors == [(3, 14, "bad-template",
                       "cannot expand variables in this value: expected token 'end of print statement', got 'b'",
                       "write variables as {{ name }}; expressions are sandboxed and bounded (no Python, no huge "
                       "strings or loops)")]


def test_variables_expand_with_their_types_and_precedence(write_playbook):
    text = ("exkit: 1\nvars:\n  rooms: [a, b]\n  who: svc\n  n: 3\nname: '{{ who }}'\nlist: '{{rooms}}'\n"
            "count: '{{ n }}'\ntext: 'n={{ rooms|length }} {{ who }}'\nnested: {deep: ['{{ who }}', 2, true, null]}\n"
            "block: '{% if n > 2 %}big{% endif %}'\nplain: no braces\n")
    document, errors, _ = load(write_playbook, text, {"who": "over"})
    assert errors == []
    assert document.data == {
        "exkit": 1, "vars": {"rooms": ["a", "b"], "who": "svc", "n": 3},  # vars themselves are not expanded
        "name": "over", "list": ["a", "b"], "count": 3, "text": "n=2 over",
        "nested": {"deep": ["over", 2, True, None]}, "block": "big", "plain": "no braces",
    }


def test_vars_that_are_not_a_mapping_define_nothing(write_playbook):
    _, errors, _ = load(write_playbook, "exkit: 1\nvars: [a]\nname: '{{ a }}'\n", {"b": 1})
    assert [e[2:4] for e in errors] == [("undefined-variable", "undefined variable 'a'")]


def test_positions_of_keys_values_and_quoted_scalars(write_playbook):
    text = "exkit: 1\nname: 'x'\nscopes:\n  - name: \"Rooms\"\n    rooms: true\n  - {name: B, office: 'O'}\n"
    document, errors, _ = load(write_playbook, text)
    assert errors == []
    p = document.positions
    assert p.of_key(("name",)) == Position(2, 1) and p.of_value(("name",)) == Position(2, 7)
    assert p.of_value(("scopes", 0)) == Position(4, 5)
    assert p.of_key(("scopes", 0, "rooms")) == Position(5, 5) and p.of_value(("scopes", 0, "rooms")) == Position(5, 12)
    assert p.of_value(("scopes", 1, "office")) == Position(6, 23)
    assert p.quoted == {("name",), ("scopes", 0, "name"), ("scopes", 1, "office")}
    # a path with no node of its own: the nearest enclosing node; a key without its own position: its value
    assert p.of_value(("scopes", 0, "rooms", "deeper", 3)) == Position(5, 12)
    assert p.of_value(("scopes", 0, "rooms", "deeper")) == Position(5, 12)
    assert p.of_value(("scopes", 1, "missing")) == Position(6, 5)
    assert p.of_value(("nothing", "here")) == Position(1, 1)
    assert p.of_key(("scopes", 0)) == Position(4, 5)
    assert Positions().of_value(("a",)) == Position(1, 1)
    assert Positions(values={(): Position(3, 2)}).of_value(("a", 1)) == Position(3, 2)
    assert document.source == text


def test_quoted_list_items_are_recorded(write_playbook):
    document, _, _ = load(write_playbook, "exkit: 1\nlist: ['a', b, \"c\"]\n")
    assert document.positions.quoted == {("list", 0), ("list", 2)}
    assert document.positions.of_value(("list", 2)) == Position(2, 16)


def test_scalars_become_plain_python(write_playbook):
    document, _, _ = load(write_playbook, "exkit: 1\na: 1.5\nb: 0x10\nc: ~\nd: false\ne: 2024-01-02\nf: '7'\n")
    assert document.data == {"exkit": 1, "a": 1.5, "b": 16, "c": None, "d": False, "e": "2024-01-02", "f": "7"}
    assert [type(v) for v in document.data.values()] == [int, float, int, type(None), bool, str, str]


def test_each_parse_gets_its_own_copy():
    text = "exkit: 1\nname: x\nlist: [a, {b: [c]}]\n"
    first = parse_yaml(text, "p.yaml", Diagnostics())
    first.data["list"][1]["b"].append("changed")
    first.data["list"].append("changed")
    second = parse_yaml(text, "p.yaml", Diagnostics())
    assert second.data == {"exkit": 1, "name": "x", "list": ["a", {"b": ["c"]}]}
    assert (second.file, second.source) == ("p.yaml", text)


def test_an_undefined_attribute_names_the_value(write_playbook):
    _, errors, _ = load(write_playbook, "exkit: 1\nvars:\n  a: {}\nname: 'x {{ a.missing }}'\n")
    assert errors == [(4, 7, "undefined-variable", "undefined variable 'x {{ a.missing }}'",
                       "define it under 'vars:', in the inventory, or with --var x {{ a.missing }}=VALUE")]


def test_the_vars_section_itself_is_not_expanded(write_playbook):
    document, errors, _ = load(write_playbook, "exkit: 1\nvars:\n  a: '{{ nowhere }}'\n  b: x\nname: '{{ b }}'\n")
    assert errors == []
    assert document.data["vars"] == {"a": "{{ nowhere }}", "b": "x"}


@pytest.mark.parametrize("text, platform", [
    ("exkit: 1\nplatform: exchange-online\n", "exchange-online"),
    ("exkit: 1\nplatform: exchange-server\n", "exchange-server"),
    ("exkit: 1\nplatform: elsewhere\n", "exchange-server"),
    ("exkit: 1\n", "exchange-server"),
    ("- a\n", "exchange-server"),
    ("a: [\n", "exchange-server"),
])
def test_peek_platform(write_playbook, text, platform):
    assert peek_platform(write_playbook(text)) == platform


def test_peek_platform_of_a_missing_file(tmp_path):
    assert peek_platform(tmp_path / "nope.yaml") == "exchange-server"


# ------------------------------------------------------------------------------------------------ diagnostics
def test_a_diagnostic_formats_as_file_line_column_and_hint():
    d = Diagnostic(Severity.WARNING, "m", "f.yaml", Position(3, 14), "do this", "code-x")
    assert d.format() == "f.yaml:3:14: warning: m\n    hint: do this"
    assert Diagnostic(Severity.NOTE, "m", "f.yaml", Position(1, 2)).format() == "f.yaml:1:2: note: m"
    assert d.as_dict() == {"file": "f.yaml", "line": 3, "column": 14, "severity": "warning", "code": "code-x",
                           "message": "m", "hint": "do this"}


def test_diagnostics_collect_sort_and_fail():
    diagnostics = Diagnostics()
    diagnostics.warning("w", "late warning", "b.yaml", Position(1, 1), "h")
    diagnostics.error("e", "second", "a.yaml", Position(2, 1))
    diagnostics.error("e", "first", "a.yaml", Position(1, 5))
    diagnostics.note("n", "a note", "a.yaml", Position(1, 5))
    diagnostics.error("e", "first", "a.yaml", Position(1, 5))  # the same one again: kept once
    assert [d.message for d in diagnostics.sorted()] == ["first", "a note", "second", "late warning"]
    assert [d.message for d in diagnostics.errors] == ["second", "first"]
    assert [d.message for d in diagnostics.warnings] == ["late warning"]
    assert [d.severity for d in diagnostics.items] == [Severity.WARNING, Severity.ERROR, Severity.ERROR,
                                                        Severity.NOTE]
    assert diagnostics.items[0].hint == "h" and diagnostics.items[0].code == "w"
    assert diagnostics.failed() and diagnostics.failed(strict=True)
    other = Diagnostics()
    other.extend(diagnostics)
    other.extend(diagnostics)
    assert other.items == diagnostics.items
    error = PlaybookError(diagnostics)
    assert error.diagnostics is diagnostics
    assert str(error).splitlines()[0] == "a.yaml:1:5: error: first"


def test_a_diagnostic_without_a_hint_has_none():
    diagnostics = Diagnostics()
    diagnostics.error("e", "bad", "a.yaml", Position(1, 1))
    diagnostics.warning("w", "odd", "a.yaml", Position(1, 1))
    diagnostics.note("n", "fyi", "a.yaml", Position(1, 1))
    diagnostics.add(Severity.NOTE, "x", "plain", "a.yaml", Position(2, 1))
    assert [(d.code, d.hint) for d in diagnostics.items] == [("e", ""), ("w", ""), ("n", ""), ("x", "")]
    assert diagnostics.items[0].format() == "a.yaml:1:1: error: bad"


def test_warnings_fail_only_when_strict():
    diagnostics = Diagnostics()
    assert not diagnostics.failed() and not diagnostics.failed(strict=True)
    diagnostics.warning("w", "careful", "a.yaml", Position(1, 1))
    assert not diagnostics.failed()
    assert diagnostics.failed(strict=True)
    diagnostics.note("n", "fyi", "a.yaml", Position(1, 1))
    assert not diagnostics.failed()


REQUIRES = ("exkit: 1\nrequires:\n  tenant: the tenant's short name\n  9x: bad\n  both: has a default\nvars:\n"
            "  both: 1\nname: '{{ tenant }}'\nother: '{{ nope }}'\n")
BAD_NAME = (4, 3, "bad-variable-name", "invalid variable name '9x'",
            "variable names are letters, digits and underscores, not starting with a digit")
WITH_DEFAULT = (7, 3, "required-with-default", "required variable 'both' also has a default under 'vars:'",
                "a required variable has no default: each target supplies it; remove it from 'vars:' (or from "
                "'requires:' to keep the default)")
UNDEFINED = (9, 8, "undefined-variable", "undefined variable 'nope'",
             "define it under 'vars:', in the inventory, or with --var nope=VALUE")


def missing(name, description, where=""):
    line = {"tenant": 3, "9x": 4}[name]
    return (line, 3, "missing-required-variable", f"required variable {name!r} has no value{where}",
            f"{description} — set it in the inventory (the target's or its group's vars:) or with --var {name}=VALUE")


@pytest.mark.parametrize("options, expected", [
    ({}, [BAD_NAME, missing("tenant", "the tenant's short name"), missing("9x", "bad"), WITH_DEFAULT, UNDEFINED]),
    ({"target": "t1"}, [BAD_NAME, missing("tenant", "the tenant's short name", " for target 't1'"),
                        missing("9x", "bad", " for target 't1'"), WITH_DEFAULT, UNDEFINED]),
    ({"placeholders": True}, [BAD_NAME, WITH_DEFAULT, UNDEFINED]),
])
def test_required_variables(options, expected):
    diagnostics = Diagnostics()
    document = parse_yaml(REQUIRES, "p.yaml", diagnostics)
    from toolkit.playbook.load import expand_variables

    expand_variables(document, diagnostics, {}, **options)
    assert [(d.position.line, d.position.column, d.code, d.message, d.hint) for d in diagnostics.items] == expected
    assert {d.file for d in diagnostics.items} == {"p.yaml"}
    assert document.data["name"] == "{{ tenant }}"  # left unchecked: one error says what is missing
    assert document.data["requires"]["tenant"] == "the tenant's short name"  # requires: itself is not expanded


def test_a_required_variable_supplied_by_the_target():
    diagnostics = Diagnostics()
    document = parse_yaml(REQUIRES, "p.yaml", diagnostics)
    from toolkit.playbook.load import expand_variables

    expand_variables(document, diagnostics, {"tenant": "fab", "9x": 1}, target="t1")
    assert [d.code for d in diagnostics.items] == ["bad-variable-name", "required-with-default", "undefined-variable"]
    assert document.data["name"] == "fab"


def test_load_playbook_passes_the_target_and_placeholders_on(write_playbook):
    path = write_playbook(REQUIRES)
    for options, message in (({}, "required variable 'tenant' has no value"),
                             ({"target": "t1"}, "required variable 'tenant' has no value for target 't1'"),
                             ({"placeholders": True}, None)):
        diagnostics = Diagnostics()
        assert load_playbook(path, diagnostics, **options) is not None
        found = [d.message for d in diagnostics.items if d.code == "missing-required-variable"]
        assert found[:1] == ([message] if message else [])


def test_a_key_merged_in_stands_where_the_anchored_mapping_has_it():
    diagnostics = Diagnostics()
    text = "exkit: 1\nscopes:\n  - &rooms\n    name: Rooms\n    rooms: true\n  - <<: *rooms\n    name: Rooms again\n"
    document = parse_yaml(text, "p.yaml", diagnostics)
    assert document is not None and diagnostics.items == []
    assert document.data["scopes"][1] == {"name": "Rooms again", "rooms": True}
    positions = document.positions
    assert (positions.of_key(("scopes", 1, "rooms")), positions.of_value(("scopes", 1, "rooms"))) == \
        (Position(5, 5), Position(5, 12))
    assert positions.of_key(("scopes", 1, "name")) == Position(7, 5)


def test_each_yaml_bound_is_a_yaml_limit_error_at_its_place(tmp_path):
    from toolkit.playbook.bounded_yaml import limit_hint

    too_large = "the file is 8.0 MiB, over the limit of 8 MiB"
    big = "# " + "x" * (8 * 1024 * 1024) + "\n"
    # text already in memory (a playbook read from git): its UTF-8 length
    assert parse_errors(big) == [(1, 1, "yaml-limit", too_large, limit_hint())]
    # a file: refused before it is read
    path = tmp_path / "big.yaml"
    path.write_text(big)
    diagnostics = Diagnostics()
    assert load_playbook(path, diagnostics) is None
    assert [(d.file, d.position, d.code, d.message, d.hint) for d in diagnostics.items] == [
        (str(path), Position(1, 1), "yaml-limit", too_large, limit_hint())]
    # nesting: the bracket that passes the bound
    assert parse_errors("exkit: 1\nlist: " + "[" * 70 + "]" * 70 + "\n") == [
        (2, 71, "yaml-limit", "the document nests deeper than 64 levels", limit_hint())]


def test_peek_platform_parses_the_file_once_for_the_validation_that_follows(write_playbook):
    from toolkit.playbook.load import _parsed

    path = write_playbook("exkit: 1\nname: peeked\nplatform: exchange-online\n")
    _parsed.cache_clear()
    assert peek_platform(path) == "exchange-online"
    document = load_playbook(path, Diagnostics())
    assert document is not None and document.file == str(path)
    info = _parsed.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # the validation a moment later reuses the peek's parse
