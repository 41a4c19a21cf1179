"""PowerShell values as the sandbox represents them, and the conversions PowerShell applies to them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class Hashtable:
    """A PowerShell hashtable: case-insensitive keys, insertion order kept (for readable JSON)."""

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._data: dict[str, tuple[str, Any]] = {}
        for key, value in items:
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        original = self._data.get(str(key).lower(), (str(key), None))[0]
        self._data[str(key).lower()] = (original, value)

    def __getitem__(self, key: str) -> Any:
        found = self._data.get(str(key).lower())
        return None if found is None else found[1]

    def __contains__(self, key: object) -> bool:
        return str(key).lower() in self._data

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self._data.values())

    def __len__(self) -> int:
        return len(self._data)


class PSObject:
    """An object a cmdlet returns: named properties, read case-insensitively."""

    def __init__(self, type_name: str, properties: Mapping[str, Any]) -> None:
        self.type_name = type_name
        self.properties = dict(properties)
        self._lower = {k.lower(): k for k in self.properties}

    def get(self, name: str) -> Any:
        key = self._lower.get(name.lower())
        return None if key is None else self.properties[key]

    def has(self, name: str) -> bool:
        return name.lower() in self._lower

    def __repr__(self) -> str:
        return f"<{self.type_name} {self.properties.get('Name', '')!s}>"


def is_true(value: Any) -> bool:
    """PowerShell truthiness."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value != ""
    if isinstance(value, list):
        if not value:
            return False
        return is_true(value[0]) if len(value) == 1 else True
    return True


def to_string(value: Any) -> str:
    """[string] conversion: arrays joined with spaces, $null is empty, booleans are True/False."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return " ".join(to_string(v) for v in value)
    if isinstance(value, PSObject):
        for prop in ("Name", "Identity"):
            if value.has(prop):
                return to_string(value.get(prop))
        return value.type_name
    if isinstance(value, Hashtable):
        return "System.Collections.Hashtable"
    return str(value)


def as_list(value: Any) -> list[Any]:
    """What a foreach or a pipeline enumerates: $null → nothing, a scalar → itself, an array → its items."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def collapse(items: list[Any]) -> Any:
    """The value of a captured pipeline: nothing → $null, one item → the item, more → an array."""
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return list(items)


def equals(left: Any, right: Any) -> bool:
    """-eq for scalars: the right side converted to the left side's type, strings compared case-insensitively."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, str) or isinstance(left, PSObject):
        return to_string(left).lower() == to_string(right).lower()
    if isinstance(left, bool):
        return left == is_true(right)
    if isinstance(left, (int, float)):
        try:
            return left == (float(right) if isinstance(right, str) else right)
        except ValueError:
            return False
    return left == right


def to_json_value(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 0:
        return to_string(value)
    if isinstance(value, list):
        return [to_json_value(v, depth - 1) for v in value]
    if isinstance(value, Hashtable):
        return {k: to_json_value(v, depth - 1) for k, v in value.items()}
    if isinstance(value, PSObject):
        return {k: to_json_value(v, depth - 1) for k, v in value.properties.items()}
    return to_string(value)


def convert_to_json(value: Any, compress: bool, depth: int) -> str:
    data = to_json_value(value, depth)
    if compress:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(data, indent=4, ensure_ascii=False)
