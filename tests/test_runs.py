"""Run records: one JSON line per apply or destroy, readable with exkit runs list|show."""

from __future__ import annotations

import json

from conftest import REPO, refuse_writes

from toolkit.fleet import records as runs

CLASSIC = REPO / "playbooks" / "classic.yaml"


def test_apply_and_destroy_are_recorded(cli, sandbox_state, runs_dir):
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    assert cli("destroy", CLASSIC, "--yes").exit_code == 0
    first, second = runs.read_all()
    assert first["command"] == "apply" and second["command"] == "destroy"
    assert first["target"] == "sandbox" and first["platform"] == "exchange-server"
    assert first["playbook_name"] == "room-booking-impersonation"
    assert len(first["playbook_sha256"]) == 64 and len(first["script_sha256"]) == 64
    assert first["exit_code"] == 0 and first["reviewed_sha256"] is None
    assert [r["action"] for r in first["results"]] == ["created", "created"]
    assert first["user"] and first["started"].endswith("+00:00") and first["duration_s"] >= 0
    assert len(list(runs_dir.glob("runs-*.jsonl"))) == 1


def test_failed_run_is_recorded(cli, sandbox_state, write_playbook):
    path = write_playbook("exkit: 1\nname: f\nscopes: [{name: R, rooms: true}]\nrole_groups:\n"
                          "  - {name: G, roles: [ApplicationImpersonation], members: [svc-rooms@contoso.com], scope: R}\n")
    refuse_writes(sandbox_state, "G", "Access is denied.")  # a refusal no plan can see coming
    assert cli("apply", path, "--yes").exit_code == 1
    record = runs.read_all()[-1]
    assert record["exit_code"] == 1
    assert [r["action"] for r in record["results"]] == ["created", "failed"]
    assert "Access is denied." in record["results"][1]["error"]


def test_reviewed_hash_is_recorded(cli, sandbox_state, tmp_path):
    reviewed = tmp_path / "reviewed"
    assert cli("render", CLASSIC, "--out", reviewed).exit_code == 0
    assert cli("apply", CLASSIC, "--reviewed", reviewed, "--yes").exit_code == 0
    manifest = json.loads((reviewed / "manifest.json").read_text())
    record = runs.read_all()[-1]
    assert record["reviewed_sha256"] == manifest["scripts"]["classic.sandbox.ps1"]["sha256"] == record["script_sha256"]


def test_runs_list_and_show(cli, sandbox_state):
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    listed = cli("runs", "list")
    assert "room-booking-impersonation" in listed.stdout and "ok: 2 created" in listed.stdout
    record_id = runs.read_all()[-1]["id"]
    shown = json.loads(cli("runs", "show", record_id[:6]).stdout)
    assert shown["id"] == record_id
    assert cli("runs", "show", "zzzz").exit_code == 1


def test_a_torn_line_does_not_hide_the_others(cli, sandbox_state, runs_dir):
    assert cli("apply", CLASSIC, "--yes").exit_code == 0
    path = next(runs_dir.glob("runs-*.jsonl"))
    with open(path, "a") as stream:
        stream.write('{"id": "torn", "sta')
    assert len(runs.read_all()) == 1


def test_a_recorded_files_digest_is_read_once_while_it_is_unchanged_and_again_when_it_changes(tmp_path, monkeypatch):
    """A fleet records the inventory's and playbook's sha256 for every target: an unchanged file is hashed once per
    process, and a file written since (even to the same size) gets its new digest."""
    import hashlib
    import os
    from pathlib import Path

    from toolkit.fleet.records import file_sha256

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets: {a: {kind: sandbox}}\n")
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or original(self))
    assert [file_sha256(inventory) for _ in range(3)] == [hashlib.sha256(inventory.read_bytes()).hexdigest()] * 3
    assert len(reads) == 2  # one for the three digests, one for the expected value
    inventory.write_text("targets: {b: {kind: sandbox}}\n")  # the same size, other content
    os.utime(inventory, ns=(1, 1))  # even with the modification time set back: the change time moved
    assert file_sha256(inventory) == hashlib.sha256(b"targets: {b: {kind: sandbox}}\n").hexdigest()
    assert file_sha256(None) is None and file_sha256(tmp_path / "missing.yaml") is None
