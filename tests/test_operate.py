"""Operating exkit when the network or the operator's patience fails: every wait bounded by its setting, Ctrl-C
and SIGTERM handled at each stage, and a run record for any run that may have changed a target.

Signals go to a real ``exkit`` process; timeouts are asserted as bounds with generous margins (the measured time
is in each failure message), never as speed."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import trustme
from conftest import REPO, refuse_writes
from servers.exchange_online import App, LoopbackExchangeOnline
from servers.silent import SilentServer
from servers.winrm import Fault, LoopbackWinRM

from toolkit.fleet import records as runs
from toolkit.sandbox import org as store

CLASSIC = REPO / "playbooks" / "classic.yaml"
ROOMS = REPO / "playbooks" / "online-rooms.yaml"
PASSWORD = "S3cret!pässwörd"
USER = "CONTOSO\\exkit-admin"
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "exo-s3cret-value"
MARGIN_S = 20.0  # a loaded 2-core machine: bounds, not speed


# ------------------------------------------------------------------------------------------------ the real exkit
class Exkit:
    """``exkit`` as a subprocess in its own process group; both streams are read by threads, so that every wait
    here is bounded."""

    def __init__(self, *args: object, env: dict[str, str], stdin: object = subprocess.DEVNULL) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "toolkit", *map(str, args)], cwd=REPO,
                                        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**os.environ, **env}, start_new_session=True)
        self.chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.chunks]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.process, name)
        while chunk := os.read(stream.fileno(), 65536):
            self.chunks[name].append(chunk)

    def text(self, name: str) -> str:
        return b"".join(self.chunks[name]).decode("utf-8", "replace")

    def wait_for(self, text: str, stream: str = "stderr", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.text(stream):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"no {text!r} on {stream} within {timeout} s; stderr:\n{self.text('stderr')}")

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str, float]:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"exkit did not end within {timeout} s; stderr:\n{self.text('stderr')}") from None
        for reader in self.readers:
            reader.join(timeout=10)
        return self.process.returncode, self.text("stdout"), self.text("stderr"), time.monotonic() - self.started

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def env(tmp_path, runs_dir, sandbox_state):
    return {"EXKIT_RUNS_DIR": str(runs_dir), "EXKIT_SANDBOX_STATE": str(sandbox_state),
            "EXKIT_WINRM_PASSWORD": PASSWORD, "EXKIT_EXO_SECRET": SECRET}


def last_record():
    records = runs.read_all()
    assert records, "no run record"
    return records[-1]


# ------------------------------------------------------------------------------------------------ targets
@pytest.fixture
def winrm(tmp_path, monkeypatch):
    users = tmp_path / "ntlm-users"
    users.write_text(f"CONTOSO:exkit-admin:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD)
    with LoopbackWinRM(tmp_path / "exchange.json", {USER: PASSWORD}) as server:
        yield server, winrm_inventory(tmp_path, server.port)


def winrm_inventory(tmp_path, port, extra=""):
    inventory = tmp_path / "winrm-inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          lab:
            kind: exchange-server
            host: 127.0.0.1
            port: {port}
            scheme: http
            transport: ntlm
            username: '{USER}'
            password: env:EXKIT_WINRM_PASSWORD
            connect: snapin
            operation_timeout: 1
            read_timeout: 3
            connect_timeout: 2
        """) + extra)
    return inventory


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def exo(tmp_path, ca, monkeypatch):
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    monkeypatch.setenv("EXKIT_EXO_SECRET", SECRET)
    with LoopbackExchangeOnline(tmp_path / "tenant.json", tls, TENANT, [App(CLIENT_ID, None, SECRET)]) as server:
        yield server, exo_inventory(tmp_path, server.base, server.base)


def exo_inventory(tmp_path, login, exchange, extra=""):
    inventory = tmp_path / "exo-inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          t:
            kind: exchange-online
            tenant: {TENANT}
            client_id: {CLIENT_ID}
            client_secret: env:EXKIT_EXO_SECRET
            cloud: custom
            login_endpoint: '{login}'
            exchange_endpoint: '{exchange}'
            ca_trust_path: ca.pem
            max_wait: 0.2
        """) + extra)
    return inventory


# ------------------------------------------------------------------------------------------------ bounded waits
def test_a_silent_identity_endpoint_ends_plan_within_token_timeout(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EXKIT_EXO_SECRET", SECRET)
    (tmp_path / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    with SilentServer() as silent:
        base = f"https://127.0.0.1:{silent.port}"
        inventory = exo_inventory(tmp_path, base, base, "    token_timeout: 3\n    connect_timeout: 1\n")
        started = time.monotonic()
        result = cli("plan", ROOMS, "-i", inventory, "-t", "t")
        took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert took < 3 + MARGIN_S, f"plan took {took:.1f} s against a silent identity endpoint (token_timeout 3 s)"
    assert f"no answer from the token endpoint {base}/{TENANT}: waited " in result.stderr, result.stderr
    assert "(token_timeout 3 s)" in result.stderr and "Traceback" not in result.stderr


def test_a_hanging_invoke_command_ends_within_call_timeout(cli, exo):
    server, inventory = exo
    inventory.write_text(inventory.read_text() + "    call_timeout: 2\n")
    server.switches.hang_invoke = True
    started = time.monotonic()
    result = cli("plan", ROOMS, "-i", inventory, "-t", "t")
    took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert took < 2 + MARGIN_S, f"plan took {took:.1f} s with InvokeCommand hanging (call_timeout 2 s)"
    assert (f"no answer from InvokeCommand Get-ManagementScope at {server.base}: waited 2." in result.stderr
            and "over 1 attempt(s) (call_timeout 2 s)" in result.stderr), result.stderr
    assert server.log.token_requests == 1  # the token endpoint answered


def test_the_run_timeout_bounds_a_call_and_its_retries(cli, exo):
    server, inventory = exo
    server.switches.hang_invoke = True  # call_timeout keeps its default (900 s): --timeout ends it
    started = time.monotonic()
    result = cli("plan", ROOMS, "-i", inventory, "-t", "t", "--timeout", "2")
    took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert took < 2 + MARGIN_S, f"plan took {took:.1f} s with --timeout 2"
    assert "(the run's --timeout of 2 s)" in result.stderr, result.stderr


def test_slow_and_cut_replies_are_waited_for_and_retried(cli, exo):
    server, inventory = exo
    server.switches.answer_after = 0.3
    server.switches.drop_next = 1  # the first reply is cut in the middle: retried within call_timeout
    result = cli("plan", ROOMS, "-i", inventory, "-t", "t", "--output", "json")
    assert result.exit_code == 0, result.stderr
    # the plan's three collection reads go out concurrently: the one whose reply was cut ran twice
    invocations = server.log.invocations
    assert sorted(set(invocations)) == ["Get-ManagementRoleAssignment", "Get-ManagementScope", "Get-ServicePrincipal"]
    assert len(invocations) == 4, invocations


def test_a_silent_winrm_server_ends_within_read_timeout_with_a_truthful_message(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD)
    with SilentServer() as silent:
        inventory = winrm_inventory(tmp_path, silent.port)  # read_timeout 3, retries 2 (the default)
        started = time.monotonic()
        result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
        took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert took < 3 + MARGIN_S, f"plan took {took:.1f} s against a silent WinRM server (read_timeout 3 s)"
    assert (f"cannot reach http://127.0.0.1:{silent.port}/wsman: no answer from WinRM Create (open a shell): "
            "waited 3." in result.stderr and "in total over 1 attempt(s) (read_timeout 3 s)" in result.stderr), \
        result.stderr


def test_winrm_cut_and_slow_replies_before_the_script_are_retried_within_read_timeout(cli, winrm):
    server, inventory = winrm
    server.faults += [Fault("Create", 1, "cut"), Fault("Command", 1, "slow", seconds=1.0)]
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert server.counts["Create"] == 2  # the cut reply was retried; the slow one was waited for (1 s < 3 s)


def test_winrm_silent_during_the_script_times_out_records_and_signals_terminate(cli, winrm):
    server, inventory = winrm
    server.faults.append(Fault("Receive", 2, "silent"))  # the facts script is answered; the apply script is not
    started = time.monotonic()
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    assert took < 3 + MARGIN_S, f"apply took {took:.1f} s with a silent Receive (read_timeout 3 s)"
    assert "no answer from WinRM Receive (the script's output): waited 3." in result.stderr, result.stderr
    record = last_record()
    assert record["status"] == "timed-out" and record["exit_code"] == 1
    assert [c["outcome"] for c in record["changes"]] == ["unknown", "unknown"]
    assert any(code.endswith("/signal/terminate") for code in server.signals)


# ------------------------------------------------------------------------------------------------ signals
def test_sigint_after_running_script_on_winrm_stops_the_script_and_records_it(cli, winrm, env):
    server, inventory = winrm
    server.faults.append(Fault("Receive", 2, "delay", seconds=60))  # the apply script is held on the server
    run = Exkit("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", env=env)
    run.wait_for("Running script sha256 ")
    time.sleep(0.3)
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    code, _, stderr, _ = run.finish()
    took = time.monotonic() - sent
    assert code == 130, stderr
    assert took < 10 + MARGIN_S, f"exkit ended {took:.1f} s after SIGINT"
    assert "interrupted" in stderr and "unknown: 2" in stderr and f"exkit plan {CLASSIC}" in stderr, stderr
    assert any(c.endswith("/signal/terminate") for c in server.signals)  # the script was stopped there
    record = last_record()
    assert record["status"] == "interrupted" and record["exit_code"] == 130
    assert len(record["script_sha256"]) == 64 and record["plan"]["counts"]["create"] == 2
    # The following plan agrees with the record: nothing is done, so everything is still to do.
    plan = json.loads(cli("plan", CLASSIC, "-i", inventory, "-t", "lab", "--output", "json").stdout)
    done = {(c["kind"], c["name"]) for c in record["changes"] if c["outcome"] in runs.DONE}
    for change in plan["changes"]:
        assert (change["action"] == "noop") == ((change["kind"], change["name"]) in done)


def test_sigterm_while_reading_the_state_says_nothing_changed(winrm, env):
    server, inventory = winrm
    server.faults.append(Fault("Receive", 1, "delay", seconds=60))  # the facts script is held
    run = Exkit("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", env=env)
    deadline = time.monotonic() + 30
    while server.counts.get("Receive", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.signal(signal.SIGTERM)
    code, _, stderr, _ = run.finish()
    assert code == 143, stderr
    assert "stopped while reading the current state; nothing was changed" in stderr, stderr
    record = last_record()
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    assert not server.state_path.exists()  # no script changed anything


def test_sigint_during_verify_says_nothing_changed(winrm, env):
    server, inventory = winrm
    server.faults.append(Fault("Receive", 1, "delay", seconds=60))  # verify's snapshot script is held
    run = Exkit("verify", CLASSIC, "-i", inventory, "-t", "lab", env=env)
    deadline = time.monotonic() + 30
    while server.counts.get("Receive", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.signal(signal.SIGINT)
    code, _, stderr, _ = run.finish()
    assert code == 130, stderr
    assert "stopped while reading the current state; nothing was changed" in stderr, stderr
    assert any(c.endswith("/signal/terminate") for c in server.signals)
    assert runs.read_all() == []  # verify changes nothing: no run record


def test_sigint_at_the_confirmation_prompt(sandbox_state, env):
    import pty

    leader, follower = pty.openpty()  # a terminal on stdin: exkit asks before changing anything
    try:
        run = Exkit("apply", CLASSIC, env=env, stdin=follower)
        run.wait_for("Apply these changes?", stream="stdout")
        run.signal(signal.SIGINT)
        code, _, stderr, _ = run.finish()
    finally:
        os.close(leader)
        os.close(follower)
    assert code == 130, stderr
    assert "stopped by SIGINT" in stderr and "Traceback" not in stderr, stderr
    record = last_record()
    assert record["status"] == "interrupted" and "nothing changed" in record["error"]
    assert not sandbox_state.exists()


def test_sigint_during_exchange_online_apply_sends_no_further_call(cli, exo, env):
    server, inventory = exo
    server.switches.answer_after = 0.4  # every call takes a while: the SIGINT comes while one is in flight
    run = Exkit("apply", ROOMS, "-i", inventory, "-t", "t", "--yes", env=env)
    run.wait_for("Running script sha256 ")
    time.sleep(0.6)
    calls_at_signal = len(server.log.invocations)
    run.signal(signal.SIGINT)
    code, _, stderr, _ = run.finish()
    assert code == 130, stderr
    assert len(server.log.invocations) <= calls_at_signal + 1  # at most the call in flight finished
    record = last_record()
    assert record["status"] == "interrupted"
    outcomes = [c["outcome"] for c in record["changes"]]
    assert set(outcomes) <= {"created", "unknown", "not started"} and "not started" in outcomes, outcomes
    server.switches.answer_after = 0
    plan = json.loads(cli("plan", ROOMS, "-i", inventory, "-t", "t", "--output", "json").stdout)
    by_name = {(c["kind"], c["name"]): c["action"] for c in plan["changes"]}
    for change in record["changes"]:
        if change["outcome"] in runs.DONE:
            assert by_name[(change["kind"], change["name"])] == "noop"
        if change["outcome"] == "not started":
            assert by_name[(change["kind"], change["name"])] != "noop"


def test_a_second_sigint_exits_at_once(exo, env):
    server, inventory = exo
    server.switches.hang_invoke = True  # the call in flight never answers: the grace period would run
    run = Exkit("apply", ROOMS, "-i", inventory, "-t", "t", "--yes", env=env)
    deadline = time.monotonic() + 30
    while server.log.token_requests < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    run.signal(signal.SIGINT)
    run.wait_for("press Ctrl-C again")
    sent = time.monotonic()
    run.signal(signal.SIGINT)
    code, _, stderr, _ = run.finish()
    took = time.monotonic() - sent
    assert code == 130, stderr
    assert took < 5 + MARGIN_S / 2, f"exkit took {took:.1f} s to exit after the second SIGINT"
    assert "exited at once" in stderr
    assert last_record()["status"] == "interrupted"


# ------------------------------------------------------------------------------------------------ what is recorded
def test_a_refused_apply_is_recorded(cli, sandbox_state, tmp_path):
    reviewed = tmp_path / "reviewed"
    assert cli("render", CLASSIC, "--out", reviewed).exit_code == 0
    result = cli("apply", CLASSIC, "--reviewed", reviewed, "--var", "service_account=nobody@contoso.com", "--yes")
    assert result.exit_code == 3, result.stderr
    record = last_record()
    assert record["status"] == "refused" and record["exit_code"] == 3 and record["error"]
    assert record["pinned_to_review"] is True
    assert not sandbox_state.exists()


def test_an_unreachable_target_is_a_refused_record(cli, winrm):
    server, inventory = winrm
    os.environ["EXKIT_WINRM_PASSWORD"] = "wrong"
    try:
        result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    finally:
        os.environ["EXKIT_WINRM_PASSWORD"] = PASSWORD
    assert result.exit_code == 1
    record = last_record()
    assert record["status"] == "refused" and "HTTP 401" in record["error"]


def test_the_record_says_what_was_asked_and_what_changed(winrm, env):
    server, inventory = winrm
    # a change the server refuses at run time (the account may read but not write the group): no plan sees it coming
    refuse_writes(server.state_path, "Room booking service accounts", "Active Directory operation failed: access denied.")
    code, _, stderr, _ = Exkit("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--var",
                               "service_account=admin@contoso.com", env=env).finish()
    assert code == 1, stderr
    record = last_record()
    assert record["vars"] == {"service_account": "admin@contoso.com"}
    assert "service_account=admin@contoso.com" in record["argv"]
    assert record["endpoint"] == f"http://127.0.0.1:{server.port}/wsman" and record["transport"] == "ntlm"
    assert record["inventory"] == str(inventory) and len(record["inventory_sha256"]) == 64
    assert record["version"] and record["pinned_to_review"] is False and record["git"]["commit"]
    scope = record["changes"][0]
    assert scope["planned"] == "create" and scope["outcome"] == "created"
    assert {"field": "filter", "before": None, "after": "RecipientTypeDetails -eq 'RoomMailbox'"} in scope["fields"]
    assert record["status"] == "failed" and record["changes"][1]["outcome"] == "failed"
    assert PASSWORD not in json.dumps(record)


def test_a_run_that_never_completed_is_listed_as_incomplete(cli, sandbox_state):
    record = runs.RunRecord(command="apply", target="sandbox", playbook_name="killed")
    record.open()  # what a SIGKILL leaves behind: the started line only
    listed = cli("runs", "list")
    assert "incomplete" in listed.stdout
    assert runs.read_all()[-1]["status"] == "incomplete"


def test_sigterm_during_a_fleet_apply_stops_every_running_tenant(tmp_path, monkeypatch, env):
    """Three tenants' apply scripts are held on the server when SIGTERM reaches exkit (its own pid only): each is
    stopped with Signal terminate, recorded as interrupted with its changes unknown, and none ran."""
    users = tmp_path / "ntlm-users"
    users.write_text(f"CONTOSO:exkit-admin:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    names = ["a", "b", "c"]
    with LoopbackWinRM(tmp_path / "unused.json", {USER: PASSWORD}, state_dir=tmp_path) as server:
        # Receives 1-3 answer the facts scripts; 4-6, the apply scripts' first ones, are held for a minute.
        server.faults += [Fault("Receive", n, "delay", seconds=60) for n in (4, 5, 6)]
        inventory = tmp_path / "fleet.yaml"
        inventory.write_text("targets:\n" + "".join(
            f"  {name}: {{kind: exchange-server, host: 127.0.0.1, port: {server.port}, scheme: http, "
            f"transport: ntlm, username: 'CONTOSO\\exkit-admin', password: 'env:EXKIT_WINRM_PASSWORD', "
            f"connect: snapin, operation_timeout: 1, read_timeout: 5, path: /wsman/{name}}}\n" for name in names))
        run = Exkit("apply", CLASSIC, "-i", inventory, "--limit", "*", "--forks", "3", "--processes", "1", "--yes",
                    "--output", "json", env=env)
        deadline = time.monotonic() + 60
        while server.counts.get("Receive", 0) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(run.process.pid, signal.SIGTERM)
        code, stdout, stderr, _ = run.finish()
        terminated = [c for c in server.signals if c.endswith("/signal/terminate")]
    assert code == 143, stderr
    assert "3 interrupted" in stderr and "0 not started" in stderr, stderr
    assert {o["status"] for o in json.loads(stdout)["targets"]} == {"interrupted"}
    assert len(terminated) >= 3
    recorded = runs.read_all()
    assert sorted(r["target"] for r in recorded) == names
    for record in recorded:
        assert record["status"] == "interrupted"
        assert {c["outcome"] for c in record["changes"]} == {"unknown"}
    for name in names:  # the held scripts never ran (the facts scripts did: the state file exists)
        organisation = store.load(tmp_path / f"{name}.json")
        assert organisation.role_group("Room booking service accounts") is None
        assert organisation.scope("Room mailboxes") is None
