"""A fleet plan in words: each target's resource-level changes, with the changes identical across targets folded.

Targets of one playbook differ by their values (tenant names, accounts, OUs). Each target's change lines are written
with the values that differ between the targets replaced by their variable's name (``<tenant>``); targets whose
lines are then identical are shown once ("on 198 targets: + RoleGroup '<tenant> room booking' …"), and a target
whose changes differ in shape is shown in full, with its own values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SIGNS = {"create": "+", "update": "~", "delete": "-"}
SHOWN_NAMES = 6


def _value(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def change_lines(plan: Mapping[str, Any]) -> list[str]:
    """One line per pending change, then one indented line per field: before → after."""
    lines = []
    for change in plan.get("changes", []):
        action = change["action"]
        if action == "noop":
            continue
        lines.append(f"{SIGNS.get(action, '?')} {change['kind']} {change['name']!r} ({action})")
        lines += [f"    {f['field']}: {_value(f['before'])} → {_value(f['after'])}" for f in change.get("fields", [])]
    return lines


def _differing(variables: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Variable name → the name shown instead of its value, for string variables whose values differ between
    targets."""
    names: set[str] = set()
    for values in variables.values():
        names |= {k for k, v in values.items() if isinstance(v, str)}
    differing = {}
    for name in sorted(names):
        seen = {str(values.get(name)) for values in variables.values()}
        if len(seen) > 1:
            differing[name] = f"<{name}>"
    return differing


def _generalise(lines: list[str], values: Mapping[str, Any], differing: Mapping[str, str]) -> tuple[str, ...]:
    pairs = sorted(((str(values[n]), shown) for n, shown in differing.items() if isinstance(values.get(n), str)
                    and len(str(values[n])) >= 3), key=lambda pair: -len(pair[0]))
    out = []
    for line in lines:
        for value, shown in pairs:  # the longest first: an address that contains the tenant's name stays whole
            line = line.replace(value, shown)
        out.append(line)
    return tuple(out)


def _names(targets: Sequence[str]) -> str:
    shown = ", ".join(targets[:SHOWN_NAMES])
    return shown + (f", … {len(targets) - SHOWN_NAMES} more" if len(targets) > SHOWN_NAMES else "")


def fold(plans: Mapping[str, Mapping[str, Any]], variables: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``plans``: target → its plan (``Plan.as_dict()``); ``variables``: target → its values. The fleet's changes as
    text lines, the largest group of identical targets first."""
    differing = _differing({t: variables.get(t, {}) for t in plans})
    groups: dict[tuple[str, ...], list[str]] = {}
    own: dict[str, list[str]] = {}
    for target, plan in plans.items():
        lines = change_lines(plan)
        own[target] = lines
        groups.setdefault(_generalise(lines, variables.get(target, {}), differing), []).append(target)
    out: list[str] = []
    for lines, targets in sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0])):
        if not lines:
            out.append(f"nothing to change on {len(targets)} target(s): {_names(targets)}")
        elif len(targets) > 1:
            out.append(f"on {len(targets)} targets ({_names(targets)}):")
            out += [f"  {line}" for line in lines]
        else:
            out.append(f"on {targets[0]}:")
            out += [f"  {line}" for line in own[targets[0]]]
    return out
