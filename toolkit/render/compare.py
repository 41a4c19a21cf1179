"""``exkit diff``: two versions of playbooks rendered and compared — a resource summary, the unified diff of the
scripts, and the access impact (who gains or loses which mailboxes).

With ``--base REV`` the base side is the whole tree of that git revision (``git archive``), so it renders with the
base revision's playbook, inventory, variables and template overrides: a branch that only changes the inventory or
a template shows the difference. Playbooks added or deleted since the base are shown as such. Errors (an unknown
revision, a playbook in neither version, an invalid playbook) raise :class:`DiffError` (exit 2); "they differ" is
exit 1 — the two never share a code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from toolkit.errors import ExkitError
from toolkit.inventory import resolve_target
from toolkit.playbook.diagnostics import PlaybookError
from toolkit.playbook.load import peek_platform
from toolkit.playbook.model import Playbook
from toolkit.playbook.validate import require_playbook
from toolkit.render.engine import RenderError, render_script
from toolkit.render.review import manifest_root, read_manifest, read_version, summarize, unified
from toolkit.targets.base import TargetError
from toolkit.verify import impact as impacts
from toolkit.verify.access import Organisation
from toolkit.workflow import template_context

GIT_TIMEOUT = 120


class DiffError(ExkitError):
    exit_code = 2


@dataclass
class Side:
    label: str
    path: Path | None  # None: the playbook does not exist in this version
    inventory: Path | None = None
    templates: Path | None = None


@dataclass
class Compared:
    old: Side
    new: Side
    status: str  # same | changed | added | deleted
    summary: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    impact: impacts.Impact | None = None

    @property
    def differ(self) -> bool:
        return self.status != "same"

    @property
    def title(self) -> str:
        return self.new.label if self.new.path is not None else self.old.label

    def as_dict(self) -> dict[str, Any]:
        return {"old": self.old.label, "new": self.new.label, "status": self.status, "summary": self.summary,
                "diff": "".join(self.diff), "impact": self.impact.as_dict() if self.impact else None}


# ----------------------------------------------------------------------------------------------------- git
def _git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], capture_output=True, cwd=cwd, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DiffError(f"cannot run git: {exc}") from None


@contextmanager
def base_tree(revision: str) -> Iterator[tuple[Path, Path]]:
    """The repository's tree at ``revision`` in a temporary folder: (its root, the current directory's place in it)."""
    if revision.startswith("-") or not revision.strip():
        raise DiffError(f"{revision!r} is not a git revision")
    top = _git(["rev-parse", "--show-toplevel"])
    if top.returncode != 0:
        raise DiffError(f"--base needs a git repository: {top.stderr.decode(errors='replace').strip()}")
    root = Path(top.stdout.decode().strip()).resolve()
    commit = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"])
    if commit.returncode != 0:
        raise DiffError(f"the base revision {revision!r} does not exist in this repository (fetch it first, e.g. "
                        f"git fetch origin {revision.removeprefix('origin/')})")
    archive = _git(["archive", "--format=tar", commit.stdout.decode().strip()], cwd=root)
    if archive.returncode != 0:
        raise DiffError(f"cannot read revision {revision!r}: {archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="exkit-base-") as scratch:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(scratch, filter="data")
            else:  # Python < 3.11.4: git archive writes plain files and folders under the root only
                tar.extractall(scratch)  # noqa: S202
        here = Path.cwd().resolve()
        yield Path(scratch), Path(scratch) / (here.relative_to(root) if here.is_relative_to(root) else ".")


def _in_tree(tree: tuple[Path, Path], path: Path) -> Path:
    root, here = tree
    if path.is_absolute():
        top = Path(_git(["rev-parse", "--show-toplevel"]).stdout.decode().strip()).resolve()
        resolved = path.resolve()
        return root / resolved.relative_to(top) if resolved.is_relative_to(top) else path
    return here / path


def _is_playbook(path: Path) -> bool:
    try:
        data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except Exception:  # not YAML: not a playbook
        return False
    return isinstance(data, dict) and "exkit" in data


def base_pairs(tree: tuple[Path, Path], revision: str, playbooks: list[Path], inventory: Path | None,
               templates: Path | None) -> list[tuple[Side, Side]]:
    """Each playbook against its version at the base; playbooks deleted since the base (in the same folders) too."""
    base_inventory = _in_tree(tree, inventory) if inventory else None
    if base_inventory is not None and not base_inventory.exists():
        base_inventory = inventory  # the inventory is new on this side: the base renders with the current one
    base_templates = _in_tree(tree, templates) if templates else None
    if base_templates is not None and not base_templates.exists():
        base_templates = templates
    pairs = []
    seen = set()
    for path in playbooks:
        old = _in_tree(tree, path)
        if not path.exists() and not old.exists():
            raise DiffError(f"{path} exists neither on disk nor at {revision}")
        seen.add(path.as_posix())
        pairs.append((Side(f"{revision}:{path.as_posix()}", old if old.exists() else None, base_inventory,
                           base_templates),
                      Side(path.as_posix(), path if path.exists() else None, inventory, templates)))
    for folder in sorted({path.parent for path in playbooks}, key=str):
        base_folder = _in_tree(tree, folder)
        for old in sorted([*base_folder.glob("*.yaml"), *base_folder.glob("*.yml")]):
            current = folder / old.name
            if current.as_posix() in seen or current.exists() or not _is_playbook(old):
                continue
            pairs.append((Side(f"{revision}:{current.as_posix()}", old, base_inventory, base_templates),
                          Side(current.as_posix(), None, inventory, templates)))
    return pairs


def file_pair(old_spec: str, new_spec: str, scratch: Path, inventory: Path | None,
              templates: Path | None) -> tuple[Side, Side]:
    """OLD NEW as files or REV:path versions (both rendered with the current inventory and templates)."""
    sides = []
    for index, spec in enumerate((old_spec, new_spec)):
        try:
            label, text = read_version(spec)
        except ExkitError as exc:
            raise DiffError(str(exc)) from None
        copy = scratch / str(index) / Path(spec.rpartition(":")[2] or spec).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text, encoding="utf-8")
        sides.append(Side(label, copy, inventory, templates))
    return sides[0], sides[1]


# ----------------------------------------------------------------------------------------------------- compare
def _load(side: Side, target: str | None, cli_vars: dict[str, Any]) -> tuple[Playbook, str, list[Any]]:
    assert side.path is not None
    try:
        resolved = resolve_target(side.inventory, target, peek_platform(side.path))
        model, _ = require_playbook(side.path, {**resolved.variables, **cli_vars})
        script = render_script(model, templates=resolved.template_layers(side.templates),
                               connection=resolved.target.connection(),
                               target=template_context(model, resolved, cli_vars))
    except PlaybookError:
        raise
    except (ExkitError, RenderError, TargetError) as exc:
        raise DiffError(f"{side.label}: {exc}") from None
    return model, script.text, script.resources


def compare(old: Side, new: Side, target: str | None, cli_vars: dict[str, Any],
            recipients: Organisation | None) -> Compared:
    models: list[Playbook | None] = []
    texts, resources = [], []
    for side in (old, new):
        if side.path is None:
            models.append(None)
            texts.append("")
            resources.append([])
            continue
        model, text, found = _load(side, target, cli_vars)
        models.append(model)
        texts.append(text)
        resources.append(found)
    status = ("added" if old.path is None else "deleted" if new.path is None else
              "same" if texts[0] == texts[1] else "changed")
    result = Compared(old, new, status)
    if status == "added":
        result.summary.append(f"+ playbook {new.label} added (not at the base)")
    elif status == "deleted":
        result.summary.append(f"- playbook {old.label} deleted")
    if status != "same":
        result.summary += summarize(resources[0], resources[1])
        result.diff = unified(old.label if old.path else "/dev/null", texts[0],
                              new.label if new.path else "/dev/null", texts[1])
    if recipients is not None:
        result.impact = impacts.change_impact(recipients, models[0], models[1])
        result.impact.source = recipients.source
    return result


def _reviewed_entries(directory: Path) -> tuple[Path, Path | None, Path | None, list[tuple[str, str]]]:
    """A reviewed folder's root, inventory, templates and (playbook, target) pairs, as its manifest records them."""
    manifest = read_manifest(directory)
    root = manifest_root(directory, manifest)
    inventory = root / manifest["inventory"] if manifest.get("inventory") else None
    templates = root / manifest["templates"] if manifest.get("templates") else None
    return root, inventory, templates, sorted({(e["playbook"], e["target"]) for e in manifest["scripts"].values()})


def reviewed_folder_impact(directory: Path, recipients: Organisation, cli_vars: dict[str, Any],
                           base: str | None = None) -> list[Compared]:
    """``exkit check --fail-on-widening``: the access impact of each playbook × target of a reviewed folder —
    against its version at ``base``, or without one against nothing (every mailbox a principal reaches outside the
    intent is then a widening)."""
    root, inventory, templates, entries = _reviewed_entries(directory)
    results = []
    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(base_tree(base)) if base else None
        for playbook, target in entries:
            path = root / playbook
            if not path.exists():
                continue  # check reports it
            name = target if inventory is not None else None
            if tree is not None:
                shown = Path(os.path.relpath(path, Path.cwd()))
                for old, new in base_pairs(tree, base or "", [shown], inventory, templates)[:1]:
                    results.append(compare(old, new, name, cli_vars, recipients))
            else:
                results.append(compare(Side("(nothing)", None), Side(playbook, path, inventory, templates), name,
                                       cli_vars, recipients))
    return results


ACCESS_FILE = "access.md"
_RECIPIENTS_LINE = re.compile(r"^Recipients: `(?P<path>[^`]+)` \(sha256 (?P<sha>[0-9a-f]{64})\)$", re.M)


def access_review(directory: Path, recipients: Path, cli_vars: dict[str, Any]) -> str:
    """The render set's review file: the effective access each playbook × target of a reviewed folder grants, over
    a recipients export — committed beside the scripts, so a pull request's diff shows who gains or loses which
    mailboxes. Deterministic (the export is named by its path and sha256, no dates)."""
    from toolkit.verify.access import from_recipients, read_recipients_csv

    root, inventory, templates, entries = _reviewed_entries(directory)
    org = from_recipients(read_recipients_csv(recipients))
    shown = os.path.relpath(recipients.resolve(), root) if recipients.resolve().is_relative_to(root) else str(
        recipients)
    lines = ["# Effective access of the reviewed playbooks", "",
             f"Recipients: `{Path(shown).as_posix()}` (sha256 {hashlib.sha256(recipients.read_bytes()).hexdigest()})",
             "", "Written by `exkit render … --out FOLDER --recipients FILE`; `exkit check FOLDER` fails when it is "
             "stale.", ""]
    for playbook, target in entries:
        path = root / playbook
        if not path.exists():
            continue
        model, _, _ = _load(Side(playbook, path, inventory, templates), target if inventory else None, cli_vars)
        found = impacts.change_impact(org, None, model)
        lines += [f"## `{playbook}` on `{target}`", "",
                  "| principal | right | reaches | by type | outside the intent |", "|---|---|---|---|---|"]
        for row in found.rows:
            outside = ", ".join(f"{n} {k}" for k, n in row.finding.counts.items()) if row.finding else ""
            lines.append("| " + " | ".join(c.replace("|", "\\|") or " " for c in (
                row.principal, row.right, row.reach(row.after),
                ", ".join(f"{n} {k}" for k, n in row.counts(row.after).items()) or "none", outside)) + " |")
        if not found.rows:
            lines.append("| (none) | | | | |")
        lines += [""] + [f"> note: {note}" for note in found.notes] + ([""] if found.notes else [])
    return "\n".join(lines)


def access_review_problems(directory: Path, cli_vars: dict[str, Any]) -> list[str]:
    """check: the folder's access.md, when there is one, is what the playbooks and its recipients export give now."""
    path = directory / ACCESS_FILE
    if not path.exists():
        return []
    committed = path.read_text(encoding="utf-8")
    match = _RECIPIENTS_LINE.search(committed)
    if match is None:
        return [f"{path}: not an exkit access review (no 'Recipients:' line): render it again"]
    root = _reviewed_entries(directory)[0]
    recipients = Path(match.group("path"))
    recipients = recipients if recipients.is_absolute() else root / recipients
    if not recipients.exists():
        return [f"{path}: its recipients export {match.group('path')} no longer exists"]
    if access_review(directory, recipients, cli_vars) != committed:
        return [f"{path}: stale — the effective access the playbooks grant over {match.group('path')} differs now: "
                f"render it again with --recipients {match.group('path')}"]
    return []


def markdown(results: list[Compared]) -> str:
    """The whole diff as a pull-request comment: per playbook the summary, the access-impact table and the script
    diff folded away."""
    from toolkit.markdown import escape

    lines = ["## exkit diff", ""]
    if not any(r.differ for r in results):
        lines.append("No differences: the rendered scripts are identical.")
    for result in results:
        if not result.differ and not (result.impact and result.impact.changed):
            continue
        lines += [f"### {escape(result.title)} ({result.status})", ""]
        lines += [f"- {escape(line)}" for line in result.summary]  # names are text, never markup
        lines.append("")
        if result.impact is not None:
            lines.append(impacts.markdown(result.impact, "Access impact").replace("### Access impact",
                                                                                 "#### Access impact", 1))
        if result.diff:
            lines += ["<details><summary>Script diff</summary>", "", "```diff", "".join(result.diff).rstrip("\n"),
                      "```", "", "</details>", ""]
    return "\n".join(lines) + "\n"
