"""Inventories: the targets a playbook can run against, and the variables each supplies.

Variable precedence (lowest first): the playbook's ``vars:`` → the inventory's top-level ``vars:`` → the target's
``vars:`` → ``--var`` on the command line. With no inventory, the target is the embedded sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.errors import ExkitError
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError
from toolkit.playbook.load import parse_yaml
from toolkit.playbook.model import VariableValue
from toolkit.playbook.validate import report_model_errors
from toolkit.targets.base import Target

DEFAULT_TARGET = "sandbox"


class SandboxTargetSpec(BaseModel):
    """The embedded sandbox organisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sandbox"]
    state: str | None = Field(None, description="State file; relative paths are relative to the inventory file. "
                                                "Default: $EXKIT_SANDBOX_STATE or ~/.local/state/exkit/sandbox.json.")
    vars: dict[str, VariableValue] = Field(default_factory=dict)


TargetSpec = Annotated[SandboxTargetSpec, Field(discriminator="kind")]


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vars: dict[str, VariableValue] = Field(default_factory=dict, description="Variables for every target.")
    targets: dict[str, TargetSpec] = Field(default_factory=dict)


class InventoryError(ExkitError):
    pass


def load_inventory(path: Path) -> Inventory:
    diagnostics = Diagnostics()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read the inventory {path}: {exc.strerror or exc}") from None
    document = parse_yaml(text, str(path), diagnostics)
    if document is not None:
        try:
            return Inventory.model_validate(document.data or {})
        except ValidationError as exc:
            report_model_errors(exc, document, diagnostics, Inventory)
    raise PlaybookError(diagnostics)


class ResolvedTarget:
    """A chosen target: its connector and the variables it supplies."""

    def __init__(self, name: str, target: Target, variables: dict[str, Any]) -> None:
        self.name = name
        self.target = target
        self.variables = variables


def resolve_target(inventory_path: Path | None, target_name: str | None) -> ResolvedTarget:
    from toolkit.targets.sandbox import SandboxTarget

    if inventory_path is None:
        if target_name not in (None, DEFAULT_TARGET):
            raise InventoryError(f"target {target_name!r} needs an inventory: pass -i INVENTORY "
                                 "(see inventory.example.yaml)")
        return ResolvedTarget(DEFAULT_TARGET, SandboxTarget(), {})
    inventory = load_inventory(inventory_path)
    if target_name is None:
        if len(inventory.targets) != 1:
            names = ", ".join(sorted(inventory.targets)) or "none"
            raise InventoryError(f"choose a target with -t NAME (the inventory has: {names})")
        target_name = next(iter(inventory.targets))
    spec = inventory.targets.get(target_name)
    if spec is None:
        import difflib

        close = difflib.get_close_matches(target_name, list(inventory.targets), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (targets: {', '.join(sorted(inventory.targets))})"
        raise InventoryError(f"no target {target_name!r} in {inventory_path}{hint}")
    variables = {**inventory.vars, **spec.vars}
    state = None
    if spec.state:
        state = Path(spec.state)
        if not state.is_absolute():
            state = inventory_path.parent / state
    return ResolvedTarget(target_name, SandboxTarget(state, name=target_name), variables)
