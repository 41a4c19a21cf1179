"""OPATH filters: parse, print, evaluate, and reason about which recipient types a filter can match.

Grammar (the subset Exchange accepts in ``-RecipientRestrictionFilter``)::

    filter     := or_expr
    or_expr    := and_expr ( "-or" and_expr )*
    and_expr   := not_expr ( "-and" not_expr )*
    not_expr   := "-not" not_expr | primary
    primary    := "(" or_expr ")" | comparison
    comparison := PROPERTY OPERATOR value
    value      := 'single quoted' | "double quoted" | $null | $true | $false | number

Operators: -eq -ne -like -notlike -gt -lt -ge -le (case-insensitive, as in Exchange).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

COMPARISON_OPERATORS = ("eq", "ne", "like", "notlike", "gt", "lt", "ge", "le")

ROOM_TYPES = frozenset({"RoomMailbox", "LinkedRoomMailbox"})
RESOURCE_TYPES = frozenset({"RoomMailbox", "LinkedRoomMailbox", "EquipmentMailbox"})

FILTERABLE_PROPERTIES = tuple(
    [
        "Alias", "City", "Company", "CountryOrRegion", "Database", "Department", "DisplayName",
        "DistinguishedName", "EmailAddresses", "Guid", "MemberOfGroup", "Name", "Office", "PrimarySmtpAddress",
        "RecipientType", "RecipientTypeDetails", "ResourceType", "StateOrProvince", "Title",
        "UserPrincipalName", "WindowsEmailAddress",
    ]
    + [f"CustomAttribute{i}" for i in range(1, 16)]
    + [f"ExtensionCustomAttribute{i}" for i in range(1, 6)]
)
_PROPERTY_BY_LOWER = {p.lower(): p for p in FILTERABLE_PROPERTIES}


# PowerShell reads these as single quotes too; if Exchange's OPATH parser does the same, a value holding one could end
# early and the rest of it become filter syntax (a scope that matches everyone). exkit refuses them in values.
TYPOGRAPHIC_QUOTES = frozenset("\u2018\u2019\u201a\u201b\u201c\u201d\u201e")


def _typographic_quote(value: str, offset: int) -> None:
    for index, char in enumerate(value):
        if char in TYPOGRAPHIC_QUOTES:
            raise OpathError(f"the value holds the typographic quote {char} (U+{ord(char):04X}), which Exchange may "
                             "read as the end of the value", offset + index,
                             "use a plain apostrophe (') instead, or leave it out")


class OpathError(ValueError):
    """A filter does not parse. ``offset`` is the 0-based character offset of the problem in the filter."""

    def __init__(self, message: str, offset: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


@dataclass(frozen=True)
class Comparison:
    property: str
    operator: str
    value: str | bool | int | None


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Comparison | And | Or | Not


@dataclass(frozen=True)
class _Token:
    kind: str  # "op", "lparen", "rparen", "word", "value", "end"
    text: str
    value: object
    offset: int


_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<op>-[A-Za-z]+)
  | (?P<squote>'(?:[^']|'')*')
  | (?P<dquote>"(?:[^"]|"")*")
  | (?P<variable>\$[A-Za-z]+)
  | (?P<number>\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            char = text[pos]
            if char in "'\"":
                raise OpathError(f"unterminated quoted value starting with {char}", pos,
                                 f"close the value with a matching {char}")
            raise OpathError(f"unexpected character {char!r}", pos,
                             "OPATH filters look like: RecipientTypeDetails -eq 'RoomMailbox'")
        kind = match.lastgroup or ""
        raw = match.group()
        if kind == "squote":
            _typographic_quote(raw, pos)
            tokens.append(_Token("value", raw, raw[1:-1].replace("''", "'"), pos))
        elif kind == "dquote":
            _typographic_quote(raw, pos)
            tokens.append(_Token("value", raw, raw[1:-1].replace('""', '"'), pos))
        elif kind == "variable":
            constants = {"$null": None, "$true": True, "$false": False}
            if raw.lower() not in constants:
                raise OpathError(f"unknown variable {raw}", pos, "only $null, $true and $false can appear in a filter")
            tokens.append(_Token("value", raw, constants[raw.lower()], pos))
        elif kind == "number":
            tokens.append(_Token("value", raw, int(raw), pos))
        elif kind != "space":
            tokens.append(_Token(kind, raw, None, pos))
        pos = match.end()
    tokens.append(_Token("end", "", None, len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_op(self, name: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text.lower() == "-" + name

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise OpathError("the filter is empty", 0, "write a filter such as RecipientTypeDetails -eq 'RoomMailbox'")
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise OpathError(f"unexpected {token.text!r} after a complete condition", token.offset,
                             "join conditions with -and or -or")
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.is_op("or"):
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.is_op("and"):
            self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Node:
        if self.is_op("not"):
            self.take()
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.peek()
        if token.kind == "lparen":
            self.take()
            node = self.parse_or()
            closing = self.peek()
            if closing.kind != "rparen":
                raise OpathError("missing closing parenthesis", closing.offset,
                                 f"add ')' to close the '(' at position {token.offset + 1}")
            self.take()
            return node
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        token = self.take()
        if token.kind != "word":
            shown = token.text or "the end of the filter"
            raise OpathError(f"expected a property name, found {shown!r}", token.offset,
                             "a condition starts with a property, e.g. RecipientTypeDetails")
        prop = _PROPERTY_BY_LOWER.get(token.text.lower())
        if prop is None:
            close = difflib.get_close_matches(token.text, FILTERABLE_PROPERTIES, n=1)
            hint = f"did you mean {close[0]}?" if close else "see the filterable properties in the README"
            raise OpathError(f"unknown filterable property {token.text!r}", token.offset, hint)
        op_token = self.take()
        op = op_token.text.lower()[1:] if op_token.kind == "op" else ""
        if op not in COMPARISON_OPERATORS:
            shown = op_token.text or "the end of the filter"
            raise OpathError(f"expected a comparison operator after {prop}, found {shown!r}", op_token.offset,
                             "use one of " + ", ".join("-" + o for o in COMPARISON_OPERATORS))
        value_token = self.take()
        if value_token.kind != "value":
            shown = value_token.text or "the end of the filter"
            raise OpathError(f"expected a quoted value after -{op}, found {shown!r}", value_token.offset,
                             "put text values in single quotes, e.g. 'RoomMailbox'")
        value = value_token.value
        if op in ("like", "notlike") and not isinstance(value, str):
            raise OpathError(f"-{op} needs a text value", value_token.offset, "e.g. Office -like 'Berlin*'")
        return Comparison(prop, op, value)  # type: ignore[arg-type]


def parse(text: str) -> Node:
    """Parse an OPATH filter or raise :class:`OpathError` with the offset of the problem."""
    return _Parser(text).parse()


def quote_value(value: str | bool | int | None) -> str:
    """Write a value the way OPATH expects it (text in single quotes, quotes doubled)."""
    if value is None:
        return "$null"
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    _typographic_quote(value, 0)
    return "'" + value.replace("'", "''") + "'"


def to_text(node: Node, _nested: bool = False) -> str:
    """Print a filter in canonical form (what exkit writes and compares)."""
    if isinstance(node, Comparison):
        return f"{node.property} -{node.operator} {quote_value(node.value)}"
    if isinstance(node, Not):
        return f"-not ({to_text(node.item)})"
    joiner = " -and " if isinstance(node, And) else " -or "
    text = joiner.join(to_text(item, True) for item in node.items)
    return f"({text})" if _nested else text


def to_stored_text(node: Node) -> str:
    """A filter as Exchange stores and prints it back: every comparison and every -and/-or group in its own
    parentheses (the form dynamic distribution group fixtures show: ``((((Title -eq 'Architect') -or …)))``).
    For management scopes Microsoft does not say; /work/shared/reference/exchange.md "Stored filters". Scripts must
    accept both this and :func:`to_text` as "unchanged"."""
    if isinstance(node, Comparison):
        return f"({to_text(node)})"
    if isinstance(node, Not):
        return f"(-not {to_stored_text(node.item)})"
    joiner = " -and " if isinstance(node, And) else " -or "
    return "(" + joiner.join(to_stored_text(item) for item in node.items) + ")"


def conjunction(nodes: Iterable[Node]) -> Node:
    items = tuple(nodes)
    return items[0] if len(items) == 1 else And(items)


def disjunction(nodes: Iterable[Node]) -> Node:
    items = tuple(nodes)
    return items[0] if len(items) == 1 else Or(items)


def _values(recipient: Mapping[str, object], prop: str) -> list[object]:
    for key, value in recipient.items():
        if key.lower() == prop.lower():
            if value is None or value == "":
                return []
            if isinstance(value, (list, tuple)):
                return list(value)
            return [value]
    return []


def _compare(actual: object, op: str, wanted: object) -> bool:
    if isinstance(wanted, str) or isinstance(actual, str):
        a, w = str(actual).lower(), str(wanted).lower()
        if op in ("like", "notlike"):
            hit = fnmatch.fnmatchcase(a, w.replace("[", "[[]"))
            return hit if op == "like" else not hit
    else:
        a, w = actual, wanted  # type: ignore[assignment]
    try:
        return {
            "eq": a == w, "ne": a != w, "gt": a > w, "lt": a < w, "ge": a >= w, "le": a <= w,  # type: ignore[operator]
        }[op]
    except TypeError:
        return False


def evaluate(node: Node, recipient: Mapping[str, object]) -> bool:
    """Does ``recipient`` (a mapping of property names to values or lists of values) match the filter?"""
    if isinstance(node, And):
        return all(evaluate(item, recipient) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, recipient) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, recipient)
    values = _values(recipient, node.property)
    if node.value is None:
        return (not values) if node.operator == "eq" else bool(values) if node.operator == "ne" else False
    if node.operator in ("ne", "notlike"):
        return all(_compare(v, node.operator, node.value) for v in values)
    return any(_compare(v, node.operator, node.value) for v in values)


_RESOURCE_TYPE_TO_DETAILS = {"room": {"RoomMailbox", "LinkedRoomMailbox"}, "equipment": {"EquipmentMailbox"}}


def possible_recipient_types(node: Node) -> frozenset[str] | None:
    """The RecipientTypeDetails values a filter can match, or None when it can match any type.

    Conservative: a negation or a condition on another property constrains nothing.
    """
    if isinstance(node, And):
        result: frozenset[str] | None = None
        for item in node.items:
            types = possible_recipient_types(item)
            if types is not None:
                result = types if result is None else result & types
        return result
    if isinstance(node, Or):
        union: set[str] = set()
        for item in node.items:
            types = possible_recipient_types(item)
            if types is None:
                return None
            union |= types
        return frozenset(union)
    if isinstance(node, Not) or node.operator != "eq" or not isinstance(node.value, str):
        if isinstance(node, Comparison) and node.operator == "like" and isinstance(node.value, str):
            if node.property == "RecipientTypeDetails":
                known = RESOURCE_TYPES | {"UserMailbox", "SharedMailbox", "MailUser", "MailUniversalSecurityGroup",
                                          "MailUniversalDistributionGroup", "RoomList"}
                return frozenset(t for t in known if fnmatch.fnmatchcase(t.lower(), node.value.lower()))
        return None
    if node.property == "RecipientTypeDetails":
        return frozenset({_canonical_type(node.value)})
    if node.property == "ResourceType":
        return frozenset(_RESOURCE_TYPE_TO_DETAILS.get(node.value.lower(), set()))
    return None


def _canonical_type(value: str) -> str:
    for known in RESOURCE_TYPES | {"UserMailbox", "SharedMailbox"}:
        if known.lower() == value.lower():
            return known
    return value


def matches_only_resources(node: Node) -> bool:
    """True when the filter provably matches only room (and equipment) mailboxes."""
    types = possible_recipient_types(node)
    return types is not None and types <= RESOURCE_TYPES
