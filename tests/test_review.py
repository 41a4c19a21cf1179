"""Reviewer workflow: render sets and manifests, diffs, checks, and applies pinned to the reviewed scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation


def render_set(cli, out, *extra):
    """Every playbook of the folder (check fails for a playbook in the folder's scope with no reviewed script), but
    not the hosting group's tenants: their boundaries refuse these organisation-wide examples (see test_boundary).
    The Exchange Online ones and the hosted tenant's leave (they need contoso-online's certificate, or a tenant)."""
    for other in [*Path("playbooks").glob("online-*.yaml"), Path("playbooks/hosted-tenant.yaml")]:
        other.unlink(missing_ok=True)
    result = cli("render", *sorted(str(p) for p in Path("playbooks").glob("*.yaml")), "-i", "inventory.yaml",
                 "--out", out, "--limit", "sandbox,loopback,ex01,hoster-mgmt", *extra)
    assert result.exit_code == 0, result.stderr
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_manifest_and_scripts_are_stable(cli, workdir):
    first = render_set(cli, workdir / "a")
    second = render_set(cli, workdir / "b")
    assert first == second
    assert "classic.ex01.ps1" in first and "direct-assignment.loopback.ps1" in first
    assert not any(".contoso-online." in name for name in first)  # other platform
    manifest = first["manifest.json"].decode()
    data = json.loads(manifest)
    assert manifest == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert str(workdir) not in manifest  # relative paths only: the same on every machine
    # outside a git repository relative to the reviewed folder (inside one, to its root: see test_security.py)
    assert data["root"] == "folder"
    assert data["scripts"]["classic.ex01.ps1"]["playbook"] == "../playbooks/classic.yaml"
    assert {e["mode"] for e in data["scripts"].values()} == {"facts", "apply", "destroy", "snapshot"}
    assert data["scripts"]["classic.ex01.facts.ps1"]["endpoint"] == "https://ex01.contoso.com:5986/wsman"
    assert all(b"\r" not in content for content in first.values())
    import hashlib

    for name, entry in data["scripts"].items():
        assert hashlib.sha256(first[name].removeprefix(b"\xef\xbb\xbf")).hexdigest() == entry["sha256"]


def test_check_passes_then_detects_stale_scripts(cli, workdir):
    out = workdir / "reviewed"
    render_set(cli, out)
    assert cli("check", out).exit_code == 0
    playbook = workdir / "playbooks" / "classic.yaml"
    playbook.write_text(playbook.read_text().replace("rooms: true", "rooms: true\n    office: Berlin"))
    (out / "extra.ps1").write_text("# hand-made\n")
    (out / "direct-assignment.sandbox.ps1").unlink()
    result = cli("check", out)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    for name in ("classic.ex01.ps1", "classic.sandbox.ps1", "classic.loopback.ps1"):
        assert any(line.startswith(f"{out}/{name}: stale — playbooks/classic.yaml renders differently now")
                   for line in lines)
    assert f"{out}/direct-assignment.sandbox.ps1: missing; render it again" in lines
    assert f"{out}/extra.ps1: not in the manifest" in lines
    assert not any("direct-assignment.ex01.ps1" in line for line in lines)


def test_check_detects_a_hand_edited_script(cli, workdir):
    out = workdir / "reviewed"
    render_set(cli, out)
    script = out / "classic.sandbox.ps1"
    script.write_bytes(script.read_bytes().replace(b"'Room mailboxes'", b"'All mailboxes'"))
    result = cli("check", out)
    assert result.exit_code == 1
    assert "classic.sandbox.ps1: stale" in result.stderr


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("change, summary", [
    (("    rooms: true", "    rooms: true\n    office: Berlin"),
     ["~ ManagementScope 'Room mailboxes': filter changed: \"RecipientTypeDetails -eq 'RoomMailbox'\" → "
      "\"RecipientTypeDetails -eq 'RoomMailbox' -and Office -eq 'Berlin'\""]),
    (('members: ["{{ service_account }}"]', 'members: ["{{ service_account }}", anna.adler@contoso.com]'),
     ["~ RoleGroup 'Room booking service accounts': member added: anna.adler@contoso.com"]),
    (('members: ["{{ service_account }}"]', "members: []"),
     ["~ RoleGroup 'Room booking service accounts': member removed: svc-rooms@contoso.com"]),
    (('room-booking system.\n    roles: [ApplicationImpersonation]\n    members: ["{{ service_account }}"]',
      'room-booking system, v2.\n    roles: [ApplicationImpersonation]\n'
      '    members: ["{{ service_account }}", anna.adler@contoso.com]'),
     ["~ RoleGroup 'Room booking service accounts': description changed: 'Impersonation of room mailboxes for the "
      "room-booking system.' → 'Impersonation of room mailboxes for the room-booking system, v2.'",
      "~ RoleGroup 'Room booking service accounts': member added: anna.adler@contoso.com"]),
    (("roles: [ApplicationImpersonation]", "roles: [ApplicationImpersonation, View-Only Recipients]"),
     ["~ RoleGroup 'Room booking service accounts': role added: View-Only Recipients"]),
    (("    scope: Room mailboxes\n", "    all_mailboxes: true\n"),
     ["~ RoleGroup 'Room booking service accounts': scope changed: 'Room mailboxes' → ALL MAILBOXES"]),
    (("role_groups:", "delegates:\n  - {user: svc-rooms@contoso.com, mailboxes: [room-berlin-1@contoso.com]}\n"
                      "role_groups:"),
     ["+ MailboxPermission 'room-berlin-1@contoso.com:svc-rooms@contoso.com' added: FullAccess on "
      "room-berlin-1@contoso.com for svc-rooms@contoso.com"]),
    (("scopes:\n  - name: Room mailboxes\n    rooms: true\n",
      "scopes:\n  - name: Room mailboxes\n    rooms: true\n  - {name: Equipment, equipment: true}\n"),
     ["+ ManagementScope 'Equipment' added"]),
])
def test_diff_for_each_kind_of_change(cli, workdir, change, summary):
    old = workdir / "old.yaml"
    shutil.copy(workdir / "playbooks" / "classic.yaml", old)
    new = workdir / "new.yaml"
    shutil.copy(old, new)
    edit(new, *change)
    result = cli("diff", old, new)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:lines.index(f"--- {old}")] == summary  # the resource summary comes before the script diff
    assert f"--- {old}" in lines and f"+++ {new}" in lines
    assert any(line.startswith("@@ ") for line in lines)
    assert "\x1b[" not in result.stdout  # plain when not on a terminal


def test_diff_removed_resource_and_identical(cli, workdir):
    full = workdir / "playbooks" / "classic.yaml"
    assert cli("diff", full, full).exit_code == 0
    smaller = workdir / "smaller.yaml"
    smaller.write_text(full.read_text().split("role_groups:")[0])
    result = cli("diff", full, smaller)
    assert result.exit_code == 1
    assert ("- RoleGroup 'Room booking service accounts' removed: ApplicationImpersonation for svc-rooms@contoso.com "
            "on scope 'Room mailboxes'") in result.stdout.splitlines()


def test_diff_against_git_revisions(cli, workdir):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "init", "-q"], check=True, env=env, timeout=60)
    subprocess.run(["git", "add", "playbooks"], check=True, env=env, timeout=60)
    subprocess.run(["git", "commit", "-qm", "base"], check=True, env=env, timeout=60)
    edit(workdir / "playbooks" / "classic.yaml", 'members: ["{{ service_account }}"]',
         'members: ["{{ service_account }}", info@contoso.com]')
    base = cli("diff", "--base", "HEAD", "playbooks/classic.yaml", "playbooks/delegate-access.yaml")
    assert base.exit_code == 1
    assert "~ RoleGroup 'Room booking service accounts': member added: info@contoso.com" in base.stdout
    assert "--- HEAD:playbooks/classic.yaml" in base.stdout
    assert "delegate-access" not in base.stdout  # unchanged playbooks print nothing
    subprocess.run(["git", "commit", "-qam", "member"], check=True, env=env, timeout=60)
    revisions = cli("diff", "HEAD~1:playbooks/classic.yaml", "HEAD:playbooks/classic.yaml")
    assert revisions.exit_code == 1
    assert "member added: info@contoso.com" in revisions.stdout
    missing = cli("diff", "nope:playbooks/classic.yaml", "playbooks/classic.yaml")
    assert missing.exit_code == 2  # an error, never the "they differ" code
    assert "cannot read playbooks/classic.yaml at git revision nope" in missing.stderr


@pytest.fixture
def reviewed(cli, workdir, sandbox_state):
    out = workdir / "reviewed"
    assert cli("render", "playbooks/classic.yaml", "--out", out).exit_code == 0
    return out


def test_apply_runs_the_reviewed_script(cli, workdir, reviewed, tmp_path):
    report = tmp_path / "report.md"
    result = cli("apply", "playbooks/classic.yaml", "--reviewed", reviewed, "--yes", "--output", "json",
                 "--report", report)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((reviewed / "manifest.json").read_text())
    sha = manifest["scripts"]["classic.sandbox.ps1"]["sha256"]
    assert json.loads(result.stdout)["reviewed_sha256"] == sha
    assert f"**Reviewed sha256**: {sha}" in report.read_text()


@pytest.mark.parametrize("how", ["playbook", "template", "variable"])
def test_pinning_refuses_what_was_not_reviewed(cli, workdir, reviewed, sandbox_state, how):
    extra = []
    if how == "playbook":
        edit(workdir / "playbooks" / "classic.yaml", "    rooms: true", "    rooms: true\n    equipment: true")
    elif how == "template":
        templates = workdir / "mine"
        templates.mkdir()
        shutil.copy(REPO / "templates" / "common" / "head.ps1.j2", templates / "head.ps1.j2")
        with open(templates / "head.ps1.j2", "a") as stream:
            stream.write("    # a line nobody reviewed\n")
        extra = ["--templates", templates]
    else:
        extra = ["--var", "service_account=info@contoso.com"]
    result = cli("apply", "playbooks/classic.yaml", "--reviewed", reviewed, "--yes", *extra)
    assert result.exit_code == 3
    assert "refusing to apply: the script for playbooks/classic.yaml on 'sandbox' is not the reviewed one" \
           in result.stderr
    assert store.load(sandbox_state).to_json() == seed_organisation().to_json()  # nothing ran


def test_pinning_needs_a_reviewed_entry(cli, workdir, reviewed):
    result = cli("apply", "playbooks/direct-assignment.yaml", "--reviewed", reviewed, "--yes")
    assert result.exit_code == 3
    assert "has no reviewed script for playbooks/direct-assignment.yaml on target 'sandbox'" in result.stderr
    result = cli("apply", "playbooks/classic.yaml", "--reviewed", workdir / "nowhere", "--yes")
    assert "manifest.json does not exist" in result.stderr


def test_diff_of_a_grant_scoped_after_being_organisation_wide(cli, workdir):
    old = workdir / "old.yaml"
    shutil.copy(workdir / "playbooks" / "classic.yaml", old)
    edit(old, "    scope: Room mailboxes\n", "    all_mailboxes: true\n")
    result = cli("diff", old, workdir / "playbooks" / "classic.yaml")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == ("~ RoleGroup 'Room booking service accounts': scope changed: "
                                             "ALL MAILBOXES → 'Room mailboxes'")
    assert result.stdout.splitlines()[1] == f"--- {old}"
