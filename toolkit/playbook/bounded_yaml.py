"""YAML from people nobody vetted (playbooks, inventories, pull requests from anyone), parsed within bounds.

A dozen lines of anchors and aliases nested nine deep ("billion laughs") expand to a billion nodes; a 50 MB file or a
list nested ten thousand deep would keep exkit busy or crash it. Every YAML document exkit reads goes through
:func:`yaml_loader` and :func:`read_text`, which refuse, before anything is built:

- a file larger than ``MAX_BYTES``;
- nesting deeper than ``MAX_DEPTH`` (mappings and lists inside each other);
- more than ``MAX_NODES`` nodes once every alias is expanded (an alias counts as the whole subtree it repeats, merge
  keys ``<<: *name`` included), and an alias to a node that contains it (a recursive document).

The count is kept while ruamel.yaml composes the document (the subtree size of each anchored node is known when the
node is complete), so an alias bomb is refused after reading its few lines, without expanding anything. Breaking a
bound raises :class:`YAMLLimitError`, a ruamel ``MarkedYAMLError`` with the position where the bound was crossed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.scanner import RoundTripScanner

MAX_BYTES = 8 * 1024 * 1024  # 8 MiB: a 1,000-target inventory is about 0.2 MiB
MAX_DEPTH = 64  # a playbook is 5 levels deep, an inventory 6
MAX_NODES = 100_000  # keys, values and list items after alias expansion (a target in an inventory is 10-20)


class YAMLLimitError(MarkedYAMLError):
    """A document went past one of the bounds; ``limit`` names it (for the message's hint)."""

    def __init__(self, problem: str, mark: Any, limit: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.limit = limit


class FileTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"the file is {size / 1024 / 1024:.1f} MiB, over the limit of {MAX_BYTES // 1024 // 1024} "
                         "MiB")
        self.size = size


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """A file's text, refused (``FileTooLarge``) before reading when it is larger than ``MAX_BYTES``. OSError and
    UnicodeDecodeError pass through as from ``Path.read_text``."""
    with open(path, "rb") as handle:
        size = _size(handle)
        if size > MAX_BYTES:
            raise FileTooLarge(size)
        data = handle.read(MAX_BYTES + 1)  # a file that grows while being read (or a pipe) is still cut off
    if len(data) > MAX_BYTES:
        raise FileTooLarge(len(data))
    return data.decode(encoding)


def _size(handle: Any) -> int:
    import os

    try:
        return os.fstat(handle.fileno()).st_size
    except OSError:
        return 0


def check_text(text: str) -> None:
    """Text already in memory (from git, a cache): the same size bound, on its UTF-8 length."""
    if len(text) > MAX_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise FileTooLarge(len(text.encode("utf-8", "surrogatepass")))


class BoundedComposer(Composer):
    """ruamel.yaml's composer, counting the nodes the document holds with every alias expanded."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # legal YAML (the later anchor wins): not worth a Python warning on stderr
        self._expanded = 0
        self._sizes: dict[int, int] = {}  # id(node) → nodes in its subtree, aliases expanded (once it is complete)

    def compose_document(self) -> Any:
        self._expanded = 0
        self._sizes = {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                if id(target) not in self._sizes:
                    raise YAMLLimitError(f"the alias *{event.anchor} refers to a node that contains it (a recursive "
                                         "document)", event.start_mark, "recursive alias")
                self._count(self._sizes[id(target)], event.start_mark)
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise YAMLLimitError(f"the document nests deeper than {MAX_DEPTH} levels", self.parser.peek_event()
                                 .start_mark, "depth")
        before = self._expanded
        node = super().compose_node(parent, index)
        self._count(1, node.start_mark)
        self._sizes[id(node)] = self._expanded - before
        return node

    def _count(self, nodes: int, mark: Any) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise YAMLLimitError(f"the document holds more than {MAX_NODES:,} nodes once its aliases are expanded",
                                 mark, "nodes")


class BoundedScanner(RoundTripScanner):
    """ruamel.yaml's scanner, stopping at the first flow collection (``[`` or ``{``) deeper than ``MAX_DEPTH``: an
    unclosed ``[[[[…`` is otherwise scanned to its end before the composer sees its first node (ruamel looks ahead
    for a possible simple key at every level: quadratic, seconds for ten thousand)."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: Any) -> None:  # noqa: N803 (ruamel's name)
        if self.flow_level >= MAX_DEPTH:
            raise YAMLLimitError(f"the document nests deeper than {MAX_DEPTH} levels", self.reader.get_mark(),
                                 "depth")
        super().fetch_flow_collection_start(TokenClass, to_push)


def yaml_loader() -> YAML:
    """A round-trip ruamel.yaml instance whose loads are bounded (depth and expanded size; the file size is
    read_text's)."""
    yaml = YAML(typ="rt")
    yaml.Scanner = BoundedScanner
    yaml.Composer = BoundedComposer
    return yaml


def limit_hint() -> str:
    """One line a user can act on, naming the bounds."""
    return (f"exkit reads YAML files of at most {MAX_BYTES // 1024 // 1024} MiB, {MAX_DEPTH} levels deep and "
            f"{MAX_NODES:,} nodes with aliases expanded; split the file or write the repeated part out")
