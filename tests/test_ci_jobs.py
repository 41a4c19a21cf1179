"""The README's CI jobs (GitHub Actions, Azure Pipelines) and pre-commit hooks, run as written.

Each job's shell steps run with bash in a throw-away playbook repository (an ``origin`` with ``main`` and a
pull-request branch), the way the CI system would run them: its variables set or its macros expanded, ``gh`` and
``curl`` replaced by recorders on PATH, exkit the one installed in this environment. The checkout and pip install
steps are the CI system's and the network's, and are not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import REPO

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
RECORDER = """#!/bin/sh
echo "$0 $*" >> "$EXKIT_TEST_RECORD/calls"
while [ $# -gt 0 ]; do
    case "$1" in
        --body-file) cp "$2" "$EXKIT_TEST_RECORD/comment.md" ;;
        --data) cp "${2#@}" "$EXKIT_TEST_RECORD/comment.json" ;;
    esac
    shift
done
"""
ROOMS = "    rooms: true\n"
CHANGES = {  # (old, new) in playbooks/classic.yaml
    # deliberate in the playbook (validate notes it, never fails), a widening all the same
    "widening": ("    scope: Room mailboxes\n", "    all_mailboxes: true\n"),
    "narrowing": (ROOMS, "    rooms: true\n    office: Berlin\n"),
}


def readme_job(marker: str) -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(# " + re.escape(marker) + r"\n.*?)```", text, re.S)
    assert match, f"the README has no {marker} block"
    return YAML(typ="safe").load(match.group(1))


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV, **(env or {})})


@pytest.fixture
def pull_request(tmp_path):
    """A playbook repository cloned from its origin, on a pull-request branch; returns (checkout, change → None)."""
    exkit = str(Path(sys.executable).parent / "exkit")
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copytree(REPO / "playbooks", seed / "playbooks", ignore=shutil.ignore_patterns("*.csv", "hosted-*.yaml", "delegate-*.yaml"))
    # one organisation (no inventory), no warnings under --strict
    shutil.copy(REPO / "playbooks" / "recipients.sample.csv", seed / "recipients.csv")
    run([exkit, "render", "playbooks/classic.yaml", "playbooks/direct-assignment.yaml", "--out", "reviewed"], seed)
    run(["git", "init", "-q", "-b", "main"], seed)
    run(["git", "add", "."], seed)
    run(["git", "commit", "-qm", "base"], seed)
    run(["git", "push", "-q", str(origin), "main"], seed)
    run(["git", "clone", "-q", str(origin), str(work)], tmp_path)
    run(["git", "checkout", "-q", "-b", "pr"], work)

    def change(kind: str) -> None:
        playbook = work / "playbooks" / "classic.yaml"
        old, new = CHANGES[kind]
        assert old in playbook.read_text()
        playbook.write_text(playbook.read_text().replace(old, new))
        run([exkit, "render", "playbooks/classic.yaml", "playbooks/direct-assignment.yaml", "--out", "reviewed"], work)
        run(["git", "commit", "-qam", kind], work)

    return work, change


def run_steps(steps: list[str], work: Path, env: dict[str, str]) -> list[int]:
    fake = work.parent / "fake-bin"
    fake.mkdir(exist_ok=True)
    for tool in ("gh", "curl"):
        (fake / tool).write_text(RECORDER)
        (fake / tool).chmod(0o755)
    record = work.parent / "record"
    record.mkdir(exist_ok=True)
    path = f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    codes = []
    for step in steps:
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step], cwd=work,
                                capture_output=True, text=True,
                                env={**os.environ, **env, "PATH": path, "EXKIT_TEST_RECORD": str(record)})
        codes.append(result.returncode)
        assert result.returncode in (0, 1), f"{step}\n{result.stdout}\n{result.stderr}"
        if result.returncode:
            break  # a failing step ends the job
    return codes


def shell_steps(steps: list[dict], key: str) -> list[str]:
    return [s[key] for s in steps if key in s and "pip install" not in s[key]]


@pytest.mark.parametrize("kind", ["widening", "narrowing"])
def test_github_actions_job(pull_request, kind):
    work, change = pull_request
    change(kind)
    job = readme_job(".github/workflows/exkit-review.yml")["jobs"]["exkit"]
    steps = job["steps"]
    assert {"uses": "actions/checkout@v4", "with": {"fetch-depth": 0}} in steps  # the base branch is fetched
    env = {"GITHUB_BASE_REF": "main", "GH_TOKEN": "token", "PR_NUMBER": "7", **job["env"]}
    codes = run_steps(shell_steps(steps, "run"), work, env)
    assert codes == [0, 0, 0, 0, 1 if kind == "widening" else 0]  # diff, comment, validate, check, gate
    record = work.parent / "record"
    assert "gh pr comment 7 --body-file impact.md" in (record / "calls").read_text()
    comment = (record / "comment.md").read_text()
    assert "| principal | right | before → after |" in comment
    assert "| svc-rooms@contoso.com | ApplicationImpersonation | 17 mailboxes → " in comment
    assert ("**:red_circle: 4 EquipmentMailbox, 2 SharedMailbox, 34 UserMailbox**" in comment) == (kind == "widening")


def test_azure_pipelines_job(pull_request):
    work, change = pull_request
    change("widening")
    pipeline = readme_job("azure-pipelines.yml")
    assert {"checkout": "self", "fetchDepth": 0} in pipeline["steps"]
    macros = {"System.PullRequest.TargetBranch": "refs/heads/main", "System.CollectionUri": "https://dev.azure.com/org/",
              "System.TeamProject": "rooms", "Build.Repository.ID": "repo-id", "System.PullRequest.PullRequestId": "42",
              "System.AccessToken": "token"}

    def expand(text: str) -> str:  # Azure Pipelines replaces $(Name) macros before the shell sees the script
        return re.sub(r"\$\(([A-Za-z.]+)\)", lambda m: macros[m.group(1)], text)

    steps = [expand(s) for s in shell_steps(pipeline["steps"], "script")]
    env = {name: expand(value) for step in pipeline["steps"] for name, value in (step.get("env") or {}).items()}
    env.update({k: str(v) for k, v in pipeline["variables"].items()})
    codes = run_steps(steps, work, env)
    assert codes == [0, 0, 0, 0, 1]
    calls = (work.parent / "record" / "calls").read_text()
    assert ("-H Authorization: Bearer token -H Content-Type: application/json --data @comment.json "
            "https://dev.azure.com/org/rooms/_apis/git/repositories/repo-id/pullRequests/42/threads?api-version=7.1"
            in calls)
    comment = json.loads((work.parent / "record" / "comment.json").read_text())
    assert "**:red_circle: 4 EquipmentMailbox, 2 SharedMailbox, 34 UserMailbox**" in comment["comments"][0]["content"]


def test_pre_commit_hooks_run_as_pre_commit_would(pull_request):
    """Each hook's entry and args, with the changed files its ``files`` pattern selects (pass_filenames)."""
    work, change = pull_request
    hooks = {h["id"]: h for h in YAML(typ="safe").load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"exkit-validate", "exkit-check"}
    files = ["playbooks/classic.yaml", "recipients.csv", "reviewed/manifest.json"]

    def hook(name: str) -> int:
        spec = hooks[name]
        assert spec["language"] == "python"  # pre-commit installs this repository (its exkit console script)
        selected = [f for f in files if re.search(spec.get("files", ""), f)] if spec.get("pass_filenames",
                                                                                            True) else []
        command = spec["entry"].split() + list(spec.get("args", [])) + selected
        return subprocess.run([str(Path(sys.executable).parent / command[0]), *command[1:]], cwd=work,
                              capture_output=True).returncode

    assert hook("exkit-validate") == 0 and hook("exkit-check") == 0
    playbook = work / "playbooks" / "classic.yaml"
    playbook.write_text(playbook.read_text().replace(ROOMS, "    rooms: true\n    office: Berlin\n"))
    assert hook("exkit-check") == 1  # stale: the playbook changed, reviewed/ did not
    playbook.write_text(playbook.read_text().replace("    office: Berlin\n", "    office: [Berlin\n"))
    assert hook("exkit-validate") == 1
