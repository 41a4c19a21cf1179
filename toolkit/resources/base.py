"""The shape every resource kind shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between the target (``before``) and the playbook (``after``)."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Resource:
    """One desired Exchange object. ``fields`` are the values rendered into its template and compared for drift."""

    kind: str
    name: str
    template: str
    fields: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name.lower())

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "fields": self.fields}
