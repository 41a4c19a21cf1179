"""verify's Entra check on Exchange Online: real msal and requests against the loopback identity, InvokeCommand and
Microsoft Graph endpoints (tests/servers/exchange_online.py, tests/servers/entra.py)."""

from __future__ import annotations

import json

import pytest
from servers.entra import EXCHANGE_APP_ID, GRAPH_APP_ID, ROOM_APP_ID, ROOM_SP_ID
from test_exchange_online import CLIENT_ID, POLICY, ROOMS, exo, pki  # noqa: F401 (fixtures)

from conftest import REPO

from toolkit.playbook.model import APPLICATION_ROLES
from toolkit.verify.overlap import EXCHANGE, GRAPH, MAILBOX_PERMISSIONS, OVERLAP

FIX = ("fix: remove that admin consent in Entra (Enterprise applications → Room booking app → Permissions → "
       "Calendars.ReadWrite → Revoke permission) — the scoped Exchange role keeps the access the app needs")
CALENDARS_FAILURE = ("Microsoft Graph application permission Calendars.ReadWrite is granted tenant-wide (admin consent, "
                     "2026-11-02 09:14 UTC): it reaches every mailbox, so the scope of Application Calendars.ReadWrite "
                     "restricts nothing; " + FIX)


def verify(cli, inventory, playbook=ROOMS):
    result = cli("verify", playbook, "-i", inventory, "-t", "cert", "--output", "json")
    data = json.loads(result.stdout)
    assert data["ok"] == (result.exit_code == 0)
    return result.exit_code, data


def entra(data):
    return [(c["status"], c["message"]) for c in data["checks"] if c["area"] == "entra"]


@pytest.fixture
def applied(cli, exo):  # noqa: F811
    server, inventory = exo
    assert cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--yes").exit_code == 0
    return server, inventory


def test_no_consent_passes(cli, applied):
    server, inventory = applied
    tokens = server.log.token_requests
    code, data = verify(cli, inventory)
    assert code == 0 and data["entra"] == "pass"
    assert entra(data) == [
        ("pass", "no tenant-wide application permission reaches mailboxes, so the scope of Application "
                 "Calendars.ReadWrite holds (application permissions in Entra: none)"),
        ("info", "delegated grants not read (Authorization_RequestDenied: reading delegated grants needs "
                 "Directory.Read.All; optional, they are information only)")]
    assert server.log.token_requests == tokens + 2  # one token for Exchange, one for Graph
    assert server.directory.requests == [
        "GET /v1.0/servicePrincipals", f"GET /v1.0/servicePrincipals/{ROOM_SP_ID}/appRoleAssignments",
        f"GET /v1.0/servicePrincipals/{ROOM_SP_ID}/oauth2PermissionGrants"]


def test_tenant_wide_calendars_readwrite_fails_naming_it(cli, applied, tmp_path):
    server, inventory = applied
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite", "2026-11-02T09:14:03.1234567Z")
    code, data = verify(cli, inventory)
    assert code == 1 and data["entra"] == "fail"
    assert [(c["subject"], c["message"]) for c in data["checks"] if c["status"] == "fail"] == [
        ("Entra consent of 'Room booking app'", CALENDARS_FAILURE)]
    text = cli("verify", ROOMS, "-i", inventory, "-t", "cert")
    assert text.exit_code == 1
    assert "Verify: 3 passed, 1 failed, 1 note(s)." in text.stdout
    # scope preview and the run report show it too
    preview = cli("scope", "preview", ROOMS, "-i", inventory, "-t", "cert", "--output", "json")
    assert preview.exit_code == 1
    assert [c["message"] for c in json.loads(preview.stdout)["entra"] if c["status"] == "fail"] == [CALENDARS_FAILURE]
    for name in ("report.md", "report.html"):
        result = cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--yes", "--report", tmp_path / name)
        assert result.exit_code == 0
        report = (tmp_path / name).read_text()
        assert "Entra consent (Microsoft Graph)" in report and "3 passed, 1 failed, 1 note(s)" in report
        assert "Calendars.ReadWrite is granted tenant-wide" in report
    # the README shows this output: its table wraps the same text
    readme = " ".join((REPO / "README.md").read_text().split())
    # (off a terminal verify prints one line per check: RESULT subject: detail)
    details = [line.split(": ", 1)[1] for line in text.stdout.splitlines()
               if line.split(" ", 1)[0] in ("PASS", "FAIL", "INFO", "WARNING", "NOT")]
    assert " ".join(" ".join(details).split()) in " ".join(
        line.split("│")[-1].strip() for line in (REPO / "README.md").read_text().splitlines() if "│" in line)
    assert "Verify: 3 passed, 1 failed, 1 note(s)." in readme
    # the admin follows the fix: verify is green again
    server.directory.revoke(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite")
    assert verify(cli, inventory)[0] == 0


@pytest.mark.parametrize("resource, permission", [(EXCHANGE_APP_ID, "full_access_as_app"),
                                                  (GRAPH_APP_ID, "Mail.Read")])
def test_other_mailbox_permissions_fail_too(cli, applied, resource, permission):
    server, inventory = applied
    server.directory.grant(ROOM_APP_ID, resource, permission, "2026-11-03T10:00:00Z")
    code, data = verify(cli, inventory)
    assert code == 1
    failed = [m for s, m in entra(data) if s == "fail"]
    name = "Office 365 Exchange Online" if resource == EXCHANGE_APP_ID else "Microsoft Graph"
    if permission == "full_access_as_app":  # EWS full access overlaps every role
        assert failed[0].startswith(f"{name} application permission full_access_as_app is granted tenant-wide (admin "
                                    "consent, 2026-11-03 10:00 UTC): it reaches every mailbox, so the scope of "
                                    "Application Calendars.ReadWrite restricts nothing")
    else:
        assert failed == [f"{name} application permission Mail.Read is granted tenant-wide (admin consent, 2026-11-03 "
                          "10:00 UTC): it reaches every mailbox, which none of the declared roles (Application "
                          "Calendars.ReadWrite) allows; fix: remove that admin consent in Entra (Enterprise "
                          "applications → Room booking app → Permissions → Mail.Read → Revoke permission)"]


def test_non_mailbox_permissions_do_not_fail(cli, applied):
    server, inventory = applied
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Place.Read.All")
    code, data = verify(cli, inventory)
    assert code == 0
    assert "(application permissions in Entra: Microsoft Graph Place.Read.All)" in entra(data)[0][1]


def test_missing_application_read_all_is_not_checked(cli, applied):
    server, inventory = applied
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite")
    server.directory.revoke(CLIENT_ID, GRAPH_APP_ID, "Application.Read.All")
    code, data = verify(cli, inventory)
    assert code == 1 and data["entra"] == "not checked"
    assert entra(data) == [("not checked", "not checked: Microsoft Graph refused to list service principals "
                                           "(Authorization_RequestDenied): the automation app "
                                           f"{CLIENT_ID} lacks the application permission Application.Read.All "
                                           "(read-only); grant it with admin consent")]
    assert all(c["ok"] for c in data["checks"] if c["area"] == "exchange")  # Exchange's side still checked
    text = cli("verify", ROOMS, "-i", inventory, "-t", "cert")
    assert "NOT CHECKED" in text.stdout and "Verify: 3 passed, 0 failed, 1 not checked." in text.stdout


def test_delegated_grants_are_information(cli, applied):
    server, inventory = applied
    server.directory.grant(CLIENT_ID, GRAPH_APP_ID, "Directory.Read.All")
    server.directory.grant_delegated(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.Read offline_access", "Principal")
    code, data = verify(cli, inventory)
    assert code == 0
    assert [m for s, m in entra(data) if s == "info"] == [
        "delegated grant Microsoft Graph User.Read for all users (admin consent): it acts only for a signed-in user, "
        "within that user's own access",
        "delegated grant Microsoft Graph Calendars.Read offline_access for one user: it acts only for a signed-in "
        "user, within that user's own access"]


def test_assignments_are_paged(cli, applied):
    server, inventory = applied
    for permission in ("User.Read.All", "Place.Read.All", "Application.Read.All", "Directory.Read.All"):
        server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, permission)
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite", "2026-11-02T09:14:03.1234567Z")
    server.directory.switches.page_size = 2
    code, data = verify(cli, inventory)
    assert code == 1
    assert [m for s, m in entra(data) if s == "fail"] == [CALENDARS_FAILURE]  # the fifth, on the third page
    pages = [r for r in server.directory.requests if r.endswith("/appRoleAssignments")]
    assert len(pages) == 3


def test_throttling_is_retried(cli, applied):
    server, inventory = applied
    server.directory.switches.throttle_next = 3
    server.directory.switches.retry_after = "0.01"
    code, data = verify(cli, inventory)
    assert code == 0 and data["entra"] == "pass"
    assert server.directory.throttled == 3
    assert entra(data)[0][1].endswith("(application permissions in Entra: none); 3 Graph call(s) retried after "
                                      "throttling")
    # still throttled after every retry (max_retries 8): not checked, with the reason; never passed
    server.directory.switches.throttle_next = 100
    code, data = verify(cli, inventory)
    assert code == 1 and data["entra"] == "not checked"
    assert entra(data)[0][1].startswith("not checked: reading Microsoft Graph failed: Graph servicePrincipals on "
                                        "tenant contoso.onmicrosoft.com still failed (HTTP 429) after 9 attempt(s)")
    assert entra(data)[0][1].endswith("(max_retries 8, call_timeout 900 s)")


def test_wrong_object_id_and_missing_service_principal(cli, applied, write_playbook):
    server, inventory = applied
    text = ROOMS.read_text()
    wrong = write_playbook(text.replace("0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21", "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c22"))
    code, data = verify(cli, inventory, wrong)
    assert ("fail", "the enterprise application's object id is 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21, declared "
                    "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c22 (object_id is the service principal's, not the app "
                    "registration's)") in entra(data)
    del server.directory.principals[ROOM_SP_ID]
    code, data = verify(cli, inventory)
    assert code == 1
    assert entra(data) == [("fail", f"Entra ID has no service principal (enterprise application) for app {ROOM_APP_ID}"
                                    ": check app_id, or add the app to the tenant")]


def test_app_without_any_permission_and_policy_with_rbac_are_warned(cli, exo):  # noqa: F811
    server, inventory = exo
    target = ("-i", inventory, "-t", "cert")
    assert cli("apply", POLICY, *target, "--yes").exit_code == 0
    code, data = verify(cli, inventory, POLICY)
    assert code == 0  # warnings do not fail verify
    assert ("warning", "the app holds neither an Exchange application role nor an Entra application permission to "
                       "mailbox data: the integration cannot reach any mailbox") in entra(data)
    # with Graph Calendars.ReadWrite, the policy is what limits it
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite", "2026-11-02T09:14:03Z")
    code, data = verify(cli, inventory, POLICY)
    assert code == 0
    assert ("info", "Microsoft Graph application permission Calendars.ReadWrite (granted 2026-11-02 09:14 UTC) is "
                    "limited by the Application Access Policy to members of Bookable rooms (all sites)") in entra(data)
    assert not [m for s, m in entra(data) if s == "warning"]
    # an RBAC-for-Applications role on the same app as well: Microsoft says not to combine them
    assert cli("apply", ROOMS, *target, "--yes").exit_code == 0
    code, data = verify(cli, inventory, ROOMS)
    assert [c["message"] for c in data["checks"] if c["status"] == "warning"] == [
        "has both an Application Access Policy (RestrictAccess to Bookable rooms (all sites)) and RBAC-for-Applications roles "
        "(Application Calendars.ReadWrite): Microsoft advises not to combine them (RBAC for Applications replaces "
        "Application Access Policies); keep the scoped roles and remove the policy"]


def test_sandbox_has_no_entra_check(cli, sandbox_state):
    assert cli("apply", ROOMS, "--yes").exit_code == 0
    data = json.loads(cli("verify", ROOMS, "--output", "json").stdout)
    assert data["ok"] and data["entra"] is None
    assert not [c for c in data["checks"] if c["area"] == "entra"]


def test_overlap_table_names_real_roles_and_resources():
    assert set(OVERLAP) <= set(APPLICATION_ROLES)
    assert {resource for resource, _ in MAILBOX_PERMISSIONS} == {GRAPH, EXCHANGE}
    assert (GRAPH, "Calendars.ReadWrite") in OVERLAP["Application Calendars.ReadWrite"]
    assert (EXCHANGE, "full_access_as_app") in OVERLAP["Application EWS.AccessAsApp"]
    assert OVERLAP["Application Exchange Full Access"] == MAILBOX_PERMISSIONS


def test_graph_endpoint_only_with_custom_cloud(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"targets:\n  t: {{kind: exchange-online, tenant: contoso.onmicrosoft.com, client_id: "
                         f"{CLIENT_ID}, certificate: app.pem, graph_endpoint: 'https://graph.example'}}\n")
    result = cli("plan", ROOMS, "-i", inventory, "-t", "t")
    assert result.exit_code == 1
    assert "graph_endpoint goes with cloud: custom only" in result.stderr


def test_fleet_verify_carries_the_entra_outcome(cli, applied):
    server, inventory = applied
    server.directory.grant(ROOM_APP_ID, GRAPH_APP_ID, "Calendars.ReadWrite", "2026-11-02T09:14:03.1234567Z")
    result = cli("verify", ROOMS, "-i", inventory, "--limit", "cert", "--output", "json")
    assert result.exit_code == 1
    outcome = next(o for o in json.loads(result.stdout)["targets"] if o["target"] == "cert")
    assert outcome["summary"] == ("3 passed, 1 failed, 1 note(s): Entra consent of 'Room booking app': "
                                  + CALENDARS_FAILURE)


def test_policy_and_rbac_on_one_app_is_a_validate_warning(cli, write_playbook):
    path = write_playbook(ROOMS.read_text() + "application_access_policies:\n"
                          "  - {application: Room booking app, group: bookable-rooms@contoso.com}\n")
    result = cli("validate", path, "--strict")
    assert result.exit_code == 1
    assert (f"{path}:24:19: warning: application 'Room booking app' has both an Application Access Policy and "
            "RBAC-for-Applications roles") in result.stderr


def test_throttling_with_retry_after_as_an_http_date(cli, applied):
    """Retry-After may be an HTTP-date (RFC 9110 section 10.2.3): float() of it failed before."""
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    server, inventory = applied
    server.directory.switches.throttle_next = 2
    server.directory.switches.retry_after = format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)
    code, data = verify(cli, inventory)
    assert code == 0 and data["entra"] == "pass"
    assert server.directory.throttled == 2
