from __future__ import annotations

import queue
import shutil
import textwrap
import threading
from pathlib import Path
from typing import IO

import pytest
from typer.testing import CliRunner

from toolkit.cli import app

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))
# The values an example playbook without defaults gets from an inventory (here: Fabrikam's of inventory.example.yaml).
EXAMPLE_VARS = {"hosted-tenant": {"tenant": "fabrikam", "tenant_ou": "OU=Fabrikam,OU=Hosting,DC=hoster,DC=local",
                                  "service_account": "svc-rooms@fabrikam.example"}}


def readline_within(stream: IO[str], seconds: float) -> str:
    """One line from a child process's pipe, or a test failure after ``seconds`` (a bare readline() can hang CI)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"no line from the child process within {seconds} s")


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    """Every test writes its run records to its own folder, never to the user's state directory."""
    path = tmp_path / "runs"
    monkeypatch.setenv("EXKIT_RUNS_DIR", str(path))
    return path


@pytest.fixture
def write_playbook(tmp_path):
    """Write a dedented playbook to a file and return its path."""

    def write(text: str, name: str = "playbook.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def sandbox_state(tmp_path, monkeypatch):
    """A private sandbox state file for the test (the default target reads $EXKIT_SANDBOX_STATE)."""
    path = tmp_path / "sandbox" / "state.json"
    monkeypatch.setenv("EXKIT_SANDBOX_STATE", str(path))
    return path


@pytest.fixture
def exchange():
    """A fresh seed organisation and an interpreter with its cmdlets: run(script) → outcome."""
    from toolkit.sandbox.cmdlets import ExchangeCmdlets
    from toolkit.sandbox.interpreter import Interpreter
    from toolkit.sandbox.seed import seed_organisation

    class Exchange:
        def __init__(self):
            self.org = seed_organisation()
            self.interpreter = Interpreter(ExchangeCmdlets(self.org).commands())

        def run(self, script: str):
            return self.interpreter.run(textwrap.dedent(script))

    return Exchange()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A copy of the examples and the inventory, used as the current directory (like a config repository)."""
    shutil.copytree(REPO / "playbooks", tmp_path / "playbooks")
    shutil.copy(REPO / "inventory.example.yaml", tmp_path / "inventory.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refuse_writes(state_path: Path, identity: str, message: str, platform: str = "exchange-server") -> None:
    """Make the organisation in ``state_path`` refuse changes to ``identity`` (see Organisation.failing_writes)."""
    from toolkit.sandbox import org as store

    organisation = store.load(state_path, platform)
    organisation.failing_writes[identity.lower()] = message
    store.save(state_path, organisation)
