"""A structural fuzzer: whole playbook and inventory documents, valid and near-valid, written out as YAML with the
features people (and attackers) use — anchors and aliases, merge keys, duplicate keys, tags, odd scalars, unicode,
deep nesting, huge lists — and one check every document must pass:

- exkit answers with exit code 0 or 1, never a Python traceback;
- every diagnostic has a position inside the file;
- a valid playbook renders (present and absent) to a script that parses with the PowerShell grammar, in which no user
  value became anything but a string literal: no variables but the templates' own, no sub-expressions or expandable
  strings, no command the templates do not write.

Used by tests/test_fuzz.py (a few hundred examples in CI) and benchmarks/fuzz.py (ten thousand, with time and memory
per document). The documents start from the example playbooks and inventory, so most stay close to valid."""

from __future__ import annotations

import copy
import json
import re
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))
INVENTORY = REPO / "inventory.example.yaml"


def _load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


SEEDS = {"playbook": [_load(p) for p in PLAYBOOKS], "inventory": [_load(INVENTORY)]}

# Text a user (or an attacker) could write: PowerShell's special characters, every quote PowerShell accepts, and any
# printable unicode.
_DANGEROUS = "'\"`$(){};|&@#<>\u2018\u2019\u201a\u201b\u201c\u201d\u201e -\\/*?[]!%^="
user_text = st.text(alphabet=st.one_of(st.sampled_from(_DANGEROUS), st.characters(
    exclude_categories=("Cc", "Cs"), exclude_characters="\u2028\u2029\ufeff")), min_size=0, max_size=30)
INJECTIONS = ["x'; Remove-Item -Recurse C:\\ ; '", "$(Stop-Computer)", "`$env:PATH", "a\u2019; Invoke-Expression x; '",
              "@(Get-Mailbox)", "\"; Set-Mailbox -Identity x; \"", "{{ service_account }}", "{{ 7 * 7 }}",
              "{{ undefined_name }}", "{% for x in range(3) %}{{ x }}{% endfor %}", "{{ ''.__class__ }}"]
# Scalars YAML reads as something else than they look (YAML 1.1 and 1.2 booleans, numbers, dates, nulls).
ODD_SCALARS = ["yes", "no", "on", "off", "~", "null", "0x1F", "0o17", "1e3", ".inf", "-.inf", ".nan", "2024-01-01",
               "2024-01-01T10:00:00Z", "12:30:00", "1_000", "+1", "-0", "0.", "=", "<<", "!", "&", "*", "|", ">",
               "''", '""', "'a''b'", '"\\u00e9\\t\\x41"', "!!str 5", "!!int '7'", "!!binary aGVsbG8=",
               "!!float 1", "!!null ''", "!custom x", "!!python/object:os.system ls", "!!set {a, b}",
               "!!omap [a: 1]", "? complex\n: key"]
SCALARS = st.one_of(user_text, st.sampled_from(INJECTIONS), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.booleans(), st.none())


class Raw(str):
    """A scalar written into the YAML as is (an odd scalar, a tag, an alias)."""


@dataclass
class Document:
    kind: str  # playbook | inventory
    data: Any
    text: str


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _get(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


def _set(root: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    """A seed document with 0-4 structural mutations: wrong types, missing and extra keys, huge lists, deep nesting,
    odd scalars, injections."""
    data = copy.deepcopy(draw(st.sampled_from(SEEDS[kind])))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3, 4]))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        target = _get(data, path)
        operation = draw(st.sampled_from(["scalar", "text", "text", "text", "delete", "extra", "wrap", "grow", "odd",
                                          "type", "empty"]))
        if operation == "scalar":
            data = _set(data, path, draw(SCALARS))
        elif operation == "text" and isinstance(target, str):
            data = _set(data, path, draw(st.one_of(user_text, st.sampled_from(INJECTIONS))))
        elif operation == "delete" and path:
            parent = _get(data, path[:-1])
            del parent[path[-1]]
        elif operation == "extra" and isinstance(target, dict):
            target[draw(st.one_of(user_text, st.sampled_from(["vars", "name", "scopes", "kind", "<<", "targets"])))] \
                = draw(SCALARS)
        elif operation == "wrap":  # deep nesting: past the 64-level bound sometimes
            depth = draw(st.sampled_from([1, 2, 5, 30, 70, 200]))
            for _ in range(depth):
                target = [target] if draw(st.booleans()) else {"k": target}
            data = _set(data, path, target)
        elif operation == "grow" and isinstance(target, list) and target:
            data = _set(data, path, target * draw(st.sampled_from([2, 10, 300])))
        elif operation == "odd":
            data = _set(data, path, Raw(draw(st.sampled_from(ODD_SCALARS))))
        elif operation == "type":
            data = _set(data, path, draw(st.sampled_from([[], {}, [target], {"value": target}, 0, True])))
        elif operation == "empty" and isinstance(target, (dict, list)):
            data = _set(data, path, type(target)())
    return data


class _Writer:
    """YAML text from data, drawing how: block or flow collections, quoting styles, anchors with aliases and merge
    keys for repeated structure, duplicate keys now and then."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.anchors: list[tuple[str, Any]] = []
        # Faithful writers keep the data (aliases and merge keys only where they repeat what is there); chaotic ones
        # also alias and merge anything anchored and repeat keys.
        self.chaos = draw(st.integers(0, 3)) == 0

    def scalar(self, value: Any) -> str:
        if isinstance(value, Raw):
            return str(value)
        if value is None:
            return self.draw(st.sampled_from(["null", "~", ""]))
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return json.dumps(value) if value == value and abs(value) != float("inf") else (
                ".nan" if value != value else ".inf" if value > 0 else "-.inf")
        text = str(value)
        style = self.draw(st.sampled_from(["double", "single", "plain"]))
        if style == "single" and "\n" not in text:
            return "'" + text.replace("'", "''") + "'"
        if style == "plain" and re.fullmatch(r"[A-Za-z][A-Za-z0-9 _.@-]*[A-Za-z0-9]", text):
            return text
        return json.dumps(text, ensure_ascii=self.draw(st.booleans()))

    def flow(self, value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.key(k)}: {self.flow(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(self.flow(v) for v in value) + "]"
        return self.scalar(value)

    def key(self, key: Any) -> str:
        if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) and key != "<<":
            return key
        return json.dumps(str(key))

    def node(self, value: Any, indent: int) -> list[str]:
        """Lines for a value placed after 'key:' (first line is the inline part)."""
        pad = " " * indent
        if isinstance(value, (dict, list)) and value:
            same = [name for name, anchored in self.anchors if anchored == value and type(anchored) is type(value)]
            if same and self.draw(st.booleans()):
                return [" *" + self.draw(st.sampled_from(same))]
            if self.chaos and self.anchors and self.draw(st.integers(0, 9)) == 0:
                return [" *" + self.draw(st.sampled_from(self.anchors))[0]]
            anchor = ""
            if self.draw(st.integers(0, 3)) == 0:
                name = f"a{len(self.anchors)}"
                self.anchors.append((name, copy.deepcopy(value)))
                anchor = f" &{name}"
            if self.draw(st.integers(0, 5)) == 0 or len(value) > 50:
                return [anchor + " " + self.flow(value)]
            lines = [anchor]
            if isinstance(value, dict):
                items = list(value.items())
                merges = [name for name, anchored in self.anchors if isinstance(anchored, dict) and anchored
                          and anchored is not value and all(k in value and value[k] == v and k != "<<"
                                                             for k, v in anchored.items())]
                if merges and self.draw(st.booleans()):  # <<: *x for keys that have the same values there
                    name = self.draw(st.sampled_from(merges))
                    merged = dict(self.anchors[int(name[1:])][1])
                    lines.append(f"{pad}<<: *{name}")
                    items = [(k, v) for k, v in items if k not in merged or self.draw(st.booleans())]
                elif self.chaos and self.anchors and self.draw(st.integers(0, 5)) == 0:
                    lines.append(f"{pad}<<: *{self.draw(st.sampled_from(self.anchors))[0]}")
                if items and self.chaos and self.draw(st.integers(0, 5)) == 0:
                    items.append(self.draw(st.sampled_from(items)))  # a duplicate key
                for key, item in items:
                    sub = self.node(item, indent + 2)
                    lines.append(f"{pad}{self.key(key)}:{sub[0]}")
                    lines += sub[1:]
            else:
                for item in value:
                    sub = self.node(item, indent + 2)
                    if isinstance(item, dict) and item and len(sub) > 1 and sub[0] == "":
                        lines.append(f"{pad}- {sub[1].lstrip()}")
                        lines += sub[2:]
                    else:
                        lines.append(f"{pad}-{sub[0]}")
                        lines += sub[1:]
            return lines
        return [" " + self.flow(value)]

    def document(self, value: Any) -> str:
        if isinstance(value, dict) and value:
            lines = []
            for key, item in value.items():
                sub = self.node(item, 2)
                lines.append(f"{self.key(key)}:{sub[0]}")
                lines += sub[1:]
            return "\n".join(lines) + "\n"
        return self.flow(value) + "\n"


@st.composite
def documents(draw: st.DrawFn) -> Document:
    kind = draw(st.sampled_from(["playbook", "playbook", "playbook", "inventory"]))
    data = draw(mutated(kind))
    text = _Writer(draw).document(data)
    if draw(st.integers(0, 19)) == 0:  # a comment, a BOM, a document marker, a tab: text-level oddities
        text = draw(st.sampled_from(["# c\n", "\ufeff", "---\n", "%YAML 1.2\n---\n", "\t"])) + text
    return Document(kind, data, text)


# What a rendered script may contain besides string literals: the templates' own variables and commands.
TEMPLATE_VARIABLES_PATTERN = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")


def _template_words() -> tuple[set[str], set[str]]:
    variables, words = {"$_", "$true", "$false", "$null"}, set()
    for template in (REPO / "templates").rglob("*.j2"):
        text = template.read_text(encoding="utf-8")
        variables |= set(TEMPLATE_VARIABLES_PATTERN.findall(text))
        words |= set(re.findall(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z][A-Za-z0-9]*)*", text))
    return {v.lower() for v in variables}, {w.lower() for w in words}


TEMPLATE_VARIABLES, TEMPLATE_WORDS = _template_words()
REQUIRED_VALUES = {"tenant": "fuzz", "tenant_ou": "OU=Fuzz,OU=Hosting,DC=hoster,DC=local",
                   "service_account": "svc-rooms@contoso.com"}
POSITIONED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (error|warning|note): ")


class Finding(AssertionError):
    """A document that broke a rule: what, and the document."""


def check(document: Document, workdir: Path) -> None:
    """Run exkit on the document as a user would (in process, through the real CLI); raise Finding on a broken rule."""
    from toolkit.cli import app

    path = workdir / f"{document.kind}.yaml"
    path.write_text(document.text, encoding="utf-8")
    runner = CliRunner()
    if document.kind == "playbook":
        args = ["validate", str(path), "-o", "json"]
    else:
        args = ["inventory", "list", "-i", str(path), "-o", "json"]
    result = runner.invoke(app, args, input="", catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise Finding(f"exkit {' '.join(args[:2])} raised {type(result.exception).__name__}: {result.exception}\n"
                      + "".join(traceback.format_exception(result.exception))[-3000:] + "\n" + document.text[:3000])
    if result.exit_code not in (0, 1):
        raise Finding(f"exit code {result.exit_code}\n{result.output}\n{document.text[:3000]}")
    lines = document.text.count("\n") + 2
    if "Traceback" in result.output:
        raise Finding(f"a traceback in the output\n{result.output}")
    if document.kind == "playbook":
        diagnostics = json.loads(result.stdout)
        for diagnostic in diagnostics:
            if not (1 <= diagnostic["line"] <= lines and diagnostic["column"] >= 1):
                raise Finding(f"a diagnostic outside the file: {diagnostic}\n{document.text[:3000]}")
        if result.exit_code == 0:
            _check_rendered(path)
    else:
        for line in result.stderr.splitlines():
            if line.startswith(str(path)) and not POSITIONED.match(line):
                raise Finding(f"an unpositioned error: {line}")
            match = POSITIONED.match(line)
            if match and not 1 <= int(match["line"]) <= lines:
                raise Finding(f"a diagnostic outside the file: {line}\n{document.text[:3000]}")


def _check_rendered(path: Path) -> None:
    from toolkit.playbook.diagnostics import PlaybookError
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import RenderError, render_script
    from toolkit.render.syntax import parse, syntax_problems, walk

    try:  # variables a playbook `requires:` come from an inventory or --var: give plausible ones
        playbook, _ = require_playbook(path, REQUIRED_VALUES)
    except PlaybookError:
        return  # refused with positions (e.g. a required variable these values do not satisfy): not a script
    for state in ("present", "absent"):
        try:
            text = render_script(playbook, state=state).text
        except RenderError as exc:  # validate said yes, so render must not say no (its grammar check included)
            raise Finding(f"a valid playbook does not render ({state}): {exc}\n{path.read_text()[:2000]}") from None
        tree = parse(text)
        problems = syntax_problems(tree)
        if problems:
            raise Finding(f"the {state} script does not parse: {problems[:3]}\n{path.read_text()[:2000]}")
        for node in walk(tree.root_node):
            if node.type == "variable" and node.text.decode().lower() not in TEMPLATE_VARIABLES:
                raise Finding(f"a variable from user input in the {state} script: {node.text.decode()}")
            if node.type in ("sub_expression", "expandable_string_literal", "expandable_here_string_literal"):
                raise Finding(f"{node.type} in the {state} script: {node.text.decode()[:200]}")
            if node.type == "command_name" and node.text.decode().lower() not in TEMPLATE_WORDS:
                raise Finding(f"a command from user input in the {state} script: {node.text.decode()}")


def scratch() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="exkit-fuzz-")
