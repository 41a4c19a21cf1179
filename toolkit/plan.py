"""Plan: run the apply (or destroy) script against what the target has, in the sandbox, and report what it did.

The script is the only place that decides what must change. A plan does not compare fields itself: it takes the
organisation rebuilt from the target's objects (toolkit/sandbox/mirror.py, or the sandbox itself), runs the rendered
script against a copy of it in exkit's PowerShell interpreter — cmdlets and all, with Exchange's semantics — and
reads the script's own per-resource results (``created``, ``updated``, …), the state-changing calls it made, and
each resource's view before and after (for the before → after lines a reviewer reads).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from toolkit.resources import KIND_BY_NAME, FieldChange, Resource
from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.commands import Command
from toolkit.sandbox.interpreter import Interpreter, ScriptError
from toolkit.sandbox.model import Organisation
from toolkit.sandbox.values import to_string
from toolkit.targets.base import ResourceResult, parse_output

Action = Literal["create", "update", "delete", "noop", "error"]
_ACTIONS: dict[str, Action] = {"created": "create", "updated": "update", "removed": "delete", "unchanged": "noop",
                               "absent": "noop", "failed": "error"}


@dataclass(frozen=True)
class Change:
    resource: Resource
    action: Action
    fields: list[FieldChange] = field(default_factory=list)
    calls: tuple[str, ...] = ()  # the state-changing cmdlets the script runs for it, as a reviewer reads them
    error: str = ""

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.name

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action,
                "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in self.fields],
                "calls": list(self.calls), **({"error": self.error} if self.error else {})}


@dataclass(frozen=True)
class Plan:
    changes: list[Change]
    destroy: bool = False
    after: Organisation | None = field(default=None, compare=False, repr=False)  # what the script would leave

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action not in ("noop", "error")]

    @property
    def errors(self) -> list[Change]:
        """Changes Exchange would refuse (a member that does not exist, …): apply must not start."""
        return [c for c in self.changes if c.action == "error"]

    def counts(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0, "noop": 0, "error": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {"destroy": self.destroy, "counts": self.counts(), "changes": [c.as_dict() for c in self.changes]}


@dataclass
class WhatIf:
    """What a script did to a copy of an organisation."""

    results: list[ResourceResult]
    before: Organisation
    after: Organisation
    calls: dict[tuple[str, str], list[str]]
    error: str = ""


def what_if(script: str, organisation: Organisation) -> WhatIf:
    """Run ``script`` against a copy of ``organisation``; ``organisation`` itself is not changed."""
    # An independent copy through pydantic's serialiser (a third of what copy.deepcopy costs for a whole org).
    after = type(organisation).model_validate_json(organisation.model_dump_json())
    interpreter = Interpreter({})
    calls: dict[tuple[str, str], list[str]] = {}
    running = weakref.ref(interpreter)  # the commands do not hold the interpreter: no cycle to collect
    interpreter.commands.update({name.lower(): _recording(command, running, calls)
                                 for name, command in ExchangeCmdlets(after).commands().items()})
    try:
        outcome = interpreter.run(script)
    except ScriptError as exc:
        return WhatIf([], organisation, after, calls, "the script cannot run in the sandbox: "
                      + "; ".join(str(exc).splitlines()))
    results, _ = parse_output("\n".join(outcome.output))
    return WhatIf(results, organisation, after, calls, "\n".join(outcome.errors) if outcome.exit_code else "")


def _recording(command: Command, running: Callable[[], Interpreter | None],
               calls: dict[tuple[str, str], list[str]]) -> Command:
    """The command, noting each state-changing call under the resource whose block is running (in the interpreter
    ``running()`` gives)."""
    if not command.should_process:
        return command

    def run(bound: dict[str, Any], pipeline: list[Any]) -> list[Any]:
        variables = running().variables  # type: ignore[union-attr]  # it runs this command: it is alive
        key = (to_string(variables.get("exkitkind")), to_string(variables.get("exkitname")).lower())
        calls.setdefault(key, []).append(describe_call(command.name, bound))
        return command.run(bound, pipeline)

    return command.with_run(run)


def describe_call(cmdlet: str, bound: dict[str, Any]) -> str:
    """A call as PowerShell text (values quoted by the one quoting function), for people to read."""
    from toolkit.render.quoting import UnsafeValueError, ps_literal
    from toolkit.sandbox.values import to_string

    parts = [cmdlet]
    for name, value in bound.items():
        if name in ("ErrorAction", "Confirm"):
            continue
        try:
            shown = ps_literal(value if isinstance(value, (str, bool, int, float, list)) or value is None
                               else to_string(value))
        except UnsafeValueError:
            shown = "(a value that cannot be shown)"
        parts.append(f"-{name}" if value is True else f"-{name} {shown}")
    return " ".join(parts)


def make_plan(resources: list[Resource], outcome: WhatIf, destroy: bool = False) -> Plan:
    """``resources`` in the order the script handles them; one change per resource, from the script's result."""
    by_key = {(r.kind, r.name.lower()): r for r in outcome.results}
    changes = []
    stopped = ""
    for resource in resources:
        result = by_key.get(resource.key)
        calls = tuple(outcome.calls.get(resource.key, []))
        if result is None:
            stopped = stopped or outcome.error or "the script stopped before this resource"
            changes.append(Change(resource, "error", calls=calls,
                                  error=f"not planned: {stopped.splitlines()[0]}"))
            continue
        action = _ACTIONS.get(result.action, "error")
        kind = KIND_BY_NAME[resource.kind]
        before, after = kind.view(outcome.before, resource), kind.view(outcome.after, resource)
        fields = _differences(before, after) if action in ("create", "update") else []
        changes.append(Change(resource, action, fields, calls, result.error))
    return Plan(changes, destroy, outcome.after)


def _differences(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldChange]:
    before, after = before or {}, after or {}
    return [FieldChange(key, before.get(key), after.get(key)) for key in after | before
            if before.get(key) != after.get(key) and not (before.get(key) in (None, [], "", False)
                                                           and after.get(key) in (None, [], "", False))]


def unresolved(playbook: Any, organisation: Organisation) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Every principal and mailbox the playbook names that the target does not have (the facts script read each
    one): ``(path in the playbook, name, what it is)``. Exchange would refuse the change that names it."""
    found: list[tuple[tuple[str | int, ...], str, str]] = []

    def need(path: tuple[str | int, ...], name: str, what: str) -> None:
        if organisation.recipient(name) is None and organisation.role_group(name) is None:
            found.append((path, name, what))

    for index, group in enumerate(playbook.role_groups):
        for position, member in enumerate(group.members):
            need(("role_groups", index, "members", position), member, "member")
    for index, assignment in enumerate(playbook.role_assignments):
        if assignment.user:
            need(("role_assignments", index, "user"), assignment.user, "user")
        elif assignment.security_group:
            need(("role_assignments", index, "security_group"), assignment.security_group, "security group")
    for index, delegate in enumerate(playbook.delegates):
        need(("delegates", index, "user"), delegate.user, "delegate")
        for position, mailbox in enumerate(delegate.mailboxes):
            need(("delegates", index, "mailboxes", position), mailbox, "mailbox")
    for index, policy in enumerate(playbook.application_access_policies):
        need(("application_access_policies", index, "group"), policy.group, "group")
    return found
