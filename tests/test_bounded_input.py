"""Hostile and careless input is refused within bounds (toolkit/playbook/bounded_yaml.py): an alias bomb, a huge
file, deep nesting and recursive aliases in playbooks and inventories, and broken or huge --recipients CSV files,
each with a positioned error and no traceback."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO

from toolkit.playbook import bounded_yaml

BOMB = "exkit: 1\nname: bomb\nvars:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
POSITIONED = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.*)$", re.M)


def exkit(*args: str, cwd=REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def only_error(run: subprocess.CompletedProcess[str], file) -> re.Match[str]:
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    errors = list(POSITIONED.finditer(run.stderr))
    assert len(errors) == 1 and errors[0]["file"] == str(file), run.stderr
    return errors[0]


def test_alias_bomb_is_refused_where_the_expansion_passes_the_bound(tmp_path):
    playbook = tmp_path / "bomb.yaml"
    playbook.write_text(BOMB, encoding="utf-8")
    error = only_error(exkit("validate", playbook), playbook)
    assert "more than 100,000 nodes once its aliases are expanded" in error["message"]
    # each level is ten times the one before (a: 11 nodes, b: 111, … e: 111,111 with keys): e's eighth alias
    # crosses 100,000, without anything being expanded
    assert (error["line"], error["col"]) == ("8", "38")
    assert "100,000 nodes" in exkit("plan", playbook).stderr  # plan reads the platform first: bounded too


def test_huge_file_is_refused_before_it_is_read(tmp_path):
    playbook = tmp_path / "huge.yaml"
    with playbook.open("wb") as handle:
        handle.write(b"exkit: 1\nname: huge\ndescription: ")
        handle.truncate(50 * 1024 * 1024)  # 50 MiB (sparse: the test does not write it)
    error = only_error(exkit("validate", playbook), playbook)
    assert (error["line"], error["col"]) == ("1", "1")
    assert error["message"] == "the file is 50.0 MiB, over the limit of 8 MiB"


@pytest.mark.parametrize("nesting", ["[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "1" + "}" * 10_000,
                                     "- " * 10_000 + "x", "".join(f"{' ' * i}k:\n" for i in range(200)) + "k: 1"],
                         ids=["flow-lists", "flow-maps", "block-lists", "block-maps"])
def test_deep_nesting_is_refused_at_the_level_that_passes_the_bound(tmp_path, nesting):
    playbook = tmp_path / "deep.yaml"
    playbook.write_text(nesting + "\n", encoding="utf-8")
    error = only_error(exkit("validate", playbook), playbook)
    assert error["message"] == "the document nests deeper than 64 levels"


def test_recursive_alias_is_refused(tmp_path):
    playbook = tmp_path / "loop.yaml"
    playbook.write_text("exkit: 1\nname: loop\nvars:\n  a: &a\n    b: *a\n", encoding="utf-8")
    error = only_error(exkit("validate", playbook), playbook)
    assert (error["line"], error["message"]) == ("5", "the alias *a refers to a node that contains it (a "
                                                      "recursive document)")


def test_aliases_and_merge_keys_within_the_bounds_still_work(cli, write_playbook, sandbox_state):
    playbook = write_playbook("""
        exkit: 1
        name: shared
        vars:
          service_account: svc-rooms@contoso.com
        scopes:
          - &rooms
            name: Rooms
            rooms: true
          - <<: *rooms
            name: Rooms again
        role_groups:
          - name: Room booking
            roles: [ApplicationImpersonation]
            members: ["{{ service_account }}"]
            scope: Rooms
    """)
    result = cli("validate", playbook)
    assert result.exit_code == 0, result.output


def test_inventory_alias_bomb_is_refused_with_its_position(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(BOMB.replace("exkit: 1\nname: bomb\n", ""), encoding="utf-8")
    run = exkit("plan", "playbooks/classic.yaml", "-i", inventory, "-t", "x")
    error = only_error(run, inventory)
    assert "once its aliases are expanded" in error["message"] and error["line"] == "6"


def test_migrate_refuses_a_bomb_without_a_traceback(tmp_path):
    playbook = tmp_path / "bomb.yaml"
    playbook.write_text(BOMB, encoding="utf-8")
    run = exkit("migrate", playbook)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"run exkit validate {playbook}" in run.stderr


def test_limits_are_documented():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for figure in (f"{bounded_yaml.MAX_BYTES // 1024 // 1024} MiB", f"{bounded_yaml.MAX_DEPTH} levels",
                   f"{bounded_yaml.MAX_NODES:,} nodes"):
        assert figure in readme, figure


RECIPIENTS_PLAYBOOK = REPO / "playbooks" / "classic.yaml"


def recipients(tmp_path, text: str | bytes):
    path = tmp_path / "recipients.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return exkit("scope", "preview", RECIPIENTS_PLAYBOOK, "--recipients", path), path


def test_recipients_csv_errors_are_positioned_and_never_a_traceback(tmp_path):
    header = '#TYPE Deserialized.Microsoft.Exchange.Data.Directory.Management.ReducedRecipient\n' \
             '"Name","RecipientTypeDetails","PrimarySmtpAddress"\n"Room 1","RoomMailbox","room1@contoso.com"\n'
    run, path = recipients(tmp_path, header + '"' + "x" * 200_000 + '","RoomMailbox","y@contoso.com"\n')
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"{path}:4:1: not a readable CSV line: field larger than field limit" in run.stderr, run.stderr
    run, path = recipients(tmp_path, header.encode() + b'"caf\xe9","RoomMailbox","z@contoso.com"\n')
    assert f"{path}:4:1: not UTF-8 text" in run.stderr, run.stderr


def test_recipients_csv_size_and_row_bounds(tmp_path, monkeypatch):
    from toolkit.verify import access

    path = tmp_path / "recipients.csv"
    path.write_text('"Name","RecipientTypeDetails"\n' + '"r","RoomMailbox"\n' * 30, encoding="utf-8")
    monkeypatch.setattr(access, "MAX_CSV_ROWS", 20)
    with pytest.raises(access.RecipientsFileError, match=rf"^{re.escape(str(path))}:22:1: more than 20 recipients"):
        access.read_recipients_csv(path)
    monkeypatch.setattr(access, "MAX_CSV_BYTES", 100)
    with pytest.raises(access.RecipientsFileError, match=r":1:1: the file is larger than the limit"):
        access.read_recipients_csv(path)


def test_what_the_fuzzer_found_is_answered_with_positions(tmp_path):
    """Found by benchmarks/fuzz.py: a !!omap mapping (no key positions in ruamel) crashed position recording, and a
    lone surrogate written as a YAML escape passed validation and then failed to render."""
    omap = tmp_path / "omap.yaml"
    omap.write_text("exkit: 1\nname: x\nvars: !!omap [a: 1]\n", encoding="utf-8")
    run = exkit("validate", omap)
    assert run.returncode in (0, 1) and "Traceback" not in run.stderr, run.stderr
    surrogate = tmp_path / "surrogate.yaml"
    surrogate.write_text((REPO / "playbooks" / "classic.yaml").read_text(encoding="utf-8").replace(
        "roles: [ApplicationImpersonation]", 'roles: ["\\ud8b4\\udf95x"]'), encoding="utf-8")
    error = only_error(exkit("validate", surrogate), surrogate)
    assert error["message"] == "value contains the control character U+D8B4 (a lone surrogate, not a character)"
    assert (error["line"], error["col"]) == ("15", "13")


def test_hostile_benchmark_prints_its_last_line():
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "hostile.py"), "--runs", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.fullmatch(r"bomb_s=\d+\.\d\d huge_s=\d+\.\d\d deep_s=\d+\.\d\d max_rss_mb=\d+",
                        run.stdout.strip().splitlines()[-1]), run.stdout
