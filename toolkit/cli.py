"""The ``exkit`` command line. Thin: each command wires the stages load → validate → plan → render → execute."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperArgument

from toolkit import __version__
from toolkit.completion import complete_limit, complete_targets, complete_yaml
from toolkit.errors import ExkitError
from toolkit.lazy import lazy_module
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError
from toolkit.targets.base import TargetError

if TYPE_CHECKING:
    from toolkit.inventory import ResolvedTarget
    from toolkit.playbook.model import Playbook
    from toolkit.workflow import Prepared

# Heavy modules (pydantic models, ruamel/Jinja2, rich tables, tree-sitter, pywinrm, msal, cryptography) are imported
# inside the commands that use them: `exkit --help` and `exkit validate` start fast (benchmarks/coldstart.py).
report = lazy_module("toolkit.verify.report")
sandbox_org = lazy_module("toolkit.sandbox.org")

app = typer.Typer(
    name="exkit",
    help="Declarative Exchange RBAC for room-booking service accounts: validate, render, plan and apply playbooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: starts without importing rich, shows no types beside flags
)

# typer prints an argument's Python type beside its name (`PLAYBOOK <path>`, `<list[Path]>`); the metavar says it.
TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]

VarOption = Annotated[list[str] | None, typer.Option("--var", "-e", metavar="NAME=VALUE",
                                                     help="Set a variable: NAME=VALUE (repeatable).")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")]
TemplatesOption = Annotated[Path | None, typer.Option("--templates", metavar="FOLDER",
                                                      help="Directory whose templates replace "
                                                           "built-in ones by name.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"exkit: error: {message}", err=True)
    raise typer.Exit(code)


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _fail(f"--var {pair!r} is not NAME=VALUE; write e.g. --var service_account=svc@contoso.com", 2)
        values[name.strip()] = value
    return values


def print_diagnostics(diagnostics: Diagnostics) -> None:
    for diagnostic in diagnostics.sorted():
        typer.echo(diagnostic.format(), err=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Mistakes and refusals a user can fix become positioned diagnostics or one clear line and an exit code, never
    a traceback."""
    try:
        yield
    except PlaybookError as exc:
        print_diagnostics(exc.diagnostics)
        raise typer.Exit(1) from None
    except ExkitError as exc:
        _fail(str(exc), exc.exit_code)
    except TargetError as exc:
        _fail(str(exc))
    except Exception as exc:
        engine = sys.modules.get("toolkit.render.engine")  # a RenderError exists only once the engine is loaded
        if engine is None or not isinstance(exc, engine.RenderError):
            raise
        _fail(str(exc))


def load_or_exit(playbook: Path, variables: dict[str, Any], strict: bool = False) -> Playbook:
    from toolkit.playbook.validate import require_playbook

    try:
        model, diagnostics = require_playbook(playbook, variables)
    except PlaybookError as exc:
        print_diagnostics(exc.diagnostics)
        raise typer.Exit(1) from None
    print_diagnostics(diagnostics)
    if diagnostics.failed(strict):
        _fail("warnings are errors under --strict")
    return model


TargetsOption = Annotated[list[str] | None, typer.Option("--target", "-t", metavar="NAME",
                                                         autocompletion=complete_targets,
                                                         help="Target name(s) of the inventory (default: every "
                                                              "target of the playbook's platform).")]
SelectOption = Annotated[str | None, typer.Option("--limit", "-l", metavar="PATTERNS", autocompletion=complete_limit,
                                                  help="Only targets or groups matching these patterns (fnmatch, "
                                                       "comma-separated).")]


def validate_each(playbooks: list[Path], inventory: Path | None, target: list[str] | None, limit: str | None,
                  cli_vars: dict[str, Any], placeholders: bool = True) -> Diagnostics:
    """Every playbook checked with each chosen target's values; without an inventory (and ``placeholders``), with
    its defaults alone, the values each target must supply left open."""
    from toolkit.playbook.validate import load_and_validate

    diagnostics = Diagnostics()
    for path in playbooks:
        if inventory is None and placeholders:
            load_and_validate(path, cli_vars, diagnostics, placeholders=True)
            continue
        from toolkit.inventory import choose_targets
        from toolkit.playbook.load import peek_platform
        from toolkit.workflow import validate_on_targets

        with user_errors():
            validate_on_targets(path, choose_targets(inventory, target, peek_platform(path), limit), cli_vars,
                                diagnostics)
    return diagnostics


@app.command()
def validate(
    playbooks: Annotated[list[Path], typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml,
                                                    help="Playbook files.")],
    var: VarOption = None,
    strict: StrictOption = False,
    output: Annotated[str, typer.Option("--output", "-o", metavar="text|json", help="text or json")] = "text",
    inventory: Annotated[Path | None, typer.Option("--inventory", "-i", metavar="FILE", autocompletion=complete_yaml,
                                                   help="Check with each target's values and boundary.")] = None,
    target: TargetsOption = None,
    limit: SelectOption = None,
) -> None:
    """Check playbooks and report every problem with its position. Exit 0 clean, 1 on errors."""
    diagnostics = validate_each(playbooks, inventory, target, limit, parse_vars(var))
    if output == "json":
        typer.echo(json.dumps([d.as_dict() for d in diagnostics.sorted()], indent=2))
    else:
        print_diagnostics(diagnostics)
        errors, warnings = len(diagnostics.errors), len(diagnostics.warnings)
        typer.echo(f"{len(playbooks)} playbook(s): {errors} error(s), {warnings} warning(s)", err=True)
    raise typer.Exit(1 if diagnostics.failed(strict) else 0)


@app.command()
def render(
    playbooks: Annotated[list[Path], typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml,
                                                    help="Playbook files.")],
    out: Annotated[Path | None, typer.Option("--out", metavar="PATH",
                                             help="A .ps1 file for one script; any other path is a "
                                                            "folder for one script per playbook × target and a "
                                                            "manifest.json (for review in pull requests).")] = None,
    templates: TemplatesOption = None,
    var: VarOption = None,
    inventory: Annotated[Path | None, typer.Option("--inventory", "-i", metavar="FILE", autocompletion=complete_yaml,
                                                   help="Take variables and the connection "
                                                        "preamble from targets.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t", metavar="NAME", autocompletion=complete_targets,
                                                     help="Target name(s); in a folder render, "
                                                          "default: every target of the playbook's "
                                                          "platform.")] = None,
    destroy: Annotated[bool, typer.Option("--destroy", help="Render the removal script instead.")] = False,
    strict: StrictOption = False,
    limit: Annotated[str | None, typer.Option("--limit", "-l", metavar="PATTERNS", autocompletion=complete_limit,
                                              help="Folder render: only targets or groups "
                                                   "matching these patterns.")] = None,
    exchange_uri: Annotated[str | None, typer.Option("--exchange-uri", metavar="URI", help="Without a target: "
                                                     "open a remote session to this Exchange PowerShell endpoint "
                                                     "(http://<server>/PowerShell/) instead of expecting the "
                                                     "Exchange Management Shell.")] = None,
    snapin: Annotated[bool, typer.Option("--snapin", help="Without a target: load the Exchange snap-in (on the "
                                         "server itself only; Microsoft does not support it and it bypasses "
                                         "RBAC).")] = False,
    recipients: Annotated[Path | None, typer.Option("--recipients", metavar="FILE.csv", help="Folder render: "
                                                    "also write access.md, the effective access each playbook × "
                                                    "target grants over this Get-Recipient export.")] = None,
) -> None:
    """Render playbooks into idempotent Exchange PowerShell scripts (nothing is contacted)."""
    from toolkit.inventory import resolve_target
    from toolkit.playbook.load import peek_platform
    from toolkit.render import review
    from toolkit.render.engine import render_script, write_script

    cli_vars = parse_vars(var)
    if out is not None and out.suffix.lower() != ".ps1":
        if destroy:
            _fail("a reviewed folder already holds every mode's script (<playbook>.<target>.destroy.ps1 too): drop "
                  "--destroy, or render --destroy to a .ps1 file or standard output", 2)
        diagnostics = validate_each(playbooks, inventory, target, limit, cli_vars, placeholders=False)
        print_diagnostics(diagnostics)  # every problem of every playbook on every target, with positions, first
        if diagnostics.failed(strict):
            _fail("warnings are errors under --strict" if not diagnostics.errors else
                  f"{len(diagnostics.errors)} error(s): nothing was written")
        with user_errors():
            rendered = review.render_set(playbooks, inventory, target, cli_vars, templates, limit, out)
            removed = review.write_set(out, rendered, inventory, templates)
            if recipients is not None:  # the review file: who can act on which mailboxes
                from toolkit.render.compare import ACCESS_FILE, access_review
                from toolkit.safe_paths import write_in

                write_in(out, ACCESS_FILE, access_review(out, recipients, cli_vars).encode("utf-8"))
        for name in removed:
            typer.echo(f"removed {out / name}: this render no longer produces it", err=True)
        typer.echo(f"wrote {len(rendered)} script(s) and {review.MANIFEST} to {out}"
                   + (" and access.md" if recipients is not None else ""), err=True)
        return
    if recipients is not None:
        _fail("--recipients writes access.md into a reviewed folder: render with --out FOLDER", 2)
    if len(playbooks) != 1 or (target and len(target) > 1):
        _fail("one playbook and one target render to a file or standard output; use --out FOLDER for several", 2)
    from toolkit.workflow import load_for_target, template_context

    with user_errors():
        resolved = resolve_target(inventory, target[0] if target else None, peek_platform(playbooks[0]))
        connection = resolved.target.connection() if inventory is not None else _connection(exchange_uri, snapin)
        model, diagnostics = load_for_target(playbooks[0], resolved, cli_vars)
    print_diagnostics(diagnostics)
    if diagnostics.failed(strict):
        _fail("warnings are errors under --strict")
    with user_errors():
        script = render_script(model, state="absent" if destroy else "present",
                               templates=resolved.template_layers(templates), connection=connection,
                               target=template_context(model, resolved, cli_vars))
    if out is None:
        sys.stdout.write(script.text)
    else:
        with user_errors():
            write_script(out, script)
        typer.echo(f"wrote {out} (sha256 {script.sha256})", err=True)


def _connection(exchange_uri: str | None, snapin: bool):  # noqa: ANN202 - render's target-less preamble
    from toolkit.render.engine import Connection

    if exchange_uri and snapin:
        _fail("choose one: --exchange-uri (a remote session) or --snapin", 2)
    if exchange_uri:
        return Connection("remote-session", exchange_uri)
    return Connection("snapin") if snapin else None


RecipientsOption = Annotated[Path | None, typer.Option("--recipients", metavar="FILE.csv", help="Access impact offline: a CSV from "
                                                    "Get-Recipient -ResultSize Unlimited | Export-Csv.")]
FailOnWideningOption = Annotated[bool, typer.Option("--fail-on-widening", help="Exit 1 when a principal gains a "
                                                    "mailbox outside the playbooks' intent (rooms), else 0.")]


@app.command()
def diff(
    versions: Annotated[list[str], typer.Argument(metavar="VERSION",
                                                  help="OLD NEW: playbook files or REV:path git versions; with "
                                                       "--base, the playbooks to compare with that revision.")],
    base: Annotated[str | None, typer.Option("--base", metavar="REV",
                                             help="Compare each playbook with its version at this git revision "
                                                  "(rendered with that revision's inventory, variables and "
                                                  "templates).")] = None,
    inventory: InventoryOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    templates: TemplatesOption = None,
    recipients: RecipientsOption = None,
    fail_on_widening: FailOnWideningOption = False,
    output: Annotated[str, typer.Option("--format", "--output", "-o", metavar="text|markdown|json",
                                        help="text, markdown (a pull-request "
                                                                           "comment) or json")] = "text",
    limit: SelectOption = None,
) -> None:
    """Resource summary, access impact and unified diff of the rendered scripts (with --limit: on each selected
    target, with its values). Exit 0 same, 1 differ, 2 error; with --fail-on-widening: 1 on a widening, else 0."""
    from toolkit.render.compare import DiffError, base_pairs, base_tree, compare, file_pair, markdown
    from toolkit.verify.impact import text_lines

    from rich.text import Text

    if output not in ("text", "markdown", "json"):
        _fail("--format is text, markdown or json", 2)
    if not base and len(versions) != 2:
        _fail("give OLD and NEW (files or REV:path), or --base REV and playbooks", 2)
    if fail_on_widening and recipients is None:
        _fail("--fail-on-widening needs --recipients FILE.csv (the mailboxes the impact is computed over)", 2)
    cli_vars = parse_vars(var)
    try:
        org = _recipients_org(recipients)
        with contextlib.ExitStack() as stack:
            if base:
                tree = stack.enter_context(base_tree(base))
                pairs = base_pairs(tree, base, [Path(v) for v in versions], inventory, templates)
            else:
                scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                pairs = [file_pair(versions[0], versions[1], scratch, inventory, templates)]
            named = [(name, compare(old, new, name, cli_vars, org)) for old, new in pairs
                     for name in _diff_targets(old, new, inventory, target, limit)]
            results = [result for _, result in named]
    except PlaybookError as exc:
        print_diagnostics(exc.diagnostics)
        raise typer.Exit(2) from None
    except (DiffError, ExkitError) as exc:
        _fail(str(exc), 2)
    widening = any(r.impact and r.impact.widening for r in results)
    if output == "json":
        typer.echo(report.as_json({"differ": any(r.differ for r in results), "widening": widening,
                                   "playbooks": [{**r.as_dict(), **({"target": name} if limit else {})}
                                                 for name, r in named]}))
    elif output == "markdown":
        sys.stdout.write(markdown(results))
    else:
        out = report.console()
        for name, result in named:
            if not result.differ and not (result.impact and result.impact.changed):
                continue
            if limit is not None:
                out.print(Text(f"target {name}:", style="bold"))
            for line in result.summary:
                out.print(Text(line, style={"+": "green", "-": "red", "~": "yellow"}[line[0]]))
            if result.impact is not None:
                for line, style in text_lines(result.impact, f"Access impact of {result.title}"):
                    out.print(Text(line, style=style))
            for line in result.diff:
                style = ("bold" if line.startswith(("+++", "---")) else "cyan" if line.startswith("@@")
                         else "green" if line.startswith("+") else "red" if line.startswith("-") else "")
                out.print(Text(line.rstrip("\n"), style=style))
        if recipients is None and any(r.differ for r in results):
            typer.echo("exkit: access impact not computed: pass --recipients FILE.csv (Get-Recipient -ResultSize "
                       "Unlimited | Export-Csv) to see who gains or loses which mailboxes", err=True)
    if fail_on_widening:
        raise typer.Exit(1 if widening else 0)
    raise typer.Exit(1 if any(r.differ for r in results) else 0)


def _diff_targets(old: Any, new: Any, inventory: Path | None, target: str | None,
                  limit: str | None) -> list[str | None]:
    """The targets a diff renders for: -t (or the default), or each one --limit selects of the playbook's platform."""
    if limit is None:
        return [target]
    if inventory is None:
        _fail("--limit selects targets of an inventory: pass -i INVENTORY", 2)
    from toolkit.inventory import select_targets
    from toolkit.playbook.load import peek_platform

    return [t.name for t in select_targets(inventory, limit, peek_platform(new.path or old.path))]


def _recipients_org(path: Path | None) -> Any:
    """The organisation an offline impact is computed over: the recipients of a Get-Recipient CSV."""
    if path is None:
        return None
    from toolkit.verify import access, impact

    return access.from_recipients(access.read_recipients_csv(path), impact.offline_source(path))


@app.command()
def check(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="A reviewed folder (scripts + manifest.json).")],
    var: VarOption = None,
    recipients: RecipientsOption = None,
    fail_on_widening: Annotated[bool, typer.Option("--fail-on-widening", help="Also fail when a principal gains a "
                                                   "mailbox outside the playbooks' intent (needs --recipients).")
                                ] = False,
    base: Annotated[str | None, typer.Option("--base", metavar="REV", help="With --fail-on-widening: compare with "
                                             "this git revision (default: any reach outside the intent).")] = None,
    target: TargetsOption = None,
    limit: SelectOption = None,
) -> None:
    """For CI: fail when the committed scripts are stale relative to the playbooks (each target's script rendered
    with its values; -t / --limit: only those targets'). Run from the repository root."""
    from toolkit.render import review

    if fail_on_widening and recipients is None:
        _fail("--fail-on-widening needs --recipients FILE.csv (the mailboxes the impact is computed over)", 2)
    with user_errors():
        from toolkit.render.compare import access_review_problems

        problems = review.check(folder, parse_vars(var), target, limit)
        problems += access_review_problems(folder, parse_vars(var))  # access.md, when the folder has one
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        _fail(f"{len(problems)} problem(s): the reviewed folder does not match the playbooks: run exkit render … "
              f"--out {folder}, review, commit")
    typer.echo(f"{folder}: the reviewed scripts match the playbooks", err=True)
    if fail_on_widening:
        from toolkit.render.compare import reviewed_folder_impact

        with user_errors():
            results = reviewed_folder_impact(folder, _recipients_org(recipients), parse_vars(var), base)
        findings = [f for r in results if r.impact for f in r.impact.findings]
        for result, finding in ((r, f) for r in results if r.impact for f in r.impact.findings):
            typer.echo(f"{result.title}: {finding.text()}", err=True)
        if findings:
            _fail(f"{len(findings)} widening finding(s): a principal gains mailboxes outside the playbooks' intent")
        typer.echo(f"{folder}: no widening" + (f" since {base}" if base else ""), err=True)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE",
                                             help="Write the JSON Schema to this file.")] = None,
) -> None:
    """Print the JSON Schema of the playbook format (for yaml-language-server and other editors)."""
    text = schema_text()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


@app.command()
def migrate(
    playbook: Annotated[Path, typer.Argument(metavar="PLAYBOOK",
                                             help="An Exchange Server playbook using ApplicationImpersonation.")],
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE",
                                             help="Write the Exchange Online playbook here.")] = None,
    api: Annotated[str, typer.Option("--api", metavar="graph|ews", help="What the product calls: Microsoft Graph "
                                     "(Application Calendars.ReadWrite, the default) or EWS (Application "
                                     "EWS.AccessAsApp; retired in Exchange Online in 2026-27).")] = "graph",
) -> None:
    """Write the Exchange Online equivalent of a playbook: RBAC for Applications instead of ApplicationImpersonation."""
    from toolkit.playbook.bounded_yaml import FileTooLarge, read_text
    from toolkit.playbook.migrate import EWS_WARNING, migrate_text

    if api == "ews":
        typer.echo(f"exkit: warning: {EWS_WARNING}", err=True)
    try:
        text = migrate_text(read_text(playbook), api)
    except FileTooLarge as exc:
        _fail(f"{playbook}: {exc}")
    except OSError as exc:
        _fail(f"cannot read {playbook}: {exc.strerror or exc}")
    except ExkitError as exc:
        _fail(str(exc))
    except Exception as exc:  # a YAML syntax error: validation explains it with its position
        _fail(f"{playbook} is not valid YAML ({type(exc).__name__}): run exkit validate {playbook}")
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}: set app_id and sp_object_id, then exkit validate {out}", err=True)


def schema_text() -> str:
    from toolkit.playbook.model import Playbook

    return json.dumps(Playbook.model_json_schema(), indent=2, sort_keys=True) + "\n"


InventoryOption = Annotated[Path | None, typer.Option("--inventory", "-i", metavar="FILE", autocompletion=complete_yaml,
                                                      help="Inventory file naming targets.")]
TargetOption = Annotated[str | None, typer.Option("--target", "-t", metavar="NAME", autocompletion=complete_targets,
                                                  help="Target name in the inventory "
                                                       "(default: the embedded sandbox).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
OutputOption = Annotated[str, typer.Option("--output", "-o", metavar="text|json", help="text or json")]


ForksOption = Annotated[int, typer.Option("--forks", "-f", min=1, max=256, metavar="N",
                                          help="With --limit: targets worked on at once.")]
FleetLimitOption = Annotated[str | None, typer.Option("--limit", "-l", metavar="PATTERNS",
                                                      autocompletion=complete_limit,
                                                      help="Run on every target or group matching "
                                                           "these patterns (needs -i).")]


RateOption = Annotated[float | None, typer.Option("--rate", min=0.01, metavar="PER_SECOND",
                                                  help="With --limit: round trips per second "
                                                                         "across all targets at most.")]


ProcessesOption = Annotated[int | None, typer.Option("--processes", min=1, max=256, metavar="N",
                                                     help="With --limit: processes "
                                                    "sharing the forks (default: one per CPU on Linux, else 1).")]
TimeoutOption = Annotated[float | None, typer.Option("--timeout", min=0.1, metavar="SECONDS", help="Deadline for the whole run, "
                                                     "seconds: every wait and retry ends by then.")]


@contextmanager
def _operating(timeout: float | None, find_out: str) -> Iterator[Any]:
    """A command that talks to targets: its --timeout, and Ctrl-C / SIGTERM handled (see fleet/signals.py):
    exit 130 / 143 with a message, never a traceback; a second signal exits at once after completing the open
    run records."""
    import os

    from toolkit.fleet import records
    from toolkit.fleet.signals import ExitNow, Signals, Stopped, exit_code
    from toolkit.targets.waits import RUN

    RUN.reset()
    RUN.set_timeout(timeout)
    signals = Signals(lambda message: typer.echo(f"exkit: {message}", err=True))
    try:
        with signals.installed():
            yield signals
    except ExitNow as exc:
        records.close_open("interrupted", f"a second {exc.reason}: exkit exited at once; what was in flight is "
                                          "unknown")
        typer.echo(f"exkit: {exc.reason} again: exited at once. {find_out}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code(exc.reason))  # no waiting for threads blocked in the network
    except Stopped as exc:
        typer.echo(f"exkit: stopped by {exc.reason}. {find_out}", err=True)
        raise typer.Exit(exit_code(exc.reason)) from None
    finally:
        RUN.set_timeout(None)


def _fleet(action: str, playbook: Path, inventory: Path | None, limit: str, forks: int, var: list[str] | None,
           templates: Path | None, output: str, rate: float | None = None,
           processes: int | None = None, reviewed: Review | None = None,
           timeout: float | None = None) -> list[Any]:
    """Run one playbook on many targets; print progress, a table per target (or JSON); return the outcomes."""
    from rich.table import Table
    from rich.text import Text

    from toolkit.fleet.signals import exit_code
    from toolkit.inventory import select_targets
    from toolkit.playbook.load import peek_platform
    from toolkit.targets.waits import RUN

    if inventory is None:
        _fail("--limit selects targets of an inventory: pass -i INVENTORY", 2)
    with user_errors():
        targets = select_targets(inventory, limit, peek_platform(playbook))
    if reviewed is not None:
        _pin(reviewed, playbook, targets, var, templates)
    err = report.console(stderr=True)
    cli_vars = parse_vars(var)
    find_out = f"To see the state now: exkit plan {playbook} -i {inventory} --limit '{limit}'"
    with _operating(timeout, find_out) as signals:
        signals.waiting = True  # the first signal stops the run in order (fleet/run.py), a second exits at once
        outcomes, interrupted = _fleet_run(action, playbook, targets, cli_vars, templates, forks, rate, processes,
                                           err)
    if output == "json":
        typer.echo(report.as_json({"action": action, "playbook": str(playbook),
                                   "targets": [o.as_dict() for o in outcomes]}))
    else:
        table = Table("target", "result", "detail", "seconds", title=f"{action} on {len(outcomes)} target(s)",
                      title_justify="left", show_edge=False)
        for outcome in outcomes:
            table.add_row(Text(outcome.target), Text("ok" if outcome.ok else "FAILED",
                                                     style="green" if outcome.ok else "bold red"),
                          Text(outcome.summary), Text(f"{outcome.duration_s:.2f}"))
        report.console().print(table)
        if action in ("plan", "plan-destroy"):
            show_fleet_changes(outcomes, {t.name: {**t.variables, **cli_vars} for t in targets})
        failed = sum(not o.ok for o in outcomes)
        report.console().print(Text(f"{len(outcomes) - failed} target(s) ok, {failed} failed.", style="bold"))
    if interrupted:
        stopped = [o for o in outcomes if o.details.get("status") == "interrupted"]
        waiting = [o for o in outcomes if o.details.get("status") == "not started"]
        typer.echo(f"exkit: {RUN.reason}: the run was stopped: {len(outcomes) - len(stopped) - len(waiting)} "
                   f"target(s) done, {len(stopped)} interrupted (what they did is in their run records; unknown "
                   f"where no answer came), {len(waiting)} not started. {find_out}", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        code = exit_code(RUN.reason) if RUN.reason != "timeout" else 1
        import os
        import threading

        if any(t.name.startswith("exkit") and t.is_alive() for t in threading.enumerate()):
            os._exit(code)  # a thread still waits on the network: its record is completed; do not wait for it
        raise typer.Exit(code)
    return outcomes


def _fleet_run(action: str, playbook: Path, targets: list[Any], cli_vars: dict[str, Any], templates: Path | None,
               forks: int, rate: float | None, processes: int | None, err: Any) -> tuple[list[Any], bool]:
    """run_many with a progress bar on a terminal, else a line per finished target; (outcomes, interrupted)."""
    from rich.progress import Progress

    from toolkit.fleet.run import FleetInterrupted, run_many

    try:
        if err.is_terminal:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task(f"{action} on {len(targets)} target(s)", total=len(targets))
                return run_many(action, playbook, targets, cli_vars, templates, forks,  # type: ignore[arg-type]
                                lambda o, done, total: bar.advance(task), rate, processes), False

        def line(outcome: Any, done: int, total: int) -> None:
            typer.echo(f"[{done}/{total}] {outcome.target}: {'ok' if outcome.ok else 'FAILED'}: "
                       f"{outcome.summary}", err=True)

        return run_many(action, playbook, targets, cli_vars, templates, forks, line,  # type: ignore[arg-type]
                        rate, processes), False
    except FleetInterrupted as stop:
        return stop.outcomes, True


def _fleet_confirmed(action: str, playbook: Path, inventory: Path | None, limit: str, forks: int,
                     var: list[str] | None, templates: Path | None, output: str, rate: float | None,
                     processes: int | None, yes: bool, reviewed: Review | None = None,
                     report_path: Path | None = None, timeout: float | None = None) -> NoReturn:
    """apply / destroy on many targets: every target's plan and the fleet's changes first, one confirmation; with
    ``report_path``, one report page for the fleet."""
    if not yes:
        if not sys.stdin.isatty():
            _fail(f"refusing to {action} on several targets without confirmation on a non-interactive terminal: "
                  "pass --yes")
        _fleet("plan" if action == "apply" else "plan-destroy", playbook, inventory, limit, forks, var, templates,
               "text", rate, processes, reviewed, timeout=timeout)  # plan's facts scripts are pinned too
        if not typer.confirm(f"{action.capitalize()} these changes on these targets?", default=False):
            raise typer.Exit(1)
    outcomes = _fleet(action, playbook, inventory, limit, forks, var, templates, output, rate, processes, reviewed,
                      timeout=timeout)
    if report_path is not None:
        _fleet_report(report_path, action, playbook, inventory, limit, outcomes, var, templates, forks, rate, processes,
                      reviewed)
    raise typer.Exit(1 if any(not o.ok for o in outcomes) else 0)


def _fleet_report(path: Path, action: str, playbook: Path, inventory: Path | None, limit: str, outcomes: list[Any],
                  var: list[str] | None, templates: Path | None, forks: int, rate: float | None,
                  processes: int | None, reviewed: Review | None = None) -> None:
    """One page for the fleet: each target's status, boundary, plan and results, and verify after an apply."""
    from toolkit.fleet.report import fleet_page, render_fleet_page
    from toolkit.fleet.run import run_many
    from toolkit.inventory import select_targets
    from toolkit.playbook.load import peek_platform

    cli_vars = parse_vars(var)
    with user_errors():
        targets = select_targets(inventory, limit, peek_platform(playbook))  # type: ignore[arg-type]
    if reviewed is not None:
        _pin(reviewed, playbook, targets, var, templates)  # verify's snapshot scripts are the reviewed ones too
    applied = {o.target for o in outcomes if o.ok}
    checks = {}
    if action == "apply" and applied:
        verified = run_many("verify", playbook, [t for t in targets if t.name in applied], cli_vars, templates, forks,
                            None, rate, processes)
        checks = {o.target: o.details["checks"] for o in verified if "checks" in o.details}
    page = fleet_page(action=action, playbook=str(playbook), outcomes=outcomes, checks=checks,
                      variables={t.name: {**t.variables, **cli_vars} for t in targets})
    with user_errors():
        from toolkit.safe_paths import write_file

        write_file(path, render_fleet_page(page, path.suffix.lower() in (".html", ".htm")).encode("utf-8"),
                   mode=0o600)  # like the run report: it names accounts and tenants
    typer.echo(f"wrote the fleet report {path}", err=True)


def show_fleet_changes(outcomes: list[Any], variables: dict[str, dict[str, Any]]) -> None:
    """The resource-level changes of a fleet plan, identical ones folded across targets."""
    from rich.text import Text

    from toolkit.fleet.summary import fold

    plans = {o.target: o.details["plan"] for o in outcomes if o.ok and "plan" in o.details}
    out = report.console()
    for line in fold(plans, variables):
        style = {"+": "green", "-": "red", "~": "yellow"}.get(line.strip()[:1], "bold" if line.startswith("on ")
                                                                                 else "")
        out.print(Text(line, style=style))


@dataclass(frozen=True)
class Review:
    """--reviewed FOLDER [--reviewed-ref REF] and the command whose scripts it pins."""

    folder: Path
    ref: str | None
    verb: str
    report: bool = False


def _review(folder: Path | None, ref: str | None, verb: str, report_file: Path | None = None) -> Review | None:
    if folder is None:
        if ref is not None:
            _fail("--reviewed-ref needs --reviewed FOLDER", 2)
        return None
    return Review(folder, ref, verb, report_file is not None)


def _pin(reviewed: Review, playbook: Path, targets: list[ResolvedTarget], var: list[str] | None,
         templates: Path | None, record: Any = None) -> None:
    """Compare every script the command will send with the reviewed folder, before the first connection; a
    refusal is recorded in ``record`` (a run record) when given."""
    from toolkit.fleet.lifecycle import before_changes
    from toolkit.render.pin import pin_targets

    with user_errors(), (before_changes(record) if record is not None else contextlib.nullcontext()):
        pin_targets(reviewed.folder, playbook, targets, parse_vars(var), templates, reviewed.verb, ref=reviewed.ref,
                    report=reviewed.report)
    commit = targets[0].pin.commit if targets and targets[0].pin else None
    typer.echo(f"The scripts are the reviewed ones ({reviewed.folder}"
               + (f", commit {commit[:12]}" if commit else "") + (f", equal to {reviewed.ref}" if reviewed.ref else "")
               + f"; {len(targets)} target(s))", err=True)


ReviewedOption = Annotated[Path | None, typer.Option("--reviewed", metavar="FOLDER", help="Refuse to run (exit 3, "
                                                     "before any connection) unless every script sent is the one in "
                                                     "this reviewed, committed folder.")]
ReviewedRefOption = Annotated[str | None, typer.Option("--reviewed-ref", metavar="REF", help="With --reviewed: the "
                                                       "reviewed scripts must also equal this git ref's (e.g. the "
                                                       "protected branch).")]


def _resolve(playbook: Path, inventory: Path | None, target: str | None) -> ResolvedTarget:
    from toolkit.inventory import resolve_target
    from toolkit.playbook.load import peek_platform

    with user_errors():
        return resolve_target(inventory, target, peek_platform(playbook))


def _find_out(playbook: Path, inventory: Path | None, target: str | None) -> str:
    where = (f" -i {inventory}" if inventory else "") + (f" -t {target}" if target else "")
    return f"To see the state now: exkit plan {playbook}{where} (and exkit verify {playbook}{where})"


def _prepare(playbook: Path, resolved: ResolvedTarget, var: list[str] | None, destroy: bool,
             templates: Path | None, signals: Any) -> Prepared:
    """Read the target's state and plan, in a worker thread the main thread watches for Ctrl-C / SIGTERM.
    Errors are raised as they are (the caller records and reports them)."""
    from toolkit.workflow import prepare

    cli_vars = parse_vars(var)
    prepared = signals.wait_for(lambda: prepare(playbook, resolved, cli_vars, destroy=destroy, templates=templates),
                                [resolved.target], f"reading the state of {resolved.target.describe()}")
    print_diagnostics(prepared.diagnostics)
    return prepared


@contextmanager
def _reading_state(find_out: str) -> Iterator[None]:
    """Errors while reading the state and planning: user errors as usual; a stop (Ctrl-C, SIGTERM) says that
    nothing was changed and exits 130 / 143."""
    from toolkit.fleet.signals import exit_code
    from toolkit.targets.waits import RUN

    try:
        with user_errors():
            yield
    except typer.Exit:
        if RUN.stopping and RUN.reason != "timeout":
            typer.echo(f"exkit: {RUN.reason}: stopped while reading the current state; nothing was changed. "
                       f"{find_out}", err=True)
            raise typer.Exit(exit_code(RUN.reason)) from None
        raise


@app.command()
def plan(
    playbook: Annotated[Path, typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml, help="Playbook file.")],
    inventory: InventoryOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    templates: TemplatesOption = None,
    destroy: Annotated[bool, typer.Option("--destroy", help="Plan the removal instead.")] = False,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 0 when nothing is to do, "
                                                    "2 when changes are pending, 1 on errors.")] = False,
    output: OutputOption = "text",
    limit: FleetLimitOption = None,
    forks: ForksOption = 8,
    rate: RateOption = None,
    processes: ProcessesOption = None,
    impact: Annotated[bool, typer.Option("--impact", help="Also show the access impact: who gains or loses which "
                                                          "mailboxes (one more read of the target).")] = False,
    fail_on_widening: Annotated[bool, typer.Option("--fail-on-widening", help="Exit 1 when a principal would gain "
                                                   "a mailbox outside the playbook's intent (implies --impact).")
                                ] = False,
    timeout: TimeoutOption = None,
) -> None:
    """Show what apply would create, change or remove, with before → after values."""
    if limit is not None and (impact or fail_on_widening):
        _fail("--impact and --fail-on-widening plan one target at a time", 2)
    if limit is not None:
        outcomes = _fleet("plan-destroy" if destroy else "plan", playbook, inventory, limit, forks, var, templates,
                          output, rate, processes, timeout=timeout)
        failed = any(not o.ok for o in outcomes)
        raise typer.Exit(1 if failed else 2 if detailed_exitcode and any(o.pending for o in outcomes) else 0)
    resolved = _resolve(playbook, inventory, target)
    find_out = _find_out(playbook, inventory, target)
    with _operating(timeout, find_out) as signals, _reading_state(find_out):
        prepared = _prepare(playbook, resolved, var, destroy, templates, signals)
        found = _impact(prepared, templates) if impact or fail_on_widening else None
    if output == "json":
        typer.echo(report.as_json({"playbook": prepared.playbook.name, "target": prepared.target.name,
                                   **prepared.plan.as_dict(), **({"impact": found.as_dict()} if found else {})}))
    else:
        report.show_plan(report.console(), prepared.plan, prepared.playbook.name, prepared.target.target.describe())
        if found is not None:
            from rich.text import Text

            from toolkit.verify.impact import text_lines

            for line, style in text_lines(found):
                report.console().print(Text(line, style=style))
    if prepared.plan.errors:
        _fail(_plan_errors(prepared))
    if fail_on_widening and found is not None and found.widening:
        raise typer.Exit(1)
    raise typer.Exit(2 if detailed_exitcode and prepared.plan.pending else 0)


def _impact(prepared: Prepared, templates: Path | None) -> Any:
    """The access impact of running the prepared script on its target (reads the target's snapshot)."""
    from toolkit.verify.impact import live_impact
    from toolkit.workflow import read_snapshot

    with user_errors():
        snapshot = read_snapshot(prepared.playbook, prepared.target, templates, context=prepared.context)
    return live_impact(prepared.playbook, snapshot, f"live: {prepared.target.target.describe()}",
                       prepared.plan.destroy)


def _plan_errors(prepared: Prepared) -> str:
    first = prepared.plan.errors[0]
    return (f"the target would refuse {len(prepared.plan.errors)} change(s), first {first.kind} {first.name!r} would "
            f"fail: {first.error} — fix the playbook or the target; nothing was changed")


def _refuse(record: Any, message: str, code: int = 1) -> NoReturn:
    record.close("refused", error=message, exit_code=code)
    _fail(message, code)


def _run(prepared: Prepared, yes: bool, output: str, verb: str, record: Any, signals: Any, find_out: str,
         report_path: Path | None = None, templates: Path | None = None) -> None:
    from toolkit.fleet.lifecycle import before_changes, execute_recorded, what_is_known
    from toolkit.fleet.signals import ExitNow, Stopped, exit_code
    from toolkit.render.engine import RenderError
    from toolkit.targets.waits import RUN
    from toolkit.workflow import execute

    out = report.console()
    pin = prepared.target.pin  # with --reviewed: every script of this run was compared before connecting
    reviewed_sha = pin.scripts[verb] if pin else ""
    record.data.update(reviewed_sha256=reviewed_sha or None, **(pin.record() if pin else {}))
    with user_errors(), before_changes(record):
        if output != "json":
            report.show_plan(out, prepared.plan, prepared.playbook.name, prepared.target.target.describe())
        if prepared.plan.errors:
            _refuse(record, _plan_errors(prepared))
        if prepared.plan.pending and not yes:
            if not sys.stdin.isatty():
                _refuse(record, f"refusing to {verb} without confirmation on a non-interactive terminal: pass --yes")
            if not typer.confirm(f"{verb.capitalize()} these changes?", default=False):
                record.close("refused", error="not confirmed", exit_code=1)
                typer.echo("Nothing changed.", err=True)
                raise typer.Exit(1)
        found = _impact(prepared, templates) if report_path is not None else None  # the change board sees it
    typer.echo(f"Running script sha256 {prepared.script.sha256} on {prepared.target.target.describe()}", err=True)
    try:
        result = execute_recorded(prepared, record, lambda: execute(prepared), signals)
    except (Stopped, ExitNow, TargetError, ExkitError, RenderError) as exc:
        status = record.data.get("status")
        if status in ("interrupted", "timed-out"):
            typer.echo(f"exkit: {status} ({RUN.reason or 'timeout'}): {exc}" if str(exc) != RUN.reason else
                       f"exkit: {status} ({RUN.reason}) while the script ran on {prepared.target.target.describe()}",
                       err=True)
            for line in what_is_known(record.data, find_out):
                typer.echo(line, err=True)
            if isinstance(exc, ExitNow):
                raise
            raise typer.Exit(exit_code(RUN.reason) if status == "interrupted" else 1) from None
        if isinstance(exc, Stopped | ExitNow):
            raise
        _fail(str(exc))
    if output == "json":
        typer.echo(report.as_json({
            "playbook": prepared.playbook.name, "target": prepared.target.name, "exit_code": result.exit_code,
            "script_sha256": result.script_sha256, "reviewed_sha256": reviewed_sha or None,
            "run_id": record.id, "status": record.data.get("status"),
            "results": [r.__dict__ for r in result.results]}))
    else:
        report.show_results(out, result)
    if record.data.get("status") == "interrupted":
        typer.echo(f"exkit: interrupted ({RUN.reason}); the script had finished:", err=True)
        for line in what_is_known(record.data, find_out):
            typer.echo(line, err=True)
        raise typer.Exit(exit_code(RUN.reason))
    if report_path is not None:
        from datetime import UTC, datetime

        from toolkit.workflow import verify_target

        finished = datetime.now(UTC).isoformat(timespec="seconds")
        checks, not_run = None, "the run failed" if not result.ok else f"{verb} does not verify"
        if result.ok and verb == "apply":
            try:
                checks = verify_target(prepared.playbook, prepared.target, templates, prepared.context.vars)
            except (TargetError, RenderError) as exc:
                not_run = f"reading the target failed: {exc}"
                typer.echo(f"exkit: warning: verify for the report failed: {exc}", err=True)
        from toolkit.safe_paths import write_file

        with user_errors():  # 0600 and never through a symbolic link
            write_file(report_path, report.run_report(
                playbook=prepared.playbook.name, target=prepared.target.name, plan=prepared.plan, result=result,
                checks=checks, html=report_path.suffix.lower() in (".html", ".htm"), reviewed_sha256=reviewed_sha,
                impact=found, record={"finished": finished, **record.data}, endpoint=prepared.target.target.describe(),
                script=prepared.script.text, command=verb, verify_not_run=not_run).encode("utf-8"), mode=0o600)
        typer.echo(f"wrote the run report {report_path}", err=True)
    if not result.ok:
        typer.echo("exkit: error: " + report.failure_message(result), err=True)
        raise typer.Exit(1)


def _single(verb: str, playbook: Path, inventory: Path | None, target: str | None, var: list[str] | None,
            templates: Path | None, yes: bool, output: str, timeout: float | None,
            report_file: Path | None = None, pins: Review | None = None) -> None:
    """apply or destroy on one target: the record is started before the plan, so that a run refused (a review
    mismatch included) or interrupted before any change is recorded too."""
    from toolkit.fleet import records
    from toolkit.fleet.lifecycle import before_changes

    resolved = _resolve(playbook, inventory, target)
    record = records.RunRecord(**records.invocation(verb, playbook, variables=parse_vars(var), templates=templates,
                                                    inventory=inventory, target=resolved,
                                                    reviewed=pins.folder if pins else None))
    find_out = _find_out(playbook, inventory, target)
    with _operating(timeout, find_out) as signals:
        if pins is not None:
            _pin(pins, playbook, [resolved], var, templates, record)
        with resolved.target.session():  # the facts script, the apply script (and the report's snapshot): one connection
            with _reading_state(find_out), before_changes(record):
                prepared = _prepare(playbook, resolved, var, verb == "destroy", templates, signals)
            _run(prepared, yes, output, verb, record, signals, find_out, report_file, templates)


@app.command()
def apply(
    playbook: Annotated[Path, typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml, help="Playbook file.")],
    inventory: InventoryOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    templates: TemplatesOption = None,
    yes: YesOption = False,
    output: OutputOption = "text",
    report_file: Annotated[Path | None, typer.Option("--report", metavar="FILE",
                                                     help="Write a run report (Markdown, or HTML for "
                                                          ".html) with plan, results, verify.")] = None,
    reviewed: ReviewedOption = None,
    reviewed_ref: ReviewedRefOption = None,
    limit: FleetLimitOption = None,
    forks: ForksOption = 8,
    rate: RateOption = None,
    processes: ProcessesOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Plan, confirm, and run the playbook's script on the target; print a per-resource summary."""
    pins = _review(reviewed, reviewed_ref, "apply", report_file)
    if limit is not None:
        _fleet_confirmed("apply", playbook, inventory, limit, forks, var, templates, output, rate, processes, yes,
                         pins, report_file, timeout)
    _single("apply", playbook, inventory, target, var, templates, yes, output, timeout, report_file, pins)


@app.command()
def destroy(
    playbook: Annotated[Path, typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml, help="Playbook file.")],
    inventory: InventoryOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    templates: TemplatesOption = None,
    yes: YesOption = False,
    output: OutputOption = "text",
    limit: FleetLimitOption = None,
    forks: ForksOption = 8,
    rate: RateOption = None,
    processes: ProcessesOption = None,
    reviewed: ReviewedOption = None,
    reviewed_ref: ReviewedRefOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Remove what the playbook declares (plan, confirm, run the removal script)."""
    pins = _review(reviewed, reviewed_ref, "destroy")
    if limit is not None:
        _fleet_confirmed("destroy", playbook, inventory, limit, forks, var, templates, output, rate, processes, yes,
                         pins, timeout=timeout)
    _single("destroy", playbook, inventory, target, var, templates, yes, output, timeout, pins=pins)


@app.command()
def verify(
    playbook: Annotated[Path, typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml, help="Playbook file.")],
    inventory: InventoryOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    templates: TemplatesOption = None,
    output: OutputOption = "text",
    limit: FleetLimitOption = None,
    forks: ForksOption = 8,
    rate: RateOption = None,
    processes: ProcessesOption = None,
    reviewed: ReviewedOption = None,
    reviewed_ref: ReviewedRefOption = None,
    timeout: TimeoutOption = None,
) -> None:
    """Check the effective result on the target: who holds what, on which scope, and nothing more; with a boundary in
    the inventory, that the tenant's grants reach nothing outside it. Exit 1 on failure."""
    from toolkit.verify.checks import entra_outcome
    from toolkit.workflow import verify_target

    pins = _review(reviewed, reviewed_ref, "verify")
    if limit is not None:
        outcomes = _fleet("verify", playbook, inventory, limit, forks, var, templates, output, rate, processes,
                          pins, timeout)
        raise typer.Exit(1 if any(not o.ok for o in outcomes) else 0)
    resolved, model = _target_and_playbook(playbook, inventory, target, var)
    if pins is not None:
        _pin(pins, playbook, [resolved], var, templates)
    find_out = _find_out(playbook, inventory, target)
    with _operating(timeout, find_out) as signals, _reading_state(find_out):
        checks = signals.wait_for(lambda: verify_target(model, resolved, templates, parse_vars(var)),
                                  [resolved.target], f"reading the state of {resolved.target.describe()}")
    if output == "json":
        typer.echo(report.as_json({"playbook": model.name, "target": resolved.name, "ok": all(c.ok for c in checks),
                                   "entra": entra_outcome(checks), "checks": [c.as_dict() for c in checks]}))
    else:
        report.show_checks(report.console(), checks, resolved.target.describe())
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)


def _target_and_playbook(playbook: Path, inventory: Path | None, target: str | None,
                         var: list[str] | None) -> tuple[Any, Playbook]:
    from toolkit.inventory import resolve_target
    from toolkit.playbook.load import peek_platform
    from toolkit.workflow import load_for_target

    with user_errors():
        resolved = resolve_target(inventory, target, peek_platform(playbook))
        model, diagnostics = load_for_target(playbook, resolved, parse_vars(var))
    print_diagnostics(diagnostics)
    return resolved, model


scope_app = typer.Typer(help="Management scopes: what their filters match.", no_args_is_help=True)
app.add_typer(scope_app, name="scope")


@scope_app.command("preview")
def scope_preview(
    playbook: Annotated[Path, typer.Argument(metavar="PLAYBOOK", autocompletion=complete_yaml, help="Playbook file.")],
    recipients: Annotated[Path | None, typer.Option("--recipients", metavar="CSV",
                                                    help="Offline: a CSV from Get-Recipient "
                                                         "-ResultSize Unlimited | Export-Csv.")] = None,
    inventory: InventoryOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    output: OutputOption = "text",
    limit: SelectOption = None,
) -> None:
    """For each scope: the recipients its filter matches, by type, with a sample. A scope matching user or shared
    mailboxes, or (with a boundary in the inventory) anything outside the tenant's boundary, fails (exit 1). With
    -i, each target's values; with --recipients, offline."""
    from toolkit.workflow import preview_targets

    with user_errors():
        results = preview_targets(playbook, _chosen(playbook, inventory, target, limit), parse_vars(var), recipients)
    failed = any(any(p.problem for p in r.previews) or not all(c.ok for c in r.entra) for r in results)
    if output == "json":
        entries = [{"target": r.target, "source": r.where, "scopes": [p.as_dict() for p in r.previews],
                    "entra": [c.as_dict() for c in r.entra]} for r in results]
        typer.echo(report.as_json({"playbook": results[0].playbook, **entries[0]} if limit is None else
                                  {"playbook": results[0].playbook, "targets": entries}))
    else:
        for r in results:
            report.show_previews(report.console(), r.previews, r.where if limit is None else f"{r.target}: {r.where}",
                                 r.entra)
    raise typer.Exit(1 if failed else 0)


def _chosen(playbook: Path, inventory: Path | None, target: str | None, limit: str | None) -> list[ResolvedTarget]:
    """-t NAME (or the inventory's only target, or the sandbox), or every target --limit selects (needs -i)."""
    from toolkit.inventory import resolve_target, select_targets
    from toolkit.playbook.load import peek_platform

    if limit is None:
        return [resolve_target(inventory, target, peek_platform(playbook))]
    if inventory is None:
        _fail("--limit selects targets of an inventory: pass -i INVENTORY", 2)
    return select_targets(inventory, limit, peek_platform(playbook))


@app.command()
def export(
    inventory: InventoryOption = None,
    target: TargetOption = None,
    principal: Annotated[str | None, typer.Option("--principal", metavar="NAME",
                                                  help="A service account's address or name, or "
                                                       "an application's id or name; with --limit, '{{ VARIABLE }}' "
                                                       "takes each target's value.")] = None,
    role: Annotated[str | None, typer.Option("--role", metavar="ROLE",
                                             help="A management role, e.g. ApplicationImpersonation.")] = None,
    platform: Annotated[str, typer.Option("--platform", metavar="exchange-server|exchange-online",
                                          help="Without an inventory: which sandbox to read.")] = (
        "exchange-server"),
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="PATH", help="Write the playbook here (with "
                                                                                 "--limit: a folder, one "
                                                                                 "TARGET.yaml each).")] = None,
    limit: SelectOption = None,
) -> None:
    """Write a playbook for an existing setup around a principal or a role (applied, it plans as a no-op)."""
    from toolkit.inventory import resolve_target, select_targets
    from toolkit.safe_paths import write_file, write_in
    from toolkit.workflow import export_target

    if limit is not None:
        if inventory is None or out is None:
            _fail("export --limit needs -i INVENTORY and --out FOLDER (one TARGET.yaml per target)", 2)
        with user_errors():
            chosen = select_targets(inventory, limit, None)
            for resolved in chosen:
                write_in(out, f"{resolved.name}.yaml", export_target(resolved, principal, role).encode("utf-8"))
        typer.echo(f"wrote {len(chosen)} playbook(s) to {out}", err=True)
        return
    with user_errors():
        text = export_target(resolve_target(inventory, target, platform), principal, role)
    if out is None:
        sys.stdout.write(text)
    else:
        with user_errors():
            write_file(out, text.encode("utf-8"))
        typer.echo(f"wrote {out}", err=True)


inventory_app = typer.Typer(help="Targets of an inventory and the values they get.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")
LimitOption = Annotated[str | None, typer.Option("--limit", "-l", metavar="PATTERNS", autocompletion=complete_limit,
                                                 help="Target or group name patterns (fnmatch), "
                                                      "comma-separated.")]


@inventory_app.command("list")
def inventory_list(
    inventory: Annotated[Path, typer.Option("--inventory", "-i", metavar="FILE", autocompletion=complete_yaml,
                                            help="Inventory file.")],
    limit: LimitOption = None,
    output: OutputOption = "text",
) -> None:
    """The targets (with --limit: the ones it selects), their group, kind and platform."""
    from rich.table import Table
    from rich.text import Text

    from toolkit.inventory import select_targets

    with user_errors():
        targets = select_targets(inventory, limit)
    rows = [{"target": t.name, "group": t.group, "platform": t.target.platform, "where": t.target.describe()}
            for t in targets]
    if output == "json":
        typer.echo(report.as_json(rows))
        return
    table = Table("target", "group", "platform", "where", show_edge=False)
    for row in rows:
        table.add_row(*(Text(str(row[k] or "")) for k in ("target", "group", "platform", "where")))
    report.console().print(table)


@inventory_app.command("show")
def inventory_show(
    target: Annotated[str, typer.Argument(metavar="TARGET", autocompletion=complete_targets, help="Target name.")],
    inventory: Annotated[Path, typer.Option("--inventory", "-i", metavar="FILE", autocompletion=complete_yaml,
                                            help="Inventory file.")],
) -> None:
    """One target's settings and merged variables (and where each comes from) and its template layers."""
    from toolkit.inventory import resolve_target

    with user_errors():
        resolved = resolve_target(inventory, target)
    typer.echo(report.as_json({
        "target": resolved.name, "group": resolved.group, "platform": resolved.target.platform,
        "where": resolved.target.describe(),
        "settings": resolved.settings(),
        "vars": {k: {"value": v, "from": resolved.sources[k]} for k, v in sorted(resolved.variables.items())},
        "templates": [str(p) for p in resolved.templates] + ["(built-in)"],
        "boundary": resolved.boundary.model_dump(exclude_none=True) if resolved.boundary else None,
        "same_organisation": sorted(resolved.neighbours),
        "precedence": "playbook vars < inventory vars < group vars < target vars < --var; settings: exkit's "
                      "default < the group's target_defaults < the target's own"}))


templates_app = typer.Typer(help="The built-in templates, to read them or start an override.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")
PlatformOption = Annotated[str, typer.Option("--platform", metavar="exchange-server|exchange-online",
                                             help="exchange-server or exchange-online.")]


def _builtin_template(name: str, platform: str) -> Path:
    """A built-in template by its exact name (as templates list shows it): never a path."""
    from toolkit.render.engine import builtin_templates, builtin_templates_dir

    if platform not in ("exchange-server", "exchange-online"):
        _fail(f"unknown platform {platform!r}: use exchange-server or exchange-online", 2)
    folder = builtin_templates(platform).get(name)
    if folder is None:
        _fail(f"no built-in template {name!r} for {platform}: see exkit templates list --platform {platform}")
    return builtin_templates_dir() / folder / name


@templates_app.command("list")
def templates_list(platform: PlatformOption = "exchange-server") -> None:
    """The built-in templates a platform's scripts are rendered from."""
    from toolkit.render.engine import builtin_templates

    for name, folder in sorted(builtin_templates(platform).items()):
        typer.echo(f"{name}\t{folder}")


@templates_app.command("show")
def templates_show(name: Annotated[str, typer.Argument(metavar="TEMPLATE", help="Template file name.")],
                   platform: PlatformOption = "exchange-server") -> None:
    """Print a built-in template."""
    sys.stdout.write(_builtin_template(name, platform).read_text(encoding="utf-8"))


@templates_app.command("copy")
def templates_copy(
    name: Annotated[str, typer.Argument(metavar="TEMPLATE", help="Template file name.")],
    folder: Annotated[Path, typer.Argument(metavar="FOLDER",
                                           help="The override folder (a target's or group's templates:).")],
    platform: PlatformOption = "exchange-server",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing override.")] = False,
) -> None:
    """Copy a built-in template into an override folder to change it there."""
    from toolkit.safe_paths import write_in

    source = _builtin_template(name, platform)
    destination = folder / name
    if (destination.exists() or destination.is_symlink()) and not force:
        _fail(f"{destination} exists: pass --force to replace it")
    with user_errors():
        write_in(folder, name, source.read_bytes())
    typer.echo(f"copied {name} to {destination}; it now replaces the built-in one for targets using {folder}",
               err=True)


runs_app = typer.Typer(help="Run records of apply and destroy (an audit trail).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list(
    last: Annotated[int, typer.Option("--last", metavar="N", help="How many, newest last.")] = 20,
    output: OutputOption = "text",
) -> None:
    """The latest run records: when, who, what, where, and how it ended."""
    from rich.table import Table
    from rich.text import Text

    from toolkit.fleet import records as runs

    records = runs.read_all()[-last:]
    if output == "json":
        typer.echo(report.as_json(records))
        return
    table = Table("id", "started (UTC)", "user", "command", "target", "playbook", "review", "result",
                  show_edge=False)
    for record in records:
        counts: dict[str, int] = {}
        for item in record.get("changes") or record.get("results") or []:
            action = item.get("outcome") or item.get("action", "?")
            counts[action] = counts.get(action, 0) + 1
        outcome = runs.status_of(record) + (
            ": " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) if counts else "")
        pinned = "pinned" if record.get("pinned_to_review") or record.get("reviewed_sha256") else "-"
        table.add_row(*(Text(str(v)) for v in (record.get("id"), record.get("started"), record.get("user"),
                                               record.get("command"), record.get("target"),
                                               record.get("playbook_name"), pinned, outcome)))
    report.console().print(table)


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="A run id from exkit runs list.")]) -> None:
    """One run record, whole, as JSON."""
    from toolkit.fleet import records as runs

    found = [r for r in runs.read_all() if str(r.get("id", "")).startswith(run_id)]
    if len(found) != 1:
        _fail(f"no run record {run_id!r}" if not found else f"{run_id!r} matches {len(found)} records; give more "
                                                               "of the id")
    typer.echo(report.as_json(found[0]))


sandbox_app = typer.Typer(help="Inspect or reset the embedded sandbox organisation.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
StateOption = Annotated[Path | None, typer.Option("--state", metavar="FILE",
                                                  help="State file (default: $EXKIT_SANDBOX_STATE or "
                                                       "~/.local/state/exkit/sandbox.json).")]


@sandbox_app.command("add-tenant")
def sandbox_add_tenant(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The tenant's name, e.g. Contoso2.")],
    ou: Annotated[str | None, typer.Option("--ou", metavar="DN", help="Its OU (default: OU=NAME,OU=Hosting,"
                                                                      "DC=hoster,DC=local).")] = None,
    domain: Annotated[str | None, typer.Option("--domain", metavar="DOMAIN", help="Its accepted domain (default: "
                                                                                  "name.example).")] = None,
    rooms: Annotated[int, typer.Option("--rooms", min=0, max=10000, metavar="N", help="Room mailboxes.")] = 3,
    users: Annotated[int, typer.Option("--users", min=0, max=10000, metavar="N", help="User mailboxes.")] = 3,
    state: StateOption = None,
) -> None:
    """Add a hosted tenant to the sandbox organisation: its OU, room-booking account svc-rooms@DOMAIN, users, rooms
    and a projector; prints the tenant's inventory entry (values and boundary)."""
    from toolkit.sandbox.seed import HOSTING, TenantError, add_tenant, inventory_entry

    if not name.replace("-", "").replace("_", "").isalnum():
        _fail(f"tenant name {name!r}: use letters, digits, - and _", 2)
    ou = ou or f"OU={name},{HOSTING}"
    domain = (domain or f"{name}.example").lower()
    path = state or sandbox_org.default_state_path()
    with sandbox_org.locked(path):
        organisation = sandbox_org.load(path)
        try:
            added = add_tenant(organisation, name, ou, domain, rooms, users)
        except TenantError as exc:
            _fail(str(exc))
        sandbox_org.save(path, organisation)
    typer.echo(f"added tenant {name} to {path}: {ou}, {len(added)} mailboxes ({rooms} rooms), "
               f"room-booking account svc-rooms@{domain}. Its inventory entry:", err=True)
    sys.stdout.write(inventory_entry(name, ou, domain, path))


@sandbox_app.command("reset")
def sandbox_reset(state: StateOption = None) -> None:
    """Put the sandbox organisation back to its seed state."""
    from toolkit.sandbox.seed import seed_organisation

    path = state or sandbox_org.default_state_path()
    with sandbox_org.locked(path):
        sandbox_org.save(path, seed_organisation())
    typer.echo(f"sandbox organisation reset to its seed state: {path}")


@sandbox_app.command("show")
def sandbox_show(
    state: StateOption = None,
    output: OutputOption = "text",
) -> None:
    """Show the sandbox organisation's recipients and RBAC objects."""
    from rich.table import Table

    path = state or sandbox_org.default_state_path()
    try:
        organisation = sandbox_org.load(path)
    except sandbox_org.StateFileError as exc:
        _fail(str(exc))
    if output == "json":
        typer.echo(organisation.to_json(), nl=False)
        return
    out = report.console()
    out.print(f"Sandbox organisation {path}{'' if path.exists() else ' (not created yet: the seed)'}")
    kinds: dict[str, int] = {}
    for recipient in organisation.recipients:
        kinds[recipient.recipient_type_details] = kinds.get(recipient.recipient_type_details, 0) + 1
    out.print("Recipients: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    scopes = Table("management scope", "filter", "recipient root", title="Management scopes", title_justify="left")
    for scope in organisation.management_scopes:
        scopes.add_row(scope.name, scope.recipient_filter, scope.recipient_root or "")
    out.print(scopes)
    groups = Table("role group", "members", title="Role groups", title_justify="left")
    for group in organisation.role_groups:
        groups.add_row(group.name, ", ".join(group.members))
    out.print(groups)
    assignments = Table("assignment", "role", "assignee", "write scope", title="Role assignments (not delegating)",
                        title_justify="left")
    for assignment in organisation.role_assignments:
        if not assignment.delegating:
            assignments.add_row(assignment.name, assignment.role, assignment.role_assignee,
                                assignment.custom_recipient_write_scope or assignment.recipient_organizational_unit_scope
                                or "Organization")
    out.print(assignments)
    if organisation.mailbox_permissions:
        permissions = Table("mailbox", "user", "rights", title="Mailbox permissions", title_justify="left")
        for permission in organisation.mailbox_permissions:
            permissions.add_row(permission.identity, permission.user, ", ".join(permission.access_rights))
        out.print(permissions)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"exkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """exkit: Exchange RBAC for room-booking service accounts, as code."""


def main() -> None:
    try:
        app()
    except ExkitError as exc:
        typer.echo(f"exkit: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except PlaybookError as exc:
        print_diagnostics(exc.diagnostics)
        sys.exit(1)


__all__ = ["app", "main"]
