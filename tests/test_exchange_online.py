"""Exchange Online: real msal and requests against the loopback identity and InvokeCommand endpoints."""

from __future__ import annotations

import json
import os
import re
import ssl
import textwrap

import pytest
import trustme
from conftest import REPO
from servers.exchange_online import App, LoopbackExchangeOnline

from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "exo-s3cret-value"
ROOMS = REPO / "playbooks" / "online-rooms.yaml"
POLICY = REPO / "playbooks" / "online-access-policy.yaml"


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    app_cert = trustme.CA().issue_cert("exkit-app", key_type=trustme.KeyType.RSA)
    other_cert = trustme.CA().issue_cert("someone-else", key_type=trustme.KeyType.RSA)
    return ca, app_cert, other_cert


@pytest.fixture
def exo(tmp_path, pki, monkeypatch):
    """Start the loopback tenant; return (server, inventory) with targets 'cert', 'secret' and 'wrong-cert'."""
    ca, app_cert, other_cert = pki
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    for name, cert in (("app.pem", app_cert), ("other.pem", other_cert)):
        (tmp_path / name).write_bytes(cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes())
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    monkeypatch.setenv("EXKIT_EXO_SECRET", SECRET)
    server = LoopbackExchangeOnline(tmp_path / "tenant.json", tls, TENANT,
                                    [App(CLIENT_ID, app_cert.cert_chain_pems[0].bytes(), SECRET)])
    server.__enter__()
    common = (f"kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, cloud: custom, "
              f"login_endpoint: '{server.base}', exchange_endpoint: '{server.base}', graph_endpoint: '{server.graph_root}', "
              "ca_trust_path: ca.pem, "
              "max_wait: 0.2")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          cert: {{{common}, certificate: app.pem}}
          secret: {{{common}, client_secret: 'env:EXKIT_EXO_SECRET'}}
          wrong-cert: {{{common}, certificate: other.pem}}
        """))
    yield server, inventory
    server.__exit__()


def run(cli, inventory, *args, target="cert"):
    return cli(*args, "-i", inventory, "-t", target, "--output", "json")


def actions(result):
    assert result.exit_code == 0, result.stderr
    return [(r["kind"], r["action"]) for r in json.loads(result.stdout)["results"]]


@pytest.mark.parametrize("target", ["cert", "secret"])
def test_apply_again_destroy(cli, exo, target):
    server, inventory = exo
    assert actions(run(cli, inventory, "apply", ROOMS, "--yes", target=target)) == [
        ("ManagementScope", "created"), ("ServicePrincipal", "created"), ("ApplicationRoleAssignment", "created")]
    state = store.load(server.state_path, "exchange-online")
    assignment = state.assignment("Calendars.ReadWrite-Room booking app")
    assert assignment.custom_resource_scope == "Room mailboxes"
    assert assignment.role_assignee == "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21"
    assert {a for _, a in actions(run(cli, inventory, "apply", ROOMS, "--yes", target=target))} == {"unchanged"}
    assert actions(run(cli, inventory, "destroy", ROOMS, "--yes", target=target)) == [
        ("ApplicationRoleAssignment", "removed"), ("ServicePrincipal", "removed"), ("ManagementScope", "removed")]
    assert server.state_path.read_text() == seed_organisation("exchange-online").to_json()


def test_access_policy_apply_again_destroy(cli, exo):
    server, inventory = exo
    assert actions(run(cli, inventory, "apply", POLICY, "--yes")) == [
        ("ServicePrincipal", "created"), ("ApplicationAccessPolicy", "created")]
    assert {a for _, a in actions(run(cli, inventory, "apply", POLICY, "--yes"))} == {"unchanged"}
    assert actions(run(cli, inventory, "destroy", POLICY, "--yes")) == [
        ("ApplicationAccessPolicy", "removed"), ("ServicePrincipal", "removed")]
    assert server.state_path.read_text() == seed_organisation("exchange-online").to_json()


def test_wrong_certificate_is_a_clear_auth_error(cli, exo):
    server, inventory = exo
    result = run(cli, inventory, "plan", ROOMS, target="wrong-cert")
    assert result.exit_code == 1
    assert (f"sign-in of app {CLIENT_ID} to tenant {TENANT} failed: AADSTS700027: The certificate with identifier "
            "used to sign the client assertion is not registered on application.") in result.stderr
    assert server.log.invocations == []


def test_reads_are_one_call_per_cmdlet_and_follow_paging(cli, exo, sandbox_state):
    server, inventory = exo
    extra = "".join(f"New-ManagementScope -Name 'Scope {i:02}' -RecipientRestrictionFilter "
                    f"\"Office -eq 'O{i:02}'\"\n" for i in range(7))
    from toolkit.targets.sandbox import SandboxTarget

    assert SandboxTarget(server.state_path, platform="exchange-online").run_script(extra).exit_code == 0
    server.switches.page_size = 3
    result = run(cli, inventory, "plan", ROOMS)
    assert result.exit_code == 0, result.stderr
    # 7 scopes over pages of 3: three HTTP calls for Get-ManagementScope; one each for the empty collections.
    # 7 scopes over pages of 3: three calls; the 10 role assignments of the seed tenant: four (the whole collection is
    # read once, and -RoleAssigneeType has no ServicePrincipal value to narrow it on the server).
    # The three collections are read concurrently (their order varies); each collection's pages in turn.
    assert sorted(server.log.invocations) == sorted(["Get-ManagementScope"] * 3 + ["Get-ServicePrincipal"]
                                                    + ["Get-ManagementRoleAssignment"] * 4)
    assert actions(run(cli, inventory, "apply", ROOMS, "--yes"))[0] == ("ManagementScope", "created")


def test_a_429_storm_completes_and_reports_retries(cli, exo):
    server, inventory = exo
    server.switches.throttle_next = 6
    server.switches.retry_after = "0.01"
    result = cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--yes")
    assert result.exit_code == 0, result.stderr
    assert server.log.throttled == 6
    assert server.log.statuses[:7] == [429] * 6 + [200]  # the calls the server saw: six refused, then answered
    # The reads run concurrently (reads_in_flight): which of them drew the six 429s varies; each is reported.
    note = re.search(r"Note: 6 call\(s\) were retried after throttling or transient errors: (.*)", result.stdout)
    assert note is not None, result.stdout
    retried = note.group(1).removesuffix(" …").split("; ")
    assert len(retried) == 5, retried  # the first five, then " …"
    assert all(re.fullmatch(r"Get-[A-Za-z]+: HTTP 429, retried after 0\.01 s", entry) for entry in retried), retried


def test_5xx_is_retried_and_gives_up_clearly(cli, exo):
    server, inventory = exo
    server.switches.fail_next = 2
    assert run(cli, inventory, "plan", ROOMS).exit_code == 0
    assert server.log.statuses == [503, 503, 200, 200, 200]
    server.log.statuses.clear()
    server.switches.fail_next = 100
    result = run(cli, inventory, "plan", ROOMS)
    assert result.exit_code == 1
    # the plan's three collection reads go out concurrently: each its first attempt and max_retries (8) more, and
    # none is sent again when the script meets the failure
    assert server.log.statuses == [503] * 27
    assert (f"Get-ManagementScope on tenant {TENANT} still failed (HTTP 503) after 9 attempt(s) over "
            in result.stderr and "(max_retries 8, call_timeout 900 s)" in result.stderr)


def test_token_expiry_mid_run(cli, exo):
    server, inventory = exo
    server.switches.expire_tokens_after_calls = 4  # after the plan's reads and the apply's first read
    assert {a for _, a in actions(run(cli, inventory, "apply", ROOMS, "--yes"))} == {"created"}
    # the apply's reads go out together: each one already sent with the expired token is refused (1 to 3 of them),
    # and one sign-in replaces the token for all of them
    assert 1 <= server.log.rejected_tokens <= 3
    assert server.log.token_requests == 2


def test_a_token_is_reused_until_msal_would_sign_in_again(cli, exo):
    from toolkit.targets.exchange_online import _reuse_for

    # msal signs in again five minutes before a token expires, or once its refresh_in has passed
    assert _reuse_for({"expires_in": 3600}) == 3300
    assert _reuse_for({"expires_in": 3600, "refresh_in": 1800}) == 1800
    assert _reuse_for({"expires_in": 200}) == 0 and _reuse_for({}) == 0
    server, inventory = exo
    assert run(cli, inventory, "plan", ROOMS).exit_code == 0
    assert server.log.token_requests == 1  # an hour's token serves the whole run
    server.log.token_requests = 0
    server.switches.token_lifetime = 240  # less than msal's five minutes: msal signs in again whenever asked
    assert run(cli, inventory, "plan", ROOMS).exit_code == 0
    assert server.log.token_requests == 4  # as many as without the reuse (checked against the code before it)


def test_cmdlet_errors_are_readable(cli, exo, write_playbook):
    server, inventory = exo
    path = write_playbook(POLICY.read_text().replace("bookable-rooms@contoso.com", "room-berlin-1@contoso.com"))
    result = cli("apply", path, "-i", inventory, "-t", "cert", "--yes")
    assert result.exit_code == 1
    # The plan runs the script against the tenant's objects first: Exchange's refusal is known before anything runs.
    assert ("the target would refuse 1 change(s), first ApplicationAccessPolicy 'Room booking app:room-berlin-1@contoso"
            ".com' would fail: The PolicyScopeGroupId 'room-berlin-1@contoso.com' must be a mail-enabled security group, a user "
            "mailbox or a mail user; it is a RoomMailbox.") in result.stderr
    assert "nothing was changed" in result.stderr
    assert server.state_path.read_text() == seed_organisation("exchange-online").to_json()  # only read


def test_secrets_never_appear(cli, exo, caplog, runs_dir):
    import logging

    caplog.set_level(logging.DEBUG)
    server, inventory = exo
    outputs = []
    for target in ("secret", "cert"):
        for args in (("apply", ROOMS, "--yes"), ("destroy", ROOMS, "--yes")):
            result = cli(*args, "-i", inventory, "-t", target)
            outputs += [result.stdout, result.stderr]
    records = "".join(p.read_text() for p in runs_dir.glob("*.jsonl"))
    from toolkit.fleet import records as runs

    assert [r["command"] for r in runs.read_all()].count("destroy") == 2
    assert SECRET not in "\n".join(outputs) + caplog.text + records


def test_script_path_and_rest_path_reach_the_same_state(cli, exo, sandbox_state):
    """The rendered pwsh script (run by the sandbox) and the REST steps leave the organisation in the same state."""
    server, inventory = exo
    for playbook in (ROOMS, POLICY):
        assert cli("apply", playbook, "--yes").exit_code == 0  # default target: the Exchange Online sandbox
        assert run(cli, inventory, "apply", playbook, "--yes").exit_code == 0
    script_state = store.load(store.default_state_path("exchange-online"), "exchange-online").to_json()
    assert script_state == server.state_path.read_text()
    assert script_state != seed_organisation("exchange-online").to_json()


def test_rendered_script_connects_with_the_certificate_and_parses(cli, exo, pki):
    from toolkit.render.syntax import parse, syntax_problems

    server, inventory = exo
    result = cli("plan", ROOMS, "-i", inventory, "-t", "cert")  # plan renders with the target's connection
    assert result.exit_code == 0
    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_script

    playbook, _ = require_playbook(ROOMS)
    target = resolve_target(inventory, "cert", "exchange-online").target
    text = render_script(playbook, connection=target.connection()).text
    assert cli("render", ROOMS, "-i", inventory, "-t", "cert").stdout == text
    thumbprint = pki[1].cert_chain_pems[0]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    sha1 = x509.load_pem_x509_certificate(thumbprint.bytes()).fingerprint(hashes.SHA1()).hex().upper()
    assert (f"Connect-ExchangeOnline -AppId '{CLIENT_ID}' -CertificateThumbprint '{sha1}' -Organization '{TENANT}' "
            "-ShowBanner:$false") in text
    assert "Disconnect-ExchangeOnline -Confirm:$false" in text
    assert syntax_problems(parse(text)) == []


def test_impersonation_on_exchange_online_is_an_error(cli, write_playbook):
    path = write_playbook("exkit: 1\nplatform: exchange-online\nname: x\nscopes: [{name: Rooms, rooms: true}]\n"
                          "role_groups:\n  - {name: G, roles: [ApplicationImpersonation], scope: Rooms}\n")
    result = cli("validate", path)
    assert result.exit_code == 1
    assert (f"{path}:6:23: error: ApplicationImpersonation was removed from Exchange Online in February 2025 "
            "(message center MC718754)") in result.stderr
    assert "role: Application Calendars.ReadWrite" in result.stderr
    assert "exkit migrate" in result.stderr


@pytest.mark.parametrize("text, message", [
    ("scopes: [{name: R, rooms: true, recipient_root: 'OU=A,DC=b'}]", "Exchange Online has no organizational units"),
    ("applications: [{name: A, app_id: nope, object_id: 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21}]",
     "app_id 'nope' is not a GUID"),
    ("applications: [{name: A, app_id: 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21, object_id: "
     "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c22}]\napplication_role_assignments: [{application: A, role: Calendars.ReadWrite, "
     "all_mailboxes: true}]", "did you mean 'Application Calendars.ReadWrite'?"),
    ("application_role_assignments: [{application: Nope, role: Application Mail.Read, all_mailboxes: true}]",
     "refers to application 'Nope', which is not declared"),
])
def test_exchange_online_validation(cli, write_playbook, text, message):
    path = write_playbook(f"exkit: 1\nplatform: exchange-online\nname: x\n{text}\n")
    result = cli("validate", path)
    assert result.exit_code == 1
    assert message in result.stderr


def test_exchange_online_sections_need_the_platform(cli, write_playbook):
    path = write_playbook("exkit: 1\nname: x\napplications: []\napplication_access_policies: "
                          "[{application: A, group: g@contoso.com}]\n")
    result = cli("validate", path)
    assert "'application_access_policies' exists only in Exchange Online" in result.stderr


def test_ews_role_is_warned(cli, write_playbook):
    path = write_playbook("exkit: 1\nplatform: exchange-online\nname: x\nscopes: [{name: R, rooms: true}]\n"
                          "applications: [{name: A, app_id: 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21, object_id: "
                          "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c22}]\napplication_role_assignments:\n"
                          "  - {application: A, role: Application EWS.AccessAsApp, scope: R}\n")
    result = cli("validate", path, "--strict")
    assert result.exit_code == 1
    assert "EWS in Exchange Online is blocked from 1 October 2026" in result.stderr


def test_migrate_keeps_comments_and_gives_a_working_playbook(cli, tmp_path, sandbox_state):
    out = tmp_path / "online.yaml"
    result = cli("migrate", REPO / "playbooks" / "classic.yaml", "--out", out)
    assert result.exit_code == 0
    text = out.read_text()
    assert text.startswith("# The classic setup a room-booking vendor asks for")  # comments kept
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(text)
    assert "role_groups" not in data and data["platform"] == "exchange-online"
    assert "# exkit migrate: replaces the ApplicationImpersonation of role group 'Room booking service accounts'" in text
    assert "    role: Application Calendars.ReadWrite\n    scope: Room mailboxes\n" in text
    assert cli("validate", out, "--strict").exit_code == 0
    applied = cli("apply", out, "--yes", "--output", "json")
    assert applied.exit_code == 0, applied.stderr
    assert [r["kind"] for r in json.loads(applied.stdout)["results"]] == [
        "ManagementScope", "ServicePrincipal", "ApplicationRoleAssignment"]


def test_migrate_hosted_playbook_drops_the_ou(cli, tmp_path):
    result = cli("migrate", REPO / "playbooks" / "hosted-tenant.yaml")
    from ruamel.yaml import YAML

    assert "recipient_root" not in YAML(typ="safe").load(result.stdout)["scopes"][0]
    assert "# exkit migrate: recipient_root dropped (Exchange Online has no OUs)" in result.stdout


def test_pfx_certificate_with_password_reference(cli, exo, pki, tmp_path, monkeypatch):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    server, inventory = exo
    app_cert = pki[1]
    key = serialization.load_pem_private_key(app_cert.private_key_pem.bytes(), password=None)
    certificate = x509.load_pem_x509_certificate(app_cert.cert_chain_pems[0].bytes())
    (tmp_path / "app.pfx").write_bytes(pkcs12.serialize_key_and_certificates(
        b"exkit", key, certificate, None, serialization.BestAvailableEncryption("pfx-pässword".encode())))
    monkeypatch.setenv("EXKIT_PFX_PASSWORD", "pfx-pässword")
    text = inventory.read_text()
    line = next(l for l in text.splitlines() if l.strip().startswith("cert:"))
    inventory.write_text(text + line.replace("cert:", "pfx:").replace(
        "certificate: app.pem", "certificate_pfx: app.pfx, certificate_password: 'env:EXKIT_PFX_PASSWORD'") + "\n")
    assert {a for _, a in actions(run(cli, inventory, "apply", ROOMS, "--yes", target="pfx"))} == {"created"}
    monkeypatch.setenv("EXKIT_PFX_PASSWORD", "wrong")
    result = run(cli, inventory, "plan", ROOMS, target="pfx")
    assert result.exit_code == 1
    assert "a PFX needs its password" in result.stderr
    assert "wrong" not in result.stderr


def test_plaintext_client_secret_is_rejected(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"targets:\n  t: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, "
                         "client_secret: Sup3rS3cretValue}\n")
    result = cli("plan", ROOMS, "-i", inventory, "-t", "t")
    assert result.exit_code == 1
    assert "a plaintext secret is not allowed in an inventory" in result.stderr
    assert "Sup3rS3cretValue" not in result.stderr


def test_verify_preview_export_and_drift_on_exchange_online(cli, exo, tmp_path):
    server, inventory = exo
    target = ("-i", inventory, "-t", "cert")
    assert cli("apply", ROOMS, *target, "--yes").exit_code == 0
    verified = cli("verify", ROOMS, *target, "--output", "json")
    assert verified.exit_code == 0, verified.stdout
    checks = json.loads(verified.stdout)["checks"]
    assert [c["message"] for c in checks if "Test-ServicePrincipalAuthorization" in c["message"]] == [
        "Test-ServicePrincipalAuthorization: room-berlin-1@contoso.com (a room in the scope) is in scope",
        "Test-ServicePrincipalAuthorization: admin@contoso.com (a mailbox outside the scope) is not in scope"]
    assert cli("scope", "preview", ROOMS, *target).exit_code == 0
    out = tmp_path / "exported.yaml"
    exported = cli("export", *target, "--principal", "Room booking app", "-o", out)
    assert exported.exit_code == 0, exported.stderr
    assert "application_role_assignments" in out.read_text()
    assert cli("plan", out, *target, "--detailed-exitcode").exit_code == 0
    # someone widens the scope to every mailbox: the sample user mailbox is now in scope
    from toolkit.targets.sandbox import SandboxTarget

    SandboxTarget(server.state_path, platform="exchange-online").run_script(
        "Set-ManagementScope -Identity 'Room mailboxes' -RecipientRestrictionFilter \"RecipientTypeDetails -like '*Mailbox'\"")
    broken = json.loads(cli("verify", ROOMS, *target, "--output", "json").stdout)
    failed = [c["message"] for c in broken["checks"] if not c["ok"]]
    assert "Test-ServicePrincipalAuthorization: admin@contoso.com (a mailbox outside the scope) is in scope" in failed
    assert any(m.startswith("matches recipients that are not rooms") for m in failed)
    assert cli("plan", ROOMS, *target, "--detailed-exitcode").exit_code == 2


def test_delegates_over_rest_apply_verify_destroy_and_match_the_script(cli, exo, write_playbook, sandbox_state):
    """Delegate FullAccess (the discouraged fallback) through the REST connector: one Get-MailboxPermission per
    declared grant for the plan, one per mailbox for verify; the script path reaches the same state."""
    server, inventory = exo
    playbook = write_playbook("""\
        exkit: 1
        name: online-delegates
        platform: exchange-online
        delegates:
          - user: svc-rooms@contoso.com
            mailboxes: [room-berlin-1@contoso.com, room-munich-1@contoso.com]
            auto_mapping: false
        """)
    assert actions(run(cli, inventory, "apply", playbook, "--yes")) == [("MailboxPermission", "created")] * 2
    state = store.load(server.state_path, "exchange-online")
    assert {(p.identity, p.user, tuple(p.access_rights), p.auto_mapping) for p in state.mailbox_permissions} == {
        ("room-berlin-1@contoso.com", "svc-rooms@contoso.com", ("FullAccess",), False),
        ("room-munich-1@contoso.com", "svc-rooms@contoso.com", ("FullAccess",), False)}
    server.log.invocations.clear()
    assert {a for _, a in actions(run(cli, inventory, "apply", playbook, "--yes"))} == {"unchanged"}
    assert server.log.invocations.count("Get-MailboxPermission") == 4  # plan and apply each read the two grants
    verified = run(cli, inventory, "verify", playbook)
    assert verified.exit_code == 0, verified.stdout
    assert [c["message"] for c in json.loads(verified.stdout)["checks"] if c["subject"].startswith("delegate")] == [
        "FullAccess on room-berlin-1@contoso.com", "FullAccess on room-munich-1@contoso.com"]
    # someone grants one more room by hand: verify names it
    from toolkit.targets.sandbox import SandboxTarget

    SandboxTarget(server.state_path, platform="exchange-online").run_script(
        "Add-MailboxPermission -Identity 'room-london-1@contoso.com' -User 'svc-rooms@contoso.com' "
        "-AccessRights 'FullAccess'")
    broken = json.loads(run(cli, inventory, "verify", playbook).stdout)
    assert "also holds FullAccess on room-london-1@contoso.com, which the playbook does not declare" in [
        c["message"] for c in broken["checks"] if not c["ok"]]
    # the rendered pwsh script, run by the Exchange Online sandbox, ends in the same grants
    assert cli("apply", playbook, "--yes").exit_code == 0
    script_state = store.load(store.default_state_path("exchange-online"), "exchange-online")
    assert {(p.identity, p.user) for p in script_state.mailbox_permissions} == {
        ("room-berlin-1@contoso.com", "svc-rooms@contoso.com"), ("room-munich-1@contoso.com", "svc-rooms@contoso.com")}
    assert actions(run(cli, inventory, "destroy", playbook, "--yes")) == [("MailboxPermission", "removed")] * 2
    remaining = store.load(server.state_path, "exchange-online").mailbox_permissions
    assert [(p.identity, p.access_rights) for p in remaining if p.access_rights] == [
        ("room-london-1@contoso.com", ["FullAccess"])]


RBAC = """\
    exkit: 1
    name: online-rbac
    platform: exchange-online
    scopes:
      - name: Room mailboxes
        rooms: true
    role_groups:
      - name: Room helpers
        description: Keeps the room mailboxes tidy.
        roles: [Mail Recipients]
        members: [anna.adler@contoso.com, ben.becker@contoso.com]
        scope: Room mailboxes
    role_assignments:
      - name: Room viewer
        role: View-Only Recipients
        user: clara.costa@contoso.com
        scope: Room mailboxes
    """


def test_role_groups_and_assignments_over_rest_match_the_script(cli, exo, write_playbook, sandbox_state):
    """Role groups and direct role assignments through the REST connector: the same cmdlets the templates run,
    decided from the facts; drift is repaired; verify sees groups, assignments and effective users; the script
    path reaches the same state."""
    server, inventory = exo
    playbook = write_playbook(RBAC)
    assert actions(run(cli, inventory, "apply", playbook, "--yes")) == [
        ("ManagementScope", "created"), ("RoleGroup", "created"), ("ManagementRoleAssignment", "created")]
    assert {a for _, a in actions(run(cli, inventory, "apply", playbook, "--yes"))} == {"unchanged"}
    verified = run(cli, inventory, "verify", playbook)
    assert verified.exit_code == 0, verified.stdout
    # the script path (the Exchange Online sandbox runs the rendered pwsh script) ends in the same state
    assert cli("apply", playbook, "--yes").exit_code == 0
    script_state = store.load(store.default_state_path("exchange-online"), "exchange-online").to_json()
    assert script_state == server.state_path.read_text()
    # drift by hand: a member swapped, the group's assignment widened to the organisation, an extra role, and the
    # direct assignment moved to another user
    from toolkit.targets.sandbox import SandboxTarget

    SandboxTarget(server.state_path, platform="exchange-online").run_script(
        "Remove-RoleGroupMember -Identity 'Room helpers' -Member 'ben.becker@contoso.com'\n"
        "Add-RoleGroupMember -Identity 'Room helpers' -Member 'emma.engel@contoso.com'\n"
        "Set-ManagementRoleAssignment -Identity 'Mail Recipients-Room helpers' -RecipientRelativeWriteScope "
        "'Organization'\n"
        "New-ManagementRoleAssignment -SecurityGroup 'Room helpers' -Role 'Reset Password' | Out-Null\n"
        "Remove-ManagementRoleAssignment -Identity 'Room viewer'\n"
        "New-ManagementRoleAssignment -Name 'Room viewer' -Role 'View-Only Recipients' -User "
        "'david.dietrich@contoso.com' -CustomRecipientWriteScope 'Room mailboxes' | Out-Null\n")
    assert run(cli, inventory, "verify", playbook).exit_code == 1
    assert cli("plan", playbook, "-i", inventory, "-t", "cert", "--detailed-exitcode").exit_code == 2
    assert actions(run(cli, inventory, "apply", playbook, "--yes")) == [
        ("ManagementScope", "unchanged"), ("RoleGroup", "updated"), ("ManagementRoleAssignment", "updated")]
    assert server.state_path.read_text() == script_state  # repaired to exactly what the script made
    assert run(cli, inventory, "verify", playbook).exit_code == 0
    assert actions(run(cli, inventory, "destroy", playbook, "--yes")) == [
        ("ManagementRoleAssignment", "removed"), ("RoleGroup", "removed"), ("ManagementScope", "removed")]
    assert server.state_path.read_text() == seed_organisation("exchange-online").to_json()


def test_the_bearer_token_never_follows_a_next_link_to_another_host(cli, exo, sandbox_state):
    """Issue 19 item 6: the connector followed @odata.nextLink to any host, with the bearer token."""
    import socket

    server, inventory = exo
    from toolkit.targets.sandbox import SandboxTarget

    extra = "".join(f"New-ManagementScope -Name 'Scope {i}' -RecipientRestrictionFilter \"Office -eq 'O{i}'\"\n"
                    for i in range(4))
    assert SandboxTarget(server.state_path, platform="exchange-online").run_script(extra).exit_code == 0
    with socket.socket() as elsewhere:  # a listener that would see any connection
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        elsewhere.setblocking(False)
        server.switches.page_size = 2
        server.switches.next_link_base = f"https://localhost:{elsewhere.getsockname()[1]}"
        result = run(cli, inventory, "plan", ROOMS)
        assert result.exit_code == 1
        assert "next page link points to another host (https://localhost:" in result.stderr
        with pytest.raises(BlockingIOError):
            elsewhere.accept()  # nobody connected: the token went nowhere else
    # the page was not followed and the scopes not read again; the other collections were read concurrently
    assert sorted(server.log.invocations) == ["Get-ManagementRoleAssignment", "Get-ManagementScope",
                                              "Get-ServicePrincipal"]


def test_retry_after_in_both_forms(cli, exo):
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from toolkit.targets.http_rules import retry_after_seconds

    now = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("2.5", now) == 2.5
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds("Mon, 30 Nov 2026 11:00:00 GMT", now) == 0.0  # in the past: no wait
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None
    server, inventory = exo
    server.switches.throttle_next = 2
    server.switches.retry_after = format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
    result = cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--yes")
    assert result.exit_code == 0, result.stderr
    assert server.log.throttled == 2 and "HTTP 429, retried after 0.00 s" in result.stdout


def test_the_rest_path_runs_the_reviewed_script_and_nothing_else(cli, exo, tmp_path):
    """The REST connector runs the rendered script itself: --reviewed pins it as on every target (a changed template
    is refused before any call), and a template override changes what the REST path does."""
    server, inventory = exo
    reviewed = tmp_path / "reviewed"
    rendered = cli("render", ROOMS, "-i", inventory, "-t", "cert", "--out", reviewed)
    assert rendered.exit_code == 0, rendered.stderr
    mine = tmp_path / "mine"
    (mine / "exchange-online").mkdir(parents=True)
    template = (REPO / "templates" / "exchange-online" / "service_principal.ps1.j2").read_text()
    assert template.count("-DisplayName {{ display_name }}") == 2
    suffixed = "({{ display_name }} + ' (managed by exkit)')"
    (mine / "exchange-online" / "service_principal.ps1.j2").write_text(
        template.replace("-DisplayName {{ display_name }}", "-DisplayName " + suffixed)
        .replace("-ne {{ display_name }}", "-ne " + suffixed))
    calls = len(server.log.invocations)
    refused = cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--templates", mine, "--reviewed", reviewed, "--yes")
    assert refused.exit_code == 3, refused.stderr
    assert len(server.log.invocations) == calls  # refused before the first call to the tenant
    applied = cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--templates", mine, "--yes")
    assert applied.exit_code == 0, applied.stderr
    tenant = store.load(server.state_path, "exchange-online")
    assert [p.display_name for p in tenant.service_principals] == ["Room booking app (managed by exkit)"]
    again = cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--templates", mine, "--yes", "--output", "json")
    assert {a for _, a in actions(again)} == {"unchanged"}


def test_the_reads_a_script_is_read_ahead_for_are_the_collections_it_names_as_words():
    """Read ahead: a collection's read cmdlet named as a word in any case (a call, or in a Get-Command check), not
    a longer name that starts with it."""
    from toolkit.targets.exchange_online_script import _collections_named

    script = ("if (Get-Command 'Get-ServicePrincipal' -ErrorAction SilentlyContinue) { }\n"
              "$s = get-managementscope -Identity 'x'\n"
              "Get-RoleGroupMember -Identity 'g'; Get-ManagementRoleAssignmentX; X-Get-ApplicationAccessPolicy\n")
    assert _collections_named(script) == {"Get-ServicePrincipal", "Get-ManagementScope"}
    # letters whose other case is ASCII match as before (found by review: they raised KeyError)
    assert _collections_named("# GET-SERVİCEPRİNCİPAL\n$x = 'Get-ſervicePrincipal'\n") == {"Get-ServicePrincipal"}


def test_a_tenants_plan_and_apply_leave_nothing_of_exkits_for_the_cycle_collector(exo, tmp_path):
    """A fleet worker runs thousands of tenants: what one tenant's run made is freed when it ends (reference
    counting), not left in reference cycles that only the cycle collector frees, walking every live object each
    time (its interpreters with their cmdlet tables and organisations, its calls' retry machinery). The client runs
    in a process of its own, so only its objects are counted (not the loopback server's, nor other tests' threads)."""
    import subprocess
    import sys

    _, inventory = exo
    client = tmp_path / "client.py"
    client.write_text(textwrap.dedent(f"""\
        import gc, json, sys
        from pathlib import Path
        from toolkit.fleet.run import run_one
        from toolkit.inventory import resolve_target

        target = resolve_target(Path({str(inventory)!r}), "cert", "exchange-online")
        assert run_one("apply", Path({str(ROOMS)!r}), target, {{}}, None).ok  # what is made once per process
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        outcome = run_one("apply", Path({str(ROOMS)!r}), target, {{}}, None)
        gc.collect()
        print(json.dumps([outcome.ok, sorted(type(o).__module__ + "." + type(o).__qualname__ for o in gc.garbage
                                             if type(o).__module__.startswith(("toolkit", "tenacity")))]))
        """))
    done = subprocess.run([sys.executable, str(client)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EXKIT_RUNS_DIR": str(tmp_path / "runs")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [True, []]
