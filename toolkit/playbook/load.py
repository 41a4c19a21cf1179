"""Load a playbook: YAML → plain data with the line and column of every key and value, variables expanded.

Variables: the playbook's ``vars:`` are defaults; values supplied later (inventory, ``--var``) override them.
A value that is exactly ``{{ name }}`` takes the variable's value as is (a list stays a list); any other value
containing ``{{ … }}`` is rendered as text by a sandboxed Jinja2 environment with ``StrictUndefined``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from ruamel.yaml.comments import CommentedMap, CommentedSeq, merge_attrib
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from toolkit.playbook.bounded_yaml import FileTooLarge, YAMLLimitError, check_text, limit_hint, read_text, yaml_loader
from toolkit.playbook.diagnostics import Diagnostics, Position
from toolkit.render.bounded import BoundedEnvironment, render_text

PathKey = tuple[str | int, ...]

_WHOLE_VARIABLE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JINJA = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass
class Positions:
    """Where each value (and each mapping key) of a document stands. Paths are tuples of keys and indexes."""

    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)
    quoted: set[PathKey] = field(default_factory=set)

    def of_value(self, path: PathKey) -> Position:
        """The position of the value at ``path``, or of the nearest enclosing node that has one."""
        probe = tuple(path)
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))

    def of_key(self, path: PathKey) -> Position:
        return self.keys.get(tuple(path)) or self.of_value(path)


@dataclass
class LoadedDocument:
    file: str
    data: Any
    positions: Positions
    source: str
    # Paths whose value still holds an undefined variable: already reported, so later stages stay quiet there.
    unresolved: set[PathKey] = field(default_factory=set)


def _record(node: Any, path: PathKey, positions: Positions) -> Any:
    """Convert ruamel nodes to plain data, recording positions (ruamel's are 0-based)."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key in node:
            child = (*path, str(key))
            (key_line, key_col), (value_line, value_col) = _key_and_value_marks(node, key)
            positions.keys[child] = Position(key_line + 1, key_col + 1)
            positions.values[child] = Position(value_line + 1, value_col + 1)
            value = node[key]
            if isinstance(value, (SingleQuotedScalarString, DoubleQuotedScalarString)):
                positions.quoted.add(child)
            out[str(key)] = _record(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            line, col = node.lc.item(index)
            positions.values[(*path, index)] = Position(line + 1, col + 1)
            if isinstance(value, (SingleQuotedScalarString, DoubleQuotedScalarString)):
                positions.quoted.add((*path, index))
            items.append(_record(value, (*path, index), positions))
        return items
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)


def _key_and_value_marks(node: CommentedMap, key: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a key and its value stand; a key merged in (``<<: *anchor``) stands where the anchored mapping has it."""
    try:
        marks = node.lc.key(key), node.lc.value(key)
    except (KeyError, TypeError):  # merged in, or a mapping without key positions (e.g. !!omap)
        marks = (None, None)
    if None not in marks:
        return marks
    for source in getattr(node, merge_attrib, None) or []:
        if isinstance(source, CommentedMap) and key in source:
            return _key_and_value_marks(source, key)
    return (node.lc.line, node.lc.col), (node.lc.line, node.lc.col)


def parse_yaml(text: str, file: str, diagnostics: Diagnostics) -> LoadedDocument | None:
    """Parse YAML text; syntax errors become diagnostics.

    A fleet run loads the same playbook once per target: the parse is cached by content, and every caller gets its
    own copy of the data (variables are expanded into it per target)."""
    cached = _parsed(text, file)
    if isinstance(cached, Diagnostics):
        diagnostics.extend(cached)
        return None
    data, positions = cached
    return LoadedDocument(file, copy.deepcopy(data), positions, text)


@functools.lru_cache(maxsize=32)
def _parsed(text: str, file: str) -> tuple[Any, Positions] | Diagnostics:
    diagnostics = Diagnostics()
    document = _parse_yaml(text, file, diagnostics)
    return diagnostics if document is None else (document.data, document.positions)


def _parse_yaml(text: str, file: str, diagnostics: Diagnostics) -> LoadedDocument | None:
    yaml = yaml_loader()
    yaml.preserve_quotes = True
    positions = Positions()
    try:
        check_text(text)
        node = yaml.load(text)
    except FileTooLarge as exc:
        diagnostics.error("yaml-limit", str(exc), file, Position(1, 1), limit_hint())
        return None
    except YAMLLimitError as exc:
        mark = exc.problem_mark
        diagnostics.error("yaml-limit", exc.problem or "", file, Position(mark.line + 1, mark.column + 1),
                          limit_hint())
        return None
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        diagnostics.error("duplicate-key", _first_line(exc.problem or "duplicate key"), file,
                          Position(mark.line + 1, mark.column + 1), "each key may appear once in a mapping")
        return None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Position(mark.line + 1, mark.column + 1) if mark else Position(1, 1)
        diagnostics.error("yaml-syntax", f"YAML syntax error: {exc.problem or exc.context}", file, position,
                          "check indentation, colons and quotes around this place")
        return None
    positions.values[()] = Position(1, 1)
    return LoadedDocument(file, _record(node, (), positions), positions, text)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def load_playbook(path: str | Path, diagnostics: Diagnostics, supplied_vars: Mapping[str, Any] | None = None, *,
                  target: str | None = None, placeholders: bool = False) -> LoadedDocument | None:
    """Read and parse a playbook file and expand its variables. Problems go to ``diagnostics``.

    ``target`` names the target whose values are supplied (for messages). ``placeholders``: no target is chosen
    (``validate`` without an inventory): a required variable without a value is not an error, and the values that
    use it are left unchecked."""
    file = str(path)
    try:
        text = read_text(path)
    except FileTooLarge as exc:
        diagnostics.error("yaml-limit", str(exc), file, Position(1, 1), limit_hint())
        return None
    except FileNotFoundError:
        diagnostics.error("file-not-found", f"no such playbook file: {file}", file, Position(1, 1),
                          "check the path; playbooks are YAML files such as playbooks/classic.yaml")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        diagnostics.error("file-unreadable", f"cannot read the playbook: {exc}", file, Position(1, 1),
                          "playbooks must be readable UTF-8 text")
        return None
    document = parse_yaml(text, file, diagnostics)
    if document is None:
        return None
    if not isinstance(document.data, dict):
        diagnostics.error("not-a-mapping", "a playbook must be a YAML mapping (key: value pairs)", file,
                          Position(1, 1), "start with 'exkit: 1' and 'name: …'")
        return None
    expand_variables(document, diagnostics, supplied_vars or {}, target=target, placeholders=placeholders)
    return document


def _mapping(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    return value if isinstance(value, dict) else {}


def expand_variables(document: LoadedDocument, diagnostics: Diagnostics, supplied: Mapping[str, Any], *,
                     target: str | None = None, placeholders: bool = False) -> None:
    """Replace ``{{ name }}`` in every value outside ``vars:`` and ``requires:`` (in place).

    A variable named under ``requires:`` has no default: each target supplies it. Missing, it is one error (at its
    entry under ``requires:``, naming the target) and the values using it are left unchecked; under
    ``placeholders`` it is not an error at all."""
    data = document.data
    declared = _mapping(data, "vars")
    required = _mapping(data, "requires")
    for section, names in (("vars", declared), ("requires", required)):
        for name in names:
            if not _VARIABLE_NAME.match(name):
                diagnostics.error("bad-variable-name", f"invalid variable name {name!r}", document.file,
                                  document.positions.of_key((section, name)),
                                  "variable names are letters, digits and underscores, not starting with a digit")
    for name in required:
        if name in declared:
            diagnostics.error("required-with-default", f"required variable {name!r} also has a default under "
                              "'vars:'", document.file, document.positions.of_key(("vars", name)),
                              "a required variable has no default: each target supplies it; remove it from "
                              "'vars:' (or from 'requires:' to keep the default)")
        elif name not in supplied and not placeholders:
            where = f" for target {target!r}" if target else ""
            diagnostics.error("missing-required-variable", f"required variable {name!r} has no value{where}",
                              document.file, document.positions.of_key(("requires", name)),
                              f"{required[name]} — set it in the inventory (the target's or its group's vars:) "
                              f"or with --var {name}=VALUE")
    missing = {n for n in required if n not in declared and n not in supplied}
    variables = {**declared, **supplied}
    for key in list(data):
        if key not in ("vars", "requires"):
            data[key] = _expand(data[key], (key,), variables, document, diagnostics, missing)


def _expand(value: Any, path: PathKey, variables: Mapping[str, Any], document: LoadedDocument,
            diagnostics: Diagnostics, missing: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), variables, document, diagnostics, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), variables, document, diagnostics, missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "{{" not in value and "{%" not in value:
        return value
    whole = _WHOLE_VARIABLE.match(value)
    if whole:
        name = whole.group(1)
        if name in variables:
            return variables[name]
        _undefined(name, path, variables, document, diagnostics, missing)
        return value
    try:
        return render_text(_JINJA.from_string(value), **variables)
    except jinja2.UndefinedError as exc:
        match = re.search(r"'([^']+)' is undefined", str(exc))
        _undefined(match.group(1) if match else value, path, variables, document, diagnostics, missing)
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        diagnostics.error("bad-template", f"cannot expand variables in this value: {exc}", document.file,
                          document.positions.of_value(path), "write variables as {{ name }}; expressions are "
                          "sandboxed and bounded (no Python, no huge strings or loops)")
    return value


def _undefined(name: str, path: PathKey, variables: Mapping[str, Any], document: LoadedDocument,
               diagnostics: Diagnostics, missing: set[str]) -> None:
    document.unresolved.add(path)
    if name in missing:
        return  # a required variable without a value: reported once, at its entry under 'requires:'
    close = difflib.get_close_matches(name, list(variables), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    hint += f"define it under 'vars:', in the inventory, or with --var {name}=VALUE"
    diagnostics.error("undefined-variable", f"undefined variable {name!r}", document.file,
                      document.positions.of_value(path), hint)


def peek_platform(path: str | Path) -> str:
    """The playbook's platform key, read without validating (which target is the default depends on it)."""
    try:  # the same bounded, cached parse that validation uses a moment later
        parsed = _parsed(read_text(path), str(path))
    except Exception:  # any problem is reported with its position by validation a moment later
        return "exchange-server"
    data = None if isinstance(parsed, Diagnostics) else parsed[0]
    platform = data.get("platform") if isinstance(data, dict) else None
    return platform if platform in ("exchange-server", "exchange-online") else "exchange-server"
