"""The shape every resource kind shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.playbook.model import Playbook


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


def desired_resources(playbook: Playbook) -> list[Resource]:
    """Every object the playbook declares, in apply order (scopes before the groups and assignments using them)."""
    from toolkit.resources import KINDS

    return [resource for kind in KINDS for resource in kind.desired(playbook)]
