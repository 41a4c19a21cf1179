"""Issue 19: each bypass an attacker (who can change files in a playbook repository) or a careless operator found,
tried again: it must fail safely. Templates and playbook expressions are sandboxed and bounded; names that become paths
are safe; writes stay in the folder given and follow no symbolic link."""

from __future__ import annotations

import os
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
    assert cli("check", out).exit_code == 0


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
