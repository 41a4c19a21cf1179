"""Inventories: the targets a playbook can run against, and the variables each supplies.

Variable precedence (lowest first): the playbook's ``vars:`` → the inventory's top-level ``vars:`` → the group's
``vars:`` → the target's ``vars:`` → ``--var`` on the command line. A target's settings: exkit's defaults → its
group's ``target_defaults:`` → its own (toolkit/target_settings.py). With no inventory, the target is the embedded
sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from toolkit import target_settings
from toolkit.boundary import Boundary
from toolkit.errors import ExkitError
from toolkit.fleet.throttle import RateLimiter
from toolkit.playbook.bounded_yaml import FileTooLarge, limit_hint, read_text
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError, Position
from toolkit.playbook.load import parse_yaml
from toolkit.playbook.model import VariableValue, problem
from toolkit.playbook.validate import report_model_errors
from toolkit.targets.base import Target
from toolkit.targets.factory import build_target
from toolkit.targets.specs import TargetSpec

DEFAULT_TARGET = "sandbox"


def _target_name(name: str) -> str:
    """Target names become parts of script file names (``<playbook>.<target>.ps1``): plain file names only."""
    from toolkit.safe_paths import file_name_problem

    reason = file_name_problem(name)
    if reason is not None:
        raise problem(f"the target name {name[:60]!r} cannot be used: {reason}",
                      "target names become file names of reviewed scripts: use letters, digits and . _ - @ +, "
                      "at most 100 characters")
    return name


TargetName = Annotated[str, AfterValidator(_target_name)]


class Group(BaseModel):
    """Targets that share variables and template overrides, e.g. a hosting provider's tenants."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vars: dict[str, VariableValue] = Field(default_factory=dict, description="Variables for the group's targets.")
    templates: str | None = Field(None, description="Template folder layered over the built-in templates.")
    boundary: Boundary | None = Field(None, description="Each target's boundary (a target's own replaces it); "
                                                        "values may use {{ target }} and inventory variables.")
    target_defaults: dict[str, Any] = Field(
        default_factory=dict, description="Target settings every target of the group gets unless it sets them "
                                          "itself (kind, client_id, certificate_pfx, host, transport, …); merged and "
                                          "checked with each target's own (toolkit/target_settings.py).")
    targets: dict[TargetName, TargetSpec] = Field(default_factory=dict)


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vars: dict[str, VariableValue] = Field(default_factory=dict, description="Variables for every target.")
    targets: dict[TargetName, TargetSpec] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(default_factory=dict)
    # target name → setting → where it comes from (target_settings.Merged.origins); set by load_inventory
    _origins: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> Inventory:
        seen: dict[str, str] = {name: "the top level" for name in self.targets}
        for group_name, group in self.groups.items():
            for name in group.targets:
                if name in seen:
                    raise problem(f"target {name!r} is declared in {seen[name]} and in group {group_name!r}",
                                  "target names must be unique across the inventory")
                seen[name] = f"group {group_name!r}"
        return self

    def entries(self) -> dict[str, tuple[str | None, Any]]:
        """Every target by name: (its group or None, its spec), in a stable order."""
        found: dict[str, tuple[str | None, Any]] = {name: (None, spec) for name, spec in self.targets.items()}
        for group_name, group in self.groups.items():
            found.update({name: (group_name, spec) for name, spec in group.targets.items()})
        return dict(sorted(found.items()))


class InventoryError(ExkitError):
    pass


def load_inventory(path: Path) -> Inventory:
    diagnostics = Diagnostics()
    try:
        text = read_text(path)
    except FileTooLarge as exc:
        diagnostics.error("yaml-limit", str(exc), str(path), Position(1, 1), limit_hint())
        raise PlaybookError(diagnostics) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read the inventory {path}: {getattr(exc, 'strerror', None) or exc}") from None
    document = parse_yaml(text, str(path), diagnostics)
    if document is not None:
        merged = target_settings.merge(document, diagnostics)  # each group's target_defaults under its targets
        if merged.unused:
            probe, probed = target_settings.unused(merged, document, diagnostics)
            try:
                Inventory.model_validate(probe)
            except ValidationError as exc:
                report_model_errors(exc, document, diagnostics, Inventory, validated=probe,
                                    relocate=probed.relocate, partial=True)
        try:
            inventory = Inventory.model_validate(merged.data or {})
        except ValidationError as exc:
            report_model_errors(exc, document, diagnostics, Inventory, validated=merged.data,
                                relocate=merged.relocate)
        else:
            if not diagnostics.errors:
                inventory._origins = merged.origins
                return inventory
    raise PlaybookError(diagnostics)


class ResolvedTarget:
    """A chosen target: its connector, the variables it supplies (with where each came from), its template layers
    (most specific first), its group, its boundary and the boundaries of the other targets of its organisation."""

    def __init__(self, name: str, target: Target, variables: dict[str, Any], *, group: str | None = None,
                 templates: list[Path] | None = None, sources: dict[str, str] | None = None,
                 boundary: Boundary | None = None, neighbours: dict[str, Boundary] | None = None,
                 endpoint: str = "sandbox:(default state)", inventory: Path | None = None,
                 spec: Any = None, origins: dict[str, str] | None = None) -> None:
        self.name = name
        self.spec = spec  # the target's settings, as the inventory gives them (None: the default sandbox)
        self.origins = origins or {}  # where each setting comes from (see settings())
        self.endpoint = endpoint  # where it points, as the inventory says (reviewed scripts are bound to it)
        self.inventory = inventory
        self.pin: Any = None  # with --reviewed: the reviewed scripts every script sent here must equal
        self.target = target
        self.variables = variables
        self.group = group
        self.templates = templates or []
        self.sources = sources or {}
        self.boundary = boundary
        self._organisation = neighbours or {}  # shared by the targets of one organisation (may include this one)

    @property
    def neighbours(self) -> dict[str, Boundary]:
        """The boundaries of the other targets of this target's organisation."""
        return {name: b for name, b in self._organisation.items() if name != self.name}

    def settings(self) -> dict[str, dict[str, Any]]:
        """Each setting of the target that has a value: the value and where it comes from. Secrets are in an
        inventory only as references (env:, keyring:, prompt), so only references are shown."""
        return target_settings.described(self.spec, self.origins) if self.spec is not None else {}

    def template_layers(self, cli_templates: Path | None) -> list[Path]:
        """--templates (most specific), then the target's folder, then its group's; the built-ins come last."""
        return ([cli_templates] if cli_templates else []) + self.templates


def resolve_target(inventory_path: Path | None, target_name: str | None,
                   platform: str = "exchange-server") -> ResolvedTarget:
    """The target to run on. Without an inventory: the sandbox organisation of the playbook's platform."""
    from toolkit.targets.sandbox import SandboxTarget

    if inventory_path is None:
        if target_name not in (None, DEFAULT_TARGET):
            raise InventoryError(f"target {target_name!r} needs an inventory: pass -i INVENTORY "
                                 "(see inventory.example.yaml)")
        return ResolvedTarget(DEFAULT_TARGET, SandboxTarget(platform=platform), {})
    inventory = load_inventory(inventory_path)
    entries = inventory.entries()
    if target_name is None:
        if len(entries) != 1:
            names = ", ".join(entries) or "none"
            raise InventoryError(f"choose a target with -t NAME (the inventory has: {names})")
        target_name = next(iter(entries))
    if target_name not in entries:
        import difflib

        close = difflib.get_close_matches(target_name, list(entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (targets: {', '.join(entries)})"
        raise InventoryError(f"no target {target_name!r} in {inventory_path}{hint}")
    bounds = boundaries(inventory, inventory_path)
    return _resolve(inventory, inventory_path, target_name, *entries[target_name], bounds, _organisations(bounds))


def _variables(inventory: Inventory, name: str, group_name: str | None,
               spec: Any) -> tuple[dict[str, Any], dict[str, str]]:
    group = inventory.groups.get(group_name) if group_name else None
    layers = [("inventory", inventory.vars), (f"group {group_name}", group.vars if group else {}),
              (f"target {name}", spec.vars)]
    variables: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            variables[key] = value
            sources[key] = source
    return variables, sources


def boundaries(inventory: Inventory, inventory_path: Path) -> dict[str, tuple[str, Boundary]]:
    """Every target with a boundary: (its organisation, its boundary with {{ target }} and the inventory's
    variables expanded)."""
    import jinja2

    from toolkit.render.bounded import BoundedEnvironment, render_text

    environment = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)  # sandboxed and bounded
    compiled: dict[str, jinja2.Template] = {}  # a group's boundary is one text for all its targets: compile it once
    found: dict[str, tuple[str, Boundary]] = {}
    for name, (group_name, spec) in inventory.entries().items():
        group = inventory.groups.get(group_name) if group_name else None
        declared = spec.boundary or (group.boundary if group else None)
        if declared is None:
            continue
        values = {**_variables(inventory, name, group_name, spec)[0], "target": name}

        def expand(text: str, _values: dict[str, Any] = values, _name: str = name) -> str:
            try:
                if "{" not in text:
                    return text
                if text not in compiled:
                    compiled[text] = environment.from_string(text)
                return render_text(compiled[text], **_values)
            except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
                raise InventoryError(f"{inventory_path}: the boundary of target {_name!r}: {exc}") from None

        try:
            boundary = Boundary(recipient_root=expand(declared.recipient_root) if declared.recipient_root else None,
                                domains=[expand(d) for d in declared.domains],
                                organisation=declared.organisation).checked()
        except PydanticCustomError as exc:
            raise InventoryError(f"{inventory_path}: the boundary of target {name!r}: {exc.message()}") from None
        found[name] = (boundary.organisation or _organisation(spec, inventory_path.parent), boundary)
    return found


def _organisations(boundaries: dict[str, tuple[str, Boundary]]) -> dict[str, dict[str, Boundary]]:
    """organisation → its targets' boundaries: one dict per organisation, shared by its targets (a fleet of N
    tenants costs N, not N²)."""
    grouped: dict[str, dict[str, Boundary]] = {}
    for name, (organisation, boundary) in boundaries.items():
        grouped.setdefault(organisation, {})[name] = boundary
    return grouped


def _organisation(spec: Any, base: Path) -> str:
    """Which Exchange organisation a target reaches: targets with the same key share one."""
    kind = getattr(spec, "kind", "")
    if kind == "exchange-server":
        return f"exchange-server:{spec.host.lower()}"
    if kind == "exchange-online":
        return f"exchange-online:{spec.tenant.lower()}"
    from toolkit.sandbox.org import default_state_path

    state = Path(spec.state) if spec.state else default_state_path(spec.platform)
    return f"sandbox:{(state if state.is_absolute() else base / state).resolve()}"


def _resolve(inventory: Inventory, inventory_path: Path, name: str, group_name: str | None,
             spec: Any, boundaries: dict[str, tuple[str, Boundary]],
             organisations: dict[str, dict[str, Boundary]]) -> ResolvedTarget:
    base = inventory_path.parent
    group = inventory.groups.get(group_name) if group_name else None
    variables, sources = _variables(inventory, name, group_name, spec)
    templates = [base / t for t in (spec.templates, group.templates if group else None) if t]
    organisation, boundary = boundaries.get(name, ("", None))
    neighbours = organisations.get(organisation, {}) if boundary is not None else {}
    extra = {"group": group_name, "templates": templates, "sources": sources, "boundary": boundary,
             "neighbours": neighbours, "endpoint": _endpoint(spec), "inventory": inventory_path, "spec": spec,
             "origins": inventory._origins.get(name, {})}
    limiters = (RateLimiter(spec.rate_limit),) if spec.rate_limit else ()
    return _limited(ResolvedTarget(name, build_target(spec, name, base), variables, **extra), limiters)


def _endpoint(spec: Any) -> str:
    """Where a target points, in the inventory's words (no secrets: hosts, tenants and state files only)."""
    if spec.kind == "exchange-server":
        return str(spec.endpoint)
    if spec.kind == "exchange-online":
        return f"exchange-online:{spec.tenant}@{spec.exchange_endpoint or spec.cloud}"
    return f"sandbox:{spec.state or '(default state)'}"


def _limited(resolved: ResolvedTarget, limiters: tuple[RateLimiter, ...]) -> ResolvedTarget:
    resolved.target.limiters = limiters
    return resolved


def select_targets(inventory_path: Path, limit: str | None = None, platform: str | None = None) -> list[ResolvedTarget]:
    """Targets whose name or group matches the --limit pattern (fnmatch; comma-separated patterns), optionally only
    those of one platform."""
    import fnmatch

    inventory = load_inventory(inventory_path)
    patterns = [p.strip() for p in (limit or "*").split(",") if p.strip()]
    chosen = []
    bounds = boundaries(inventory, inventory_path)
    organisations = _organisations(bounds)
    for name, (group, spec) in inventory.entries().items():
        if any(fnmatch.fnmatchcase(name, p) or (group and fnmatch.fnmatchcase(group, p)) for p in patterns):
            resolved = _resolve(inventory, inventory_path, name, group, spec, bounds, organisations)
            if platform is None or resolved.target.platform == platform:
                chosen.append(resolved)
    if not chosen:
        raise InventoryError(f"no target of {inventory_path} matches --limit {limit!r}"
                             + (f" on platform {platform}" if platform else ""))
    return chosen


def choose_targets(inventory_path: Path | None, names: list[str] | None, platform: str,
                   limit: str | None = None) -> list[ResolvedTarget]:
    """The targets a command works on: -t NAME… (each must exist), else --limit (default every target) of the
    playbook's platform, possibly none; without an inventory, the sandbox."""
    if inventory_path is None:
        return [resolve_target(None, None, platform)]
    if names:
        return [resolve_target(inventory_path, name, platform) for name in names]
    try:
        return select_targets(inventory_path, limit, platform)
    except InventoryError:
        load_inventory(inventory_path)  # a broken inventory is reported, not taken for an empty selection
        return []
