"""The Exchange Online connector's exact outputs: the connection a rendered script makes in each cloud, and the
cmdlet names the tenant sees. (Mutation testing found these read only in part.)"""

from __future__ import annotations

import textwrap

import pytest
from test_exchange_online import CLIENT_ID, ROOMS, TENANT, exo, pki  # noqa: F401  (fixtures)

ENVIRONMENTS = {"gcc-high": "O365USGovGCCHigh", "dod": "O365USGovDoD", "china": "O365China"}


@pytest.mark.parametrize("cloud", ["global", *ENVIRONMENTS])
def test_the_rendered_script_connects_to_its_cloud(cli, tmp_path, pki, cloud):  # noqa: F811
    _, app_cert, _ = pki
    (tmp_path / "app.pem").write_bytes(app_cert.private_key_pem.bytes() + app_cert.cert_chain_pems[0].bytes())
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          tenant: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, cloud: {cloud},
                   certificate: app.pem}}
        """))
    result = cli("render", ROOMS, "-i", inventory, "-t", "tenant")
    assert result.exit_code == 0, result.stderr
    connects = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("Connect-ExchangeOnline")]
    assert connects, result.stdout
    environment = f" -ExchangeEnvironmentName '{ENVIRONMENTS[cloud]}'" if cloud in ENVIRONMENTS else ""
    for line in connects:
        assert line.endswith(f"-Organization '{TENANT}'{environment} -ShowBanner:$false"), line


def test_the_tenant_is_sent_each_cmdlet_by_its_exact_name(cli, exo, write_playbook):  # noqa: F811
    """Apply, verify and plan of app and user assignments: every InvokeCommand names a cmdlet exactly as Exchange
    Online spells it, the principal reads and the service principal's authorization test among them."""
    from test_exchange_online import RBAC

    from toolkit.sandbox.cmdlets import ExchangeCmdlets
    from toolkit.sandbox.seed import seed_organisation

    server, inventory = exo
    for args in (("apply", ROOMS, "--yes"), ("verify", ROOMS), ("apply", write_playbook(RBAC), "--yes")):
        result = cli(*args, "-i", inventory, "-t", "cert")
        assert result.exit_code == 0, result.stdout + result.stderr
    spelled = set(ExchangeCmdlets(seed_organisation("exchange-online")).commands())
    assert set(server.log.invocations) <= spelled, set(server.log.invocations) - spelled
    assert {"Get-Recipient", "Test-ServicePrincipalAuthorization"} <= set(server.log.invocations)


def test_the_snapshot_reads_policies_and_scope_previews_field_by_field(cli, exo):  # noqa: F811
    from test_exchange_online import POLICY

    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot

    server, inventory = exo
    for playbook in (POLICY, ROOMS):
        assert cli("apply", playbook, "-i", inventory, "-t", "cert", "--yes").exit_code == 0
    target = resolve_target(inventory, "cert", "exchange-online").target
    model, _ = require_playbook(POLICY, {})
    facts = target.read_snapshot(render_snapshot(model), model)
    assert [f for f in facts if f["type"] == "policy"] == [{
        "type": "policy", "identity": f"{TENANT}\\6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11:bookable-rooms@contoso.com",
        "app_id": "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11", "scope_name": "Bookable rooms (all sites)",
        "access_right": "RestrictAccess",
        "description": "Room booking app may reach the members of Bookable Rooms only."}]
    model, _ = require_playbook(ROOMS, {})
    facts = target.read_snapshot(render_snapshot(model), model)
    [preview] = [f for f in facts if f["type"] == "preview"]
    assert preview["scope"] == "Room mailboxes"
    assert preview["recipients"][0] == {"name": "Room Berlin 1", "type": "RoomMailbox",
                                        "address": "room-berlin-1@contoso.com"}
    assert all(r["type"] == "RoomMailbox" and r["name"] and r["address"].endswith("@contoso.com")
               for r in preview["recipients"]), preview


def test_a_refused_cmdlet_is_exchanges_message_and_exception_type_whole(exo):  # noqa: F811
    from toolkit.inventory import resolve_target
    from toolkit.targets.exchange_online import CmdletFailed

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    scope = {"Name": "Rooms | Berlin", "RecipientRestrictionFilter": "Office -eq 'Berlin'"}
    assert target.invoke("New-ManagementScope", scope)[0]["Name"] == "Rooms | Berlin"
    with pytest.raises(CmdletFailed) as refused:
        target.invoke("New-ManagementScope", scope)
    failed = refused.value
    assert (failed.cmdlet, failed.message, failed.exception_type, failed.not_found) == (
        "New-ManagementScope", "The management scope 'Rooms | Berlin' already exists.",
        "ADObjectAlreadyExistsException", False)
    with pytest.raises(CmdletFailed) as missing:
        target.invoke("Get-ManagementScope", {"Identity": "No | such scope"})
    assert (missing.value.message, missing.value.exception_type, missing.value.not_found) == (
        "The operation couldn't be performed because object 'No | such scope' couldn't be found on "
        "'EURPR01A001DC01.eurprd01.prod.outlook.com'.", "ManagementObjectNotFoundException", True)


def test_an_assignee_the_copy_lacks_is_read_once_by_identity(exo):  # noqa: F811
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    result = target.run_script("Get-ManagementRoleAssignment -RoleAssignee 'clara.costa@contoso.com'\n"
                               "Get-ManagementRoleAssignment -RoleAssignee 'clara.costa@contoso.com'", read_only=True)
    assert result.exit_code == 0, result.stderr
    assert server.log.invocations == ["Get-ManagementRoleAssignment", "Get-Recipient"]
