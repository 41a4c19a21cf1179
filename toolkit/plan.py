"""Plan: compare the desired resources with facts read from a target → an ordered list of changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from toolkit.resources import KIND_BY_NAME, FieldChange, Resource

Action = Literal["create", "update", "delete", "noop"]


@dataclass(frozen=True)
class Change:
    resource: Resource
    action: Action
    fields: list[FieldChange] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.name

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action,
                "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in self.fields]}


@dataclass(frozen=True)
class Plan:
    changes: list[Change]
    destroy: bool = False

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "noop"]

    def counts(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0, "noop": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {"destroy": self.destroy, "counts": self.counts(), "changes": [c.as_dict() for c in self.changes]}


def make_plan(resources: list[Resource], facts: list[dict[str, Any]], destroy: bool = False) -> Plan:
    """``resources`` in apply order; for a destroy plan the changes come in removal (reverse) order."""
    by_key = {(str(f.get("kind")), str(f.get("name", "")).lower()): f for f in facts}
    changes = []
    for resource in (reversed(resources) if destroy else resources):
        fact = by_key.get(resource.key) or {"exists": False}
        exists = bool(fact.get("exists"))
        if destroy:
            changes.append(Change(resource, "delete" if exists else "noop"))
        elif not exists:
            created = [FieldChange(k, None, v) for k, v in resource.fields.items()
                       if k != "name" and v not in (None, [], "", False)]
            changes.append(Change(resource, "create", created))
        else:
            differences = KIND_BY_NAME[resource.kind].compare(resource, fact)
            changes.append(Change(resource, "update" if differences else "noop", differences))
    return Plan(changes, destroy)
