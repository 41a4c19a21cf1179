"""Jinja2 for text nobody vetted: templates and playbook expressions render in Jinja2's sandbox, with bounds.

Templates and ``{{ … }}`` in playbooks come from pull requests: they are data, not code. Jinja2's
``ImmutableSandboxedEnvironment`` refuses attributes starting with ``_`` (so ``cycler.__init__.__globals__`` and
``blocks[0].__class__(…)`` fail), unsafe callables and mutation of lists and dicts. On top of it, every render has a
budget (``STEPS``) that each loop iteration, each call (macros, methods, globals) and each filter spends, so nested
loops and recursive macros stop; integer arguments (widths, counts, ``range``), ``*``, ``**``, ``+``, ``%``, ``~``
and filters cannot build strings or lists longer than ``MAX_STRING``, and a whole render stops at ``MAX_OUTPUT``
characters. Breaking a bound raises :class:`TemplateLimitError` (a ``jinja2.sandbox.SecurityError``), which the render
stages report with the template file and line.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

STEPS = 200_000  # loop iterations + calls + filters per render
MAX_STRING = 1_000_000  # characters (or items) of one value a template builds
MAX_OUTPUT = 8_000_000  # characters of one rendered text
MAX_INT_ARGUMENT = 100_000  # widths, counts, ranges, repetition
_FORMAT_WIDTH = re.compile(r"\d{6,}")  # a width or precision of a million or more in a format string


class TemplateLimitError(SecurityError):
    """A template went past one of the render bounds."""


_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("exkit_template_budget", default=None)


@contextmanager
def budget(steps: int = STEPS) -> Iterator[None]:
    """One render's budget; nested renders (includes, a block rendered before the script) share the outer one."""
    if _budget.get() is not None:
        yield
        return
    token = _budget.set([steps])
    try:
        yield
    finally:
        _budget.reset(token)


def _spend(steps: int = 1) -> None:
    remaining = _budget.get()
    if remaining is None:  # rendered outside render_text(): a budget per top-level use
        return
    remaining[0] -= steps
    if remaining[0] < 0:
        raise TemplateLimitError(f"the template ran more than {STEPS} loop iterations, calls and filters: "
                                 "a loop or a recursive macro runs away")


def _size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple | dict | set | frozenset):
        return len(value)
    return 0


def _check_result(value: Any, what: str) -> Any:
    if _size(value) > MAX_STRING:
        raise TemplateLimitError(f"{what} built a value of {_size(value)} characters or items (at most "
                                 f"{MAX_STRING})")
    return value


def _check_arguments(subject: Any, args: Iterable[Any], what: str) -> None:
    """Refuse arguments that would build something huge before it is built."""
    widest = 0
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_INT_ARGUMENT:
            raise TemplateLimitError(f"{what}: the number {arg} is larger than {MAX_INT_ARGUMENT}")
        widest = max(widest, _size(arg))
    # replace / indent / join / wordwrap can put each argument once per character or item of the subject
    if _size(subject) * (1 + widest) > 4 * MAX_STRING and widest > 1:
        raise TemplateLimitError(f"{what}: {_size(subject)} characters with a {widest}-character argument could "
                                 f"build more than {MAX_STRING}")


def _check_format(text: Any, what: str) -> None:
    if isinstance(text, str) and _FORMAT_WIDTH.search(text):
        raise TemplateLimitError(f"{what}: a width or precision of a million or more")


def bounded_iter(iterable: Any) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through here (see _Bounding): each item spends one step."""
    for item in iterable:
        _spend()
        yield item


def checked(value: Any) -> Any:
    """Every ``a ~ b`` and ``{% set %}…{% endset %}`` result passes through here."""
    return _check_result(value, "a concatenation")


def bounded_range(*args: int) -> range:
    _check_arguments(None, args, "range()")
    result = range(*args)
    _spend(max(1, len(result) // 100))
    return result


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja_pass_arg (pass_context / pass_eval_context / pass_environment)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _spend()
        passed = getattr(func, "jinja_pass_arg", None)
        values = args[1:] if passed is not None else args
        subject = values[0] if values else None
        _check_arguments(subject, [*values[1:], *kwargs.values()], f"filter {name!r}")
        if name == "format":
            _check_format(subject, "filter 'format'")
        return _check_result(func(*args, **kwargs), f"filter {name!r}")

    return wrapper


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with exkit's bounds (see the module documentation)."""

    intercepted_binops = frozenset(["*", "**", "+", "%", "//"])
    intercepted_unops = frozenset()

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(exkit_loop=bounded_iter, exkit_checked=checked)
        self.globals = {"range": bounded_range, "dict": dict, "namespace": self.globals["namespace"],
                        "cycler": self.globals["cycler"], "joiner": self.globals["joiner"]}

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _spend()
        if operator == "*":
            count = right if isinstance(right, int) else left if isinstance(left, int) else None
            other = left if count is right else right
            if count is not None and _size(other) * abs(count) > MAX_STRING:
                raise TemplateLimitError(f"'*' would build {_size(other) * abs(count)} characters or items (at "
                                         f"most {MAX_STRING})")
        elif operator == "**":
            if not isinstance(left, int | float) or not isinstance(right, int | float) or abs(right) > 256 or (
                    isinstance(left, int) and left.bit_length() * abs(right) > 4096):
                raise TemplateLimitError(f"'**' with {left!r} and {right!r} is too large")
        elif operator == "%":
            _check_format(left, "'%' formatting")
            _check_arguments(None, right if isinstance(right, tuple) else (right,), "'%' formatting")
        return _check_result(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any,  # noqa: N805 (Jinja2's spelling)
             **kwargs: Any) -> Any:
        _spend()
        _check_arguments(getattr(__obj, "__self__", None), [*args, *kwargs.values()], "a call")
        return _check_result(super().call(__context, __obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        _check_format(getattr(value, "__self__", None), "str.format")
        return super().wrap_str_format(value)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Bounding().visit(super()._parse(source, name, filename))
        assert isinstance(tree, nodes.Template)
        return tree


class _Bounding(NodeTransformer):
    """Route every loop's iterable through bounded_iter, and every ``~`` and ``{% set %}…{% endset %}`` result
    through checked (as the internal filters exkit_loop and exkit_checked)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "exkit_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, "exkit_checked", [], [], None, None, lineno=node.lineno)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        self.generic_visit(node)
        if node.filter is None:
            node.filter = nodes.Filter(None, "exkit_checked", [], [], None, None, lineno=node.lineno)
        return node


def render_text(template: jinja2.Template, /, *args: Any, **context: Any) -> str:
    """Render with a fresh budget (or the enclosing render's), stopping once the output passes MAX_OUTPUT."""
    with budget():
        pieces, size = [], 0
        for piece in template.generate(*args, **context):
            size += len(piece)
            if size > MAX_OUTPUT:
                raise TemplateLimitError(f"the rendered text is longer than {MAX_OUTPUT} characters")
            pieces.append(piece)
        return "".join(pieces)
