"""Boundaries that deliberate small bugs once slipped through, tested through the CLI so they outlive redesigns:
destroy of objects that do not exist, and pinning to the reviewed script of the right target among several."""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
from conftest import EXAMPLE_VARS, PLAYBOOKS, REPO

from toolkit.playbook.load import peek_platform
from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation

CLASSIC = REPO / "playbooks" / "classic.yaml"


def state_of(sandbox_state, platform):
    return sandbox_state.with_name(sandbox_state.stem + "-online" + sandbox_state.suffix) \
        if platform == "exchange-online" else sandbox_state


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.stem)
def test_destroy_in_an_organisation_without_the_objects_removes_nothing(cli, sandbox_state, path):
    platform = peek_platform(path)
    values = [f"--var={k}={v}" for k, v in EXAMPLE_VARS.get(path.stem, {}).items()]
    planned = cli("plan", path, *values, "--destroy", "--output", "json")
    assert planned.exit_code == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["destroy"] is True
    assert plan["counts"]["delete"] == 0 and plan["counts"]["create"] == 0 and plan["counts"]["update"] == 0
    assert plan["counts"]["noop"] == len(plan["changes"]) > 0
    assert {c["action"] for c in plan["changes"]} == {"noop"}
    assert cli("plan", path, *values, "--destroy", "--detailed-exitcode").exit_code == 0  # 0: nothing to change
    # Nothing to remove, so nothing to confirm: no --yes, no terminal, and it still succeeds.
    destroyed = cli("destroy", path, *values)
    assert destroyed.exit_code == 0, destroyed.stderr
    assert " 0 to remove" in destroyed.stdout
    assert "confirmation" not in destroyed.stderr
    assert store.load(state_of(sandbox_state, platform), platform).to_json() == \
        seed_organisation(platform).to_json()


def test_destroy_removes_only_what_exists(cli, sandbox_state):
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    from toolkit.targets.sandbox import SandboxTarget

    removed = SandboxTarget(sandbox_state).run_script("Remove-RoleGroup -Identity 'Room booking service accounts' "
                                                      "-Confirm:$false")
    assert removed.exit_code == 0, removed.stderr
    plan = json.loads(cli("plan", CLASSIC, "--destroy", "--output", "json").stdout)
    assert [(c["kind"], c["action"]) for c in plan["changes"]] == [("RoleGroup", "noop"),
                                                                    ("ManagementScope", "delete")]
    assert {"error": 0} | plan["counts"] == {"create": 0, "update": 0, "delete": 1, "noop": 1, "error": 0}
    assert cli("plan", CLASSIC, "--destroy", "--detailed-exitcode").exit_code == 2
    refused = cli("destroy", CLASSIC)  # something to remove: a non-interactive run needs --yes
    assert refused.exit_code != 0
    assert "pass --yes" in refused.stderr
    assert store.load(sandbox_state).scope("Room mailboxes") is not None
    assert cli("destroy", CLASSIC, "--yes").exit_code == 0
    assert store.load(sandbox_state).to_json() == seed_organisation().to_json()


# ------------------------------------------------------------------------------------------------ pinning
@pytest.fixture
def two_targets(tmp_path, monkeypatch):
    """A config repository with classic.yaml and two sandbox targets whose variables make their scripts differ."""
    shutil.copytree(REPO / "playbooks", tmp_path / "playbooks")
    (tmp_path / "inventory.yaml").write_text(textwrap.dedent("""\
        targets:
          north:
            kind: sandbox
            state: north.json
            vars: {service_account: reception@contoso.com}
          south:
            kind: sandbox
            state: south.json
            vars: {service_account: info@contoso.com}
        """))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def reviewed_set(cli, out, *targets):
    args = [a for t in targets for a in ("-t", t)]
    result = cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", *args, "--out", out)
    assert result.exit_code == 0, result.stderr
    return json.loads((out / "manifest.json").read_text())["scripts"]


def pinned_apply(cli, reviewed, target):
    return cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", target, "--reviewed", reviewed,
               "--yes", "--output", "json")


def members(path):
    return store.load(path).role_group("Room booking service accounts").members


def test_pinning_picks_the_reviewed_script_of_the_target(cli, two_targets):
    scripts = reviewed_set(cli, two_targets / "reviewed", "north", "south")
    assert {"classic.north.ps1", "classic.south.ps1"} <= set(scripts)
    assert scripts["classic.north.ps1"]["sha256"] != scripts["classic.south.ps1"]["sha256"]
    for target in ("south", "north"):  # south first: its entry is not the first one of the manifest
        result = pinned_apply(cli, two_targets / "reviewed", target)
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["reviewed_sha256"] == scripts[f"classic.{target}.ps1"]["sha256"]
    assert members(two_targets / "north.json") == ["reception@contoso.com"]
    assert members(two_targets / "south.json") == ["info@contoso.com"]


def test_pinning_refuses_a_target_that_was_not_reviewed(cli, two_targets):
    reviewed_set(cli, two_targets / "reviewed", "north")
    result = pinned_apply(cli, two_targets / "reviewed", "south")
    assert result.exit_code == 3
    assert "has no reviewed script for playbooks/classic.yaml on target 'south'" in result.stderr
    assert not (two_targets / "south.json").exists()  # nothing ran there


def test_pinning_refuses_another_targets_reviewed_script(cli, two_targets):
    """South's entry made to carry north's reviewed script (hash in the manifest, and the file itself): south's own
    script was not reviewed, so nothing runs there."""
    out = two_targets / "reviewed"
    scripts = reviewed_set(cli, out, "north", "south")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["scripts"]["classic.south.ps1"]["sha256"] = scripts["classic.north.ps1"]["sha256"]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.copy(out / "classic.north.ps1", out / "classic.south.ps1")
    result = pinned_apply(cli, out, "south")
    assert result.exit_code == 3
    assert "refusing to apply" in result.stderr
    assert not (two_targets / "south.json").exists()
