"""What a reviewer reads when a script is no longer the reviewed one, compared whole: which inputs changed (down to
the template file), the reviewed and the current sha256, and every line of ``exkit check``. (Mutation testing found
these messages checked only in part.)"""

from __future__ import annotations

import hashlib
import json
import re
import shutil

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
