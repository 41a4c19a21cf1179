"""The PowerShell grammar (tree-sitter-powershell): parse scripts and find syntax errors with positions.

Used by the render stage (a rendered script that does not parse is never handed out) and by the sandbox
interpreter, which executes the parse tree.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser, Point, Tree


@lru_cache(maxsize=1)
def language() -> Language:
    return Language(tree_sitter_powershell.language())


@lru_cache(maxsize=64)
def parse(text: str) -> Tree:
    """The script's syntax tree. Cached by text: plan checks the rendered script's syntax, then runs the same text
    in the sandbox (trees are only read, never edited); a fleet worker has a few dozen tenants' scripts in flight.

    A fleet's scripts are one template rendered with each tenant's values: the same lines, a few of them different
    (the quoting function never lets a value hold a line break). Given an earlier script's tree with the changed
    lines marked as edits, tree-sitter re-parses only what the edits touched and returns the tree a full parse
    gives (incremental parsing: https://tree-sitter.github.io/tree-sitter/using-parsers/3-advanced-parsing.html,
    "Editing"), several times faster than parsing from scratch."""
    source = text.encode("utf-8")
    lines = source.split(b"\n")
    with _EARLIER_LOCK:
        earlier = _EARLIER.get(len(lines))
    tree = _reparsed(earlier, lines, source) if earlier is not None else None
    if tree is None:
        tree = Parser(language()).parse(source)
    with _EARLIER_LOCK:
        _EARLIER.pop(len(lines), None)
        _EARLIER[len(lines)] = (lines, tree)  # the newest last: the oldest is dropped first
        if len(_EARLIER) > _EARLIER_KEPT:
            del _EARLIER[next(iter(_EARLIER))]
    return tree


# The last script parsed with each line count: its lines and its tree (never edited: edits go to a copy).
_EARLIER: dict[int, tuple[list[bytes], Tree]] = {}
_EARLIER_LOCK = threading.Lock()
_EARLIER_KEPT = 16


def _reparsed(earlier: tuple[list[bytes], Tree], lines: list[bytes], source: bytes) -> Tree | None:
    """The tree of ``source`` parsed incrementally from an earlier script with as many lines, each changed line an
    edit; None when too many lines changed for that to pay."""
    old_lines, old_tree = earlier
    changed = [row for row, (old, new) in enumerate(zip(old_lines, lines)) if old != new]
    if len(changed) > max(4, len(lines) // 4):
        return None
    tree = old_tree.copy()
    offsets = {}  # the changed rows' start in the earlier script
    offset, wanted = 0, iter(changed)
    row = next(wanted, None)
    for index, line in enumerate(old_lines):
        if index == row:
            offsets[row] = offset
            row = next(wanted, None)
            if row is None:
                break
        offset += len(line) + 1
    shift = 0  # edits are applied one after the other: each one's bytes are where the ones before left them
    for row in changed:
        start, old_length, new_length = offsets[row] + shift, len(old_lines[row]), len(lines[row])
        tree.edit(start_byte=start, old_end_byte=start + old_length, new_end_byte=start + new_length,
                  start_point=Point(row, 0), old_end_point=Point(row, old_length),
                  new_end_point=Point(row, new_length))
        shift += new_length - old_length
    return Parser(language()).parse(source, tree)


@dataclass(frozen=True)
class SyntaxProblem:
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


def walk(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (itself first), in document order; a tree cursor moves in C, five times faster
    than building each node's list of children."""
    cursor = node.walk()
    while True:
        yield cursor.node  # type: ignore[misc]
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():  # a cursor never leaves the node it started at
                return


def syntax_problems(tree: Tree) -> list[SyntaxProblem]:
    """Every ERROR and MISSING node, as 1-based positions."""
    problems = []
    if not tree.root_node.has_error:
        return problems
    for node in walk(tree.root_node):
        if node.is_missing:
            problems.append(SyntaxProblem(node.start_point[0] + 1, node.start_point[1] + 1,
                                          f"missing {node.type!r}"))
        elif node.is_error:
            snippet = node.text.decode("utf-8", "replace")[:40] if node.text else ""
            problems.append(SyntaxProblem(node.start_point[0] + 1, node.start_point[1] + 1,
                                          f"syntax error near {snippet!r}"))
    return problems
