"""What a reviewer reads when a script is no longer the reviewed one, compared whole: which inputs changed (down to
the template file), the reviewed and the current sha256, and every line of ``exkit check``. (Mutation testing found
these messages checked only in part.)"""

from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import subprocess

import pytest
from conftest import REPO

from toolkit.render.review import changed_inputs

SHA = "[0-9a-f]{64}"
NAMED = {"playbook": "p1", "variables": "v1", "inventory": "i1", "target": "t1", "templates": "x1",
         "template built-in common/head.ps1.j2": "h1", "template mine/a.ps1.j2": "a1"}


@pytest.mark.parametrize("reviewed, now, message", [
    (NAMED, dict(NAMED), "no input changed: this exkit renders differently from the one that rendered the reviewed "
                         "folder"),
    ({}, {}, "no input changed: this exkit renders differently from the one that rendered the reviewed folder"),
    (None, {"playbook": "p1"}, "changed since review: the playbook"),
    (NAMED, {**NAMED, "variables": "v2"}, "changed since review: the variables"),
    (NAMED, {**NAMED, "inventory": "i2"}, "changed since review: the inventory"),
    (NAMED, {**NAMED, "target": "t2"}, "changed since review: the target"),
    (NAMED, {**NAMED, "target": "t2", "playbook": "p2", "inventory": "i2", "variables": "v2"},
     "changed since review: the playbook, the variables, the inventory, the target"),
    # the templates: each template file that differs, added or gone, sorted
    ({**NAMED, "template mine/z.ps1.j2": "z1"},
     {**NAMED, "templates": "x2", "template mine/a.ps1.j2": "a2", "template mine/b.ps1.j2": "b1"},
     "changed since review: the templates (mine/a.ps1.j2, mine/b.ps1.j2, mine/z.ps1.j2)"),
    # a digest that differs while every file is the same names no file
    (NAMED, {**NAMED, "templates": "x2"}, "changed since review: the templates"),
    # a manifest that recorded no template files (an older render): no file can be named
    ({"playbook": "p1", "templates": "x1"}, {"playbook": "p2", "templates": "x2", "template mine/a.ps1.j2": "a1"},
     "changed since review: the playbook, the templates"),
])
def test_the_changed_inputs_are_named(reviewed, now, message):
    assert changed_inputs(reviewed, now) == message


@pytest.fixture
def reviewed(cli, workdir, sandbox_state):
    out = workdir / "reviewed"
    assert cli("render", "playbooks/classic.yaml", "--out", out).exit_code == 0
    return out


def reviewed_sha(out, file):
    return json.loads((out / "manifest.json").read_text())["scripts"][file]["sha256"]


def refusal(verb, sha, changed):
    return re.compile(re.escape(f"exkit: error: refusing to {verb}: the script for playbooks/classic.yaml on 'sandbox' "
                                f"is not the reviewed one (reviewed sha256 {sha}, now ") + SHA
                      + re.escape(f"; changed since review: {changed}). Render, review and commit again; nothing ran"))


def test_a_refusal_names_the_template_file_that_changed(cli, workdir, reviewed):
    mine = workdir / "mine"
    mine.mkdir()
    shutil.copy(REPO / "templates" / "common" / "head.ps1.j2", mine / "head.ps1.j2")
    with open(mine / "head.ps1.j2", "a") as stream:
        stream.write("    # a line nobody reviewed\n")
    result = cli("apply", "playbooks/classic.yaml", "--reviewed", reviewed, "--yes", "--templates", mine)
    assert result.exit_code == 3
    assert refusal("apply", reviewed_sha(reviewed, "classic.sandbox.ps1"), "the templates (../mine/head.ps1.j2)") \
        .fullmatch(result.stderr.strip()), result.stderr


def test_a_refusal_of_destroy_names_the_variables(cli, workdir, reviewed):
    result = cli("destroy", "playbooks/classic.yaml", "--reviewed", reviewed, "--yes",
                 "--var", "service_account=info@contoso.com")
    assert result.exit_code == 3
    assert refusal("destroy", reviewed_sha(reviewed, "classic.sandbox.destroy.ps1"), "the variables") \
        .fullmatch(result.stderr.strip()), result.stderr


def test_check_names_every_stale_script_its_hashes_and_the_changed_playbook(cli, workdir, reviewed):
    playbook = workdir / "playbooks" / "classic.yaml"
    playbook.write_text(playbook.read_text().replace("rooms: true", "rooms: true\n    equipment: true"))
    result = cli("check", reviewed)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    files = ["classic.sandbox.destroy.ps1", "classic.sandbox.facts.ps1", "classic.sandbox.ps1",
             "classic.sandbox.snapshot.ps1"]
    assert len(lines) == len(files) + 1
    for line, file in zip(lines, files):
        committed = hashlib.sha256((reviewed / file).read_bytes().removeprefix(b"\xef\xbb\xbf")).hexdigest()
        assert committed == reviewed_sha(reviewed, file)
        assert re.fullmatch(re.escape(f"{reviewed}/{file}: stale — playbooks/classic.yaml renders differently now "
                                      "(sha256 ") + SHA + re.escape(f", committed {committed}; changed since review: "
                                                                    "the playbook)"), line), line
    assert lines[-1] == ("exkit: error: 4 problem(s): the reviewed folder does not match the playbooks: run exkit "
                         f"render … --out {reviewed}, review, commit")


# ------------------------------------------------------------------------------------------------ inside git
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


@pytest.fixture
def two_sandboxes(cli, workdir):
    """A git repository: classic.yaml reviewed for two sandbox targets, prod and test, and committed."""
    for other in workdir.joinpath("playbooks").glob("*.yaml"):
        if other.name != "classic.yaml":
            other.unlink()
    (workdir / "inventory.yaml").write_text("targets:\n  prod: {kind: sandbox, state: state/prod.json}\n"
                                            "  test: {kind: sandbox, state: state/test.json}\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], check=True, timeout=60)
    assert cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "--out", "reviewed").exit_code == 0
    subprocess.run(["git", "add", "-A"], check=True, env={**os.environ, **GIT_ENV}, timeout=60)
    subprocess.run(["git", "commit", "-qm", "reviewed"], check=True, env={**os.environ, **GIT_ENV}, timeout=60)
    return workdir


def test_a_pin_to_a_reviewed_ref_holds_from_a_subfolder_of_the_repository(cli, two_sandboxes, monkeypatch):
    monkeypatch.chdir(two_sandboxes / "playbooks")
    result = cli("apply", "classic.yaml", "-i", "../inventory.yaml", "-t", "prod", "--reviewed", "../reviewed",
                 "--reviewed-ref", "main", "--yes")
    assert result.exit_code == 0, result.stderr
    assert (two_sandboxes / "state" / "prod.json").exists()


def test_check_names_a_target_gone_from_the_inventory_and_an_endpoint_that_moved(cli, two_sandboxes):
    (two_sandboxes / "inventory.yaml").write_text("targets:\n  prod: {kind: sandbox, state: state/prod2.json}\n")
    result = cli("check", "reviewed")
    assert result.exit_code == 1
    moved = "reviewed for 'prod' at sandbox:state/prod.json, which now is sandbox:state/prod2.json"
    assert result.stderr.splitlines() == [
        f"reviewed/classic.test.ps1: no target 'test' in {two_sandboxes}/inventory.yaml (targets: prod)",
        f"reviewed/classic.prod.destroy.ps1: {moved}",
        f"reviewed/classic.prod.facts.ps1: {moved}",
        f"reviewed/classic.prod.ps1: {moved}",
        f"reviewed/classic.prod.snapshot.ps1: {moved}",
        "exkit: error: 5 problem(s): the reviewed folder does not match the playbooks: run exkit render … --out "
        "reviewed, review, commit",
    ]


def test_a_pin_refuses_a_script_of_another_mode_or_sha256_before_it_is_sent():
    from toolkit.render.engine import RenderedScript
    from toolkit.render.pin import Pin
    from toolkit.render.review import PinningError

    pin = Pin("reviewed", "playbooks/classic.yaml", "prod", {"apply": "a" * 64})
    pin.require("apply", RenderedScript("Write-Output 'x'\n", "a" * 64, [], "present"))  # the reviewed one: sent
    script = RenderedScript("Write-Output 'y'\n", "b" * 64, [], "present")
    with pytest.raises(PinningError) as refused:
        pin.require("apply", script)
    assert str(refused.value) == (f"refusing to run: the apply script for playbooks/classic.yaml on 'prod' is not the "
                                  f"reviewed one (reviewed sha256 {'a' * 64}, now {script.sha256}); nothing was sent")
    with pytest.raises(PinningError) as missing:
        pin.require("destroy", script)
    assert str(missing.value) == ("refusing to run: reviewed holds no reviewed destroy script for "
                                  "playbooks/classic.yaml on 'prod'")


def test_a_pinned_apply_records_the_pin_whole(cli, two_sandboxes):
    from toolkit.fleet import records

    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--yes")
    assert result.exit_code == 0, result.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    record = records.read_all()[-1]
    assert record["reviewed_commit"] == head
    assert record["pin"] == {"status": "verified", "folder": "reviewed", "ref": None,
                             "scripts": {"apply": reviewed_sha(two_sandboxes / "reviewed", "classic.prod.ps1"),
                                         "facts": reviewed_sha(two_sandboxes / "reviewed", "classic.prod.facts.ps1")}}


def test_uncommitted_files_in_the_reviewed_folder_are_each_named(cli, two_sandboxes):
    notes = two_sandboxes / "reviewed" / "notes"
    notes.mkdir()
    for name in "abcdefg":
        (notes / f"{name}.txt").write_text(name)
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--yes")
    assert result.exit_code == 3
    listed = ", ".join(f"reviewed/notes/{name}.txt" for name in "abcde")
    assert result.stderr.strip() == (
        f"exkit: error: refusing to run: the reviewed folder reviewed has uncommitted changes ({listed} and 2 more): "
        "reviewed means committed (and approved): commit them through review first")
    for name, more in (("g", " and 1 more"), ("f", "")):  # six files: five and 1 more; five: all five
        (notes / f"{name}.txt").unlink()
        result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed",
                     "reviewed", "--yes")
        assert result.stderr.strip() == (
            f"exkit: error: refusing to run: the reviewed folder reviewed has uncommitted changes ({listed}{more}): "
            "reviewed means committed (and approved): commit them through review first")


def test_a_playbook_without_a_reviewed_script_and_an_old_manifest_are_refused_with_what_to_do(cli, two_sandboxes):
    shutil.copy(REPO / "playbooks" / "direct-assignment.yaml", two_sandboxes / "playbooks")
    result = cli("apply", "playbooks/direct-assignment.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed",
                 "reviewed", "--yes")
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        "exkit: error: reviewed/manifest.json has no reviewed script for playbooks/direct-assignment.yaml on target "
        "'prod': render it into the reviewed folder and have it reviewed")
    manifest = two_sandboxes / "reviewed" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"format": 2', '"format": 1'))
    result = cli("check", "reviewed")
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        "exkit: error: reviewed/manifest.json is from an older exkit (it pins apply scripts only): render it again "
        "with exkit render … --out reviewed, review and commit")


def test_inputs_of_names_each_template_file_by_where_it_is(tmp_path):
    from toolkit.render.review import default_target, inputs_of

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "head.ps1.j2").write_text("# mine\n")
    target = default_target("exchange-server")
    playbook = REPO / "playbooks" / "classic.yaml"
    absolute = inputs_of(playbook, target, {}, [mine], "exchange-server")
    relative = inputs_of(playbook, target, {}, [mine], "exchange-server", root=tmp_path)
    mine_hash = hashlib.sha256(b"# mine\n").hexdigest()
    builtin_head = hashlib.sha256((REPO / "templates" / "common" / "head.ps1.j2").read_bytes()).hexdigest()
    assert absolute[f"template {mine.as_posix()}/head.ps1.j2"] == mine_hash
    assert relative["template mine/head.ps1.j2"] == mine_hash
    assert absolute["template built-in common/head.ps1.j2"] == relative["template built-in common/head.ps1.j2"] \
        == builtin_head
    assert absolute["playbook"] == hashlib.sha256(playbook.read_bytes()).hexdigest()
    assert absolute["inventory"] == "none"
    assert {k: v for k, v in absolute.items() if not k.startswith("template ")} == \
        {k: v for k, v in relative.items() if not k.startswith("template ")}


def test_a_render_set_without_a_folder_is_relative_to_the_current_directory(workdir):
    from pathlib import Path

    from toolkit.render.review import render_set

    rendered = render_set([Path("playbooks/classic.yaml")], None, None, {}, None)
    assert [(r.file, r.playbook, r.target) for r in rendered] == [
        ("classic.sandbox.destroy.ps1", "playbooks/classic.yaml", "sandbox"),
        ("classic.sandbox.facts.ps1", "playbooks/classic.yaml", "sandbox"),
        ("classic.sandbox.ps1", "playbooks/classic.yaml", "sandbox"),
        ("classic.sandbox.snapshot.ps1", "playbooks/classic.yaml", "sandbox"),
    ]


def test_check_reports_each_kind_of_problem_in_full(cli, workdir):
    import toolkit

    for other in [*workdir.joinpath("playbooks").glob("online-*.yaml"), workdir / "playbooks" / "hosted-tenant.yaml"]:
        other.unlink()
    (workdir / "inventory.yaml").write_text("targets:\n  prod: {kind: sandbox, state: state/prod.json}\n")
    assert cli("render", *sorted(str(p) for p in workdir.joinpath("playbooks").glob("*.yaml")), "-i",
               "inventory.yaml", "--out", "reviewed").exit_code == 0
    manifest = workdir / "reviewed" / "manifest.json"
    good = manifest.read_text()
    for text, problem in [("{", "is not valid JSON"), ("[]", "is not an exkit manifest")]:
        manifest.write_text(text)
        result = cli("check", "reviewed")
        assert result.exit_code != 0 and result.stderr.strip() == f"exkit: error: reviewed/manifest.json {problem}"
    manifest.unlink()
    assert cli("check", "reviewed").stderr.strip() == (
        "exkit: error: reviewed/manifest.json does not exist: render the reviewed scripts with exkit render … --out "
        "reviewed")
    data = json.loads(good)
    data["scripts"]["classic.prod.ps1"]["sha256"] = "0" * 64
    data["toolkit_version"] = "0.0.1"
    manifest.write_text(json.dumps(data))
    shutil.copy(workdir / "playbooks" / "classic.yaml", workdir / "playbooks" / "new.yaml")
    (workdir / "playbooks" / "delegate-access.yaml").unlink()
    result = cli("check", "reviewed")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "playbooks/delegate-access.yaml: the playbook no longer exists",
        "reviewed/classic.prod.ps1: the manifest's sha256 does not match the script",
        "playbooks/new.yaml: a playbook with no reviewed script: render it into reviewed",
        f"reviewed/manifest.json: rendered by exkit 0.0.1, this is {toolkit.__version__}",
        "exkit: error: 4 problem(s): the reviewed folder does not match the playbooks: run exkit render … --out "
        "reviewed, review, commit",
    ]
    # a subset rendered into the folder again: the scripts it no longer produces are removed, each named
    result = cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "--out", "reviewed")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"removed reviewed/{name}: this render no longer produces it"
        for name in ("delegate-access.prod.destroy.ps1", "delegate-access.prod.facts.ps1", "delegate-access.prod.ps1",
                     "delegate-access.prod.snapshot.ps1", "direct-assignment.prod.destroy.ps1",
                     "direct-assignment.prod.facts.ps1", "direct-assignment.prod.ps1",
                     "direct-assignment.prod.snapshot.ps1")] + ["wrote 4 script(s) and manifest.json to reviewed"]
    assert sorted(p.name for p in (workdir / "reviewed").iterdir()) == [
        "classic.prod.destroy.ps1", "classic.prod.facts.ps1", "classic.prod.ps1", "classic.prod.snapshot.ps1",
        "manifest.json"]


def test_a_reviewed_ref_needs_git_and_every_reviewed_script_must_be_there(cli, workdir, two_sandboxes):
    pinned = ["apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed", "--yes"]
    subprocess.run(["git", "rm", "-q", "reviewed/classic.prod.facts.ps1"], check=True, timeout=60)
    subprocess.run(["git", "commit", "-qm", "lost"], check=True, env={**os.environ, **GIT_ENV}, timeout=60)
    result = cli(*pinned)
    assert result.exit_code == 3
    assert result.stderr.strip() == ("exkit: error: refusing to apply: the reviewed script "
                                     "reviewed/classic.prod.facts.ps1 is missing")
    shutil.rmtree(workdir / ".git")
    result = cli(*pinned, "--reviewed-ref", "main")
    assert result.exit_code == 3
    assert result.stderr.strip() == "exkit: error: --reviewed-ref main: reviewed is not in a git repository"


def test_a_render_set_refuses_playbooks_that_share_a_file_name_naming_each(workdir):
    from pathlib import Path

    from toolkit.render.review import ReviewError, render_set

    (workdir / "copy").mkdir()
    shutil.copy(workdir / "playbooks" / "classic.yaml", workdir / "copy" / "classic.yaml")
    with pytest.raises(ReviewError) as refused:
        render_set([Path("playbooks/classic.yaml"), Path("copy/classic.yaml"), Path("playbooks/online-rooms.yaml"),
                    Path("playbooks/online-rooms.yaml")], None, None, {}, None)
    assert str(refused.value) == "playbooks with the same file name would share script names: classic, online-rooms"


# ------------------------------------------------------------------------------- templates that know their target
@pytest.fixture
def overridden(cli, workdir):
    """classic.yaml reviewed for prod and test (not in git) with a script.ps1.j2 override whose first line names
    the target and a variable, so each mode's script says which target and values it was rendered for, and a copy
    of the built-in snapshot.ps1.j2."""
    mine = workdir / "mine"
    mine.mkdir()
    builtin = (REPO / "templates" / "exchange-server" / "script.ps1.j2").read_text()
    (mine / "script.ps1.j2").write_text("# for {{ target.name }} at {{ target.vars.site }}\n" + builtin)
    shutil.copy(REPO / "templates" / "common" / "snapshot.ps1.j2", mine / "snapshot.ps1.j2")
    (workdir / "inventory.yaml").write_text(
        "vars: {site: Oslo}\ntargets:\n  prod: {kind: sandbox, state: state/prod.json}\n"
        "  test: {kind: sandbox, state: state/test.json}\n")
    result = cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "--templates", "mine", "--var",
                 "site=Bergen", "--out", "reviewed")
    assert result.exit_code == 0, result.stderr
    return workdir


def test_every_mode_of_an_override_knows_its_target_and_a_pinned_run_renders_the_same(cli, overridden):
    # the snapshot (verify's read) too: it once rendered script.ps1.j2 without `target` ('target' is undefined)
    for name in ("prod", "test"):
        for mode in (".destroy", ".facts", "", ".snapshot"):
            text = (overridden / "reviewed" / f"classic.{name}{mode}.ps1").read_text(encoding="utf-8-sig")
            assert text.splitlines()[0] == f"# for '{name}' at 'Bergen'"
    pinned = ["-i", "inventory.yaml", "-t", "prod", "--templates", "mine", "--var", "site=Bergen", "--reviewed",
              "reviewed"]
    result = cli("apply", "playbooks/classic.yaml", *pinned, "--yes")
    assert result.exit_code == 0, result.stderr
    result = cli("verify", "playbooks/classic.yaml", *pinned)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Verify: 3 passed, 0 failed."
    # verify renders its snapshot with the --var values: without them it is not the reviewed script
    result = cli("verify", "playbooks/classic.yaml", *pinned[:-4], "--reviewed", "reviewed")
    assert result.exit_code == 3
    assert re.fullmatch(re.escape(
        "exkit: error: refusing to verify: the snapshot script for playbooks/classic.yaml on 'prod' is not the reviewed "
        f"one (reviewed sha256 {reviewed_sha(overridden / 'reviewed', 'classic.prod.snapshot.ps1')}, now ") + SHA
        + re.escape("; changed since review: the variables). Render, review and commit again; nothing ran"),
        result.stderr.strip()), result.stderr


def test_check_renders_with_the_reviewed_folders_templates_and_names_the_one_that_changed(cli, overridden):
    assert cli("check", "reviewed", "--var", "site=Bergen").exit_code == 0
    script = overridden / "mine" / "script.ps1.j2"
    script.write_text(script.read_text().replace("# for ", "# rendered for "))
    result = cli("check", "reviewed", "--var", "site=Bergen")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    files = [f"classic.{name}{mode}.ps1" for name in ("prod", "test") for mode in (".destroy", ".facts", "",
                                                                                  ".snapshot")]
    assert len(lines) == len(files) + 1
    for line, file in zip(lines, files):
        assert re.fullmatch(re.escape(f"reviewed/{file}: stale — playbooks/classic.yaml renders differently now "
                                      "(sha256 ") + SHA + re.escape(f", committed {reviewed_sha(overridden / 'reviewed', file)}; "
                                                                    "changed since review: the templates "
                                                                    "(../mine/script.ps1.j2))"), line), line


def test_a_pin_renders_only_the_scripts_its_command_sends(cli, overridden):
    # a template only the snapshot reads, broken after review: apply neither renders nor sends the snapshot
    (overridden / "mine" / "snapshot.ps1.j2").write_text("{{ no_such_value }}\n")
    assert "'no_such_value' is undefined" in cli("verify", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t",
                                                 "prod", "--templates", "mine").stderr
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--templates", "mine",
                 "--var", "site=Bergen", "--reviewed", "reviewed", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[0] == "The scripts are the reviewed ones (reviewed; 1 target(s))"


@pytest.mark.parametrize("option", ["-t", "--limit"])
def test_check_of_some_targets_checks_each_of_them(cli, two_sandboxes, option):
    """-t names targets, --limit picks them from the folder's inventory: either way only they are checked (test's
    scripts sort after prod's, which choosing test leaves out)."""
    (two_sandboxes / "inventory.yaml").write_text("targets:\n  prod: {kind: sandbox, state: state/prod.json}\n"
                                                  "  test: {kind: sandbox, state: state/test2.json}\n")
    assert cli("check", "reviewed", option, "prod").exit_code == 0
    result = cli("check", "reviewed", option, "test")
    assert result.exit_code == 1
    moved = "reviewed for 'test' at sandbox:state/test.json, which now is sandbox:state/test2.json"
    assert result.stderr.splitlines() == [
        *(f"reviewed/classic.test{mode}.ps1: {moved}" for mode in (".destroy", ".facts", "", ".snapshot")),
        "exkit: error: 4 problem(s): the reviewed folder does not match the playbooks: run exkit render … --out "
        "reviewed, review, commit",
    ]


def test_a_yml_playbook_added_to_a_reviewed_folder_of_playbooks_is_named(cli, workdir):
    for other in workdir.joinpath("playbooks").glob("*.yaml"):
        if other.name != "classic.yaml":
            other.unlink()
    (workdir / "playbooks" / "classic.yaml").rename(workdir / "playbooks" / "classic.yml")
    assert cli("render", "playbooks/classic.yml", "--out", "reviewed").exit_code == 0
    assert json.loads((workdir / "reviewed" / "manifest.json").read_text())["playbook_folders"] == ["../playbooks"]
    shutil.copy(workdir / "playbooks" / "classic.yml", workdir / "playbooks" / "extra.yml")
    result = cli("check", "reviewed")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "playbooks/extra.yml: a playbook with no reviewed script: render it into reviewed",
        "exkit: error: 1 problem(s): the reviewed folder does not match the playbooks: run exkit render … --out "
        "reviewed, review, commit",
    ]


def test_pin_target_returns_the_pin_whole_and_it_names_the_playbook_in_a_refusal(overridden):
    from pathlib import Path

    from toolkit.inventory import resolve_target
    from toolkit.render.engine import RenderedScript
    from toolkit.render.pin import Pin, pin_target
    from toolkit.render.review import PinningError

    target = resolve_target(Path("inventory.yaml"), "prod", "exchange-server")
    pin = pin_target(Path("reviewed"), Path("playbooks/classic.yaml"), target, {"site": "Bergen"}, Path("mine"),
                     ("apply", "facts"), "apply")
    sha = {mode: reviewed_sha(overridden / "reviewed", f"classic.prod{suffix}.ps1")
           for mode, suffix in (("apply", ""), ("facts", ".facts"))}
    assert pin == Pin("reviewed", "playbooks/classic.yaml", "prod", sha, None, None)
    with pytest.raises(PinningError) as refused:
        pin.require("apply", RenderedScript("Write-Output 'x'\n", "c" * 64, [], "present"))
    assert str(refused.value) == (f"refusing to run: the apply script for playbooks/classic.yaml on 'prod' is not the "
                                  f"reviewed one (reviewed sha256 {sha['apply']}, now {'c' * 64}); nothing was sent")


def test_check_goes_on_after_a_playbook_that_no_longer_exists(cli, workdir):
    assert cli("render", "playbooks/classic.yaml", "playbooks/direct-assignment.yaml", "--out",
               "reviewed").exit_code == 0
    (workdir / "playbooks" / "classic.yaml").unlink()
    (workdir / "reviewed" / "direct-assignment.sandbox.ps1").unlink()
    result = cli("check", "reviewed")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "playbooks/classic.yaml: the playbook no longer exists",
        "reviewed/direct-assignment.sandbox.ps1: missing; render it again",
        "exkit: error: 2 problem(s): the reviewed folder does not match the playbooks: run exkit render … --out "
        "reviewed, review, commit",
    ]
    # --limit picks targets of the folder's inventory: this one was rendered without one
    result = cli("check", "reviewed", "--limit", "prod")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("exkit: error: --limit selects targets of the reviewed folder's inventory, and "
                                     "its manifest names none")


def test_the_manifest_keeps_non_ascii_names_readable(cli, workdir):
    # committed for review: a diff shows the names as written, not as \\u escapes
    shutil.copy(workdir / "playbooks" / "classic.yaml", workdir / "playbooks" / "räume.yaml")
    assert cli("render", "playbooks/räume.yaml", "--out", "reviewed").exit_code == 0
    text = (workdir / "reviewed" / "manifest.json").read_text(encoding="utf-8")
    assert '    "räume.sandbox.ps1": {\n' in text
    assert '      "playbook": "../playbooks/räume.yaml",\n' in text
    assert "\\u" not in text


def test_the_manifest_does_not_depend_on_the_order_of_the_variables(cli, workdir):
    first = ["--var", "service_account=svc-rooms@contoso.com", "--var", "site=Oslo"]
    assert cli("render", "playbooks/classic.yaml", *first, "--out", "one").exit_code == 0
    assert cli("render", "playbooks/classic.yaml", *first[2:], *first[:2], "--out", "two").exit_code == 0
    one, two = (json.loads((workdir / name / "manifest.json").read_text()) for name in ("one", "two"))
    assert one["scripts"] == two["scripts"]


def test_the_inputs_name_a_changed_inventory_and_a_changed_target():
    from toolkit.inventory import resolve_target
    from toolkit.render.review import default_target, inputs_of

    playbook = REPO / "playbooks" / "classic.yaml"
    sandbox = default_target("exchange-server")
    assert (sandbox.name, sandbox.target.platform) == ("sandbox", "exchange-server")
    online = default_target("exchange-online")
    assert (online.name, online.target.platform) == ("sandbox", "exchange-online")
    inventory = REPO / "inventory.example.yaml"
    lab = resolve_target(inventory, "loopback", "exchange-server")
    reviewed = inputs_of(playbook, sandbox, {}, [], "exchange-server")
    now = inputs_of(playbook, lab, {}, [], "exchange-server")
    assert reviewed["inventory"] == "none"
    assert now["inventory"] == hashlib.sha256(inventory.read_bytes()).hexdigest()
    assert changed_inputs(reviewed, {**reviewed, "inventory": now["inventory"], "target": now["target"]}) == \
        "changed since review: the inventory, the target"
    assert changed_inputs(reviewed, {**reviewed, "target": now["target"]}) == "changed since review: the target"


def test_a_render_set_refuses_two_scripts_of_one_name_naming_both(cli, workdir):
    (workdir / "inventory.yaml").write_text("targets:\n  prod: {kind: sandbox, state: state/prod.json}\n"
                                            "  prod.facts: {kind: sandbox, state: state/other.json}\n")
    result = cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "--out", "reviewed")
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        "exkit: error: two scripts would be named classic.prod.facts.ps1 (target 'prod', mode facts, and target "
        "'prod.facts', mode apply): rename one of the targets")


def test_a_manifest_that_does_not_belong_to_its_scripts_is_refused_naming_both_sha256(cli, workdir, reviewed):
    manifest = reviewed / "manifest.json"
    data = json.loads(manifest.read_text())
    data["scripts"]["classic.sandbox.ps1"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    actual = hashlib.sha256((reviewed / "classic.sandbox.ps1").read_bytes().removeprefix(b"\xef\xbb\xbf")).hexdigest()
    result = cli("apply", "playbooks/classic.yaml", "--reviewed", "reviewed", "--yes")
    assert (result.exit_code, result.stderr.strip()) == (3, (
        f"exkit: error: refusing to apply: reviewed/manifest.json says classic.sandbox.ps1 has sha256 {'0' * 64}, "
        f"but the file has {actual}: the manifest does not belong to the reviewed scripts; nothing ran"))


def test_a_winrm_targets_reviewed_scripts_import_the_cmdlets_from_its_server_and_the_entry_is_whole(cli, workdir):
    """What a reviewer reads for a WinRM target is what exkit sends there: every mode's script opens the session to
    the server's /PowerShell/ endpoint (the target's connection); the manifest entry binds it to the target and
    records the playbook's sha256."""
    assert cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "ex01", "--out",
               "reviewed").exit_code == 0
    session = ("New-PSSession -ConfigurationName 'Microsoft.Exchange' -ConnectionUri "
               "'http://ex01.contoso.com/PowerShell/' -Authentication 'Kerberos'\n")
    scripts = {f"classic.ex01{suffix}.ps1": (workdir / "reviewed" / f"classic.ex01{suffix}.ps1").read_bytes()
               for suffix in ("", ".facts", ".destroy", ".snapshot")}
    assert [name for name, data in scripts.items() if session.encode() in data] == list(scripts)
    entry = json.loads((workdir / "reviewed" / "manifest.json").read_text())["scripts"]["classic.ex01.ps1"]
    playbook_sha = hashlib.sha256((workdir / "playbooks" / "classic.yaml").read_bytes()).hexdigest()
    assert {key: value for key, value in entry.items() if key != "inputs"} == {
        "endpoint": "https://ex01.contoso.com:5986/wsman", "inventory": "../inventory.yaml", "mode": "apply",
        "platform": "exchange-server", "playbook": "../playbooks/classic.yaml", "playbook_sha256": playbook_sha,
        "sha256": hashlib.sha256(scripts["classic.ex01.ps1"].removeprefix(b"\xef\xbb\xbf")).hexdigest(),
        "target": "ex01"}
    assert entry["inputs"]["playbook"] == playbook_sha


def test_one_refused_target_refuses_the_run_naming_it_and_no_target_keeps_a_pin(two_sandboxes):
    """pin_targets: one refused target refuses every target of the run (nothing runs anywhere): the message names
    each refused one, and the pin of a target that matched is taken back."""
    from pathlib import Path

    from toolkit.inventory import resolve_target
    from toolkit.render.pin import pin_targets
    from toolkit.render.review import PinningError

    inventory = two_sandboxes / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace("state/test.json", "state/moved.json"))
    targets = [resolve_target(Path("inventory.yaml"), name, "exchange-server") for name in ("prod", "test")]
    with pytest.raises(PinningError) as refused:
        pin_targets(Path("reviewed"), Path("playbooks/classic.yaml"), targets, {}, None, "apply")
    reviewed = json.loads((two_sandboxes / "reviewed" / "manifest.json").read_text())["scripts"]["classic.test.ps1"]
    assert str(refused.value) == (
        "refusing to apply on 2 target(s): 1 are not the reviewed ones; nothing ran anywhere:\n"
        f"  test: refusing to apply: reviewed was reviewed for target 'test' at {reviewed['endpoint']} "
        f"(exchange-server, inventory inventory.yaml), not {targets[1].endpoint} (exchange-server, inventory "
        "inventory.yaml); nothing ran")
    assert reviewed["endpoint"] != targets[1].endpoint
    assert [target.pin for target in targets] == [None, None]


def test_a_folder_reviewed_in_a_repository_and_copied_out_of_it_is_refused(cli, two_sandboxes, tmp_path_factory):
    """The manifest's paths are relative to the repository's root: outside a repository they mean nothing."""
    outside = tmp_path_factory.mktemp("outside") / "reviewed"
    shutil.copytree(two_sandboxes / "reviewed", outside)
    result = cli("check", outside)
    assert (result.exit_code, result.stderr.strip()) == (1, (
        f"exkit: error: {outside}/manifest.json has paths relative to a git repository, but {outside} is not in one"))
