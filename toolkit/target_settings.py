"""Target settings a group shares, and where each of a target's settings comes from.

A group's ``target_defaults:`` holds target settings (``kind``, ``client_id``, ``certificate_pfx``, ``host``, …)
that every target of the group gets unless it sets them itself (key by key: the target wins); when the defaults
name a ``kind``, a target of another kind (a sandbox lab among the tenants) gets none of them. An Exchange Online
target named by its tenant's initial domain (``contoso.onmicrosoft.com``) needs no ``tenant:`` — the name is the
tenant — and one that gives its tenant id needs no ``organization:`` either.

This works on the parsed inventory, before it is validated: the typed model sees every target whole, and
:meth:`Merged.relocate` points an error in an inherited setting back at the line of ``target_defaults:`` it was
written on (reported once, not once per target that inherits it).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from toolkit.playbook.diagnostics import Diagnostics
from toolkit.playbook.load import LoadedDocument, PathKey
from toolkit.targets.specs import ORGANIZATION_DOMAINS

DEFAULTS = "target_defaults"
GROUP_KEYS = ("vars", "templates", "boundary")  # the group has keys of its own for these: not target settings
TARGET = "target"
NAME = "the target's name"
DEFAULT = "exkit's default"


def defaults_source(group: str) -> str:
    return f"{DEFAULTS} of group {group}"


def is_initial_domain(name: str) -> bool:
    return name.lower().endswith(ORGANIZATION_DOMAINS)


@dataclass
class Merged:
    """The inventory's data with every group's defaults merged into its targets, and where each target's settings
    come from (target name → setting → ``target``, ``target_defaults of group G`` or ``the target's name``)."""

    data: Any
    origins: dict[str, dict[str, str]] = field(default_factory=dict)
    # group → its defaults, when none of its targets inherits any of them (checked on their own: see unused())
    unused: dict[str, dict[str, Any]] = field(default_factory=dict)
    _inherited: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def relocate(self, path: PathKey) -> PathKey:
        """Where an error the model found at ``path`` (in the merged data) is written in the file: a setting a
        target inherited stands in its group's ``target_defaults:``."""
        if len(path) >= 5 and path[0] == "groups" and path[2] == "targets":
            group, name, setting = str(path[1]), str(path[3]), path[4]
            if setting in self._inherited.get((group, name), ()):
                return ("groups", group, DEFAULTS, *path[4:])
        return path


def merge(document: LoadedDocument, diagnostics: Diagnostics) -> Merged:
    """Merge every group's ``target_defaults:`` under its targets' settings; a group-level key in the defaults
    (vars, templates, boundary) is an error at its line. ``document.data`` is left as it was (positions refer
    to it)."""
    data = document.data
    merged = Merged(data)
    if not isinstance(data, dict):
        return merged
    merged.data = dict(data)
    targets = data.get("targets")
    if isinstance(targets, dict):
        merged.data["targets"] = {name: _named(merged, None, str(name), spec, {}) for name, spec in targets.items()}
    groups = data.get("groups")
    if not isinstance(groups, dict):
        return merged
    merged.data["groups"] = dict(groups)
    for group_name, group in groups.items():
        if not isinstance(group, dict):
            continue
        defaults = group.get(DEFAULTS)
        defaults = defaults if isinstance(defaults, dict) else {}  # not a mapping: the model says so, positioned
        for key in defaults:
            if key in GROUP_KEYS:
                diagnostics.error("group-key-in-defaults", f"{key!r} is not a target setting: {DEFAULTS} of group "
                                  f"{group_name!r} cannot hold it", document.file,
                                  document.positions.of_key(("groups", group_name, DEFAULTS, key)),
                                  f"write it as the group's own '{key}:' (beside {DEFAULTS}:), which every target "
                                  "of the group gets")
        shared = {k: v for k, v in defaults.items() if k not in GROUP_KEYS}
        members = group.get("targets")
        if isinstance(members, dict):
            merged.data["groups"][group_name] = {**group, "targets": {
                name: _named(merged, str(group_name), str(name), spec, shared) for name, spec in members.items()}}
            members_inherit = any(merged._inherited.get((str(group_name), str(name))) for name in members)
        else:
            members_inherit = False
        if shared and not members_inherit:
            merged.unused[str(group_name)] = shared
    return merged


PROBE = "target_defaults"  # the name the defaults no target inherits are checked under


def unused(merged: Merged, document: LoadedDocument, diagnostics: Diagnostics) -> tuple[dict[str, Any], Merged]:
    """The defaults no target inherits (every target sets them itself, or is of another kind), as an inventory of
    one target per group made of them alone, to be checked like any target: a misspelt key or a wrong value in
    them is an error even though nothing uses them (a typo must not wait for the day a target inherits it). The
    returned Merged relocates that target's settings to the defaults' lines. Defaults that name no ``kind`` may be
    meant for a target of any kind: only their keys are checked here, against every kind's settings."""
    from toolkit.targets.specs import ExchangeOnlineTargetSpec, ExchangeServerTargetSpec, SandboxTargetSpec

    known = sorted({key for spec in (SandboxTargetSpec, ExchangeServerTargetSpec, ExchangeOnlineTargetSpec)
                    for key in spec.model_fields} - set(GROUP_KEYS))
    probe = Merged({"groups": {}})
    for group, shared in merged.unused.items():
        if "kind" in shared:
            probe.data["groups"][group] = {"targets": {PROBE: dict(shared)}}
            probe._inherited[(group, PROBE)] = set(shared)
            continue
        for key in shared:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                diagnostics.error("unknown-key", f"unknown key {key!r} in the {DEFAULTS} of group {group!r}",
                                  document.file, document.positions.of_key(("groups", group, DEFAULTS, key)),
                                  f"did you mean {close[0]!r}?" if close else "allowed keys: " + ", ".join(known))
    return probe.data, probe


def _named(merged: Merged, group: str | None, name: str, spec: Any, shared: dict[str, Any]) -> Any:
    """One target's settings: the group's shared ones under its own, then what its name stands for."""
    if spec is None and shared:
        spec = {}  # `contoso.onmicrosoft.com:` with nothing under it: everything from the defaults and the name
    if not isinstance(spec, dict):
        return spec  # the model reports it
    if "kind" in shared and "kind" in spec and spec["kind"] != shared["kind"]:
        shared = {}  # the defaults are for targets of their kind
    settings = {**shared, **spec}
    origins = {key: TARGET if key in spec else defaults_source(str(group)) for key in settings}
    if group is not None:
        merged._inherited[(group, name)] = {key for key in shared if key not in spec}
    if settings.get("kind") == "exchange-online" and is_initial_domain(name):
        tenant = settings.get("tenant")
        if tenant is None:
            settings["tenant"], origins["tenant"] = name, NAME
        elif "organization" not in settings and isinstance(tenant, str) and not is_initial_domain(tenant):
            # the tenant given by its id: Connect-ExchangeOnline still needs the initial domain, which is the name
            settings["organization"], origins["organization"] = name, NAME
    merged.origins[name] = {key: origins[key] for key in settings if key not in GROUP_KEYS}
    return settings


def described(spec: Any, origins: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each setting of a validated target that has a value (vars, templates and boundary aside: they are shown on
    their own), with where it comes from; a setting nobody wrote has exkit's default."""
    values = spec.model_dump(mode="json", exclude=set(GROUP_KEYS), exclude_none=True)
    return {key: {"value": value, "from": origins.get(key, DEFAULT)} for key, value in values.items()}
