"""scope preview: which recipients each scope's filter matches — live on a target, or offline from a directory
export (``Get-Recipient -ResultSize Unlimited | Export-Csv``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit import opath
from toolkit.boundary import Boundary, check_reach
from toolkit.playbook.model import Playbook
from toolkit.verify import access
from toolkit.verify.access import RecipientsFileError, read_recipients_csv as read_recipients
from toolkit.verify.snapshot import Snapshot, beyond_resources, count_types

__all__ = ["RecipientsFileError", "ScopePreview", "preview_live", "preview_offline", "read_recipients"]

SAMPLE_SIZE = 5
NOT_IN_EXPORT = {"MemberOfGroup"}  # Get-Recipient's output has no such column


@dataclass
class ScopePreview:
    scope: str
    filter: str
    counts: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    problem: str = ""
    matched: list[dict[str, Any]] = field(default_factory=list, repr=False)  # every recipient (for boundary checks)

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "filter": self.filter, "counts": self.counts, "samples": self.samples,
                "ok": not self.problem, "problem": self.problem}


def _preview(scope_name: str, filter_text: str, recipients: list[dict[str, Any]]) -> ScopePreview:
    result = ScopePreview(scope_name, filter_text, count_types(recipients),
                          [str(r.get("name")) for r in recipients[:SAMPLE_SIZE]], matched=list(recipients))
    outside = beyond_resources(recipients)
    if outside:
        kinds = count_types(outside)
        result.problem = ("matches " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + " (e.g. "
                          + ", ".join(str(r.get("name")) for r in outside[:3]) + "): a room scope must match rooms "
                                                                                  "only")
    return result


def preview_live(playbook: Playbook, snapshot: Snapshot) -> list[ScopePreview]:
    return [_preview(s.name, opath.to_text(s.filter_tree()), snapshot.previews.get(s.name.lower(), []))
            for s in playbook.scopes]


def preview_offline(playbook: Playbook, rows: list[dict[str, Any]]) -> list[ScopePreview]:
    """What each scope contains among a CSV's recipients: decided by the access evaluator's scope test."""
    results = []
    for scope in playbook.scopes:
        tree = scope.filter_tree()
        text = opath.to_text(tree)
        used = {node.property for node in _comparisons(tree)}
        if used & NOT_IN_EXPORT:
            results.append(ScopePreview(scope.name, text, problem="uses " + ", ".join(sorted(used & NOT_IN_EXPORT))
                                        + ", which a Get-Recipient export does not contain: preview it live"))
            continue
        org = access.from_recipients(rows)
        matched = [{"name": r.name, "type": r.type, "address": r.address, "dn": r.distinguished_name}
                   for r in org.recipients if access.in_scope(tree, scope.recipient_root, r)]
        results.append(_preview(scope.name, text, matched))
    return results


def _comparisons(node: opath.Node) -> list[opath.Comparison]:
    if isinstance(node, opath.Comparison):
        return [node]
    if isinstance(node, opath.Not):
        return _comparisons(node.item)
    return [c for item in node.items for c in _comparisons(item)]


def check_boundary(previews: list[ScopePreview], target: str, boundary: Boundary,
                   neighbours: dict[str, Boundary]) -> None:
    """A scope whose matches leave the tenant's boundary fails, naming the other tenant they belong to."""
    for preview in previews:
        violations = check_reach(boundary, {preview.scope: preview.matched}, neighbours=neighbours)
        if violations:
            crossed = "; ".join(v.message(target) for v in violations)
            preview.problem = f"{preview.problem}; {crossed}" if preview.problem else crossed
