"""The grammar's incremental parsing: a script parsed from an earlier one's tree (its changed lines as edits) gets the
tree a full parse gives, whatever the edits do to the structure."""

from __future__ import annotations

import uuid
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tree_sitter import Parser, Tree

from toolkit.render import syntax

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.ps1"))
# Fragments that change how the rest of a script lexes: quotes, here-strings, block comments, braces, escapes.
TRICKY = ["'", "''", "\u2019", '"', "@'", "'@", '@"', '"@', "<#", "#>", "#", "{", "}", "(", ")", "$(", "`", ";",
          "|", "-eq", "New-RoleGroup -Name 'x'", "if ($a) {", "} else {", "try {", "} catch {", "$x = @{"]


def _nodes(tree: Tree) -> list[tuple[object, ...]]:
    return [(n.type, n.start_byte, n.end_byte, n.start_point, n.end_point, n.is_missing, n.is_error)
            for n in syntax.walk(tree.root_node)]


def _full(source: bytes) -> Tree:
    return Parser(syntax.language()).parse(source)


@st.composite
def _edited(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A golden script and the same script with a few lines replaced (as many lines: no line break added)."""
    base = draw(st.sampled_from(GOLDEN)).read_bytes()
    lines = base.split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        row = draw(st.integers(0, len(lines) - 1))
        pieces = draw(st.lists(st.sampled_from(TRICKY) | st.text(st.characters(blacklist_categories=("Cc", "Cs")),
                                                                   max_size=12), max_size=4))
        keep = draw(st.integers(0, len(lines[row])))
        lines[row] = lines[row][:keep] + "".join(pieces).encode("utf-8")
    return base, b"\n".join(lines)


@settings(max_examples=150, deadline=None)
@given(_edited())
def test_an_incremental_parse_gets_the_tree_a_full_parse_gets(pair: tuple[bytes, bytes]) -> None:
    base, edited = pair
    earlier = (base.split(b"\n"), _full(base))
    tree = syntax._reparsed(earlier, edited.split(b"\n"), edited)
    assert tree is not None  # at most four lines changed: always the incremental path
    assert _nodes(tree) == _nodes(_full(edited))
    assert _nodes(earlier[1]) == _nodes(_full(base))  # the earlier tree was not edited (a copy was)


def test_parse_reuses_the_tree_of_an_earlier_script_with_as_many_lines() -> None:
    golden = (Path(__file__).parent / "golden" / "classic.apply.ps1").read_text(encoding="utf-8")
    unique = uuid.uuid4().hex  # texts no other test parsed (parse caches by text, in front of the tree reuse)
    first = golden.replace("Room booking service accounts", f"Room booking {unique} 1")
    second = golden.replace("Room booking service accounts", f"Room booking {unique} 2")
    assert second != first and second.count("\n") == first.count("\n")
    syntax.parse.cache_clear()  # parse is cached by text: an earlier test may have parsed this very script
    syntax.parse(first)
    lines = second.encode().split(b"\n")
    assert syntax._EARLIER[len(lines)][0] == first.encode().split(b"\n")  # parse kept the first script's tree
    tree = syntax.parse(second)
    assert _nodes(tree) == _nodes(_full(second.encode()))
    assert syntax._EARLIER[len(lines)] == (lines, tree)


def test_many_changed_lines_are_parsed_from_scratch() -> None:
    base = b"\n".join(b"$a%d = 'x'" % i for i in range(40))
    edited = b"\n".join(b"$b%d = 'y'" % i for i in range(40))
    assert syntax._reparsed((base.split(b"\n"), _full(base)), edited.split(b"\n"), edited) is None
