"""The reviewer workflow: rendered scripts as committed artifacts, their diffs, and applies pinned to what was reviewed.

A render set is one script per playbook × target, named ``<playbook stem>.<target>.ps1``, and a ``manifest.json``
(script → sha256, playbook and its sha256, target; the toolkit version; sorted keys, LF line ends, paths as given),
so the same inputs give the same bytes on any machine and committing the folder gives clean diffs.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import toolkit
from toolkit.errors import ExkitError
from toolkit.inventory import DEFAULT_TARGET, ResolvedTarget, choose_targets, resolve_target
from toolkit.playbook.load import peek_platform
from toolkit.render.engine import RenderedScript, render_script
from toolkit.resources import Resource
from toolkit.safe_paths import remove_in, require_file_name, write_in
from toolkit.workflow import load_for_target, template_context
from toolkit.verify.access import ALL_MAILBOXES

MANIFEST = "manifest.json"
BOM = b"\xef\xbb\xbf"


class ReviewError(ExkitError):
    pass


@dataclass(frozen=True)
class Rendered:
    file: str
    playbook: str
    target: str
    playbook_sha256: str
    script: RenderedScript


def _posix(path: Path) -> str:
    return str(PurePosixPath(*path.parts)) if not path.is_absolute() else path.as_posix()


def render_one(playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
               templates: Path | None) -> Rendered:
    require_file_name(target.name, "the target name")
    model, _ = load_for_target(playbook, target, cli_vars)
    script = render_script(model, templates=target.template_layers(templates), connection=target.target.connection(),
                           target=template_context(model, target, cli_vars))
    return Rendered(f"{playbook.stem}.{target.name}.ps1", _posix(playbook), target.name,
                    hashlib.sha256(playbook.read_bytes()).hexdigest(), script)


def render_set(playbooks: list[Path], inventory: Path | None, target_names: list[str] | None,
               cli_vars: dict[str, Any], templates: Path | None, limit: str | None = None) -> list[Rendered]:
    stems = [p.stem for p in playbooks]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ReviewError(f"playbooks with the same file name would share script names: {', '.join(duplicates)}")
    rendered = []
    for playbook in playbooks:
        targets = choose_targets(inventory, target_names, peek_platform(playbook), limit)
        if not targets:
            raise ReviewError(f"no target in {inventory} is of the platform of {playbook}")
        rendered += [render_one(playbook, t, cli_vars, templates) for t in targets]
    return sorted(rendered, key=lambda r: r.file)


def manifest_text(rendered: list[Rendered], inventory: Path | None, templates: Path | None) -> str:
    data = {
        "toolkit_version": toolkit.__version__,
        "inventory": _posix(inventory) if inventory else None,
        "templates": _posix(templates) if templates else None,
        "scripts": {r.file: {"playbook": r.playbook, "playbook_sha256": r.playbook_sha256, "target": r.target,
                             "sha256": r.script.sha256} for r in rendered},
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_set(out: Path, rendered: list[Rendered], inventory: Path | None, templates: Path | None) -> list[str]:
    """Write the scripts and the manifest into ``out`` (only there: no file name leaves it, no symbolic link is
    followed) and remove the scripts this render no longer produces. Returns the removed file names."""
    for item in rendered:
        write_in(out, item.file, BOM + item.script.text.encode("utf-8"))
    write_in(out, MANIFEST, manifest_text(rendered, inventory, templates).encode("utf-8"))
    produced = {item.file for item in rendered}
    stale = sorted(p.name for p in out.glob("*.ps1") if p.name not in produced)
    for name in stale:
        remove_in(out, name)
    return stale


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewError(f"{path} does not exist: render the reviewed scripts with exkit render … --out "
                          f"{directory}") from None
    except ValueError:
        raise ReviewError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("scripts"), dict):
        raise ReviewError(f"{path} is not an exkit manifest")
    return data


def check(directory: Path, cli_vars: dict[str, Any]) -> list[str]:
    """Problems that make the committed scripts stale relative to the playbooks (empty: up to date)."""
    manifest = read_manifest(directory)
    inventory = Path(manifest["inventory"]) if manifest.get("inventory") else None
    templates = Path(manifest["templates"]) if manifest.get("templates") else None
    problems = []
    by_playbook: dict[str, list[str]] = {}
    for file, entry in sorted(manifest["scripts"].items()):
        by_playbook.setdefault(entry["playbook"], []).append(entry["target"])
    expected: dict[str, Rendered] = {}
    for playbook, targets in sorted(by_playbook.items()):
        if not Path(playbook).exists():
            problems.append(f"{playbook}: the playbook no longer exists")
            continue
        names = None if inventory is None else targets
        for item in render_set([Path(playbook)], inventory, names, cli_vars, templates):
            expected[item.file] = item
    for file, item in sorted(expected.items()):
        committed = directory / file
        entry = manifest["scripts"].get(file, {})
        if not committed.exists():
            problems.append(f"{file}: missing; render it again")
        elif committed.read_bytes().removeprefix(BOM) != item.script.text.encode("utf-8"):
            problems.append(f"{file}: stale — {item.playbook} renders differently now (sha256 "
                            f"{item.script.sha256}, committed {hashlib.sha256(committed.read_bytes().removeprefix(BOM)).hexdigest()})")
        elif entry.get("sha256") != item.script.sha256:
            problems.append(f"{file}: the manifest's sha256 does not match the script")
    extra = sorted(p.name for p in directory.glob("*.ps1") if p.name not in expected)
    problems += [f"{name}: not in the manifest" for name in extra]
    if manifest.get("toolkit_version") != toolkit.__version__:
        problems.append(f"manifest.json: rendered by exkit {manifest.get('toolkit_version')}, this is "
                        f"{toolkit.__version__}")
    return problems


def reviewed_sha(directory: Path, playbook: Path, target: str, script: RenderedScript) -> str:
    """The reviewed sha256 for this playbook × target; refuse when the script about to run differs from it."""
    manifest = read_manifest(directory)
    wanted = playbook.resolve()
    entry = next((e for e in manifest["scripts"].values()
                  if Path(e["playbook"]).resolve() == wanted and e["target"] == target), None)
    if entry is None:
        raise PinningError(f"{directory / MANIFEST} has no reviewed script for {playbook} on target {target!r}: "
                           "render it into the reviewed folder and have it reviewed")
    if entry["sha256"] != script.sha256:
        raise PinningError(f"refusing to apply: the script for {playbook} on {target!r} is not the reviewed one "
                           f"(reviewed sha256 {entry['sha256']}, now {script.sha256}). The playbook, a template or "
                           "a variable changed since review: render, review and commit again")
    return str(entry["sha256"])


class PinningError(ReviewError):
    exit_code = 3


# ----------------------------------------------------------------------------------------------------- diff
def read_version(spec: str) -> tuple[str, str]:
    """A playbook given as a path, or as REV:path (a git revision). Returns (label, text)."""
    path = Path(spec)
    if path.exists():
        return spec, path.read_text(encoding="utf-8")
    if ":" in spec:
        revision, _, file = spec.partition(":")
        # --end-of-options: a revision such as --output=FILE is a revision, never an option of git
        result = subprocess.run(["git", "show", "--end-of-options", f"{revision}:{file}"], capture_output=True,
                                text=True)
        if result.returncode == 0:
            return spec, result.stdout
        raise ReviewError(f"cannot read {file} at git revision {revision}: {result.stderr.strip()}")
    raise ReviewError(f"{spec} is neither a file nor REV:path")


def unified(old_label: str, old: str, new_label: str, new: str) -> list[str]:
    return list(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                     fromfile=old_label, tofile=new_label))


GRANT_KINDS = ("RoleGroup", "ManagementRoleAssignment", "ApplicationRoleAssignment")


def grant_text(resource: Resource) -> str:
    """What a grant gives to whom, where: role, assignee and scope; an organisation-wide one as ALL MAILBOXES."""
    f = resource.fields
    where = f"scope {f['scope']!r}" if f.get("scope") else ALL_MAILBOXES
    if resource.kind == "RoleGroup":
        members = ", ".join(f["members"]) or "no members"
        return f"{', '.join(f['roles'])} for {members} on {where}"
    if resource.kind == "ManagementRoleAssignment":
        kind = "user" if f["assignee_kind"] == "User" else "group"
        return f"{f['role']} for {kind} {f['assignee']} on {where}"
    if resource.kind == "ApplicationRoleAssignment":
        return f"{f['role']} for application {f['application']} on {where}"
    if resource.kind == "MailboxPermission":
        return f"{', '.join(f['access_rights'])} on {f['mailbox']} for {f['user']}"
    if resource.kind == "ApplicationAccessPolicy":
        return f"{f['access_right']} for app {f['app_id']} to members of {f['group']}"
    return ""


def summarize(old: list[Resource], new: list[Resource]) -> list[str]:
    """Resource-level changes between two desired states, in words a reviewer reads first. Every grant added or
    removed says its role, assignee and scope; an organisation-wide scope reads ALL MAILBOXES."""
    before = {r.key: r for r in old}
    after = {r.key: r for r in new}
    lines = []
    for key in list(dict.fromkeys([*before, *after])):
        a, b = before.get(key), after.get(key)
        if a is None and b is not None:
            detail = grant_text(b)
            lines.append(f"+ {b.kind} {b.name!r} added" + (f": {detail}" if detail else ""))
        elif b is None and a is not None:
            detail = grant_text(a)
            lines.append(f"- {a.kind} {a.name!r} removed" + (f": {detail}" if detail else ""))
        elif a is not None and b is not None and a.fields != b.fields:
            for field in sorted(set(a.fields) | set(b.fields)):
                x, y = a.fields.get(field), b.fields.get(field)
                if x == y:
                    continue
                if field == "scope" and b.kind in GRANT_KINDS:
                    lines.append(f"~ {b.kind} {b.name!r}: scope changed: {repr(x) if x else ALL_MAILBOXES} → "
                                 f"{repr(y) if y else ALL_MAILBOXES}")
                    continue
                if isinstance(x, list) or isinstance(y, list):
                    added = [v for v in (y or []) if v not in (x or [])]
                    removed = [v for v in (x or []) if v not in (y or [])]
                    noun = field[:-1] if field.endswith("s") else field
                    lines += [f"~ {b.kind} {b.name!r}: {noun} added: {v}" for v in added]
                    lines += [f"~ {b.kind} {b.name!r}: {noun} removed: {v}" for v in removed]
                else:
                    lines.append(f"~ {b.kind} {b.name!r}: {field} changed: {x!r} → {y!r}")
    return lines


def default_target(platform: str) -> ResolvedTarget:
    return resolve_target(None, DEFAULT_TARGET, platform)
