"""A PowerShell interpreter for the subset exkit's templates use, on the tree-sitter-powershell grammar.

Supported: variables and assignment (``=``, ``+=``, element assignment), ``if/elseif/else``, ``foreach``,
``try/catch/finally``, ``throw``, ``-not -and -or``, comparisons (``-eq -ne -lt -le -gt -ge -like -notlike
-contains -notcontains -in -notin``), ``+``, property access (with member enumeration), indexing, ``[string]/[int]/[bool]/[array]`` casts,
``@()`` arrays, ``@{}`` hashtables, pipelines of commands, ``$ErrorActionPreference`` and ``-ErrorAction``, the
.NET members exkit's WinRM bootstrap calls (toolkit/sandbox/dotnet.py) and ``& <script block>``.

Before running anything the whole script is checked: a syntax error, a construct outside the subset, an unknown
command or an unknown parameter fails with ``line:col: …`` and nothing runs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from tree_sitter import Node, Query, QueryCursor, Tree

from toolkit.render.syntax import language, parse, syntax_problems, walk
from toolkit.sandbox import dotnet
from toolkit.sandbox.commands import BindingError, CmdletError, Command, convert
from toolkit.sandbox.program import (
    SKIPPED,
    WRAPPERS,
    Script,
    Source,
    SyntaxNode,
    compile_tree,
)
from toolkit.sandbox.values import (
    Hashtable,
    PSObject,
    as_list,
    collapse,
    convert_to_json,
    equals,
    is_true,
    to_string,
)

_ALLOWED = WRAPPERS | {
    "program", "statement_list", "comment", "empty_statement", "command", "command_name", "command_elements",
    "command_parameter", "command_argument_sep", "generic_token", "assignment_expression", "assignement_operator",
    "if_statement", "elseif_clauses", "elseif_clause", "else_clause", "statement_block", "foreach_statement",
    "try_statement", "catch_clauses", "catch_clause", "finally_clause", "flow_control_statement", "comparison_operator",
    "expression_with_unary_operator", "cast_expression", "type_literal", "type_spec", "type_name",
    "type_identifier", "member_access", "member_name", "simple_name", "element_access", "variable",
    "string_literal", "verbatim_string_characters", "expandable_string_literal", "integer_literal",
    "decimal_integer_literal", "array_expression", "hash_literal_expression", "hash_literal_body", "hash_entry",
    "key_expression", "parenthesized_expression",
    # .NET member calls (toolkit/sandbox/dotnet.py says which) and the call operator & on a script block
    "invokation_expression", "argument_list", "argument_expression_list", "command_invokation_operator",
    "command_name_expr",
}
_COMPARISONS = {"-eq", "-ne", "-like", "-notlike", "-contains", "-notcontains", "-in", "-notin", "-lt", "-le",
                "-gt", "-ge", "-ieq", "-ine", "-ilike", "-inotlike", "-icontains", "-inotcontains"}
_CASTS = {"string", "int", "bool", "array", "object[]", "string[]"}
_ASSIGNMENT_OPERATORS = {"=", "+="}


class ScriptError(Exception):
    """The script cannot run: a syntax error or something outside the supported subset. Nothing ran."""


class PSRuntimeError(Exception):
    """A terminating error, catchable with try/catch."""

    def __init__(self, message: str, line: int = 0, column: int = 0, category: str = "NotSpecified",
                 reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.category = category
        self.reason = reason or "RuntimeException"

    def record(self) -> PSObject:
        """``$_`` in a catch block. ``CategoryInfo.Reason`` is the exception's type name, as PowerShell shows it in
        "+ CategoryInfo : NotSpecified: (:) [Get-ManagementScope], ManagementObjectNotFoundException"
        (System.Management.Automation.ErrorCategoryInfo.Reason); errors from remote sessions keep it."""
        exception = PSObject("System.Exception", {"Message": self.message})
        category = PSObject("System.Management.Automation.ErrorCategoryInfo",
                            {"Category": self.category, "Reason": self.reason})
        return PSObject("System.Management.Automation.ErrorRecord", {
            "Exception": exception, "CategoryInfo": category,
            "FullyQualifiedErrorId": f"{self.reason},{self.category}"})


@dataclass
class RunOutcome:
    output: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exit_code: int = 0


def _line_col(node: Node) -> tuple[int, int]:
    return node.start_point[0] + 1, node.start_point[1] + 1


def _kind_ids(names: set[str]) -> frozenset[int]:
    """The grammar's kind ids of these node types (comparing ints, not a new str per node.type)."""
    grammar = language()
    return frozenset(i for i in range(grammar.node_kind_count) if grammar.node_kind_for_id(i) in names)


_SKIPPED_IDS = _kind_ids(set(SKIPPED))


# What _analyse does with each kind of node, by the grammar's kind id (node.kind_id is an int; node.type builds a
# new str for each of the thousands of nodes of a script).
_PLAIN, _NOT_ALLOWED, _WRAPPER, _COMMAND, _FLOW, _UNARY, _CAST, _EXPANDABLE, _TYPE, _INVOKE, _ASSIGN = range(11)
_SPECIAL = {"command": _COMMAND, "flow_control_statement": _FLOW, "expression_with_unary_operator": _UNARY,
            "cast_expression": _CAST, "expandable_string_literal": _EXPANDABLE, "type_literal": _TYPE,
            "command_invokation_operator": _INVOKE, "assignement_operator": _ASSIGN}


@lru_cache(maxsize=1)
def _kind_actions() -> tuple[int, ...]:
    grammar = language()

    def action(name: str) -> int:
        if name not in _ALLOWED:
            return _NOT_ALLOWED
        return _WRAPPER if name in WRAPPERS else _SPECIAL.get(name, _PLAIN)

    return tuple(action(grammar.node_kind_for_id(i) or "") for i in range(grammar.node_kind_count))


# A fleet's scripts differ in their single-quoted strings and comments only (each tenant's names and addresses, the
# header's digest), and whether a script stays inside the subset never depends on what its verbatim strings or its
# comments hold: a script's *shape* — its text with those taken out, where the grammar found them — that was walked
# and found inside the subset is not walked again (each tenant's script would otherwise be walked node by node in
# Python, on both ends).
# Each shape also keeps the command tables its commands were found in, with every parameter as written: the names
# of its commands (lower case) and, for each, the parameter index it was resolved with (Command._lowered, shared by
# every command of the same parameters). A table that has the same index under each of those names resolves the same
# names the same way, so the shape's commands are not checked again against it.
_SHAPES_INSIDE: dict[bytes, list[tuple[tuple[str, Any], ...]]] = {}  # ordered by last use: the least recent first
_SHAPES_LOCK = threading.Lock()
_FIRST_SIGHT = threading.Lock()  # held while a new shape is walked or compiled
_SHAPES_KEPT = 256
_TABLES_KEPT = 8  # command tables kept per shape (a run's: the sandbox's, the plan's, the REST runner's)


# A shape found inside the subset is also compiled once (toolkit/sandbox/program.py) and run for every script of it.
_COMPILED: dict[bytes, SyntaxNode] = {}  # ordered by last use, as _SHAPES_INSIDE


@lru_cache(maxsize=1)
def _shape_query() -> Query:
    return Query(language(), "(verbatim_string_characters) @string (comment) @comment")


@lru_cache(maxsize=1)
def _command_query() -> Query:
    return Query(language(), "(command) @command")


def _shape(tree: Tree, source: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """The script's shape, and where its verbatim strings' characters and comments are (byte ranges in document
    order: the compiled shape's slots). Each is one byte of the shape, which says which of the two it was. Found
    by the grammar's query, in C."""
    found = QueryCursor(_shape_query()).captures(tree.root_node)
    slots = sorted([(n.start_byte, n.end_byte, b"\0") for n in found.get("string", ())] +
                   [(n.start_byte, n.end_byte, b"\1") for n in found.get("comment", ())])
    # The marks must not be mistaken for the script's own bytes: where the script holds one outside its slots, it
    # is escaped (so a \1 written as a bare argument never reads as a comment's mark).
    escape = _escaped if any(mark in source for mark in (b"\0", b"\1", b"\2")) else bytes
    parts, last = [], 0
    for start, end, mark in slots:
        parts += (escape(source[last:start]), mark)
        last = end
    parts.append(escape(source[last:]))
    return b"".join(parts), [(start, end) for start, end, _ in slots]


def _escaped(text: bytes) -> bytes:
    return text.replace(b"\2", b"\2\2").replace(b"\0", b"\2\0").replace(b"\1", b"\2\1")


def _command_nodes(tree: Tree) -> tuple[Node, ...]:
    """The script's command nodes in document order."""
    found = QueryCursor(_command_query()).captures(tree.root_node).get("command", [])
    return tuple(sorted(found, key=lambda n: n.start_byte))


class _Analysis(NamedTuple):
    tree: Tree
    problems: tuple[str, ...]
    commands: tuple[Node, ...] | None  # found by the walk; None when the shape was known (see _command_nodes)
    shape: bytes  # b"" with problems
    slots: list[tuple[int, int]]
    source: bytes


@lru_cache(maxsize=64)
def _analyse(text: str) -> _Analysis:
    """Parse a script and find what no command table can fix: syntax errors and constructs outside the subset.
    Returns the tree, those problems, the command nodes (checked against the command table by the caller), the
    script's shape (b"" with problems) and slots. Cached by text, as PowerShell caches compiled script blocks: a
    fleet runs the same script many times."""
    tree = parse(text)
    source = text.encode("utf-8")
    problems = syntax_problems(tree)
    if problems:
        return _Analysis(tree, ("; ".join(f"{p.line}:{p.column}: PowerShell syntax error ({p.message})"
                                          for p in problems[:5]),), (), b"", [], source)
    shape, slots = _shape(tree, source)
    if _known_shape(shape):
        return _Analysis(tree, (), None, shape, slots, source)
    with _FIRST_SIGHT:  # a fleet's first tenants come at once: one thread walks a new shape, the others find it
        if _known_shape(shape):
            return _Analysis(tree, (), None, shape, slots, source)
        return _walked(tree, shape, slots, source)


def _known_shape(shape: bytes) -> bool:
    with _SHAPES_LOCK:
        if shape in _SHAPES_INSIDE:  # used again: the newest now (the least recently used is dropped first)
            _SHAPES_INSIDE[shape] = _SHAPES_INSIDE.pop(shape)
            return True
    return False


def _walked(tree: Tree, shape: bytes, slots: list[tuple[int, int]], source: bytes) -> _Analysis:
    """Walk a script of a shape not seen before: what is outside the subset, and its command nodes."""
    actions = _kind_actions()
    found: list[str] = []
    commands: list[Node] = []
    for node in walk(tree.root_node):
        kind = actions[node.kind_id]
        if kind == _PLAIN:
            continue
        if kind == _NOT_ALLOWED:
            if node.is_named:
                found.append(_unsupported(node))
        elif kind == _WRAPPER:
            if node.child_count > 1:
                found.extend(_check_operator(node))
        elif kind == _COMMAND:
            commands.append(node)
        elif kind == _FLOW:
            if node.children[0].type != "throw":
                found.append(_unsupported(node))
        elif kind == _UNARY:
            if node.children[0].type not in ("-not", "!", "cast_expression"):
                found.append(_unsupported(node))
        elif kind == _CAST:
            type_name = node.named_children[0].text.decode().strip("[]").lower()
            if type_name not in _CASTS:
                found.append(_unsupported(node, f"cast to [{type_name}]"))
        elif kind == _EXPANDABLE:
            if any(c in node.text.decode() for c in "$`"):
                found.append(_unsupported(node, "expandable string with variables or escapes (use single quotes "
                                                "and +)"))
        elif kind == _TYPE:
            if node.parent is not None and node.parent.type != "cast_expression" and \
                    dotnet.type_name(node.text.decode()) is None:
                found.append(_unsupported(node, f"type {node.text.decode()}"))
        elif kind == _INVOKE:
            if node.text.decode() != "&":
                found.append(_unsupported(node, f"operator {node.text.decode()} (dot-sourcing)"))
        elif node.text.decode() not in _ASSIGNMENT_OPERATORS:  # _ASSIGN
            found.append(_unsupported(node, f"assignment operator {node.text.decode()}"))
    if not found:
        with _SHAPES_LOCK:
            _SHAPES_INSIDE[shape] = []
            if len(_SHAPES_INSIDE) > _SHAPES_KEPT:
                del _SHAPES_INSIDE[next(iter(_SHAPES_INSIDE))]
    return _Analysis(tree, tuple(found), tuple(commands), shape if not found else b"", slots, source)


def _compiled(analysis: _Analysis) -> SyntaxNode:
    """The compiled tree of the analysed script's shape (inside the subset): compiled from this script's tree the
    first time the shape is run."""
    with _SHAPES_LOCK:
        root = _COMPILED.pop(analysis.shape, None)
    if root is None:
        with _FIRST_SIGHT:  # compiled by one thread; the others wait for it
            with _SHAPES_LOCK:
                root = _COMPILED.pop(analysis.shape, None)
            if root is None:
                root = compile_tree(analysis.tree.root_node, analysis.source, analysis.slots)
    with _SHAPES_LOCK:
        _COMPILED[analysis.shape] = root  # the newest last: the least recently used is dropped first
        if len(_COMPILED) > _SHAPES_KEPT:
            del _COMPILED[next(iter(_COMPILED))]
    return root


def _elements(node: Any) -> list[Any]:
    """A command node's arguments and parameters (a ':' separator kept: ``-Name:value``), in the tree as parsed
    (checking: its texts are bytes) or compiled (running: str)."""
    out = []
    for child in node.named_children:
        if child.type == "command_elements":
            out.extend(c for c in child.named_children if c.type != "command_argument_sep" or
                       c.text.strip() in (b":", ":"))
    return out


def _unsupported(node: Node, what: str | None = None) -> str:
    line, col = _line_col(node)
    snippet = node.text.decode("utf-8", "replace").splitlines()[0][:50] if node.text else ""
    return f"{line}:{col}: unsupported PowerShell construct {what or node.type} ({snippet!r})"


def _check_operator(node: Node) -> list[str]:
    operators = [c for c in node.children if not c.is_named or c.type == "comparison_operator"]
    allowed = {"logical_expression": {"-and", "-or"}, "comparison_expression": _COMPARISONS,
               "additive_expression": {"+"}, "pipeline_chain": {"|"}, "array_literal_expression": {","}}
    out = []
    for operator in operators:
        text = operator.text.decode().lower()
        if text not in allowed.get(node.type, set()):
            out.append(_unsupported(operator, f"operator {text}"))
    return out


class Interpreter:
    """Runs scripts against a command table (built-ins plus the sandbox organisation's cmdlets)."""

    def __init__(self, commands: Mapping[str, Command], stdin: str = "") -> None:
        builtins = _builtin_commands(self)
        self.commands: dict[str, Command] = {name.lower(): cmd for name, cmd in {**builtins, **commands}.items()}
        self.variables: dict[str, Any] = {}
        self.outcome = RunOutcome()
        self.stdin = dotnet.TextReader(stdin)  # [System.Console]::In
        self.on_output: Callable[[str], None] | None = None  # each output line as it is written
        self.source = Source(b"", [])  # the script running: its strings, and where its nodes are

    def _text(self, node: SyntaxNode) -> str:
        return self.source.text(node)

    def _where(self, node: SyntaxNode) -> tuple[int, int]:
        return self.source.position(node)

    # ------------------------------------------------------------------------------------------- checking
    def check(self, text: str) -> Script:
        """The script checked and ready to run; ScriptError (every problem, as line:col) when it cannot run."""
        analysis = _analyse(text)
        shape = analysis.shape
        if not (shape and self._found_before(shape)):
            found = list(analysis.problems)
            table: list[tuple[str, Any]] = []
            commands = analysis.commands if analysis.commands is not None else _command_nodes(analysis.tree)
            for node in commands:
                found.extend(self._check_command(node, table))
            if found:
                raise ScriptError("\n".join(found))
            with _SHAPES_LOCK:
                tables = _SHAPES_INSIDE.get(shape)
                if tables is not None and len(tables) < _TABLES_KEPT:
                    tables.append(tuple(table))
        return Script(_compiled(analysis), Source(analysis.source, analysis.slots))

    def _found_before(self, shape: bytes) -> bool:
        """Whether the shape's commands were all found, with their parameters, in a table that resolves them as this
        interpreter's does."""
        with _SHAPES_LOCK:
            tables = list(_SHAPES_INSIDE.get(shape) or ())
        for table in tables:
            if all((command := self.commands.get(name)) is not None and command._lowered is index
                   for name, index in table):
                return True
        return False

    def _check_command(self, node: Node, table: list[tuple[str, Any]]) -> list[str]:
        """Problems of one command node against the command table; the command it names (lower case) and its
        parameter index are added to ``table``."""
        if node.named_children[0].type == "command_invokation_operator":
            if _elements(node):
                return [_unsupported(node, "arguments to a script block")]
            return []
        name_node = node.child_by_field_name("command_name") or node.named_children[0]
        name = name_node.text.decode()
        command = self.commands.get(name.lower())
        line, col = _line_col(name_node)
        if command is None:
            return [f"{line}:{col}: the sandbox does not implement the command {name!r}"]
        table.append((name.lower(), command._lowered))
        problems = []
        for element in _elements(node):
            if element.type == "command_parameter":
                written = element.text.decode().lstrip("-").rstrip(":")
                try:
                    command.resolve_parameter(written)
                except BindingError as exc:
                    pline, pcol = _line_col(element)
                    problems.append(f"{pline}:{pcol}: {exc}")
        return problems

    # ------------------------------------------------------------------------------------------- running
    def run(self, text: str) -> RunOutcome:
        """Check, then run a script. A terminating error stops it with exit code 1."""
        self.outcome = RunOutcome()
        script = self.check(text)
        self.source = script.source
        self.variables = {"erroractionpreference": "Continue"}
        try:
            for value in self.run_statements(script.root):
                self.outcome.output.append(to_string(value))
                if self.on_output is not None:
                    self.on_output(self.outcome.output[-1])
        except PSRuntimeError as exc:
            where = f"At line:{exc.line} char:{exc.column}" if exc.line else "At the script"
            self.outcome.errors.append(f"{exc.message}\n    {where}\n    + CategoryInfo: {exc.category}")
            self.outcome.exit_code = 1
        return self.outcome

    def run_statements(self, node: SyntaxNode) -> Iterator[Any]:
        for child in node.named:
            if child.type in ("statement_list", "program"):
                yield from self.run_statements(child)
            elif child.type != "empty_statement":
                yield from self.run_statement(child)

    def run_statement(self, node: SyntaxNode) -> Iterator[Any]:
        node = node.inner
        kind = node.type
        if kind == "assignment_expression":
            self.assign(node)
        elif kind == "if_statement":
            yield from self.run_if(node)
        elif kind == "foreach_statement":
            yield from self.run_foreach(node)
        elif kind == "try_statement":
            yield from self.run_try(node)
        elif kind == "flow_control_statement":
            self.run_throw(node)
        elif kind in ("pipeline_chain", "command"):
            yield from self.run_pipeline(node)
        else:
            yield from as_list_output(self.evaluate(node))

    def run_block(self, block: SyntaxNode) -> Iterator[Any]:
        for child in block.named:
            if child.type == "statement_list":
                yield from self.run_statements(child)

    def run_if(self, node: SyntaxNode) -> Iterator[Any]:
        children = node.named
        condition, block = children[0], children[1]
        if is_true(self.evaluate(condition)):
            yield from self.run_block(block)
            return
        for child in children[2:]:
            if child.type == "elseif_clauses":
                for clause in child.named:
                    clause_condition, clause_block = clause.named[:2]
                    if is_true(self.evaluate(clause_condition)):
                        yield from self.run_block(clause_block)
                        return
            elif child.type == "else_clause":
                yield from self.run_block(child.named[0])

    def run_foreach(self, node: SyntaxNode) -> Iterator[Any]:
        children = node.named
        variable, source, block = children[0], children[1], children[-1]
        name = self._text(variable)[1:].lower()
        for item in list(as_list(self.evaluate(source))):
            self.variables[name] = item
            yield from self.run_block(block)

    def run_try(self, node: SyntaxNode) -> Iterator[Any]:
        children = node.named
        block = children[0]
        clauses = [c for c in children if c.type == "catch_clauses"]
        final = [c for c in children if c.type == "finally_clause"]
        try:
            yield from self._run_try_catch(block, clauses)
        finally:
            if final:
                yield from self.run_block(final[0].named[0])

    def _run_try_catch(self, block: SyntaxNode, clauses: list[SyntaxNode]) -> Iterator[Any]:
        output: list[Any] = []
        try:
            for value in self.run_block(block):
                output.append(value)
        except PSRuntimeError as exc:
            yield from output
            if not clauses:
                raise
            catch_block = clauses[0].named[0].named[-1]
            previous = self.variables.get("_")
            self.variables["_"] = exc.record()
            # kept for a bare 'throw' in the block: without the Python frames it was raised through (they hold this
            # interpreter, whose variables would hold it back: a cycle only the cycle collector frees)
            exc.__traceback__ = exc.__context__ = None
            self.variables["exkit_current_error"] = exc
            try:
                yield from self.run_block(catch_block)
            finally:
                self.variables["_"] = previous
            return
        yield from output

    def run_throw(self, node: SyntaxNode) -> None:
        line, col = self._where(node)
        arguments = node.named
        if arguments:
            raise PSRuntimeError(to_string(self.evaluate(arguments[0])), line, col, "OperationStopped")
        current = self.variables.get("exkit_current_error")
        if isinstance(current, PSRuntimeError):
            raise current
        raise PSRuntimeError("ScriptHalted", line, col, "OperationStopped")

    # ------------------------------------------------------------------------------------------- assignment
    def assign(self, node: SyntaxNode) -> None:
        target, operator, value_node = node.named[:3]
        target = target.inner
        value = self.capture(value_node)
        if operator.text == "+=":
            value = add(self.evaluate(target), value)
        if target.type == "variable":
            self.variables[target.text[1:].lower()] = value
        elif target.type == "element_access":
            container, index = target.named[:2]
            table = self.evaluate(container)
            key = self.evaluate(index)
            if isinstance(table, Hashtable):
                table[to_string(key)] = value
            elif isinstance(table, list) and isinstance(key, int):
                table[key] = value
            else:
                line, col = self._where(target)
                raise PSRuntimeError("Cannot index into a null array.", line, col, "InvalidOperation")
        else:
            line, col = self._where(target)
            raise PSRuntimeError(f"unsupported assignment target {target.type}", line, col)

    def capture(self, node: SyntaxNode) -> Any:
        """The value of a statement on the right of '=': command output is collected."""
        node = node.inner
        if node.type in ("pipeline_chain", "command"):
            return collapse(list(self.run_pipeline(node)))
        return self.evaluate(node)

    # ------------------------------------------------------------------------------------------- expressions
    def evaluate(self, node: SyntaxNode) -> Any:
        node = node.inner
        kind = node.type
        method = _EVALUATORS.get(kind)
        if method is None:
            if kind in ("pipeline_chain", "command"):
                return collapse(list(self.run_pipeline(node)))
            line, col = self._where(node)
            raise PSRuntimeError(f"unsupported PowerShell construct {kind}", line, col)
        return method(self, node)

    def eval_variable(self, node: SyntaxNode) -> Any:
        name = node.text[1:].lower()
        constants = {"true": True, "false": False, "null": None}
        if name in constants:
            return constants[name]
        return self.variables.get(name)

    def eval_string_literal(self, node: SyntaxNode) -> str:
        inner = node.named_children[0]
        if inner.slot >= 0:
            return self.source.string(inner.slot)
        text = self._text(inner)
        return text[1:-1].replace('""', '"')

    def eval_integer_literal(self, node: SyntaxNode) -> int:
        return int(node.text)

    def eval_generic_token(self, node: SyntaxNode) -> str:
        return self._text(node)

    def eval_parenthesized_expression(self, node: SyntaxNode) -> Any:
        return self.capture(node.named[0])

    def eval_array_expression(self, node: SyntaxNode) -> list[Any]:
        items: list[Any] = []
        for child in node.named:
            items.extend(self.run_statements_in(child))
        return items

    def run_statements_in(self, node: SyntaxNode) -> list[Any]:
        return list(self.run_statements(node) if node.type == "statement_list" else self.run_statement(node))

    def eval_array_literal_expression(self, node: SyntaxNode) -> list[Any]:
        return [self.evaluate(child) for child in node.named]

    def eval_hash_literal_expression(self, node: SyntaxNode) -> Hashtable:
        table = Hashtable()
        for body in node.named:
            for entry in body.named:
                key_node, value_node = entry.named[:2]
                if key_node.named_children and key_node.named_children[0].type == "string_literal":
                    key = to_string(self.evaluate(key_node.named_children[0]))
                else:
                    key = self._text(key_node)
                table[key] = self.capture(value_node)
        return table

    def eval_member_access(self, node: SyntaxNode) -> Any:
        name = self._text(node.named[1])
        if node.children[1].type == "::":
            return self._dotnet(node, lambda: dotnet.static_member(self._type(node), name, self.stdin))
        target = self.evaluate(node.named[0])
        found, value = dotnet.instance_member(target, name)
        return value if found else member(target, name)

    # ------------------------------------------------------------------------------------------- .NET members
    def eval_invokation_expression(self, node: SyntaxNode) -> Any:
        """``[Type]::Method(args)`` or ``$value.Method(args)``: the members toolkit/sandbox/dotnet.py implements."""
        children = node.named
        name = self._text(children[1])
        arguments_node = children[2] if len(children) > 2 else None
        arguments = [self.evaluate(a) for list_node in (arguments_node.named if arguments_node else [])
                     for a in list_node.named]
        if node.children[1].type == "::":
            return self._dotnet(node, lambda: dotnet.static_call(self._type(node), name, arguments,
                                                                 self._create_script_block))
        target = self.evaluate(children[0])
        return self._dotnet(node, lambda: dotnet.instance_call(target, name, arguments))

    def _type(self, node: SyntaxNode) -> str:
        full = dotnet.type_name(self._text(node.named[0]))
        assert full is not None  # checked before the script ran
        return full

    def _dotnet(self, node: SyntaxNode, call: Any) -> Any:
        try:
            return call()
        except dotnet.DotNetError as exc:
            line, col = self._where(node)
            raise PSRuntimeError(exc.message, line, col, exc.category) from None

    def _create_script_block(self, text: str) -> dotnet.ScriptBlock:
        """ScriptBlock.Create: parsed and checked now; a script outside the subset fails here (ScriptError)."""
        return dotnet.ScriptBlock(text, self.check(text))

    def run_script_block(self, node: SyntaxNode) -> Iterator[Any]:
        """``& <script block>``: its statements run in a child scope (reads see the caller's variables, writes
        stay in the block: about_Scopes); its output is the caller's."""
        block = self.evaluate(node.named[1].named[0])
        if not isinstance(block, dotnet.ScriptBlock):
            line, col = self._where(node)
            raise PSRuntimeError(f"The term '{to_string(block)}' is not recognized as the name of a cmdlet, "
                                 "function, script file, or operable program.", line, col, "ObjectNotFound")
        caller, source = self.variables, self.source
        self.variables, self.source = dict(caller), block.script.source  # positions are the block's own
        try:
            yield from self.run_statements(block.script.root)
        finally:
            self.variables, self.source = caller, source

    def eval_element_access(self, node: SyntaxNode) -> Any:
        container_node, key_node = node.named[:2]
        container = self.evaluate(container_node)
        key = self.evaluate(key_node)
        if isinstance(container, Hashtable):
            return container[to_string(key)]
        if isinstance(container, list) and isinstance(key, int):
            return container[key] if -len(container) <= key < len(container) else None
        return None

    def eval_cast_expression(self, node: SyntaxNode) -> Any:
        type_name = self._text(node.named[0]).strip("[]").lower()
        value = self.evaluate(node.named[1])
        if type_name == "string":
            return to_string(value)
        if type_name == "int":
            try:
                return int(to_string(value) or 0)
            except ValueError:
                line, col = self._where(node)
                raise PSRuntimeError(f"Cannot convert value \"{to_string(value)}\" to type \"System.Int32\".",
                                     line, col, "InvalidArgument") from None
        if type_name == "bool":
            return is_true(value)
        if type_name == "string[]":
            return [to_string(v) for v in as_list(value)]
        return as_list(value)

    def eval_expression_with_unary_operator(self, node: SyntaxNode) -> Any:
        first = node.children[0]
        if first.type == "cast_expression":
            return self.eval_cast_expression(first)
        return not is_true(self.evaluate(node.named[-1]))

    def eval_logical_expression(self, node: SyntaxNode) -> bool:
        left, operator, right = node.children[0], self._text(node.children[1]).lower(), node.children[2]
        if operator == "-and":
            return is_true(self.evaluate(left)) and is_true(self.evaluate(right))
        return is_true(self.evaluate(left)) or is_true(self.evaluate(right))

    def eval_additive_expression(self, node: SyntaxNode) -> Any:
        return add(self.evaluate(node.children[0]), self.evaluate(node.children[2]))

    def eval_comparison_expression(self, node: SyntaxNode) -> Any:
        left = self.evaluate(node.children[0])
        operator = self._text(node.children[1]).lower().replace("-i", "-", 1)
        right = self.evaluate(node.children[2])
        return compare(left, operator, right)

    # ------------------------------------------------------------------------------------------- commands
    def run_pipeline(self, node: SyntaxNode) -> Iterator[Any]:
        node = node.inner
        stages = [c for c in node.named_children] if node.type == "pipeline_chain" else [node]
        items: list[Any] | None = None
        for stage in stages:
            stage = stage.inner
            if stage.type == "command" and stage.named_children[0].type == "command_invokation_operator":
                if len(stages) == 1:  # its output streams out: lines written before an error are kept
                    yield from self.run_script_block(stage)
                    return
                items = list(self.run_script_block(stage))
            elif stage.type == "command":
                items = self.invoke(stage, items or [])
            else:
                items = as_list_output(self.evaluate(stage))
        yield from items or []

    def invoke(self, node: SyntaxNode, pipeline_input: list[Any]) -> list[Any]:
        name_node = node.named_children[0]
        command = self.commands[name_node.text.lower()]  # type: ignore[union-attr]  # a command name holds no slot
        try:
            bound = self.bind(command, node)
        except BindingError as exc:
            raise PSRuntimeError(str(exc), *self._where(name_node), "InvalidArgument") from None
        # A function of a script module (the proxies Import-PSSession creates, the ExchangeOnlineManagement v3
        # cmdlets) does not see a script-scope $ErrorActionPreference, only the global one and its own
        # -ErrorAction (PowerShell issue #4568): its errors stay non-terminating unless the call says Stop.
        preference = None if command.module_function else self.variables.get("erroractionpreference")
        action = to_string(bound.pop("ErrorAction", None) or preference or "Continue").lower()
        try:
            return list(command.run(bound, pipeline_input))
        except CmdletError as exc:
            line, col = self._where(name_node)
            if action == "stop":
                raise PSRuntimeError(exc.message, line, col, exc.category, exc.error_id) from None
            if action not in ("silentlycontinue", "ignore"):
                self.outcome.errors.append(f"{exc.message}\n    At line:{line} char:{col}")
            return []
        except BindingError as exc:
            raise PSRuntimeError(str(exc), *self._where(name_node), "InvalidArgument") from None

    def bind(self, command: Command, node: SyntaxNode) -> dict[str, Any]:
        elements = _elements(node)
        bound: dict[str, Any] = {}
        positional: list[Any] = []
        index = 0
        while index < len(elements):
            element = elements[index]
            if element.type == "command_parameter":
                written = str(element.text).lstrip("-")
                explicit = written.endswith(":")
                name = command.resolve_parameter(written.rstrip(":"))
                if index + 1 < len(elements) and elements[index + 1].type == "command_argument_sep":
                    explicit = True
                    index += 1
                if name in bound:
                    raise BindingError(f"{command.name}: Cannot bind parameter because parameter '{name}' is "
                                       "specified more than once.")
                if command.is_switch(name) and not explicit:
                    bound[name] = True
                elif index + 1 < len(elements):
                    index += 1
                    bound[name] = convert(command.name, name, command.all_parameters[name],
                                          self.evaluate(elements[index]))
                else:
                    raise BindingError(f"{command.name}: Missing an argument for parameter '{name}'. Specify a "
                                       "parameter of the appropriate type and try again.")
            else:
                positional.append(self.evaluate(element))
            index += 1
        slots = [p for p in command.positional if p not in bound]
        if command.remaining and positional and command.remaining in slots:
            # ValueFromRemainingArguments: every positional argument goes to that parameter, as one array.
            bound[command.remaining] = positional[0] if len(positional) == 1 else positional
            positional = []
        if len(positional) > len(slots):
            extra = to_string(positional[len(slots)])
            raise BindingError(f"{command.name}: A positional parameter cannot be found that accepts argument "
                               f"'{extra}'.")
        for name, value in zip(slots, positional, strict=False):
            bound[name] = convert(command.name, name, command.all_parameters[name], value)
        missing = [p for p in command.mandatory if p not in bound]
        if missing:
            raise BindingError(f"{command.name}: Cannot process command because of one or more missing mandatory "
                               f"parameters: {' '.join(missing)}.")
        return bound


# What evaluates each kind of expression node: Interpreter.eval_<node type>.
_EVALUATORS: dict[str, Callable[[Interpreter, SyntaxNode], Any]] = {
    name.removeprefix("eval_"): method for name, method in vars(Interpreter).items() if name.startswith("eval_")}


def as_list_output(value: Any) -> list[Any]:
    """An expression statement writes its value to the output; arrays are written item by item."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def member(target: Any, name: str) -> Any:
    if isinstance(target, list) and name.lower() in ("length", "count"):
        return len(target)
    if isinstance(target, list):
        values = [member(item, name) for item in target]
        return [v for v in values if v is not None]
    if isinstance(target, PSObject):
        return target.get(name)
    if isinstance(target, Hashtable):
        if name.lower() == "count":
            return len(target)
        return target[name]
    if isinstance(target, str) and name.lower() == "length":
        return len(target)
    return None


def add(left: Any, right: Any) -> Any:
    if left is None:
        return list(right) if isinstance(right, list) else right
    if isinstance(left, list):
        return left + (right if isinstance(right, list) else [right])
    if isinstance(left, str):
        return left + to_string(right)
    if isinstance(left, (int, float)) and not isinstance(left, bool):
        return left + (int(to_string(right)) if isinstance(right, str) else right)
    raise PSRuntimeError(f"Method invocation failed because [{type(left).__name__}] does not contain a method "
                         "named 'op_Addition'.", category="InvalidOperation")


def compare(left: Any, operator: str, right: Any) -> Any:
    import fnmatch

    if operator in ("-contains", "-notcontains"):
        found = any(equals(item, right) for item in as_list(left))
        return found if operator == "-contains" else not found
    if operator in ("-in", "-notin"):
        found = any(equals(item, left) for item in as_list(right))
        return found if operator == "-in" else not found

    def scalar(value: Any) -> bool:
        if operator in ("-lt", "-le", "-gt", "-ge"):
            left_value, right_value = value, right
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    right_value = float(to_string(right)) if not isinstance(right, (int, float)) else right
                except ValueError:
                    return False
            else:
                left_value, right_value = to_string(value).lower(), to_string(right).lower()
            return {"-lt": left_value < right_value, "-le": left_value <= right_value,
                    "-gt": left_value > right_value, "-ge": left_value >= right_value}[operator]
        if operator in ("-like", "-notlike"):
            hit = fnmatch.fnmatchcase(to_string(value).lower(), to_string(right).lower().replace("[", "[[]"))
            return hit if operator == "-like" else not hit
        same = equals(value, right)
        return same if operator == "-eq" else not same

    if isinstance(left, list):
        return [item for item in left if scalar(item)]
    return scalar(left)


def _builtin_commands(interpreter: Interpreter) -> dict[str, Command]:
    """PowerShell's own commands the templates use. They are the same for every interpreter but Get-Command, which
    reads the interpreter's table through a weak reference: an interpreter its commands referred back to would be
    freed only by the cycle collector, with every organisation its cmdlets hold."""
    table = weakref.ref(interpreter)

    def get_command(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        name = to_string(bound.get("Name"))
        commands = table().commands  # type: ignore[union-attr]  # the interpreter runs it: it is alive
        if name.lower() in commands:
            return [PSObject("System.Management.Automation.CmdletInfo", {"Name": commands[name.lower()].name,
                                                                           "CommandType": "Cmdlet"})]
        raise CmdletError(f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, "
                          "or operable program.", "ObjectNotFound")

    return {**_SHARED_BUILTINS, "Get-Command": _GET_COMMAND.with_run(get_command)}


def _write_output(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
    return pipeline + as_list(bound.get("InputObject"))


def _out_null(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
    return []


def _to_json(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
    items = pipeline + as_list(bound.get("InputObject"))
    value = items[0] if len(items) == 1 else items
    return [convert_to_json(value, bool(bound.get("Compress")), int(bound.get("Depth") or 2))]


def _read_host(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
    """The sandbox has no terminal: a prompt answers with an empty (secure) string."""
    return [PSObject("System.Security.SecureString", {"Length": 0}) if bound.get("AsSecureString") else ""]


def _not_bound(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
    raise AssertionError("Get-Command runs bound to an interpreter (_builtin_commands)")


_SHARED_BUILTINS: dict[str, Command] = {
    "Write-Output": Command("Write-Output", {"InputObject": "object", "NoEnumerate": "switch"}, _write_output,
                            positional=("InputObject",), remaining="InputObject"),
    "Out-Null": Command("Out-Null", {"InputObject": "object"}, _out_null),
    "ConvertTo-Json": Command("ConvertTo-Json", {"InputObject": "object", "Compress": "switch", "Depth": "int"},
                              _to_json, positional=("InputObject",)),
    "Add-PSSnapin": Command("Add-PSSnapin", {"Name": "string"}, _out_null, positional=("Name",)),
    "Read-Host": Command("Read-Host", {"Prompt": "string", "AsSecureString": "switch", "MaskInput": "switch"},
                         _read_host, positional=("Prompt",)),
}
_GET_COMMAND = Command("Get-Command", {"Name": "string"}, _not_bound, positional=("Name",))
