"""The ``exkit`` command line. Thin: each command wires the stages load → validate → plan → render → execute."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from toolkit import __version__
from toolkit.errors import ExkitError
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError
from toolkit.playbook.model import Playbook
from toolkit.playbook.validate import load_and_validate, require_playbook
from toolkit.render.engine import RenderError, render_script, write_script

app = typer.Typer(
    name="exkit",
    help="Declarative Exchange RBAC for room-booking service accounts: validate, render, plan and apply playbooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VarOption = Annotated[list[str] | None, typer.Option("--var", "-e", help="Set a variable: NAME=VALUE (repeatable).")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")]
TemplatesOption = Annotated[Path | None, typer.Option("--templates", help="Directory whose templates replace "
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


def load_or_exit(playbook: Path, variables: dict[str, Any], strict: bool = False) -> Playbook:
    try:
        model, diagnostics = require_playbook(playbook, variables)
    except PlaybookError as exc:
        print_diagnostics(exc.diagnostics)
        raise typer.Exit(1) from None
    print_diagnostics(diagnostics)
    if diagnostics.failed(strict):
        _fail("warnings are errors under --strict")
    return model


@app.command()
def validate(
    playbooks: Annotated[list[Path], typer.Argument(help="Playbook files.")],
    var: VarOption = None,
    strict: StrictOption = False,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json")] = "text",
) -> None:
    """Check playbooks and report every problem with its position. Exit 0 clean, 1 on errors."""
    variables = parse_vars(var)
    diagnostics = Diagnostics()
    for path in playbooks:
        load_and_validate(path, variables, diagnostics)
    if output == "json":
        typer.echo(json.dumps([d.as_dict() for d in diagnostics.sorted()], indent=2))
    else:
        print_diagnostics(diagnostics)
        errors, warnings = len(diagnostics.errors), len(diagnostics.warnings)
        typer.echo(f"{len(playbooks)} playbook(s): {errors} error(s), {warnings} warning(s)", err=True)
    raise typer.Exit(1 if diagnostics.failed(strict) else 0)


@app.command()
def render(
    playbook: Annotated[Path, typer.Argument(help="Playbook file.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the script here (UTF-8 with BOM) instead of "
                                                            "standard output.")] = None,
    templates: TemplatesOption = None,
    var: VarOption = None,
    destroy: Annotated[bool, typer.Option("--destroy", help="Render the removal script instead.")] = False,
    strict: StrictOption = False,
) -> None:
    """Render a playbook into an idempotent Exchange PowerShell script."""
    model = load_or_exit(playbook, parse_vars(var), strict)
    try:
        script = render_script(model, state="absent" if destroy else "present", templates=templates)
    except RenderError as exc:
        _fail(str(exc))
    if out is None:
        sys.stdout.write(script.text)
    else:
        write_script(out, script)
        typer.echo(f"wrote {out} (sha256 {script.sha256})", err=True)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON Schema to this file.")] = None,
) -> None:
    """Print the JSON Schema of the playbook format (for yaml-language-server and other editors)."""
    text = schema_text()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def schema_text() -> str:
    return json.dumps(Playbook.model_json_schema(), indent=2, sort_keys=True) + "\n"


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
