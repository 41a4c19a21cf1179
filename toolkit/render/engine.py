"""Render desired state into an Exchange PowerShell script through Jinja2 templates.

The environment's ``finalize`` hook passes every ``{{ expression }}`` through :func:`ps_literal`, so templates
cannot emit a value in any other way. Templates render in Jinja2's sandbox with bounds (toolkit/render/bounded.py):
they cannot reach Python, construct the ``PowerShell`` marker type, or run away in time or size. Template search path: the ``--templates`` override directory first
(by file name, or under a ``<platform>/`` sub-folder), then the built-in templates.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SecurityError

import toolkit
from toolkit import opath
from toolkit.playbook.model import Playbook
from toolkit.render.bounded import BoundedEnvironment, budget, render_text
from toolkit.render.quoting import PowerShell, UnsafeValueError, ps_literal
from toolkit.render.syntax import parse, syntax_problems
from toolkit.resources import Resource, desired_resources

State = Literal["present", "absent", "facts"]
SCRIPT_TEMPLATE = "script.ps1.j2"


class RenderError(Exception):
    """A template is missing, broken, or produced something unsafe."""


def builtin_templates_dir() -> Path:
    """Templates ship in the wheel as toolkit/_templates; in a checkout they are the top-level templates/."""
    packaged = Path(toolkit.__file__).parent / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(toolkit.__file__).resolve().parent.parent / "templates"


def builtin_templates(platform: str) -> dict[str, str]:
    """The built-in template names of a platform → the folder each comes from (``common`` or the platform)."""
    names: dict[str, str] = {}
    for folder in ("common", platform):
        for path in sorted((builtin_templates_dir() / folder).glob("*.j2")):
            names[path.name] = folder
    return names


Templates = Path | Sequence[Path] | None


def template_layers(templates: Templates) -> list[Path]:
    if templates is None:
        return []
    return [templates] if isinstance(templates, Path) else list(templates)


def make_environment(platform: str, override: Templates = None) -> BoundedEnvironment:
    """Search order: each override folder, most specific first (its <platform>/ sub-folder, then itself), then the
    built-in templates of the platform, then the built-in common ones.

    Environments are cached per platform and folders, so templates compile once per process (Jinja2 still notices a
    template file that changed on disk).
    """
    layers = template_layers(override)
    for layer in layers:
        if not layer.is_dir():
            raise RenderError(f"template directory {layer} does not exist")
    return _environment(platform, tuple(str(layer.resolve()) for layer in layers))


@functools.lru_cache(maxsize=64)
def _environment(platform: str, layers: tuple[str, ...]) -> BoundedEnvironment:
    search: list[Path] = []
    for layer in map(Path, layers):
        search += [layer / platform, layer]
    search += [builtin_templates_dir() / platform, builtin_templates_dir() / "common"]
    environment = BoundedEnvironment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # A filter as Exchange prints it back once stored (a plain string: it still goes through the quoting function).
    environment.filters["opath_stored"] = _opath_stored
    return environment


def _opath_stored(text: object) -> str:
    try:
        return opath.to_stored_text(opath.parse(str(text)))
    except opath.OpathError:
        return str(text)  # not a filter this playbook could hold (validation refuses it): compared as written


def _finalize(value: object) -> PowerShell:
    """Every ``{{ expression }}`` becomes a PowerShell literal; an undefined one is an error naming it."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # raises UndefinedError: "'tenant' is undefined"
    return ps_literal(value)


@dataclass(frozen=True)
class TargetContext:
    """What templates know of the target they render for: ``target.name``, ``target.platform`` and
    ``target.vars`` (the variables the playbook was loaded with: its defaults, the inventory's, --var). Values
    reach the script only as PowerShell literals, like every other ``{{ expression }}``."""

    name: str = "sandbox"
    platform: str = "exchange-server"
    vars: dict[str, object] | None = None


def desired_state_digest(playbook: Playbook, resources: list[Resource]) -> str:
    state = {"playbook": playbook.name, "platform": playbook.platform, "resources": [r.as_dict() for r in resources]}
    return hashlib.sha256(json.dumps(state, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Connection:
    """How a script reaches the Exchange cmdlets.

    ``loaded`` (default): use the cmdlets already loaded (Exchange Management Shell, or a session the operator
    imported); stop with instructions if they are not. ``remote-session``: import them from the Exchange server's
    /PowerShell/ endpoint and remove the session at the end, also after a failure. ``snapin``: load the snap-in on
    the Exchange server itself (unsupported by Microsoft beyond transport-agent cmdlets, and it bypasses RBAC: only
    when asked). Exchange Online scripts use ``Connect-ExchangeOnline`` when ``organization`` is set.
    """

    connect: Literal["loaded", "snapin", "remote-session"] = "loaded"
    exchange_uri: str = ""
    session_authentication: Literal["Kerberos", "CredSSP"] = "Kerberos"
    # Exchange Online: with an organization the script connects itself (certificate app-only auth).
    app_id: str = ""
    certificate_thumbprint: str = ""
    organization: str = ""
    environment: str = "O365Default"
    certificate_file: str = ""  # a PFX for -CertificateFilePath (Linux/macOS, where thumbprints do not work)


@dataclass(frozen=True)
class RenderedScript:
    text: str
    sha256: str
    resources: list[Resource]
    state: State


def render_script(playbook: Playbook, *, state: State = "present", templates: Templates = None,
                  resources: list[Resource] | None = None, connection: Connection | None = None,
                  target: TargetContext | None = None) -> RenderedScript:
    """Render the apply (``present``), destroy (``absent``) or read-only ``facts`` script for a playbook.

    Destroy removes in reverse order: assignments and groups before the scopes they use. Every template also gets
    ``target`` (see :class:`TargetContext`; without one, the playbook's own defaults).
    """
    chosen = list(resources if resources is not None else desired_resources(playbook))
    ordered = list(reversed(chosen)) if state == "absent" else chosen
    environment = make_environment(playbook.platform, templates)
    about = _about(playbook, target)
    with template_errors(playbook.platform), budget():
        blocks = [PowerShell(render_text(environment.get_template(r.template), r.fields, state=state, kind=r.kind,
                                         resource_name=r.name, **about))
                  for r in ordered]
        text = render_text(environment.get_template(SCRIPT_TEMPLATE),
                           playbook_name=playbook.name,
                           toolkit_version=toolkit.__version__,
                           digest=desired_state_digest(playbook, chosen),
                           state=state,
                           blocks=blocks,
                           resource_count=len(ordered),
                           connection=connection or Connection(),
                           **about,
                           )
    text = text.replace("\r\n", "\n")
    problems = syntax_problems(parse(text))
    if problems:
        listed = "; ".join(str(p) for p in problems[:5])
        raise RenderError(f"the rendered script is not valid PowerShell (check custom templates): {listed}")
    return RenderedScript(text, hashlib.sha256(text.encode()).hexdigest(), ordered, state)


def _about(playbook: Playbook, target: TargetContext | None) -> dict[str, Any]:
    """``target`` as every template of every mode sees it (without a context: the playbook's own defaults)."""
    context = target or TargetContext(platform=playbook.platform)
    return {"target": {"name": context.name, "platform": context.platform,
                       "vars": dict(context.vars if context.vars is not None else playbook.vars)}}


def _template_position(exc: BaseException) -> str:
    """``file:line: `` of the innermost template frame of a render error (Jinja2 rewrites tracebacks so template
    lines appear as frames of the template file), or ``""``."""
    where = ""
    trace = exc.__traceback__
    while trace is not None:
        filename = trace.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where = f"{filename}:{trace.tb_lineno}: "
        trace = trace.tb_next
    return where


@contextmanager
def template_errors(platform: str) -> Iterator[None]:
    """Every way a template render can fail becomes one RenderError naming the template file and line."""
    try:
        yield
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name!r} not found (searched: override directory, then built-in "
                          f"{builtin_templates_dir() / platform})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{exc.filename or exc.name}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{_template_position(exc)}template uses an undefined value: {exc.message} (a template "
                          "knows its resource's fields, state, kind, resource_name, and target.name, "
                          "target.platform, target.vars.NAME)") from None
    except SecurityError as exc:
        raise RenderError(f"{_template_position(exc)}template refused: {exc}") from None
    except UnsafeValueError as exc:
        raise RenderError(f"{_template_position(exc)}unsafe value: {exc}") from None
    except RecursionError:
        raise RenderError("template refused: it recurses without end (a macro calling itself?)") from None
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError,
            ArithmeticError) as exc:
        raise RenderError(f"{_template_position(exc)}template error: {type(exc).__name__}: {exc}") from None


def write_script(path: Path, script: RenderedScript) -> None:
    """Write a script as UTF-8 with a byte-order mark, so Windows PowerShell 5.1 reads non-ASCII names right (never
    through a symbolic link)."""
    from toolkit.safe_paths import write_file

    write_file(path, b"\xef\xbb\xbf" + script.text.encode("utf-8"))


Mode = Literal["facts", "apply", "destroy", "snapshot"]
MODES: tuple[Mode, ...] = ("facts", "apply", "destroy", "snapshot")


def render_mode(playbook: Playbook, mode: Mode, *, templates: Templates = None,
                connection: Connection | None = None, target: TargetContext | None = None) -> RenderedScript:
    """The script of one mode, exactly as plan/apply/destroy/verify send it: ``facts`` (plan reads the current
    state), ``apply``, ``destroy``, ``snapshot`` (verify, scope preview, the report after apply)."""
    if mode == "snapshot":
        return render_snapshot(playbook, templates=templates, connection=connection, target=target)
    state: State = {"facts": "facts", "apply": "present", "destroy": "absent"}[mode]  # type: ignore[assignment]
    return render_script(playbook, state=state, templates=templates, connection=connection, target=target)


def template_files(platform: str, templates: Templates = None) -> list[tuple[int, Path]]:
    """Every template file a platform's render can read, in search order (override layers, then the built-ins), with
    the index of its folder in that order."""
    folders = [folder for layer in template_layers(templates) for folder in (layer / platform, layer)]
    return [(index, path)
            for index, folder in enumerate([*folders, builtin_templates_dir() / platform,
                                            builtin_templates_dir() / "common"])
            for path in (sorted(folder.glob("*.j2")) if folder.is_dir() else [])]


def templates_digest(platform: str, templates: Templates = None) -> str:
    """sha256 over every template file a platform's render can read (override layers, then the built-ins), so a
    refusal can say "a template changed"."""
    digest = hashlib.sha256()
    for index, path in template_files(platform, templates):
        digest.update(f"{index}/{path.name}\0".encode() + path.read_bytes() + b"\0")
    return digest.hexdigest()


def snapshot_roles(playbook: Playbook, extra_roles: tuple[str, ...] = ()) -> list[str]:
    """The roles whose effective users a snapshot reads: the playbook's, ApplicationImpersonation on Exchange Server
    (wherever it is granted), and any asked for."""
    from toolkit.playbook.model import IMPERSONATION_ROLE

    return sorted({r for g in playbook.role_groups for r in g.roles} | {a.role for a in playbook.role_assignments}
                  | ({IMPERSONATION_ROLE} if playbook.platform == "exchange-server" else set()) | set(extra_roles))


def render_snapshot(playbook: Playbook, *, templates: Templates = None, connection: Connection | None = None,
                    extra_roles: tuple[str, ...] = (), target: TargetContext | None = None) -> RenderedScript:
    """The read-only script that reads what verify, scope preview and export need (one round trip). Its templates
    get ``target`` like those of the other modes."""
    environment = make_environment(playbook.platform, templates)
    about = _about(playbook, target)
    roles = snapshot_roles(playbook, extra_roles)
    scopes = [{"name": s.name, "filter": s.filter_text() if s.filter is None else s.filter,
               "recipient_root": s.recipient_root} for s in playbook.scopes]
    authorizations = [{"app_id": app.app_id, "scope": a.scope} for a in playbook.application_role_assignments
                      if a.scope and (app := playbook.application_named(a.application))]
    with template_errors(playbook.platform), budget():
        block = render_text(environment.get_template("snapshot.ps1.j2"),
                            roles=roles, scopes=scopes, permissions=True, platform=playbook.platform,
                            authorizations=authorizations, **about)
        text = render_text(environment.get_template(SCRIPT_TEMPLATE),
                           playbook_name=playbook.name, toolkit_version=toolkit.__version__,
                           digest=desired_state_digest(playbook, []), state="facts", blocks=[PowerShell(block)],
                           resource_count=0, connection=connection or Connection(), **about)
    return RenderedScript(text, hashlib.sha256(text.encode()).hexdigest(), [], "facts")
