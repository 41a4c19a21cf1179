"""Issue 19: each bypass an attacker (who can change files in a playbook repository) or a careless operator found,
tried again: it must fail safely. Templates and playbook expressions are sandboxed and bounded; names that become paths
are safe; writes stay in the folder given and follow no symbolic link."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO
from toolkit.sandbox import org as store


def override(workdir, name: str, extra: str, where: str = "") -> str:
    """Copy a built-in template into ./overrides with ``extra`` inserted after ``where`` (default: first)."""
    folder = workdir / "overrides"
    folder.mkdir(exist_ok=True)
    text = (REPO / "templates" / "common" / name).read_text()
    assert where in text
    (folder / name).write_text(text.replace(where, where + extra, 1) if where else extra + text)
    return str(folder)


# ------------------------------------------------------------------------------------------ templates: sandbox
@pytest.mark.parametrize("escape", [
    "{{ cycler.__init__.__globals__.os.popen('id > pwned.txt').read() }}",
    "{{ joiner.__init__.__globals__.os.system('id > pwned.txt') }}",
    "{{ (name|attr('__class__')).__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__.os.popen('id > pwned.txt').read() }}",
])
def test_template_cannot_reach_python(cli, workdir, escape):
    templates = override(workdir, "role_group.ps1.j2", escape + "\n")
    for command in (["render", "playbooks/classic.yaml", "--templates", templates],
                    ["render", "playbooks/classic.yaml", "--templates", templates, "--out", "reviewed"]):
        result = cli(*command)
        assert result.exit_code == 1, result.output
        assert "template" in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "pwned.txt").exists()
    assert not (workdir / "reviewed").exists() or not list((workdir / "reviewed").glob("*.ps1"))


def test_template_cannot_construct_the_powershell_marker(cli, workdir):
    """``blocks[0].__class__(…)`` made a PowerShell instance, which the quoting function emits verbatim."""
    folder = workdir / "overrides"
    folder.mkdir()
    script = (REPO / "templates" / "exchange-server" / "script.ps1.j2").read_text()
    (folder / "script.ps1.j2").write_text(script + "{{ blocks[0].__class__('Remove-Mailbox ' ~ playbook_name) }}\n")
    result = cli("render", "playbooks/classic.yaml", "--templates", folder)
    assert result.exit_code == 1
    assert "script.ps1.j2:" in result.stderr and "__class__" in result.stderr  # file and line named
    # without the escape, a block's methods give plain text, which the quoting function quotes
    (folder / "script.ps1.j2").write_text(script + "# {{ blocks[0][:5] ~ playbook_name }}\n")
    result = cli("render", "playbooks/classic.yaml", "--templates", folder)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("# '")


@pytest.mark.parametrize("expression, message", [
    ("{{ 'x' * 1500000000 }}", "'*' would build"),
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}", "loop iterations"),
    ("{{ 'x'|center(1500000000) }}", "larger than"),
    ("{{ '%999999999s' % 'x' }}", "width or precision"),
    ("{{ '{:>999999999}'.format('x') }}", "width or precision"),
    ("{{ 2 ** 100000000 }}", "too large"),
    ("{% set a = 'x' * 900000 %}{{ a ~ a }}", "concatenation"),
])
def test_playbook_expressions_are_bounded(cli, write_playbook, expression, message):
    playbook = write_playbook(f"""
        exkit: 1
        name: bounded
        description: a huge value
        scopes:
          - name: "{expression}"
            rooms: true
        """)
    result = cli("validate", playbook)
    assert result.exit_code == 1
    assert f"{playbook}:5:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_template_bounds_apply_to_overrides(cli, workdir):
    templates = override(workdir, "role_group.ps1.j2",
                         "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}\n")
    result = cli("render", "playbooks/classic.yaml", "--templates", templates)
    assert result.exit_code == 1
    assert "role_group.ps1.j2:1: template refused" in result.stderr


# ------------------------------------------------------------------------------------------ names and paths
@pytest.mark.parametrize("name, reason", [
    ("x/../../../escaped-target", "path separator"),
    ("..", "starts with '.'"),
    ("a\\0b", "U+0000"),
    ("n" * 300, "300 characters"),
    ("CON", "reserved device name"),
    ("evil\\u202ename", "U+202E"),
])
def test_target_names_are_safe_file_names(cli, workdir, name, reason):
    (workdir / "inventory.yaml").write_text(f'targets:\n  "{name}":\n    kind: sandbox\n    state: s.json\n')
    result = cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "--out", "out/sub")
    assert result.exit_code == 1
    assert result.stderr.startswith("inventory.yaml:2:3: error: the target name") and reason in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "out").exists() and not (workdir / "escaped-target.ps1").exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["inventory.yaml", "playbooks"]


def test_render_refuses_symbolic_links_in_the_output_folder(cli, workdir):
    victim = workdir / "victim.txt"
    victim.write_text("precious\n")
    out = workdir / "reviewed"
    out.mkdir()
    os.symlink(victim, out / "classic.sandbox.ps1")
    result = cli("render", "playbooks/classic.yaml", "--out", out)
    assert result.exit_code == 1
    assert "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text() == "precious\n"
    os.symlink(victim, workdir / "single.ps1")
    result = cli("render", "playbooks/classic.yaml", "--out", workdir / "single.ps1")
    assert result.exit_code == 1 and "symbolic link" in result.stderr
    assert victim.read_text() == "precious\n"


def test_render_removes_scripts_it_no_longer_produces(cli, workdir):
    out = workdir / "reviewed"
    assert cli("render", "playbooks/classic.yaml", "playbooks/direct-assignment.yaml", "--out", out).exit_code == 0
    assert (out / "direct-assignment.sandbox.ps1").exists()
    result = cli("render", "playbooks/classic.yaml", "--out", out)
    assert result.exit_code == 0
    assert "removed" in result.stderr and "direct-assignment.sandbox.ps1" in result.stderr
    assert not (out / "direct-assignment.sandbox.ps1").exists() and (out / "classic.sandbox.ps1").exists()
    assert cli("check", out).exit_code == 0  # a deliberate subset of the folder: no scope recorded


def test_check_fails_for_a_playbook_added_without_a_reviewed_script(cli, workdir):
    for other in [*(workdir / "playbooks").glob("online-*.yaml"), workdir / "playbooks" / "hosted-tenant.yaml"]:
        other.unlink()
    out = workdir / "reviewed"
    assert cli("render", *sorted((workdir / "playbooks").glob("*.yaml")), "--out", out).exit_code == 0
    assert cli("check", out).exit_code == 0
    shutil.copy(workdir / "playbooks" / "classic.yaml", workdir / "playbooks" / "new.yaml")
    result = cli("check", out)
    assert result.exit_code == 1
    assert "playbooks/new.yaml: a playbook with no reviewed script" in result.stderr


def test_templates_copy_and_show_take_only_builtin_names(cli, workdir):
    (workdir / "README.md").write_text("mine\n")
    folder = workdir / "a" / "b"
    result = cli("templates", "copy", "../../README.md", folder, "--force")
    assert result.exit_code == 1 and "no built-in template" in result.stderr
    assert (workdir / "README.md").read_text() == "mine\n"
    result = cli("templates", "show", "hostname", "--platform", "../../../../../../etc")
    assert result.exit_code == 2 and "unknown platform" in result.stderr and result.stdout == ""
    result = cli("templates", "show", "../exchange-server/script.ps1.j2")
    assert result.exit_code == 1 and result.stdout == ""
    folder.mkdir(parents=True)
    os.symlink(workdir / "README.md", folder / "role_group.ps1.j2")
    result = cli("templates", "copy", "role_group.ps1.j2", folder, "--force")
    assert result.exit_code == 1 and "symbolic link" in result.stderr
    assert (workdir / "README.md").read_text() == "mine\n"
    assert cli("templates", "copy", "role_group.ps1.j2", workdir / "c").exit_code == 0


def test_sandbox_lock_is_not_truncated_or_followed(cli, workdir, sandbox_state):
    victim = workdir / "victim.txt"
    victim.write_text("precious\n")
    sandbox_state.parent.mkdir(parents=True)
    lock = sandbox_state.with_name(sandbox_state.name + ".lock")
    os.symlink(victim, lock)
    result = cli("apply", "playbooks/classic.yaml", "--yes")
    assert result.exit_code == 1 and "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert victim.read_text() == "precious\n" and not sandbox_state.exists()
    lock.unlink()
    lock.write_text("kept\n")
    assert cli("apply", "playbooks/classic.yaml", "--yes").exit_code == 0
    assert lock.read_text() == "kept\n"  # opened without truncation
    assert store.load(sandbox_state).role_groups


def test_diff_passes_revisions_after_end_of_options(cli, workdir):
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "add", "."], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"], check=True)
    result = cli("diff", "--base=--output=written.txt", "playbooks/classic.yaml")
    assert result.exit_code == 2 and "'--output=written.txt' is not a git revision" in result.stderr  # an error
    assert not (workdir / "written.txt").exists()


# ------------------------------------------------------------------------------------------ pinning (--reviewed)
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def commit(message: str = "reviewed") -> str:
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "-A"], check=True, env=env)
    subprocess.run(["git", "commit", "-qm", message], check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(workdir, cli):
    """A config repository: playbooks, an inventory of sandbox targets (each its own state file, the override
    templates of a group), a reviewed folder rendered from them and committed."""
    (workdir / "overrides").mkdir()
    for name in ("role_group.ps1.j2", "snapshot.ps1.j2"):
        shutil.copy(REPO / "templates" / "common" / name, workdir / "overrides")
    (workdir / "inventory.yaml").write_text(
        "targets:\n"
        "  prod:\n    kind: sandbox\n    state: state/prod.json\n"
        "groups:\n"
        "  hosting:\n    templates: overrides\n    targets:\n"
        "      fabrikam: {kind: sandbox, state: state/fabrikam.json, vars: {service_account: svc-rooms@contoso.com}}\n"
        "      tailspin: {kind: sandbox, state: state/tailspin.json, vars: {service_account: admin@contoso.com}}\n")
    for other in [*(workdir / "playbooks").glob("online-*.yaml"), workdir / "playbooks" / "hosted-tenant.yaml"]:
        other.unlink()  # they need contoso-online's certificate, or a tenant's values
    subprocess.run(["git", "init", "-q", "-b", "main"], check=True)
    result = cli("render", *sorted(str(p) for p in (workdir / "playbooks").glob("*.yaml")), "-i",
                        "inventory.yaml", "--out", "reviewed")
    assert result.exit_code == 0, result.stderr
    commit()
    return workdir


def state(workdir, target: str) -> str | None:
    path = workdir / "state" / f"{target}.json"
    return path.read_text() if path.exists() else None


def test_the_sneaky_facts_line_is_refused_before_any_connection(cli, repo):
    """Issue 19 item 1: a line added to the facts branch of an override ran during plan, unreviewed."""
    template = repo / "overrides" / "role_group.ps1.j2"
    template.write_text(template.read_text().replace(
        "{% if state == 'facts' %}\n", "{% if state == 'facts' %}\nNew-ManagementRoleAssignment -Name 'sneaky' "
        "-Role 'ApplicationImpersonation' -User 'admin@contoso.com' | Out-Null\n", 1))
    commit("template change, not re-rendered")
    result = cli("check", "reviewed")
    assert result.exit_code == 1
    assert "reviewed/classic.fabrikam.facts.ps1: stale" in result.stderr and "the templates" in result.stderr
    for command in (["apply", "-t", "fabrikam", "--yes"], ["apply", "--limit", "hosting", "--yes"],
                    ["destroy", "-t", "fabrikam", "--yes"]):
        result = cli(*command[:1], "playbooks/classic.yaml", "-i", "inventory.yaml", *command[1:],
                     "--reviewed", "reviewed")
        assert result.exit_code == 3, result.output
        assert "facts script" in result.stderr and "changed since review: the templates" in result.stderr
    assert state(repo, "fabrikam") is None and state(repo, "tailspin") is None  # nothing ran, anywhere
    # the target outside the group (no override) is unaffected and its scripts are still the reviewed ones
    assert cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
               "--yes").exit_code == 0
    assert "sneaky" not in state(repo, "prod")


def test_a_copied_manifest_and_hand_edited_scripts_are_refused(cli, repo):
    """Issue 19 item 2: apply trusted manifest.json, not the reviewed .ps1 files."""
    playbook = repo / "playbooks" / "classic.yaml"
    original = playbook.read_text()
    playbook.write_text(original.replace("    rooms: true", "    rooms: true\n    equipment: true"))
    assert cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml", "--out", "changed").exit_code == 0
    shutil.copy(repo / "changed" / "manifest.json", repo / "reviewed" / "manifest.json")
    shutil.rmtree(repo / "changed")
    commit("a manifest from elsewhere")
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--yes")
    assert result.exit_code == 3 and "the manifest does not belong to the reviewed scripts" in result.stderr
    assert state(repo, "prod") is None
    # a hand-edited script whose manifest entry was edited to match: the script exkit renders is not that one
    subprocess.run(["git", "checkout", "-q", "HEAD~1", "--", "reviewed"], check=True)
    script = repo / "reviewed" / "classic.prod.ps1"
    edited = script.read_bytes().replace(b"'RoomMailbox'", b"'UserMailbox'")
    script.write_bytes(edited)
    data = json.loads((repo / "reviewed" / "manifest.json").read_text())
    data["scripts"]["classic.prod.ps1"]["sha256"] = hashlib.sha256(edited.removeprefix(b"\xef\xbb\xbf")).hexdigest()
    (repo / "reviewed" / "manifest.json").write_text(json.dumps(data))
    commit("hand edit")
    for text in (original, playbook.read_text()):
        playbook.write_text(text)
        result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed",
                     "reviewed", "--yes")
        assert result.exit_code == 3 and "is not the reviewed one" in result.stderr
    assert state(repo, "prod") is None


def test_a_folder_reviewed_for_one_target_is_refused_for_another(cli, repo):
    """Issue 19 item 2: 'prod' of another inventory pointing elsewhere was accepted."""
    (repo / "elsewhere").mkdir()
    (repo / "elsewhere" / "inventory.yaml").write_text(
        "targets:\n  prod:\n    kind: sandbox\n    state: ../state/other.json\n")
    commit("another inventory")
    result = cli("apply", "playbooks/classic.yaml", "-i", "elsewhere/inventory.yaml", "-t", "prod", "--reviewed",
                 "reviewed", "--yes")
    assert result.exit_code == 3
    assert result.stderr == ("exkit: error: refusing to apply: reviewed was reviewed for target 'prod' at "
                             "sandbox:state/prod.json (exchange-server, inventory inventory.yaml), not "
                             "sandbox:../state/other.json (exchange-server, inventory elsewhere/inventory.yaml); "
                             "nothing ran\n")
    assert state(repo, "other") is None


def test_reviewed_means_committed_and_the_commit_is_recorded(cli, repo, runs_dir):
    """Issue 19 item 5: an uncommitted re-render was 'the reviewed one'; records kept no commit."""
    playbook = repo / "playbooks" / "classic.yaml"
    playbook.write_text(playbook.read_text().replace("    rooms: true", "    rooms: true\n    equipment: true"))
    assert cli("render", *sorted(str(p) for p in (repo / "playbooks").glob("*.yaml")), "-i", "inventory.yaml",
               "--out", "reviewed").exit_code == 0
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--yes")
    assert result.exit_code == 3 and "has uncommitted changes (reviewed/classic." in result.stderr
    assert state(repo, "prod") is None
    head = commit("render")
    # --reviewed-ref: the reviewed scripts must equal the protected branch's (main is one commit behind here)
    subprocess.run(["git", "branch", "-q", "protected", "HEAD~1"], check=True)
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--reviewed-ref", "protected", "--yes")
    assert result.exit_code == 3 and "is not the same as in protected" in result.stderr
    assert state(repo, "prod") is None
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--reviewed-ref", "main", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    from toolkit.fleet import records

    record = records.read_all()[-1]
    assert record["reviewed_commit"] == head and record["pin"]["status"] == "verified"
    assert record["pin"]["ref"] == "main" and set(record["pin"]["scripts"]) == {"facts", "apply"}


def test_refusals_name_what_changed(cli, repo):
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--yes", "--var", "service_account=info@contoso.com")
    assert result.exit_code == 3 and "changed since review: the variables)" in result.stderr
    playbook = repo / "playbooks" / "classic.yaml"
    playbook.write_text(playbook.read_text().replace("    rooms: true", "    rooms: true\n    equipment: true"))
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed",
                 "--yes")
    assert result.exit_code == 3 and "changed since review: the playbook)" in result.stderr
    assert state(repo, "prod") is None


def test_destroy_and_verify_take_reviewed(cli, repo):
    args = ["playbooks/classic.yaml", "-i", "inventory.yaml", "-t", "prod", "--reviewed", "reviewed"]
    assert cli("apply", *args, "--yes").exit_code == 0
    assert cli("verify", *args).exit_code == 0
    snapshot = repo / "overrides" / "snapshot.ps1.j2"  # the group's, not prod's
    snapshot.write_text("# a comment nobody reviewed\n" + snapshot.read_text())
    commit("template")
    result = cli("verify", "playbooks/classic.yaml", "-i", "inventory.yaml", "--limit", "hosting", "--reviewed",
                 "reviewed")
    assert result.exit_code == 3 and "snapshot script" in result.stderr, result.output
    result = cli("destroy", *args, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "Room booking service accounts" not in state(repo, "prod")


def test_check_and_apply_from_any_directory(cli, repo, monkeypatch):
    """Issue 19 item 5: from another directory check said the playbook no longer exists; absolute paths were
    'never reviewed'."""
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    result = cli("check", "../reviewed")
    assert result.exit_code == 0, result.stderr
    result = cli("apply", repo / "playbooks" / "classic.yaml", "-i", repo / "inventory.yaml", "-t", "prod",
                 "--reviewed", repo / "reviewed", "--yes")
    assert result.exit_code == 0, result.stderr


def test_fleet_apply_with_one_reviewed_folder(cli, repo, runs_dir):
    """Issue 23: --reviewed with --limit, each script pinned to its target; one refusal stops every target."""
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "--limit", "hosting", "--reviewed",
                 "reviewed", "--yes", "--processes", "1")
    assert result.exit_code == 0, result.stderr
    assert "svc-rooms@contoso.com" in state(repo, "fabrikam") and "admin@contoso.com" in state(repo, "tailspin")
    from toolkit.fleet import records

    assert {r["target"]: r["pin"]["status"] for r in records.read_all()} == {"fabrikam": "verified",
                                                                               "tailspin": "verified"}
    # a script reviewed for fabrikam is not tailspin's: swapping a target's values refuses the whole run
    inventory = repo / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace("admin@contoso.com", "svc-rooms@contoso.com"))
    for path in (repo / "state").iterdir():
        path.unlink()
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "--limit", "hosting", "--reviewed",
                 "reviewed", "--yes")
    assert result.exit_code == 3
    assert "tailspin: refusing to apply" in result.stderr and "nothing ran anywhere" in result.stderr
    assert state(repo, "fabrikam") is None and state(repo, "tailspin") is None


def test_manifest_paths_are_relative_to_the_repository_root(repo):
    data = json.loads((repo / "reviewed" / "manifest.json").read_text())
    assert data["root"] == "repository" and data["inventory"] == "inventory.yaml"
    assert data["scripts"]["classic.prod.ps1"]["playbook"] == "playbooks/classic.yaml"
    assert data["scripts"]["classic.prod.facts.ps1"]["endpoint"] == "sandbox:state/prod.json"


# ------------------------------------------------------------------------------------------ secrets and reviewers' eyes
def test_secret_fields_are_never_echoed_whatever_their_type(cli, workdir):
    (workdir / "inventory.yaml").write_text(
        "targets:\n  x:\n    kind: exchange-server\n    host: h\n    transport: ntlm\n    username: u\n"
        "    password: 98765432101234\n")
    result = cli("inventory", "list", "-i", "inventory.yaml")
    assert result.exit_code == 1 and "inventory.yaml:7:15:" in result.stderr
    assert "98765432101234" not in result.output and "not shown" in result.stderr


@pytest.mark.parametrize("key", ["exchange_uri", "proxy"])
def test_urls_with_credentials_are_refused(cli, workdir, key):
    (workdir / "inventory.yaml").write_text(
        "targets:\n  x:\n    kind: exchange-server\n    host: h\n    transport: kerberos\n"
        f"    {key}: http://bob:Hunter2@h/PowerShell/\n")
    result = cli("render", "playbooks/classic.yaml", "-i", "inventory.yaml")
    assert result.exit_code == 1 and "inventory.yaml:6:" in result.stderr and "user name or password" in result.stderr
    assert "Hunter2" not in result.output


@pytest.mark.parametrize("field, value", [("name", "Rooms\\u202e"), ("description", "Impersonation\\u200b of rooms"),
                                          ("name", "\\u2066Rooms\\u2069")])
def test_bidi_and_zero_width_characters_are_refused(cli, write_playbook, field, value):
    playbook = write_playbook(f"""
        exkit: 1
        name: trojan
        description: d
        role_groups:
          - {field}: "{value}"
            {"description" if field == "name" else "name"}: Booking
            roles: [ApplicationImpersonation]
        """)
    result = cli("validate", playbook)
    assert result.exit_code == 1 and f"{playbook}:5:" in result.stderr
    assert "invisible character" in result.stderr and "shown escaped" in result.stderr and "\\u2" in result.stderr
    from toolkit.render.quoting import UnsafeValueError, ps_literal

    with pytest.raises(UnsafeValueError):  # and a value reaching a script any other way is refused there
        ps_literal(value.encode().decode("unicode_escape"))


def test_typographic_quotes_in_opath_values_are_refused(cli, write_playbook):
    playbook = write_playbook("""
        exkit: 1
        name: quotes
        description: d
        scopes:
          - name: Bookable
            rooms: true
            custom_attributes: {CustomAttribute1: "bookable’ -or Name -like ’*"}
          - name: Raw
            filter: "CustomAttribute1 -eq 'bookable’ -or Name -like ’*'"
        """)
    result = cli("validate", "--strict", playbook)
    assert result.exit_code == 1
    assert f"{playbook}:5:" in result.stderr and f"{playbook}:9:" in result.stderr
    assert result.stderr.count("typographic quote ’ (U+2019)") == 2


def test_markdown_report_escapes_html_and_reports_are_private(cli, write_playbook, sandbox_state, tmp_path,
                                                              runs_dir):
    playbook = write_playbook("""
        exkit: 1
        name: report
        description: d
        scopes:
          - name: "<img src=x onerror=alert(1)> | [link](http://evil)"
            rooms: true
        """)
    report = tmp_path / "report.md"
    report.write_text("old\n")
    os.chmod(report, 0o644)
    result = cli("apply", playbook, "--yes", "--report", report)
    assert result.exit_code == 0, result.stderr
    text = report.read_text()
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text and "\\[link\\]" in text
    assert os.stat(report).st_mode & 0o777 == 0o600
    assert [os.stat(p).st_mode & 0o777 for p in runs_dir.iterdir()] == [0o600]


def test_inventory_boundary_expressions_are_sandboxed_and_bounded(cli, workdir):
    for expression, message in (("{{ 'x' * 1500000000 }}", "'*' would build"),
                                ("{{ cycler.__init__.__globals__ }}", "unsafe")):
        (workdir / "inventory.yaml").write_text(
            f"targets:\n  t: {{kind: sandbox, boundary: {{recipient_root: \"{expression}\"}}}}\n")
        result = cli("plan", "playbooks/classic.yaml", "-i", "inventory.yaml")
        assert result.exit_code == 1 and "the boundary of target 't'" in result.stderr and message in result.stderr


def test_diff_markdown_shows_names_as_text(cli, workdir):
    old = workdir / "playbooks" / "classic.yaml"
    new = workdir / "new.yaml"
    new.write_text(old.read_text().replace("name: Room mailboxes", 'name: "Rooms`<img src=x onerror=alert(1)>`"')
                   .replace("scope: Room mailboxes", 'scope: "Rooms`<img src=x onerror=alert(1)>`"'))
    result = cli("diff", old, new, "--format", "markdown")
    assert result.exit_code == 1, result.output
    summary = result.stdout.split("<details>")[0]  # the script diff itself is inside a fenced code block
    assert "<img" not in summary and "&lt;img src=x onerror=alert(1)&gt;" in summary and "\\`" in summary


def test_fleet_apply_with_reviewed_and_report_pins_the_report_snapshots(cli, repo):
    page = repo / "fleet.md"
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "--limit", "hosting", "--reviewed",
                 "reviewed", "--yes", "--report", page, "--processes", "1")
    assert result.exit_code == 0, result.stderr
    assert os.stat(page).st_mode & 0o777 == 0o600
    snapshot = repo / "overrides" / "snapshot.ps1.j2"  # only the report's verify sends it
    snapshot.write_text("# a comment nobody reviewed\n" + snapshot.read_text())
    commit("snapshot template")
    for path in (repo / "state").iterdir():
        path.unlink()
    result = cli("apply", "playbooks/classic.yaml", "-i", "inventory.yaml", "--limit", "hosting", "--reviewed",
                 "reviewed", "--yes", "--report", page)
    assert result.exit_code == 3 and "snapshot script" in result.stderr
    assert state(repo, "fabrikam") is None and state(repo, "tailspin") is None
