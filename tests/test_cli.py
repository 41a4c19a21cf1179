from __future__ import annotations

import json
import subprocess
import sys

from conftest import PLAYBOOKS, REPO
from toolkit.cli import schema_text


def test_validate_examples_clean_apart_from_the_delegate_warning(cli):
    result = cli("validate", *PLAYBOOKS)
    assert result.exit_code == 0, result.stderr
    assert "0 error(s), 1 warning(s)" in result.stderr
    assert "delegate-access.yaml" in result.stderr


def test_three_positioned_errors_in_one_run(cli, write_playbook):
    path = write_playbook("""
        exkit: 1
        name: broken
        scopes:
          - name: Rooms
            filter: "RecipientTypeDetails -eq 'RoomMailbox' -and"
            colour: blue
        role_groups:
          - name: G
            roles: [ApplicationImpersonation]
            scope: Roms
        """)
    result = cli("validate", path)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors == [
        f"{path}:5:57: error: OPATH filter does not parse: expected a property name, found 'the end of the filter'",
        f"{path}:6:5: error: unknown key 'colour' in management scope #1",
        f"{path}:10:12: error: role group #1 refers to management scope 'Roms', which is not declared",
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_json_output(cli, write_playbook):
    path = write_playbook("exkit: 1\nname: x\nbogus: 1\n")
    result = cli("validate", path, "--output", "json")
    assert result.exit_code == 1
    diagnostic = json.loads(result.stdout)[0]
    assert diagnostic | {"file": "", "hint": ""} == {
        "file": "", "line": 3, "column": 1, "severity": "error", "code": "unknown-key",
        "message": "unknown key 'bogus' in the playbook", "hint": ""}
    assert diagnostic["file"] == str(path)
    # The hint lists the keys a playbook may have, sorted; the wrong key is not among them.
    assert diagnostic["hint"].startswith("allowed keys: ")
    allowed = diagnostic["hint"].removeprefix("allowed keys: ").split(", ")
    assert allowed == sorted(allowed)
    assert {"exkit", "name", "description", "vars", "scopes", "role_groups", "platform"} <= set(allowed)
    assert "bogus" not in allowed


def test_render_to_file_and_stdout_match(cli, tmp_path):
    classic = REPO / "playbooks" / "classic.yaml"
    out = tmp_path / "classic.ps1"
    assert cli("render", classic, "--out", out).exit_code == 0
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data[3:].decode() == cli("render", classic).stdout


def test_render_var_overrides_playbook_default(cli):
    result = cli("render", REPO / "playbooks" / "classic.yaml", "--var", "service_account=other@contoso.com")
    assert result.exit_code == 0
    assert "-Members @('other@contoso.com')" in result.stdout


def test_bad_var_syntax(cli):
    result = cli("render", REPO / "playbooks" / "classic.yaml", "--var", "novalue")
    assert result.exit_code == 2
    assert "is not NAME=VALUE" in result.stderr


def test_render_refuses_invalid_playbook(cli, write_playbook):
    result = cli("render", write_playbook("exkit: 1\nname: x\nscopes: [{name: R}]\n"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "the scope selects nothing" in result.stderr


def test_schema_is_published_and_current(cli):
    result = cli("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "exkit playbook"
    assert {"exkit", "name"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    committed = (REPO / "exkit.schema.json").read_text()
    assert committed == schema_text(), "exkit.schema.json is stale: run exkit schema --out exkit.schema.json"


def test_examples_validate_against_the_json_schema():
    import jsonschema
    from ruamel.yaml import YAML

    schema = json.loads(schema_text())
    for path in PLAYBOOKS:
        jsonschema.validate(YAML(typ="safe").load(path.read_text()), schema)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "toolkit", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith("exkit ")
