"""The reviewer workflow: rendered scripts as committed artifacts, their diffs, and applies pinned to what was reviewed.

A render set holds every script exkit can send for each playbook × target: ``<playbook>.<target>.ps1`` (apply) and
``.facts.ps1`` (plan's read), ``.destroy.ps1``, ``.snapshot.ps1`` (verify, scope preview, the report). Its
``manifest.json`` lists each script's sha256, mode, playbook, the target it is bound to (name, platform, endpoint,
inventory) and the hash of each input (playbook, variables, templates, inventory, target); paths are relative to the
repository root. Sorted keys and LF line ends: the same inputs give the same bytes on any machine, and committing
the folder gives clean diffs. Applying pinned to a reviewed folder: toolkit/render/pin.py.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import toolkit
from toolkit.errors import ExkitError
from toolkit.inventory import (
    DEFAULT_TARGET,
    InventoryError,
    ResolvedTarget,
    choose_targets,
    resolve_target,
    select_targets,
)
from toolkit.playbook.load import peek_platform
from toolkit.render.engine import (
    MODES,
    Mode,
    RenderedScript,
    builtin_templates_dir,
    render_mode,
    template_files,
    templates_digest,
)
from toolkit.resources import Resource
from toolkit.resources.base import ALL_MAILBOXES, GRANT_KINDS, grant_text
from toolkit.safe_paths import file_name_problem, remove_in, require_file_name, write_in
from toolkit.workflow import load_for_target, template_context

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
BOM = b"\xef\xbb\xbf"


class ReviewError(ExkitError):
    pass


class PinningError(ReviewError):
    exit_code = 3


@dataclass(frozen=True)
class Rendered:
    """One reviewed script: which mode of which playbook for which target (bound by name, platform, endpoint and
    inventory), the hash of each input it was rendered from, and the script."""

    file: str
    mode: Mode
    playbook: str  # relative to the manifest's root
    target: str
    platform: str
    endpoint: str
    inventory: str | None
    playbook_sha256: str
    inputs: dict[str, str]
    script: RenderedScript

    def entry(self) -> dict[str, Any]:
        return {"mode": self.mode, "playbook": self.playbook, "playbook_sha256": self.playbook_sha256,
                "target": self.target, "platform": self.platform, "endpoint": self.endpoint,
                "inventory": self.inventory, "inputs": self.inputs, "sha256": self.script.sha256}


def script_file(stem: str, target: str, mode: str) -> str:
    """``<playbook>.<target>.ps1`` for the apply script a reviewer reads first; ``.<mode>.ps1`` for the others."""
    return f"{stem}.{target}.ps1" if mode == "apply" else f"{stem}.{target}.{mode}.ps1"


# ------------------------------------------------------------------------------------------ paths and git
def git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True)


def repository_root(path: Path) -> Path | None:
    """The git work tree holding ``path`` (or its nearest existing parent), or None."""
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    result = git(probe if probe.is_dir() else probe.parent, "rev-parse", "--show-toplevel")
    return Path(result.stdout.decode().strip()).resolve() if result.returncode == 0 else None


def root_for(folder: Path) -> tuple[Path, str]:
    """Paths in a manifest are relative to the repository root (or, outside git, to the reviewed folder), so
    check and apply give the same answer from any working directory."""
    repository = repository_root(folder)
    return (repository, "repository") if repository else (folder.resolve(), "folder")


def manifest_root(folder: Path, manifest: dict[str, Any]) -> Path:
    if manifest.get("root") == "repository":
        repository = repository_root(folder)
        if repository is None:
            raise ReviewError(f"{folder / MANIFEST} has paths relative to a git repository, but {folder} is not in "
                              "one")
        return repository
    return folder.resolve()


def relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root)).as_posix()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_sha256(value: Any) -> str:
    return _sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode())


def inputs_of(playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any], layers: list[Path],
              platform: str, root: Path | None = None) -> dict[str, str]:
    """The hash of each input of a render, so that a refusal names what changed — down to each template file
    (``template <file>``: an override by its path from ``root``, a built-in as ``built-in <folder>/<name>``)."""
    inputs = {
        "playbook": _sha256(playbook.read_bytes()),
        "variables": _json_sha256({**target.variables, **cli_vars}),
        "templates": templates_digest(platform, layers),
        "inventory": _sha256(target.inventory.read_bytes()) if target.inventory else "none",
        "target": _json_sha256({"name": target.name, "platform": target.target.platform, "endpoint": target.endpoint,
                                "group": target.group}),
    }
    builtin = builtin_templates_dir()
    for _, path in template_files(platform, layers):
        shown = (f"built-in {path.parent.name}/{path.name}" if path.parent.parent == builtin
                 else relative(path, root) if root is not None else path.as_posix())
        inputs[f"template {shown}"] = _sha256(path.read_bytes())
    return inputs


def changed_inputs(reviewed: dict[str, Any], now: dict[str, str]) -> str:
    reviewed = reviewed or {}
    differing = [f"the {name}" for name in ("playbook", "variables", "inventory", "target")
                 if reviewed.get(name) != now.get(name)]
    if reviewed.get("templates") != now.get("templates"):
        files = sorted({k for k in (*reviewed, *now) if k.startswith("template ")
                        and reviewed.get(k) != now.get(k)})
        named = [f.removeprefix("template ") for f in files] if any(k.startswith("template ") for k in reviewed) else []
        differing.append("the templates" + (f" ({', '.join(named)})" if named else ""))
    return ("changed since review: " + ", ".join(differing) if differing
            else "no input changed: this exkit renders differently from the one that rendered the reviewed folder")


# ------------------------------------------------------------------------------------------ render sets
def render_one(playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any], templates: Path | None,
               root: Path, modes: tuple[Mode, ...] = MODES) -> list[Rendered]:
    """The scripts of ``modes`` for one playbook × target, rendered exactly as the commands send them."""
    require_file_name(target.name, "the target name")
    model, _ = load_for_target(playbook, target, cli_vars)
    layers = target.template_layers(templates)
    context = template_context(model, target, cli_vars)
    inputs = inputs_of(playbook, target, cli_vars, layers, model.platform, root)
    inventory = relative(target.inventory, root) if target.inventory else None
    return [Rendered(script_file(playbook.stem, target.name, mode), mode, relative(playbook, root), target.name,
                     target.target.platform, target.endpoint, inventory, inputs["playbook"], inputs,
                     render_mode(model, mode, templates=layers, connection=target.target.connection(),
                                 target=context))
            for mode in modes]


def render_set(playbooks: list[Path], inventory: Path | None, target_names: list[str] | None,
               cli_vars: dict[str, Any], templates: Path | None, limit: str | None = None,
               out: Path | None = None) -> list[Rendered]:
    """Every mode's script of every playbook × target (``out``: the reviewed folder, whose root paths are relative
    to)."""
    root = root_for(out)[0] if out is not None else Path.cwd()
    stems = [p.stem for p in playbooks]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ReviewError(f"playbooks with the same file name would share script names: {', '.join(duplicates)}")
    rendered: list[Rendered] = []
    for playbook in playbooks:
        targets = choose_targets(inventory, target_names, peek_platform(playbook), limit)
        if not targets:
            raise ReviewError(f"no target in {inventory} is of the platform of {playbook}")
        for target in targets:
            rendered += render_one(playbook, target, cli_vars, templates, root)
    files: dict[str, Rendered] = {}
    for item in rendered:
        if item.file in files:
            raise ReviewError(f"two scripts would be named {item.file} (target {files[item.file].target!r}, mode "
                              f"{files[item.file].mode}, and target {item.target!r}, mode {item.mode}): rename "
                              "one of the targets")
        files[item.file] = item
    return sorted(rendered, key=lambda r: r.file)


def manifest_text(rendered: list[Rendered], inventory: Path | None, templates: Path | None, out: Path) -> str:
    root, kind = root_for(out)
    data = {
        "format": MANIFEST_FORMAT,
        "toolkit_version": toolkit.__version__,
        "root": kind,
        "inventory": relative(inventory, root) if inventory else None,
        "templates": relative(templates, root) if templates else None,
        "playbook_folders": complete_folders(rendered, root),
        "scripts": {r.file: r.entry() for r in rendered},
    }
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def complete_folders(rendered: list[Rendered], root: Path) -> list[str]:
    """The folders every playbook of which this render covers (``render playbooks/*.yaml``): check then fails for a
    playbook added there later without a reviewed script. A deliberate subset records no folder."""
    covered = {(root / r.playbook).resolve() for r in rendered}
    folders = sorted({PurePosixPath(r.playbook).parent.as_posix() for r in rendered})
    return [folder for folder in folders
            if all(path.resolve() in covered for path in _playbooks_in(root / folder))]


def _playbooks_in(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.glob("*.y*ml")) if path.suffix in (".yaml", ".yml") and _is_playbook(path)]


def write_set(out: Path, rendered: list[Rendered], inventory: Path | None, templates: Path | None) -> list[str]:
    """Write the scripts and the manifest into ``out`` (only there: no file name leaves it, no symbolic link is
    followed) and remove the scripts this render no longer produces. Returns the removed file names."""
    for item in rendered:
        write_in(out, item.file, BOM + item.script.text.encode("utf-8"))
    write_in(out, MANIFEST, manifest_text(rendered, inventory, templates, out).encode("utf-8"))
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
    if data.get("format") != MANIFEST_FORMAT:
        raise ReviewError(f"{path} is from an older exkit (it pins apply scripts only): render it again with "
                          f"exkit render … --out {directory}, review and commit")
    return data


def reviewed_bytes(directory: Path, file: str) -> bytes | None:
    """A reviewed script's bytes as they would run (the byte-order mark dropped), or None when it is missing."""
    if file_name_problem(file) is not None:
        return None
    path = directory / file
    if path.is_symlink() or not path.is_file():
        return None
    return path.read_bytes().removeprefix(BOM)


def check(directory: Path, cli_vars: dict[str, Any], names: list[str] | None = None,
          limit: str | None = None) -> list[str]:
    """Problems that make the committed scripts stale relative to the playbooks (empty: up to date), each starting
    with the file it is about. ``names`` / ``limit`` (patterns on target or group names): only those targets'
    scripts."""
    manifest = read_manifest(directory)
    root = manifest_root(directory, manifest)
    inventory = root / manifest["inventory"] if manifest.get("inventory") else None
    templates = root / manifest["templates"] if manifest.get("templates") else None
    chosen = _chosen_targets(inventory, names, limit)
    problems = []
    by_playbook: dict[str, list[str]] = {}
    for file, entry in sorted(manifest["scripts"].items()):
        if chosen is not None and entry["target"] not in chosen:
            continue
        targets = by_playbook.setdefault(entry["playbook"], [])
        if entry["target"] not in targets:
            targets.append(entry["target"])
    expected: dict[str, Rendered] = {}
    for playbook, targets in sorted(by_playbook.items()):
        path = root / playbook
        if not path.exists():
            problems.append(f"{_shown(path)}: the playbook no longer exists")
            continue
        for name in targets if inventory is not None else [None]:
            try:
                for item in render_set([path], inventory, [name] if name else None, cli_vars, templates,
                                       out=directory):
                    expected[item.file] = item
            except InventoryError as exc:
                problems.append(f"{directory / script_file(path.stem, str(name), 'apply')}: {exc}")
    for file, item in sorted(expected.items()):
        entry = manifest["scripts"].get(file) or {}
        committed = reviewed_bytes(directory, file)
        if committed is None:
            problems.append(f"{directory / file}: missing; render it again")
        elif committed != item.script.text.encode("utf-8"):
            problems.append(f"{directory / file}: stale — {_shown(root / item.playbook)} renders differently now (sha256 "
                            f"{item.script.sha256}, committed {_sha256(committed)}; "
                            f"{changed_inputs(entry.get('inputs', {}), item.inputs)})")
        elif entry.get("sha256") != item.script.sha256:
            problems.append(f"{directory / file}: the manifest's sha256 does not match the script")
        elif (entry.get("platform"), entry.get("endpoint")) != (item.platform, item.endpoint):
            problems.append(f"{directory / file}: reviewed for {entry.get('target')!r} at {entry.get('endpoint')}, which now "
                            f"is {item.endpoint}")
    extra = sorted(p.name for p in directory.glob("*.ps1") if p.name not in expected)
    problems += [f"{directory / name}: not in the manifest" for name in extra if name not in manifest["scripts"]]
    covered = {(root / p).resolve() for p in by_playbook}
    for folder in (manifest.get("playbook_folders") or []) if chosen is None else []:
        for path in _playbooks_in(root / folder):
            if path.resolve() not in covered:
                problems.append(f"{_shown(path)}: a playbook with no reviewed script: render it into {directory}")
    if manifest.get("toolkit_version") != toolkit.__version__:
        problems.append(f"{directory / MANIFEST}: rendered by exkit {manifest.get('toolkit_version')}, this is "
                        f"{toolkit.__version__}")
    return problems


def _chosen_targets(inventory: Path | None, names: list[str] | None, limit: str | None) -> set[str] | None:
    """The target names -t / --limit keep (None: all of the manifest's)."""
    if not names and limit is None:
        return None
    if limit is None:
        return set(names or [])
    if inventory is None:
        raise ReviewError("--limit selects targets of the reviewed folder's inventory, and its manifest names none")
    return {t.name for t in select_targets(inventory, limit)} | set(names or [])


def _shown(path: Path) -> str:
    """A path (absolute: under the manifest's resolved root) as a user in the current directory would type it."""
    return os.path.relpath(path)


def _is_playbook(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith("exkit:") for line in text.splitlines())


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
