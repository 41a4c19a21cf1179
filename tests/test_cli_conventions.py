"""CLI conventions: help shows metavars users recognise (no Python type names, nothing beside flags), shell
completion offers target names from the inventory and playbook paths, and a cold start imports no heavy module it
does not need (the figures themselves come from benchmarks/coldstart.py, not from a timed test)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

RAW_TYPE = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\]|[a-z]+ range)>")


def exkit(*args: str, env: dict[str, str] | None = None, cwd=REPO) -> subprocess.CompletedProcess[str]:
    """The real command as a user starts it (named exkit: completion's variables carry the program's name)."""
    start = "import sys; sys.argv[0] = 'exkit'; from toolkit.cli import main; main()"
    return subprocess.run([sys.executable, "-c", start, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "120", **(env or {})}, timeout=60)


def command_paths() -> list[list[str]]:
    from typer.main import get_command

    from toolkit.cli import app

    paths: list[list[str]] = [[]]

    def walk(command, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "exkit")
def test_help_shows_metavars_not_python_types(cli, path):
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert not RAW_TYPE.search(result.output), result.output
    for line in result.output.splitlines():  # flags take no value: nothing between the flag and its help
        if re.match(r"\s+(-\w, )?--(yes|strict|destroy|force|help|version|detailed-exitcode)\b", line):
            assert re.match(r"\s+(-\w, )?--[\w-]+\s{2,}\S", line), line


def test_help_names_values_the_way_users_write_them(cli):
    text = cli("apply", "--help").output
    for shown in ("PLAYBOOK", "-i, --inventory FILE", "-t, --target NAME", "-e, --var NAME=VALUE",
                  "-o, --output text|json", "--report FILE", "--reviewed FOLDER", "-l, --limit PATTERNS"):
        assert shown in text, (shown, text)
    root = cli("--help").output
    assert "--install-completion" in root and "--show-completion" in root


def complete(words: str, env: dict[str, str] | None = None, cwd=REPO) -> list[str]:
    """What bash completion offers for the last word of `words` (typer's protocol, as its shell script calls it)."""
    run = exkit(env={"_EXKIT_COMPLETE": "complete_bash", "COMP_WORDS": words,
                     "COMP_CWORD": str(len(words.split(" ")) - 1), **(env or {})}, cwd=cwd)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return run.stdout.split()


def test_completion_of_target_names_from_the_inventory():
    assert complete("exkit plan playbooks/classic.yaml -i inventory.example.yaml -t ex") == ["ex01"]
    offered = complete("exkit plan playbooks/classic.yaml -i inventory.example.yaml -t ")
    assert {"ex01", "loopback", "contoso-online", "sandbox-fabrikam"} <= set(offered)
    # --limit: targets and groups, completing the last of comma-separated patterns
    assert complete("exkit apply playbooks/classic.yaml -i inventory.example.yaml -l ex01,host") == [
        "ex01,hoster-mgmt", "ex01,hosting"]
    assert complete("exkit inventory show -i inventory.example.yaml lo") == ["loopback"]


def test_completion_of_playbook_and_inventory_paths():
    assert complete("exkit validate playbooks/cla") == ["playbooks/classic.yaml"]
    assert complete("exkit plan playb") == ["playbooks/"]
    assert complete("exkit plan playbooks/classic.yaml -i inventory.ex") == ["inventory.example.yaml"]


def test_completion_with_a_broken_or_missing_inventory_offers_nothing_and_prints_nothing(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("targets: [unclosed\n", encoding="utf-8")
    assert complete(f"exkit plan p.yaml -i {broken} -t ") == []
    assert complete(f"exkit plan p.yaml -i {tmp_path / 'missing.yaml'} -t ") == []
    assert complete("exkit plan p.yaml -t sa") == ["sandbox"]  # no inventory: the embedded sandbox


def test_show_completion_prints_a_script_for_the_shell():
    # typer detects the calling shell from the process tree (shellingham), which a CI runner may not show; its own
    # switch for tests makes --show-completion take the shell by name instead
    run = exkit("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert run.returncode == 0 and "_EXKIT_COMPLETE=complete_bash" in run.stdout, run.stdout + run.stderr


HEAVY = ("winrm", "msal", "cryptography", "tree_sitter", "tree_sitter_powershell", "requests", "keyring", "rich",
         "spnego", "tenacity")
PROBE = """
import atexit, json, sys
def loaded():  # modules executed (a LazyLoader module not yet touched does not count)
    executed = [m for m, module in list(sys.modules.items()) if type(module).__name__ != "_LazyModule"]
    print(json.dumps(sorted({m.split(".")[0] for m in executed} | {m for m in executed if m.startswith("toolkit")})),
          file=sys.stderr)
atexit.register(loaded)
sys.argv = ["exkit", *sys.argv[1:]]
from toolkit.cli import main
main()
"""


def imported(*args: str) -> set[str]:
    run = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    return set(json.loads(run.stderr.strip().splitlines()[-1]))


def test_help_and_validate_import_no_heavy_module():
    """`exkit --help` and `exkit validate` must start fast: the connectors' and the reports' libraries (and the
    PowerShell grammar) are imported by the commands that use them only."""
    help_modules = imported("--help")
    assert not help_modules & {*HEAVY, "pydantic", "jinja2", "ruamel"}, help_modules
    assert not {m for m in help_modules if m.startswith("toolkit.") and m not in {
        "toolkit.cli", "toolkit.completion", "toolkit.errors", "toolkit.lazy", "toolkit.playbook",
        "toolkit.playbook.diagnostics", "toolkit.targets", "toolkit.targets.base",
        "toolkit.sandbox", "toolkit.verify"}}, help_modules  # (packages: their __init__ only)
    validate_modules = imported("validate", "playbooks/classic.yaml")
    assert not validate_modules & set(HEAVY), validate_modules
    assert "toolkit.playbook.validate" in validate_modules


def test_coldstart_benchmark_prints_its_last_line():
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "coldstart.py"), "--runs", "1", "--imports", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"help_ms=\d+ validate_ms=\d+ help_median_ms=\d+ validate_median_ms=\d+", last), run.stdout


def test_verify_off_a_terminal_prints_one_line_per_check(cli, sandbox_state):
    from io import StringIO

    from rich.console import Console

    from toolkit.targets.sandbox import SandboxTarget
    from toolkit.verify import report
    from toolkit.verify.checks import Check

    classic = REPO / "playbooks" / "classic.yaml"
    assert cli("apply", classic, "--yes").exit_code == 0
    widened = SandboxTarget(platform="exchange-server").run_script(
        "Set-ManagementScope -Identity 'Room mailboxes' "
        "-RecipientRestrictionFilter \"RecipientType -eq 'UserMailbox'\"")
    assert widened.exit_code == 0, widened.stderr
    result = cli("verify", classic)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Verify on sandbox organisation ")
    assert re.fullmatch(r"Verify: \d+ passed, [1-9]\d* failed\.", lines[-1]), lines[-1]
    assert lines[1].startswith("FAIL scope 'Room mailboxes': ") and "│" not in result.stdout
    assert all(re.match(r"(PASS|FAIL) [^:]+: \S", line) for line in lines[1:-1]), lines
    # on a terminal: a table
    screen = StringIO()
    report.show_checks(Console(file=screen, force_terminal=True, width=100), [Check("scope 'x'", True, "fine")], "t")
    assert "│" in screen.getvalue() and "PASS" in screen.getvalue()
