"""Exchange Server over WinRM: the real pywinrm client against the loopback WinRM server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import textwrap

import pytest
import trustme
import winrm
from conftest import REPO, readline_within, refuse_writes
from servers.winrm import Fault, LoopbackWinRM

from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation
from toolkit.targets.winrm import decode_clixml, ntlm_hash_credential

PASSWORD = "S3cret!pässwörd"
USER = "CONTOSO\\exkit-admin"
CLASSIC = REPO / "playbooks" / "classic.yaml"


@pytest.fixture(scope="session")
def ca():
    return trustme.CA()


@pytest.fixture
def winrm_lab(tmp_path, monkeypatch, ca):
    """Start a loopback WinRM server and write an inventory with one target 'lab' pointing at it."""
    users = tmp_path / "ntlm-users"
    users.write_text(f"CONTOSO:exkit-admin:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers = []

    def start(scheme="http", auth=("ntlm",), transport="ntlm", trust=True, extra="", connect="snapin"):
        tls = None
        if scheme == "https":
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
        server = LoopbackWinRM(tmp_path / "exchange.json", {USER: PASSWORD}, auth=auth, tls=tls)
        server.__enter__()
        servers.append(server)
        username = USER if transport == "ntlm" else "exkit-admin"
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(textwrap.dedent(f"""\
            targets:
              lab:
                kind: exchange-server
                host: 127.0.0.1
                port: {server.port}
                scheme: {scheme}
                transport: {transport}
                username: '{username}'
                password: env:EXKIT_WINRM_PASSWORD
                connect: {connect}
                exchange_uri: http://ex01.contoso.com/PowerShell/
                operation_timeout: 1
                read_timeout: 10
            """) + (f"    ca_trust_path: {ca_file}\n" if trust and scheme == "https" else "") + extra)
        return server, inventory

    yield start
    for server in servers:
        server.__exit__()


def actions(output):
    return [(r["kind"], r["action"]) for r in json.loads(output)["results"]]


@pytest.mark.parametrize("scheme, auth, transport", [
    ("http", ("ntlm",), "ntlm"), ("https", ("ntlm",), "ntlm"), ("https", ("basic",), "basic"),
], ids=["ntlm-http-encrypted", "ntlm-https", "basic-https"])
def test_apply_again_destroy(cli, winrm_lab, scheme, auth, transport):
    server, inventory = winrm_lab(scheme, auth, transport)
    first = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert first.exit_code == 0, first.stderr
    assert actions(first.stdout) == [("ManagementScope", "created"), ("RoleGroup", "created")]
    assert "Running script sha256 " in first.stderr
    second = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert actions(second.stdout) == [("ManagementScope", "unchanged"), ("RoleGroup", "unchanged")]
    destroy = cli("destroy", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert actions(destroy.stdout) == [("RoleGroup", "removed"), ("ManagementScope", "removed")]
    assert server.state_path.read_text() == seed_organisation().to_json()
    if scheme == "http":
        assert server.encrypted_requests > 0 and server.encrypted_requests == sum(server.counts.values())


def test_the_script_that_runs_is_the_rendered_script(cli, winrm_lab):
    server, inventory = winrm_lab()
    rendered = cli("render", CLASSIC, "-i", inventory, "-t", "lab").stdout
    assert cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes").exit_code == 0
    assert server.scripts_run[-1] == rendered  # facts script first, then exactly the apply script


def test_plan_costs_one_shell(cli, winrm_lab):
    server, inventory = winrm_lab()
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab", "--detailed-exitcode")
    assert result.exit_code == 2
    assert server.counts["Create"] == 1 and server.counts["Command"] == 1


def test_plan_and_apply_scripts_share_one_connection_and_one_shell(cli, winrm_lab):
    server, inventory = winrm_lab()
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert len(server.scripts_run) == 2  # the facts script, then the apply script
    assert server.authentications == 1
    assert (server.counts["Create"], server.counts["Command"], server.counts["Signal"], server.counts["Delete"]) == \
        (1, 2, 2, 1)
    assert server.shells == {}  # the shell was deleted at the end


@pytest.mark.parametrize("fault", ["forget", "close"], ids=["shell-expired", "connection-closed"])
def test_a_kept_shell_that_went_away_is_replaced_without_a_retry(cli, winrm_lab, fault):
    server, inventory = winrm_lab()
    if fault == "forget":
        server.faults.append(Fault("Command", 2, "forget"))  # the shell expired between plan and apply
    else:
        server.faults.append(Fault("Signal", 1, "close"))  # the server closed the connection after the facts script
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert actions(result.stdout) == [("ManagementScope", "created"), ("RoleGroup", "created")]
    assert "retried" not in result.stdout + result.stderr
    assert server.counts["Create"] == 2 and len(server.scripts_run) == 2
    assert server.shells == {}


def test_fleet_over_winrm_in_worker_processes(cli, tmp_path, monkeypatch, runs_dir):
    """Three tenants behind one loopback server (one organisation per /wsman/<name> path), applied by two forked
    worker processes: each tenant gets its own organisation, one connection and one shell."""
    users = tmp_path / "ntlm-users"
    users.write_text(f"CONTOSO:exkit-admin:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD)
    from toolkit.fleet import records as runs

    with LoopbackWinRM(tmp_path / "unused.json", {USER: PASSWORD}, state_dir=tmp_path) as server:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text("groups:\n  tenants:\n    targets:\n" + "".join(
            f"      {name}: {{kind: exchange-server, host: 127.0.0.1, port: {server.port}, scheme: http, "
            f"transport: ntlm, username: 'CONTOSO\\exkit-admin', password: 'env:EXKIT_WINRM_PASSWORD', "
            f"connect: snapin, path: /wsman/{name}}}\n" for name in ("alpha", "beta", "gamma")))
        result = cli("apply", CLASSIC, "-i", inventory, "--limit", "tenants", "--forks", "2", "--processes", "2",
                     "--yes", "--output", "json")
        assert result.exit_code == 0, result.stdout + result.stderr
        outcomes = json.loads(result.stdout)["targets"]
        assert [o["target"] for o in outcomes] == ["alpha", "beta", "gamma"]
        assert all(o["ok"] and o["summary"] == "2 created" for o in outcomes)
        assert server.authentications == 3 and server.counts["Create"] == 3 and server.shells == {}
    for name in ("alpha", "beta", "gamma"):
        assert store.load(tmp_path / f"{name}.json").role_group("Room booking service accounts") is not None
    assert sorted(r["target"] for r in runs.read_all()) == ["alpha", "beta", "gamma"]


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_stops_running_tenants_and_starts_no_more(tmp_path, monkeypatch, runs_dir, processes):
    """A real SIGINT to the process group of a real exkit process: no tenant starts after it, the running ones are
    stopped where they are (Signal terminate; a record says what they did), the finished ones keep theirs; every
    tenant is listed as done, interrupted or not started; exit code 130."""
    import os
    import signal
    import subprocess
    import sys

    from toolkit.fleet import records as runs

    users = tmp_path / "ntlm-users"
    users.write_text(f"CONTOSO:exkit-admin:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    names = [f"t{i}" for i in range(6)]
    with LoopbackWinRM(tmp_path / "unused.json", {USER: PASSWORD}, state_dir=tmp_path, delay_ms=100) as server:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text("groups:\n  tenants:\n    targets:\n" + "".join(
            f"      {name}: {{kind: exchange-server, host: 127.0.0.1, port: {server.port}, scheme: http, "
            f"transport: ntlm, username: 'CONTOSO\\exkit-admin', password: 'env:EXKIT_WINRM_PASSWORD', "
            f"connect: snapin, path: /wsman/{name}}}\n" for name in names))
        run = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "apply", str(CLASSIC), "-i", str(inventory), "--limit", "tenants",
             "--forks", "2", "--processes", processes, "--yes", "--output", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO,
            env={**os.environ, "EXKIT_WINRM_PASSWORD": PASSWORD})
        try:
            first = readline_within(run.stderr, 120)  # "[1/6] …": the first tenant is done, two are running
            assert first.startswith("[1/6] "), first
            os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C does: every process of the group
            stdout, stderr = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=60)
    assert run.returncode == 130, stderr
    assert "the run was stopped" in stderr and "not started" in stderr, stderr
    outcomes = {o["target"]: o for o in json.loads(stdout)["targets"]}
    applied = {n for n, o in outcomes.items() if o["ok"]}
    stopped = {n for n, o in outcomes.items() if o.get("status") == "interrupted"}
    not_started = {n for n, o in outcomes.items() if o.get("status") == "not started"}
    assert applied | stopped | not_started == set(names) and applied and not_started, outcomes
    for name in applied:  # whole: both resources
        assert store.load(tmp_path / f"{name}.json").role_group("Room booking service accounts") is not None
    for name in not_started:  # untouched: no script ever ran there
        assert not (tmp_path / f"{name}.json").exists()
    recorded = {r["target"]: r for r in runs.read_all()}
    assert {n for n, r in recorded.items() if r["status"] == "ok"} == applied
    for name in stopped:  # a run that was stopped says so; the state agrees with what it calls done
        if name in recorded:
            assert recorded[name]["status"] == "interrupted"
            for change in recorded[name].get("changes", []):
                if change["outcome"] in runs.DONE:
                    organisation = store.load(tmp_path / f"{name}.json")
                    assert (organisation.scope(change["name"]) if change["kind"] == "ManagementScope"
                            else organisation.role_group(change["name"])) is not None
    assert not set(recorded) & not_started


def test_certificate_validation_failure_is_clear(cli, winrm_lab):
    server, inventory = winrm_lab("https", trust=False)
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert "TLS with https://127.0.0.1:" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr
    assert "ca_trust_path" in result.stderr
    assert "Traceback" not in result.stderr
    assert server.counts == {}


def test_wrong_password_is_clear_and_changes_nothing(cli, winrm_lab, monkeypatch):
    server, inventory = winrm_lab()
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", "wrong")
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert result.exit_code == 1
    assert f"refused the credentials of {USER} (HTTP 401)" in result.stderr
    assert not server.state_path.exists()


def test_ntlm_gets_the_password_as_its_lm_and_nt_hashes():
    # MS-NLMP 4.2.2.1.1 / 4.2.2.1.2: the documented LMOWFv1 and NTOWFv1 of the password "Password".
    assert ntlm_hash_credential("Password") == "e52cac67419a9a224a3b108f3fa6cb6d:a4f49c406510bdcab6824ee7c30fd852"
    # A password pyspnego reads as hashes already is handed on unchanged (as it was before).
    looks_like_hashes = "E52CAC67419A9A224A3B108F3FA6CB6D:a4f49c406510bdcab6824ee7c30fd852"
    assert ntlm_hash_credential(looks_like_hashes) == looks_like_hashes


def test_refused_credentials_fault(cli, winrm_lab):
    server, inventory = winrm_lab("https", ("basic",), "basic")
    server.refuse_credentials = True
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert "refused the credentials of exkit-admin (HTTP 401)" in result.stderr


def test_two_hundred_resources_exceed_the_command_line_limit(cli, winrm_lab, write_playbook):
    server, inventory = winrm_lab()
    lines = ["exkit: 1", "name: big", "scopes:"]
    lines += [f"  - {{name: Rooms {i:03}, rooms: true, office: Office {i:03}}}" for i in range(100)]
    lines.append("role_assignments:")
    lines += [f"  - {{name: Impersonation {i:03}, role: ApplicationImpersonation, user: svc-rooms@contoso.com, "
              f"scope: Rooms {i:03}}}" for i in range(100)]
    big = write_playbook("\n".join(lines) + "\n", "big.yaml")
    rendered = cli("render", big).stdout
    assert len(rendered) > 20 * 8191
    first = cli("apply", big, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert first.exit_code == 0, first.stderr
    assert len(actions(first.stdout)) == 200
    second = cli("apply", big, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert second.exit_code == 0, second.stderr
    assert {a for _, a in actions(second.stdout)} == {"unchanged"}

def test_the_server_enforces_the_command_line_limit(winrm_lab):
    server, _ = winrm_lab("https", ("basic",), "basic")
    session = winrm.Session(f"https://127.0.0.1:{server.port}/wsman", auth=("exkit-admin", PASSWORD),
                            transport="basic", server_cert_validation="ignore")
    result = session.run_ps("Write-Output '" + "x" * 8000 + "'")  # -encodedcommand of it is far over 8191
    assert result.status_code == 1
    assert b"The command line is too long." in result.std_err


def test_dropped_connection_mid_apply_then_rerun_converges(cli, winrm_lab):
    server, inventory = winrm_lab()
    server.faults.append(Fault("Receive", 2, "drop"))  # the apply's Receive: the script ran, the reply is lost
    lost = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert lost.exit_code == 1
    assert lost.stderr.splitlines()[-1] == (
        f"exkit: error: http://127.0.0.1:{server.port}/wsman: the connection failed while the script ran (Connection "
        "aborted); some resources may have been applied. Run exkit plan to see the state, then apply again: the "
        "script is idempotent")
    again = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert again.exit_code == 0, again.stderr
    assert actions(again.stdout) == [("ManagementScope", "unchanged"), ("RoleGroup", "unchanged")]
    state = store.load(server.state_path)
    assert [s.name for s in state.management_scopes].count("Room mailboxes") == 1
    assert [a.name for a in state.role_assignments].count("ApplicationImpersonation-Room booking service accounts") == 1


def test_operation_timeouts_are_retried(cli, winrm_lab):
    server, inventory = winrm_lab()
    server.faults.append(Fault("Receive", 2, "delay", seconds=2.5))  # operation_timeout is 1 s
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert server.counts["Receive"] >= 4  # the delayed Receive was answered with timeouts and asked again


def test_server_error_before_the_script_runs_is_retried(cli, winrm_lab):
    server, inventory = winrm_lab()
    server.faults.append(Fault("Command", 2, "500"))  # the apply's first attempt to start the script
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "Note: " in result.stdout and "could not start the script (the WinRM server answered HTTP 500); " \
                                         "nothing ran; retried after 0.5 s" in result.stdout
    assert server.shells == {}  # the shell the failed start left behind was deleted too


def test_server_errors_before_the_script_runs_give_up_after_retries(cli, winrm_lab):
    server, inventory = winrm_lab()
    server.faults += [Fault("Command", n, "500") for n in (2, 3, 4)]
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert result.exit_code == 1
    assert "could not start the script (the WinRM server answered HTTP 500); nothing ran" in result.stderr
    assert server.state_path.read_text() == seed_organisation().to_json()  # only the facts script ran


def test_unreachable_host(cli, tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"targets:\n  lab: {{kind: exchange-server, host: 127.0.0.1, port: {port}, scheme: https, "
                         "transport: basic, username: u, password: 'env:EXKIT_WINRM_PASSWORD', connect: snapin}\n")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert f"cannot reach https://127.0.0.1:{port}/wsman: Connection refused" in result.stderr


def test_script_failure_reports_applied_resources(cli, winrm_lab, write_playbook):
    server, inventory = winrm_lab()
    path = write_playbook("exkit: 1\nname: half\nscopes: [{name: Rooms, rooms: true}]\nrole_groups:\n"
                          "  - {name: G, roles: [ApplicationImpersonation], members: [svc-rooms@contoso.com], scope: Rooms}\n")
    refuse_writes(server.state_path, "G", "Active Directory operation failed on DC01.contoso.com: access denied.")
    result = cli("apply", path, "-i", inventory, "-t", "lab", "--yes")
    assert result.exit_code == 1
    assert "RoleGroup 'G' failed: Active Directory operation failed on DC01.contoso.com: access denied." in result.stderr
    assert "changed before the failure: ManagementScope 'Rooms' (created)" in result.stderr


def test_secrets_never_appear(cli, winrm_lab, monkeypatch, caplog, runs_dir):
    caplog.set_level(logging.DEBUG)
    server, inventory = winrm_lab()
    outputs = []
    for args in (("apply", CLASSIC, "--yes"), ("plan", CLASSIC), ("destroy", CLASSIC, "--yes")):
        result = cli(*args, "-i", inventory, "-t", "lab")
        outputs += [result.stdout, result.stderr]
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD + "x")
    failed = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    outputs += [failed.stdout, failed.stderr]
    records = "".join(p.read_text() for p in runs_dir.glob("*.jsonl"))
    from toolkit.fleet import records as runs

    assert [r["command"] for r in runs.read_all()].count("apply") == 1  # a started line, then the completed one
    text = "\n".join(outputs) + caplog.text + "\n".join(server.scripts_run) + records
    assert PASSWORD not in text
    assert "S3cret" not in text


def test_plaintext_password_is_an_error_that_does_not_echo_it(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  lab:\n    kind: exchange-server\n    host: ex01\n    transport: ntlm\n"
                         "    username: 'CONTOSO\\exkit'\n    password: Hunter2secret\n    connect: snapin\n")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert f"{inventory}:7:15: error: a plaintext password is not allowed in an inventory" in result.stderr
    assert "env:NAME, keyring:SERVICE/USER or prompt" in result.stderr
    assert "Hunter2secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("target, message", [
    ("{kind: exchange-server, host: h, scheme: http, transport: basic, username: u, password: 'env:P', "
     "connect: snapin}", "transport basic sends the password in clear"),
    ("{kind: exchange-server, host: h, scheme: http, transport: ntlm, message_encryption: never, username: u, "
     "password: 'env:P', connect: snapin}", "scheme http is allowed only with WinRM message encryption"),
    ("{kind: exchange-server, host: h, transport: certificate, cert_pem: c, cert_key_pem: k}",
     "connect: remote-session is a second hop, which needs the account's password"),
    ("{kind: exchange-server, host: h, transport: ntlm, username: u, password: 'env:P', kerberos_delegation: true}",
     "kerberos_delegation goes with transport kerberos only"),
    ("{kind: exchange-server, host: h, transport: certificate, connect: snapin}", "needs cert_pem and cert_key_pem"),
    ("{kind: exchange-server, host: h, transport: kerberos, operation_timeout: 30}",
     "read_timeout must be greater than operation_timeout"),
])
def test_inventory_transport_rules(cli, tmp_path, target, message):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"targets:\n  lab: {target}\n")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert message in result.stderr


def test_missing_environment_variable_is_named(cli, winrm_lab, monkeypatch):
    server, inventory = winrm_lab()
    monkeypatch.delenv("EXKIT_WINRM_PASSWORD")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert ("the password of target 'lab' comes from the environment variable EXKIT_WINRM_PASSWORD, which is not "
            "set") in result.stderr


def test_remote_session_preamble_runs_and_always_closes_the_session(sandbox_state):
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import Connection, render_script
    from toolkit.targets.sandbox import SandboxTarget

    playbook, _ = require_playbook(CLASSIC)
    script = render_script(playbook, connection=Connection("remote-session", "http://ex01.contoso.com/PowerShell/"))
    assert ("$exkitSession = New-PSSession -ConfigurationName 'Microsoft.Exchange' -ConnectionUri "
            "'http://ex01.contoso.com/PowerShell/' -Authentication 'Kerberos'") in script.text
    assert script.text.rstrip().endswith("} finally {\n    Remove-PSSession -Session $exkitSession\n}")
    result = SandboxTarget().run_script(script.text)
    assert result.exit_code == 0 and [r.action for r in result.results] == ["created", "created"]


@pytest.mark.parametrize("scheme, auth, transport", [
    ("http", ("ntlm",), "ntlm"), ("https", ("basic",), "basic"),
], ids=["ntlm-http-encrypted", "basic-https"])
def test_remote_session_gets_the_credential_at_run_time(cli, winrm_lab, scheme, auth, transport):
    """connect: remote-session (the default) over a transport that cannot delegate: the bootstrap hands the
    account's credential to New-PSSession; the script text and its hash are the reviewed ones."""
    server, inventory = winrm_lab(scheme, auth, transport, connect="remote-session")
    rendered = cli("render", CLASSIC, "-i", inventory, "-t", "lab").stdout
    assert "-Credential $exkitCredential" in rendered and PASSWORD not in rendered
    first = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert first.exit_code == 0, first.stderr
    assert actions(first.stdout) == [("ManagementScope", "created"), ("RoleGroup", "created")]
    assert server.scripts_run[-1] == rendered
    assert f"Running script sha256 {hashlib.sha256(rendered.encode()).hexdigest()}" in first.stderr
    assert {logon.delegated for logon in server.logons} == {False}  # it worked with the credential alone
    second = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert actions(second.stdout) == [("ManagementScope", "unchanged"), ("RoleGroup", "unchanged")]
    assert PASSWORD not in first.stdout + first.stderr + second.stdout + second.stderr


def test_remote_session_without_credential_fails_as_exchange_does(cli, winrm_lab, monkeypatch):
    """What exkit did before: New-PSSession without -Credential from an NTLM session is refused."""
    from toolkit.targets.winrm import WinRMTarget

    monkeypatch.setattr(WinRMTarget, "_second_hop_credential", lambda self: None)
    server, inventory = winrm_lab(connect="remote-session")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert ("Connecting to remote server ex01.contoso.com failed with the following error message : Access is "
            "denied.") in result.stderr


def test_a_bug_in_the_bootstrap_fails_over_winrm(cli, winrm_lab, monkeypatch):
    import toolkit.targets.winrm as connector

    broken = connector.BOOTSTRAP.replace("$exkitIn[0]", "$exkitIn[1]")
    monkeypatch.setattr(connector, "BOOTSTRAP_ARGUMENTS", connector.BOOTSTRAP_ARGUMENTS[:-1] + (
        base64.b64encode(broken.encode("utf-16-le")).decode(),))
    server, inventory = winrm_lab(connect="remote-session")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1 and PASSWORD not in result.stderr + result.stdout


def test_decode_clixml():
    data = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            '<S S="Error">Line one_x000D__x000A_</S><S S="Error">Line two &amp; more_x000D__x000A_</S>'
            '<S S="verbose">ignored</S></Objs>')
    assert decode_clixml(data) == "Line one\nLine two & more"
    assert decode_clixml("plain text") == "plain text"


def test_example_inventory_loopback_target(cli, tmp_path, monkeypatch):
    """The README's walkthrough: exkit apply playbooks/classic.yaml -i inventory.example.yaml -t loopback."""
    from toolkit.inventory import load_inventory

    assert set(load_inventory(REPO / "inventory.example.yaml").targets) >= {"sandbox", "loopback", "ex01"}
    users = tmp_path / "users"
    users.write_text(f"LAB:exkit-admin:{PASSWORD}\n", encoding="utf-8")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))
    monkeypatch.setenv("EXKIT_WINRM_PASSWORD", PASSWORD)
    with LoopbackWinRM(tmp_path / "exchange.json", {"LAB\\exkit-admin": PASSWORD}) as server:
        # The example inventory as shipped, but for the port: the server took a free one (55985 may be in use).
        text = (REPO / "inventory.example.yaml").read_text(encoding="utf-8")
        assert text.count("    port: 55985\n") == 1
        inventory = tmp_path / "inventory.example.yaml"
        inventory.write_text(text.replace("    port: 55985\n", f"    port: {server.port}\n"), encoding="utf-8")
        result = cli("apply", CLASSIC, "-i", inventory, "-t", "loopback", "--yes")
        assert result.exit_code == 0, result.stderr
        assert "Summary: 2 created." in result.stdout
        assert store.load(server.state_path).role_group("Room booking service accounts") is not None


def test_verify_preview_export_and_drift_over_winrm(cli, winrm_lab, tmp_path):
    server, inventory = winrm_lab()
    target = ("-i", inventory, "-t", "lab")
    assert cli("apply", CLASSIC, *target, "--yes").exit_code == 0
    before = sum(server.counts.values())
    verified = cli("verify", CLASSIC, *target)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert server.counts["Create"] == 2  # one for apply (facts + apply scripts), one for the verify snapshot
    assert sum(server.counts.values()) - before == 6
    preview = cli("scope", "preview", CLASSIC, *target, "--output", "json")
    assert preview.exit_code == 0
    out = tmp_path / "exported.yaml"
    assert cli("export", *target, "--principal", "svc-rooms@contoso.com", "-o", out).exit_code == 0
    assert cli("plan", out, *target, "--detailed-exitcode").exit_code == 0
    # drift made by hand on the "server": verify names it, plan shows it
    from toolkit.targets.sandbox import SandboxTarget

    SandboxTarget(server.state_path).run_script(
        "Add-RoleGroupMember -Identity 'Room booking service accounts' -Member 'anna.adler@contoso.com'")
    broken = cli("verify", CLASSIC, *target)
    assert broken.exit_code == 1
    assert "anna.adler@contoso.com" in broken.stdout
    assert cli("plan", CLASSIC, *target, "--detailed-exitcode").exit_code == 2
