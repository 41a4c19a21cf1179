"""A checked script's syntax tree as plain Python objects, built once per script *shape* and run for every script
of that shape.

A fleet runs one template rendered with each tenant's values: scripts that differ only in their verbatim strings and
comments (their shape is the same: see interpreter._shape). Reading tree-sitter's nodes from Python makes a new
object for every child, type and text asked for, and the interpreter asks thousands of times per run. So the tree of
the first script of a shape is copied once into :class:`SyntaxNode` objects holding what the interpreter reads:
the node's type, its children, its named children without comments, the node a one-child wrapper stands for, and its
text when that holds no verbatim string or comment. A verbatim string's characters are a *slot*, filled by each run
from its own script (:class:`Source`), and so are the positions errors name.

Why a shape's tree fits every script of that shape: tree-sitter's parse is decided by the tokens, and a verbatim
string's characters (or a comment) are one token whatever they hold; the shape keeps every other byte and marks
each slot with its kind, so two scripts of one shape have the same tokens in the same order. The test
test_a_compiled_shape_runs_every_script_of_that_shape_as_its_own_tree_would checks it against scripts compiled from
their own trees.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import NamedTuple

from tree_sitter import Node

from toolkit.render.quoting import unquote_verbatim

# Nodes that only wrap one child in this grammar (precedence levels): a SyntaxNode's ``inner`` skips them.
WRAPPERS = frozenset({
    "pipeline", "pipeline_chain", "logical_expression", "bitwise_expression", "comparison_expression",
    "additive_expression", "multiplicative_expression", "format_expression", "range_expression",
    "array_literal_expression", "unary_expression", "left_assignment_expression",
    # method arguments: the same precedence levels inside an argument list
    "argument_expression", "logical_argument_expression", "bitwise_argument_expression",
    "comparison_argument_expression", "additive_argument_expression", "multiplicative_argument_expression",
    "format_argument_expression", "range_argument_expression"})
SKIPPED = frozenset({"comment", "command_argument_sep"})  # not among a node's ``named``


class SyntaxNode:
    """One node of a compiled shape. ``text`` is None when the node holds a slot (read it with Source.text)."""

    __slots__ = ("children", "end", "inner", "named", "named_children", "slot", "slots_before", "slots_to_end",
                 "start", "text", "type")

    type: str
    children: tuple[SyntaxNode, ...]
    named_children: tuple[SyntaxNode, ...]  # every named child, comments included (tree-sitter's named_children)
    named: tuple[SyntaxNode, ...]  # the named children that are not comments or argument separators
    inner: SyntaxNode  # this node, or what the one-child wrappers around it stand for
    text: str | None
    slot: int  # a verbatim string's characters: which of the script's slots; -1 for every other node
    start: int  # byte offsets in the shape (each slot one byte)
    end: int
    slots_before: int  # slots that end before this node starts
    slots_to_end: int  # slots that end at or before this node ends


class Source:
    """The script a compiled shape runs as: its bytes and where its slots are (verbatim strings' characters and
    comments, in order, as byte ranges)."""

    __slots__ = ("_shifts", "_strings", "data", "ranges")

    def __init__(self, data: bytes, ranges: list[tuple[int, int]]) -> None:
        self.data = data
        self.ranges = ranges
        self._strings: dict[int, str] = {}
        self._shifts: list[int] | None = None

    def string(self, slot: int) -> str:
        """The value of the verbatim string whose characters are this slot (its doubled quotes made single)."""
        text = self._strings.get(slot)
        if text is None:
            start, end = self.ranges[slot]
            text = self._strings[slot] = unquote_verbatim(self.data[start:end].decode("utf-8"))
        return text

    def offset(self, shape_offset: int, slots: int) -> int:
        """A byte offset of the shape in this script, given how many slots come before it."""
        if self._shifts is None:  # what each slot adds to the offsets after it (it is one byte in the shape)
            self._shifts = [0, *accumulate(end - start - 1 for start, end in self.ranges)]
        return shape_offset + self._shifts[slots]

    def text(self, node: SyntaxNode) -> str:
        """The node's text in this script."""
        if node.text is not None:
            return node.text
        return self.data[self.offset(node.start, node.slots_before):self.offset(node.end, node.slots_to_end)].decode(
            "utf-8")

    def position(self, node: SyntaxNode) -> tuple[int, int]:
        """1-based line and column (in bytes, as tree-sitter counts them) of where the node starts in this script."""
        at = self.offset(node.start, node.slots_before)
        line_start = self.data.rfind(b"\n", 0, at) + 1
        return self.data.count(b"\n", 0, at) + 1, at - line_start + 1


class Script(NamedTuple):
    """A checked script ready to run: its shape's compiled tree and the script's own bytes and slots."""

    root: SyntaxNode
    source: Source


def compile_tree(root: Node, source: bytes, ranges: list[tuple[int, int]]) -> SyntaxNode:
    """The tree of a checked script as SyntaxNodes; ``ranges`` are its slots (sorted, not overlapping)."""
    starts, ends = [start for start, _ in ranges], [end for _, end in ranges]
    grown = [0, *accumulate(end - start - 1 for start, end in ranges)]  # what the slots before an offset add

    def build(node: Node, nodes: list[Node], children: tuple[SyntaxNode, ...]) -> SyntaxNode:
        compiled = SyntaxNode()
        compiled.type = node.type
        compiled.children = children
        compiled.named_children = tuple(c for c, n in zip(children, nodes, strict=True) if n.is_named)
        compiled.named = tuple(c for c in compiled.named_children if c.type not in SKIPPED)
        before = bisect_right(ends, node.start_byte)
        to_end = bisect_right(ends, node.end_byte)
        compiled.slots_before, compiled.slots_to_end = before, to_end
        compiled.start, compiled.end = node.start_byte - grown[before], node.end_byte - grown[to_end]
        compiled.slot = bisect_left(starts, node.start_byte) if node.type == "verbatim_string_characters" else -1
        compiled.text = source[node.start_byte:node.end_byte].decode("utf-8") if before == to_end else None
        wraps = compiled.type in WRAPPERS and len(children) == 1 and compiled.named[:1] == children
        compiled.inner = children[0].inner if wraps else compiled
        return compiled

    # Children before their parent, without recursion: a deeply nested expression is many nodes deep (each
    # parenthesis adds a dozen precedence levels), deeper than Python's recursion limit.
    pending: list[tuple[Node, list[Node], list[SyntaxNode]]] = [(root, root.children, [])]
    while True:
        node, children, built = pending[-1]
        if len(built) < len(children):
            child = children[len(built)]
            pending.append((child, child.children, []))
            continue
        pending.pop()
        compiled = build(node, children, tuple(built))
        if not pending:
            return compiled
        pending[-1][2].append(compiled)
