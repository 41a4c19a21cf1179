"""The stages wired together for plan / apply / destroy: load → validate → plan → render → execute."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ExkitError
from toolkit.inventory import ResolvedTarget
from toolkit.plan import Plan, make_plan
from toolkit.playbook.diagnostics import Diagnostics
from toolkit.playbook.model import Playbook
from toolkit.playbook.validate import require_playbook
from toolkit.render.engine import RenderedScript, render_script, render_snapshot
from toolkit.targets.base import RunResult
from toolkit.verify.snapshot import Snapshot


class PlatformMismatch(ExkitError):
    pass


@dataclass
class Prepared:
    """A playbook made ready for one target: the model, its plan and the script that would run."""

    playbook: Playbook
    diagnostics: Diagnostics
    target: ResolvedTarget
    plan: Plan
    script: RenderedScript


def prepare(playbook_path: Path, target: ResolvedTarget, cli_vars: dict[str, Any], *, destroy: bool = False,
            templates: Path | None = None) -> Prepared:
    """``templates`` is the --templates folder; the target's and its group's folders are layered under it."""
    """Validate, read the target's current state (one facts script), plan, and render the script to run."""
    playbook, diagnostics = load_for_target(playbook_path, target, cli_vars)
    templates = target.template_layers(templates)  # type: ignore[assignment]
    connection = target.target.connection()
    facts_script = render_script(playbook, state="facts", templates=templates, connection=connection)
    facts = target.target.read_facts(facts_script)
    script = render_script(playbook, state="absent" if destroy else "present", templates=templates,
                           connection=connection)
    plan = make_plan(facts_script.resources, facts, destroy=destroy)
    return Prepared(playbook, diagnostics, target, plan, script)


def load_for_target(playbook_path: Path, target: ResolvedTarget,
                    cli_vars: dict[str, Any]) -> tuple[Playbook, Diagnostics]:
    """Validate a playbook with the target's variables, and check it is for the target's platform."""
    playbook, diagnostics = require_playbook(playbook_path, {**target.variables, **cli_vars})
    if playbook.platform != target.target.platform:
        raise PlatformMismatch(f"playbook {playbook.name!r} is for {playbook.platform}, but target "
                               f"{target.name!r} is {target.target.platform}: choose a target of the playbook's "
                               "platform" + (" (or run exkit migrate)" if playbook.platform == "exchange-server" else ""))
    return playbook, diagnostics


def read_snapshot(playbook: Playbook, target: ResolvedTarget, templates: Path | None = None,
                  extra_roles: tuple[str, ...] = ()) -> Snapshot:
    """The target's RBAC state around the playbook (one round trip on script targets), and on Exchange Online what
    Entra ID grants the playbook's applications (read through Microsoft Graph)."""
    script = render_snapshot(playbook, templates=target.template_layers(templates),
                             connection=target.target.connection(),
                             extra_roles=extra_roles)
    facts = target.target.read_snapshot(script, playbook)
    if target.target.platform == "exchange-online" and playbook.applications:
        from toolkit.targets.graph import read_entra

        facts += read_entra(target.target, [app.app_id for app in playbook.applications])
    return Snapshot.from_facts(facts)


def execute(prepared: Prepared) -> RunResult:
    """Run the rendered script on the target (the script itself is idempotent)."""
    return prepared.target.target.apply(prepared.script)
