"""Runs pinned to a reviewed folder (``--reviewed``): what was reviewed is all that runs.

Before the first connection, for every target of the run, every script the command will send (plan's facts script,
the apply or destroy script, the snapshot of verify and of the report) is rendered and compared with the reviewed
``.ps1`` file itself — the manifest only says which file belongs to which playbook, mode and target; a manifest whose
sha256 disagrees with its file is refused. The target must be the one the folder was reviewed for (name, platform,
endpoint, inventory). Inside a git repository the reviewed folder must be committed (the commit goes into the run
record), and with ``--reviewed-ref REF`` equal to that ref's version. One refused target refuses the whole run:
nothing runs anywhere. The pin then travels with the target (``ResolvedTarget.pin``), and every script the workflow
sends is checked against it once more just before it is sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.inventory import ResolvedTarget
from toolkit.render.engine import Mode, RenderedScript
from toolkit.render.review import (
    MANIFEST,
    PinningError,
    ReviewError,
    changed_inputs,
    git,
    manifest_root,
    read_manifest,
    relative,
    render_one,
    repository_root,
    reviewed_bytes,
)

VERB_MODES: dict[str, tuple[Mode, ...]] = {
    "plan": ("facts",),
    "apply": ("apply", "facts"),
    "destroy": ("destroy", "facts"),
    "verify": ("snapshot",),
}


@dataclass(frozen=True)
class Pin:
    """The reviewed sha256 of each script mode of one playbook × target, and where they were reviewed."""

    folder: str
    playbook: str
    target: str
    scripts: dict[str, str]
    commit: str | None = None
    ref: str | None = None
    verified: list[str] = field(default_factory=list)

    def require(self, mode: str, script: RenderedScript) -> None:
        """Refuse to send a script that is not the reviewed one of its mode."""
        wanted = self.scripts.get(mode)
        if wanted is None:
            raise PinningError(f"refusing to run: {self.folder} holds no reviewed {mode} script for {self.playbook} "
                               f"on {self.target!r}")
        if wanted != script.sha256:
            raise PinningError(f"refusing to run: the {mode} script for {self.playbook} on {self.target!r} is not "
                               f"the reviewed one (reviewed sha256 {wanted}, now {script.sha256}); nothing was "
                               "sent")

    def record(self) -> dict[str, Any]:
        """What a run record keeps of the pin: the reviewed commit and the pin's status."""
        return {"reviewed_commit": self.commit, "pin": {"status": "verified", "folder": self.folder, "ref": self.ref,
                                                        "scripts": dict(sorted(self.scripts.items()))}}


def _committed(folder: Path, ref: str | None) -> tuple[str | None, Path | None]:
    """Inside git: refuse uncommitted changes in the folder; return HEAD's commit and the repository root."""
    repository = repository_root(folder)
    if repository is None:
        if ref is not None:
            raise PinningError(f"--reviewed-ref {ref}: {folder} is not in a git repository")
        return None, None
    status = git(folder, "status", "--porcelain", "--untracked-files=all", "--", ".")
    if status.returncode != 0:
        raise PinningError(f"cannot read the git status of {folder}: {status.stderr.decode().strip()}")
    changed = [line[3:] for line in status.stdout.decode().splitlines() if line.strip()]
    if changed:
        listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise PinningError(f"refusing to run: the reviewed folder {folder} has uncommitted changes ({listed}): "
                           "reviewed means committed (and approved): commit them through review first")
    head = git(folder, "rev-parse", "HEAD")
    if head.returncode != 0:
        raise PinningError(f"refusing to run: {folder} has no commit yet: reviewed means committed")
    return head.stdout.decode().strip(), repository


def _at_ref(repository: Path, ref: str, path: Path) -> bytes | None:
    shown = git(repository, "show", "--end-of-options", f"{ref}:{relative(path, repository)}")
    return shown.stdout if shown.returncode == 0 else None


def pin_target(reviewed: Path, playbook: Path, target: ResolvedTarget, cli_vars: dict[str, Any],
               templates: Path | None, modes: tuple[Mode, ...], verb: str, *, ref: str | None = None,
               manifest: dict[str, Any] | None = None, commit: str | None = None) -> Pin:
    """Compare every script of ``modes`` for this playbook × target with the reviewed files (nothing is sent)."""
    manifest = manifest if manifest is not None else read_manifest(reviewed)
    root = manifest_root(reviewed, manifest)
    wanted_playbook = relative(playbook, root)
    entries = {e.get("mode"): (file, e) for file, e in manifest["scripts"].items()
               if e.get("playbook") == wanted_playbook and e.get("target") == target.name}
    if not entries:
        raise PinningError(f"{reviewed / MANIFEST} has no reviewed script for {playbook} on target {target.name!r}: "
                           "render it into the reviewed folder and have it reviewed")
    _, first = next(iter(entries.values()))
    inventory = relative(target.inventory, root) if target.inventory else None
    bound = (first.get("platform"), first.get("endpoint"), first.get("inventory"))
    if bound != (target.target.platform, target.endpoint, inventory):
        raise PinningError(f"refusing to {verb}: {reviewed} was reviewed for target {target.name!r} at "
                           f"{first.get('endpoint')} ({first.get('platform')}, inventory {first.get('inventory')}), "
                           f"not {target.endpoint} ({target.target.platform}, inventory {inventory}); nothing ran")
    rendered = {r.mode: r for r in render_one(playbook, target, cli_vars, templates, root, modes)}
    scripts: dict[str, str] = {}
    for mode in modes:
        if mode not in entries:
            raise PinningError(f"refusing to {verb}: {reviewed} holds no reviewed {mode} script for {playbook} on "
                               f"{target.name!r}: render the folder again with this exkit and have it reviewed")
        file, entry = entries[mode]
        data = reviewed_bytes(reviewed, file)
        if data is None:
            raise PinningError(f"refusing to {verb}: the reviewed script {reviewed / file} is missing")
        reviewed_sha = hashlib.sha256(data).hexdigest()
        if entry.get("sha256") != reviewed_sha:
            raise PinningError(f"refusing to {verb}: {reviewed / MANIFEST} says {file} has sha256 "
                               f"{entry.get('sha256')}, but the file has {reviewed_sha}: the manifest does not "
                               "belong to the reviewed scripts; nothing ran")
        now = rendered[mode]
        if now.script.sha256 != reviewed_sha:
            what = "" if mode in ("apply", "destroy") else f"{mode} "
            raise PinningError(f"refusing to {verb}: the {what}script for {playbook} on {target.name!r} is not the "
                               f"reviewed one (reviewed sha256 {reviewed_sha}, now {now.script.sha256}; "
                               f"{changed_inputs(entry.get('inputs', {}), now.inputs)}). Render, review and commit "
                               "again; nothing ran")
        scripts[mode] = reviewed_sha
    return Pin(str(reviewed), str(playbook), target.name, scripts, commit, ref)


def pin_targets(reviewed: Path, playbook: Path, targets: list[ResolvedTarget], cli_vars: dict[str, Any],
                templates: Path | None, verb: str, *, ref: str | None = None, report: bool = False) -> None:
    """Pin every target of a run (``ResolvedTarget.pin``), or refuse the whole run naming every refused target."""
    modes = VERB_MODES[verb] + (("snapshot",) if report else ())
    commit, repository = _committed(reviewed, ref)
    manifest = read_manifest(reviewed)
    if ref is not None and repository is not None:
        for name in [MANIFEST, *sorted(manifest["scripts"])]:
            path = reviewed / name
            if not path.exists() or _at_ref(repository, ref, path) != path.read_bytes():
                raise PinningError(f"refusing to {verb}: {path} is not the same as in {ref} (--reviewed-ref): only "
                                   f"scripts reviewed into {ref} may run; nothing ran")
    refusals: list[str] = []
    for target in targets:
        try:
            target.pin = pin_target(reviewed, playbook, target, cli_vars, templates, modes, verb, ref=ref,
                                    manifest=manifest, commit=commit)
        except ReviewError as exc:
            refusals.append(str(exc) if len(targets) == 1 else f"{target.name}: {exc}")
    if refusals:
        for target in targets:
            target.pin = None
        if len(targets) == 1:
            raise PinningError(refusals[0])
        raise PinningError(f"refusing to {verb} on {len(targets)} target(s): {len(refusals)} are not the reviewed "
                           "ones; nothing ran anywhere:\n  " + "\n  ".join(refusals))
