"""The stages wired together for plan / apply / destroy: load → validate → plan → render → execute."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.boundary import BoundaryFacts, check_playbook, normalise_dn
from toolkit.errors import ExkitError
from toolkit.inventory import ResolvedTarget
from toolkit.plan import Plan, make_plan, unresolved, what_if
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError
from toolkit.playbook.load import LoadedDocument
from toolkit.playbook.model import Playbook
from toolkit.playbook.validate import load_and_validate, require_document
from toolkit.render.engine import RenderedScript, TargetContext, render_script, render_snapshot
from toolkit.targets.base import RunResult
from toolkit.verify.checks import Check
from toolkit.verify.preview import ScopePreview
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
    context: TargetContext  # the target as its templates saw it (the snapshot of its report renders with it too)


def prepare(playbook_path: Path, target: ResolvedTarget, cli_vars: dict[str, Any], *, destroy: bool = False,
            templates: Path | None = None) -> Prepared:
    """Validate, render the script to run, read what the target has of the objects it reads (one facts script), and
    plan by running the script against that in the sandbox. ``templates`` is the --templates folder; the target's
    and its group's folders are layered under it."""
    playbook, document, diagnostics = _load(playbook_path, target, cli_vars)
    templates = target.template_layers(templates)  # type: ignore[assignment]
    connection = target.target.connection()
    context = template_context(playbook, target, cli_vars)
    facts_script = pinned(target, "facts", render_script(playbook, state="facts", templates=templates,
                                                         connection=connection, target=context))
    script = pinned(target, "destroy" if destroy else "apply",
                    render_script(playbook, state="absent" if destroy else "present", templates=templates,
                                  connection=connection, target=context))
    organisation = target.target.observe(facts_script, script)
    if not destroy:  # every principal and mailbox the playbook names must exist there: all at once, positioned
        missing = Diagnostics()
        for path, name, what in unresolved(playbook, organisation):
            missing.error("not-on-target", f"{what} {name!r} does not exist on target {target.name!r}",
                          document.file, document.positions.of_value(path),
                          "create it first, or fix the name (Exchange resolves names, aliases, addresses and DNs)")
        if target.boundary is not None:  # what only the target knows: the OUs that exist, where each member lives
            missing.extend(check_playbook(document, playbook, target.boundary, target.name, target.neighbours,
                                          boundary_facts(organisation)))
        if missing.errors:
            diagnostics.extend(missing)
            raise PlaybookError(diagnostics)
    # The plan is the script's own verdict: it runs against what the target has, in the sandbox.
    outcome = what_if(script.text, organisation)
    plan = make_plan(script.resources, outcome, destroy=destroy)
    return Prepared(playbook, diagnostics, target, plan, script, context)


def boundary_facts(organisation: Any) -> BoundaryFacts:
    """What the facts script read that the boundary check needs: the OUs that exist, each principal's DN."""
    return BoundaryFacts(frozenset(normalise_dn(ou) for ou in organisation.organizational_units),
                         {r.primary_smtp_address: r.distinguished_name for r in organisation.recipients
                          if r.primary_smtp_address})


def template_context(playbook: Playbook, target: ResolvedTarget, cli_vars: dict[str, Any]) -> TargetContext:
    """The target as templates see it: its name, platform, and the variables the playbook was loaded with."""
    return TargetContext(target.name, target.target.platform, {**playbook.vars, **target.variables, **cli_vars})


def pinned(target: ResolvedTarget, mode: str, script: RenderedScript) -> RenderedScript:
    """With --reviewed (the target carries a pin, see toolkit/render/pin.py): refuse a script that is not the
    reviewed one of its mode, before it is sent."""
    if target.pin is not None:
        target.pin.require(mode, script)
    return script


def load_for_target(playbook_path: Path, target: ResolvedTarget,
                    cli_vars: dict[str, Any]) -> tuple[Playbook, Diagnostics]:
    """Validate a playbook with the target's variables, check it is for the target's platform and, when the
    target has a boundary, that everything it grants stays inside it (nothing has been contacted yet)."""
    playbook, _, diagnostics = _load(playbook_path, target, cli_vars)
    return playbook, diagnostics


def _load(playbook_path: Path, target: ResolvedTarget,
          cli_vars: dict[str, Any]) -> tuple[Playbook, LoadedDocument, Diagnostics]:
    playbook, document, diagnostics = require_document(playbook_path, {**target.variables, **cli_vars},
                                                       target=target.name)
    if playbook.platform != target.target.platform:
        raise PlatformMismatch(f"playbook {playbook.name!r} is for {playbook.platform}, but target "
                               f"{target.name!r} is {target.target.platform}: choose a target of the playbook's "
                               "platform" + (" (or run exkit migrate)" if playbook.platform == "exchange-server" else ""))
    if target.boundary is not None:
        outside = check_playbook(document, playbook, target.boundary, target.name, target.neighbours)
        if outside.errors:
            diagnostics.extend(outside)
            raise PlaybookError(diagnostics)
    return playbook, document, diagnostics


def read_snapshot(playbook: Playbook, target: ResolvedTarget, templates: Path | None = None,
                  extra_roles: tuple[str, ...] = (), context: TargetContext | None = None) -> Snapshot:
    """The target's RBAC state around the playbook (one round trip on script targets), and on Exchange Online what
    Entra ID grants the playbook's applications (read through Microsoft Graph). ``context``: the target as the
    templates see it (default: without --var values)."""
    context = context or template_context(playbook, target, {})
    script = pinned(target, "snapshot", render_snapshot(playbook, templates=target.template_layers(templates),
                                                        connection=target.target.connection(),
                                                        extra_roles=extra_roles, target=context))
    facts = target.target.read_snapshot(script, playbook)
    if target.target.platform == "exchange-online" and playbook.applications:
        from toolkit.targets.graph import read_entra

        facts += read_entra(target.target, [app.app_id for app in playbook.applications])
    return Snapshot.from_facts(facts)


def verify_target(playbook: Playbook, target: ResolvedTarget, templates: Path | None = None,
                  cli_vars: dict[str, Any] | None = None) -> list[Check]:
    """verify's checks on one target, and its boundary checks when the inventory gives it one."""
    from toolkit.verify.checks import boundary_checks, verify

    snapshot = read_snapshot(playbook, target, templates, context=template_context(playbook, target, cli_vars or {}))
    checks = verify(playbook, snapshot)
    if target.boundary is not None:
        checks += boundary_checks(playbook, snapshot, target.name, target.boundary, target.neighbours)
    return checks


def execute(prepared: Prepared) -> RunResult:
    """Run the rendered script on the target (the script itself is idempotent)."""
    return prepared.target.target.apply(prepared.script)


def validate_on_targets(playbook_path: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                        diagnostics: Diagnostics) -> None:
    """Validate a playbook once per target with that target's values (and boundary). A problem every target shares
    is reported once; one that only some have names the target. No target: the playbook alone, its required
    variables left open."""
    if not targets:
        load_and_validate(playbook_path, cli_vars, diagnostics, placeholders=True)
        return
    found: list[tuple[str, Diagnostics]] = []
    for target in targets:
        try:
            found.append((target.name, load_for_target(playbook_path, target, cli_vars)[1]))
        except PlaybookError as exc:
            found.append((target.name, exc.diagnostics))
    shared = set.intersection(*(set(d.items) for _, d in found))
    for name, each in found:
        for item in each.items:
            if item in shared or f"target {name!r}" in item.message:
                diagnostics.add(item.severity, item.code, item.message, item.file, item.position, item.hint)
            else:
                diagnostics.add(item.severity, item.code, f"target {name!r}: {item.message}", item.file,
                                item.position, item.hint)


@dataclass
class TargetPreview:
    """scope preview on one target: its previews and, live on Exchange Online, what Entra grants the apps."""

    target: str
    where: str
    playbook: str
    previews: list[ScopePreview]
    entra: list[Check]


def preview_targets(playbook_path: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                    recipients: Path | None = None) -> list[TargetPreview]:
    """scope preview on each target with its values. Offline from ``recipients`` (a Get-Recipient export) or live
    from the target; a target with a boundary fails a scope that leaves it."""
    from toolkit.verify.checks import entra_checks
    from toolkit.verify.preview import check_boundary, preview_live, preview_offline, read_recipients

    rows = read_recipients(recipients) if recipients is not None else None
    results = []
    for target in targets:
        playbook, _ = load_for_target(playbook_path, target, cli_vars)
        entra: list[Check] = []
        if rows is not None:
            previews, where = preview_offline(playbook, rows), f"offline, {recipients}"
        else:
            snapshot = read_snapshot(playbook, target, context=template_context(playbook, target, cli_vars))
            previews, where = preview_live(playbook, snapshot), target.target.describe()
            entra = entra_checks(playbook, snapshot)
        if target.boundary is not None:
            check_boundary(previews, target.name, target.boundary, target.neighbours)
        results.append(TargetPreview(target.name, where, playbook.name, previews, entra))
    return results


def export_target(target: ResolvedTarget, principal: str | None, role: str | None) -> str:
    """exkit export on one target: a playbook for what exists around a principal (``{{ NAME }}``: the target's
    variable NAME) or a role."""
    import re

    from toolkit.verify.export import export_playbook

    whole = re.fullmatch(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", principal or "")
    if whole:
        if whole.group(1) not in target.variables:
            raise ExkitError(f"target {target.name!r} has no variable {whole.group(1)!r} for --principal")
        principal = str(target.variables[whole.group(1)])
    model = Playbook(exkit=1, name="export", platform=target.target.platform)  # type: ignore[arg-type]
    snapshot = read_snapshot(model, target, extra_roles=(role,) if role else ())
    return export_playbook(snapshot, target.target.platform, principal=principal, role=role, target=target.name)
