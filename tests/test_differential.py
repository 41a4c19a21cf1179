"""One decision, three paths: hypothesis drifts an organisation by hand, then

- the plan (the apply script run in the sandbox against what the facts script read),
- the script itself run on the sandbox organisation, and
- on Exchange Online, the same script run by the REST connector against the loopback tenant

must agree: the plan predicts exactly the per-resource results the script reports and the state it leaves, the REST
path leaves the very same organisation, and a second plan finds nothing to do.
"""

from __future__ import annotations

import os
import ssl
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers.exchange_online import App, LoopbackExchangeOnline
from test_exchange_online import CLIENT_ID, TENANT

from toolkit.boundary import canonical_name
from toolkit.inventory import resolve_target
from toolkit.resources import KIND_BY_NAME
from toolkit.sandbox import org as store
from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.interpreter import Interpreter
from toolkit.sandbox.seed import seed_organisation
from toolkit.targets.sandbox import SandboxTarget
from toolkit.workflow import execute, prepare

SERVER_PLAYBOOK = """\
exkit: 1
name: differential
scopes:
  - name: Rooms
    rooms: true
  - name: Berlin rooms
    rooms: true
    office: Berlin
role_groups:
  - name: Room bookers
    description: Books rooms.
    roles: [ApplicationImpersonation]
    members: [svc-rooms@contoso.com, 'CN=Room Sync Operator,OU=Users,DC=contoso,DC=com']
    scope: Rooms
role_assignments:
  - name: Room viewer
    role: View-Only Recipients
    user: clara.costa@contoso.com
    scope: Berlin rooms
delegates:
  - user: svc-rooms@contoso.com
    mailboxes: [room-berlin-1@contoso.com, room-munich-1@contoso.com]
"""

ONLINE_PLAYBOOK = """\
exkit: 1
platform: exchange-online
name: differential-online
scopes:
  - name: Rooms
    rooms: true
  - name: Berlin rooms
    rooms: true
    office: Berlin
applications:
  - name: Room booking app
    app_id: 6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11
    object_id: 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21
application_role_assignments:
  - application: Room booking app
    role: Application Calendars.ReadWrite
    scope: Rooms
application_access_policies:
  - application: Room booking app
    group: bookable-rooms@contoso.com
    access_right: RestrictAccess
role_groups:
  - name: Room helpers
    roles: [Mail Recipients]
    members: [anna.adler@contoso.com]
    scope: Rooms
role_assignments:
  - name: Room viewer
    role: View-Only Recipients
    user: clara.costa@contoso.com
    scope: Berlin rooms
delegates:
  - user: svc-rooms@contoso.com
    mailboxes: [room-berlin-1@contoso.com]
"""

# Changes an admin (or an attacker) makes by hand; each may fail harmlessly where it does not apply.
COMMON_DRIFT = [
    "Set-ManagementScope -Identity 'Rooms' -RecipientRestrictionFilter \"RecipientTypeDetails -like '*Mailbox'\"",
    "Set-ManagementScope -Identity 'Berlin rooms' -RecipientRestrictionFilter \"Office -eq 'Berlin'\"",
    "Add-RoleGroupMember -Identity '{group}' -Member 'ben.becker@contoso.com'",
    "Remove-RoleGroupMember -Identity '{group}' -Member '{member}' -Confirm:$false",
    "Set-ManagementRoleAssignment -Identity '{group_assignment}' -RecipientRelativeWriteScope 'Organization'",
    "New-ManagementRoleAssignment -SecurityGroup '{group}' -Role 'Reset Password' | Out-Null",
    "Remove-ManagementRoleAssignment -Identity 'Room viewer' -Confirm:$false",
    "Remove-ManagementRoleAssignment -Identity 'Room viewer' -Confirm:$false\n"
    "New-ManagementRoleAssignment -Name 'Room viewer' -Role 'View-Only Recipients' -User 'david.dietrich@contoso.com'"
    " -CustomRecipientWriteScope 'Rooms' | Out-Null",
    "Set-ManagementRoleAssignment -Identity 'Room viewer' -CustomRecipientWriteScope 'Rooms'",
    "Remove-MailboxPermission -Identity 'room-berlin-1@contoso.com' -User 'svc-rooms@contoso.com' "
    "-AccessRights FullAccess -InheritanceType All -Confirm:$false",
    "Remove-RoleGroup -Identity '{group}' -BypassSecurityGroupManagerCheck -Confirm:$false",
]
SERVER_DRIFT = COMMON_DRIFT + [
    "Set-ManagementScope -Identity 'Rooms' -RecipientRoot 'OU=Rooms,DC=contoso,DC=com'",
]
ONLINE_DRIFT = COMMON_DRIFT + [
    "Set-ServicePrincipal -Identity '6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11' -DisplayName 'Renamed app'",
    "Set-ManagementRoleAssignment -Identity 'Application Calendars.ReadWrite-Room booking app' "
    "-CustomResourceScope 'Berlin rooms'",
    "Remove-ManagementRoleAssignment -Identity 'Application Calendars.ReadWrite-Room booking app' -Confirm:$false",
    "Set-ApplicationAccessPolicy -Identity 'contoso.onmicrosoft.com\\6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11:"
    "bookable-rooms@contoso.com' -Description 'changed'",
    "Remove-ServicePrincipal -Identity '6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11' -Confirm:$false",
]
NAMES = {"exchange-server": {"group": "Room bookers", "member": "svc-rooms@contoso.com",
                             "group_assignment": "ApplicationImpersonation-Room bookers"},
         "exchange-online": {"group": "Room helpers", "member": "anna.adler@contoso.com",
                             "group_assignment": "Mail Recipients-Room helpers"}}


def drifted(platform: str, playbook: Path, applied_first: bool, drift: list[str]) -> str:
    """The state file text of an organisation: the seed, the playbook applied (or not), then drifted by hand."""
    organisation = seed_organisation(platform)
    interpreter = Interpreter(ExchangeCmdlets(organisation).commands())
    if applied_first:
        from toolkit.playbook.validate import require_playbook
        from toolkit.render.engine import render_script

        model, _ = require_playbook(playbook, {})
        assert interpreter.run(render_script(model).text).exit_code == 0
    for line in drift:
        interpreter.run(line.format(**NAMES[platform]))  # a change that does not apply just fails
    return organisation.to_json()


def views(platform: str, state: str, prepared) -> dict:
    return _comparable(store.Organisation.model_validate_json(state), prepared.script.resources)


def _comparable(organisation, resources) -> dict:
    """Each resource's view; an OU the facts did not read stays as Exchange printed it (its canonical name), so
    OUs compare by canonical name."""
    out = {}
    for resource in resources:
        view = KIND_BY_NAME[resource.kind].view(organisation, resource)
        if view and view.get("recipient_root"):
            view = {**view, "recipient_root": canonical_name(view["recipient_root"])}
        out[resource.key] = view
    return out


def check_plan_matches_the_script(platform: str, playbook: Path, state_path: Path, start: str):
    """Plan on the sandbox, then apply there: the prediction is what happens. Returns the end state's text."""
    state_path.write_text(start)
    target = resolve_target(None, None, platform)
    target.target = SandboxTarget(state_path, platform=platform)
    prepared = prepare(playbook, target, {})
    predicted = {c.resource.key: c.action for c in prepared.plan.changes}
    assert not prepared.plan.errors, prepared.plan.as_dict()
    result = execute(prepared)
    assert result.ok, result.stderr
    happened = {(r.kind, r.name.lower()): {"created": "create", "updated": "update", "removed": "delete",
                                           "unchanged": "noop", "absent": "noop"}[r.action] for r in result.results}
    assert happened == predicted
    end = state_path.read_text()
    outcome_views = _comparable(prepared.plan.after, [c.resource for c in prepared.plan.changes])
    assert views(platform, end, prepared) == outcome_views  # the plan's after-state is the real one
    again = prepare(playbook, target, {})
    assert [c.action for c in again.plan.changes] == ["noop"] * len(again.plan.changes)
    return end


# CI runs 150 + 60 drifted organisations; EXKIT_DIFFERENTIAL_EXAMPLES=N runs N of each.
EXAMPLES = {"exchange-server": int(os.environ.get("EXKIT_DIFFERENTIAL_EXAMPLES", 150)),
            "exchange-online": int(os.environ.get("EXKIT_DIFFERENTIAL_EXAMPLES", 60))}
drift_lists = st.lists(st.integers(min_value=0, max_value=100), max_size=4)  # indexes into a catalogue


@pytest.fixture
def server_playbook(tmp_path):
    path = tmp_path / "differential.yaml"
    path.write_text(SERVER_PLAYBOOK)
    return path


def test_exchange_server_plan_equals_the_script(server_playbook, tmp_path):
    @settings(max_examples=EXAMPLES["exchange-server"], deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(applied_first=st.booleans(), picks=drift_lists)
    def run(applied_first, picks):
        drift = [SERVER_DRIFT[i % len(SERVER_DRIFT)] for i in picks]
        start = drifted("exchange-server", server_playbook, applied_first, drift)
        check_plan_matches_the_script("exchange-server", server_playbook, tmp_path / "state.json", start)

    run()


def test_exchange_online_plan_script_and_rest_agree(tmp_path):
    import trustme

    pki = (ca := trustme.CA()), ca.issue_cert("exkit-app", key_type=trustme.KeyType.RSA), None
    playbook = tmp_path / "online.yaml"
    playbook.write_text(ONLINE_PLAYBOOK)
    ca, app_cert, _ = pki
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "app.pem").write_bytes(app_cert.private_key_pem.bytes() + app_cert.cert_chain_pems[0].bytes())
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with LoopbackExchangeOnline(tmp_path / "tenant.json", tls, TENANT,
                                [App(CLIENT_ID, app_cert.cert_chain_pems[0].bytes())]) as server:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(textwrap.dedent(f"""\
            targets:
              cert: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, cloud: custom,
                      login_endpoint: '{server.base}', exchange_endpoint: '{server.base}',
                      graph_endpoint: '{server.graph_root}', ca_trust_path: ca.pem, certificate: app.pem,
                      max_wait: 0.2}}
            """))
        rest = resolve_target(inventory, "cert", "exchange-online")

        @settings(max_examples=EXAMPLES["exchange-online"], deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(applied_first=st.booleans(), picks=drift_lists)
        def run(applied_first, picks):
            drift = [ONLINE_DRIFT[i % len(ONLINE_DRIFT)] for i in picks]
            start = drifted("exchange-online", playbook, applied_first, drift)
            by_script = check_plan_matches_the_script("exchange-online", playbook, tmp_path / "sandbox.json", start)
            server.state_path.write_text(start)
            prepared = prepare(playbook, rest, {})
            assert not prepared.plan.errors, prepared.plan.as_dict()
            result = execute(prepared)
            assert result.ok, result.stderr
            assert server.state_path.read_text() == by_script  # the REST path made the very same organisation
            again = prepare(playbook, rest, {})
            assert {c.action for c in again.plan.changes} == {"noop"}

        run()
