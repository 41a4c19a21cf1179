"""plan / apply / destroy through the CLI against the sandbox organisation."""

from __future__ import annotations

import json

import pytest

from conftest import EXAMPLE_VARS, PLAYBOOKS, REPO
from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation


def results(output: str) -> list[tuple[str, str]]:
    return [(r["kind"], r["action"]) for r in json.loads(output)["results"]]


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.stem)
def test_apply_again_unchanged_destroy_back_to_seed(cli, sandbox_state, playbook):
    platform = "exchange-online" if "platform: exchange-online" in playbook.read_text() else "exchange-server"
    sandbox_state = store.default_state_path(platform)  # the default target is the playbook platform's sandbox
    seed = seed_organisation(platform).to_json()
    values = [f"--var={k}={v}" for k, v in EXAMPLE_VARS.get(playbook.stem, {}).items()]
    first = cli("apply", playbook, "--yes", "--output", "json", *values)
    assert first.exit_code == 0, first.stderr
    assert {action for _, action in results(first.stdout)} == {"created"}
    assert store.load(sandbox_state, platform).to_json() != seed

    plan = cli("plan", playbook, "--detailed-exitcode", *values)
    assert plan.exit_code == 0, plan.stdout
    second = cli("apply", playbook, "--yes", "--output", "json", *values)
    assert second.exit_code == 0
    assert {action for _, action in results(second.stdout)} == {"unchanged"}
    verified = cli("verify", playbook, *values)
    assert verified.exit_code == 0, verified.stdout

    destroy = cli("destroy", playbook, "--yes", "--output", "json", *values)
    assert destroy.exit_code == 0, destroy.stderr
    assert {action for _, action in results(destroy.stdout)} == {"removed"}
    assert sandbox_state.read_text() == seed


def test_apply_output_is_readable(cli, sandbox_state):
    result = cli("apply", REPO / "playbooks" / "classic.yaml", "--yes")
    assert result.exit_code == 0
    assert "+ ManagementScope 'Room mailboxes' (create)" in result.stdout
    assert "filter: (none) → RecipientTypeDetails -eq 'RoomMailbox'" in result.stdout
    assert "Plan: 2 to create, 0 to update, 0 to remove, 0 unchanged." in result.stdout
    assert "Summary: 2 created." in result.stdout


def run_in_sandbox(script: str) -> None:
    from toolkit.targets.sandbox import SandboxTarget

    result = SandboxTarget().run_script("$ErrorActionPreference = 'Stop'\n" + script)
    assert result.exit_code == 0, result.stderr


def test_drift_is_planned_and_repaired(cli, sandbox_state):
    classic = REPO / "playbooks" / "classic.yaml"
    assert cli("apply", classic, "--yes").exit_code == 0
    run_in_sandbox("Add-RoleGroupMember -Identity 'Room booking service accounts' -Member 'anna.adler@contoso.com'\n"
                   "Set-ManagementScope -Identity 'Room mailboxes' -RecipientRestrictionFilter "
                   "\"RecipientTypeDetails -like '*Mailbox'\"")
    plan = cli("plan", classic, "--detailed-exitcode", "--output", "json")
    assert plan.exit_code == 2
    changes = {c["kind"]: c for c in json.loads(plan.stdout)["changes"]}
    assert changes["ManagementScope"]["fields"] == [{"field": "filter", "before": "RecipientTypeDetails -like "
                                                     "'*Mailbox'", "after": "RecipientTypeDetails -eq 'RoomMailbox'"}]
    assert changes["RoleGroup"]["fields"] == [{"field": "members",
                                               "before": ["anna.adler@contoso.com", "svc-rooms@contoso.com"],
                                               "after": ["svc-rooms@contoso.com"]}]
    repaired = cli("apply", classic, "--yes", "--output", "json")
    assert results(repaired.stdout) == [("ManagementScope", "updated"), ("RoleGroup", "updated")]
    assert cli("plan", classic, "--detailed-exitcode").exit_code == 0


def test_deleted_object_and_extra_role_show_as_drift(cli, sandbox_state):
    classic = REPO / "playbooks" / "classic.yaml"
    assert cli("apply", classic, "--yes").exit_code == 0
    run_in_sandbox("New-ManagementRoleAssignment -SecurityGroup 'Room booking service accounts' -Role 'Mail Recipients' "
                   "-CustomRecipientWriteScope 'Room mailboxes' | Out-Null")
    plan = json.loads(cli("plan", classic, "--output", "json").stdout)
    assert plan["changes"][1]["fields"] == [{"field": "roles", "before": ["ApplicationImpersonation",
                                                                          "Mail Recipients"],
                                             "after": ["ApplicationImpersonation"]}]
    run_in_sandbox("Remove-RoleGroup -Identity 'Room booking service accounts' -Confirm:$false")
    plan = json.loads(cli("plan", classic, "--output", "json").stdout)
    assert [c["action"] for c in plan["changes"]] == ["noop", "create"]


def test_failure_halfway_reports_and_a_corrected_run_converges(cli, sandbox_state, write_playbook):
    text = """
        exkit: 1
        name: halfway
        scopes:
          - {name: Rooms, rooms: true}
        role_groups:
          - name: Room bookers
            roles: [ApplicationImpersonation]
            members: ["{{ who }}"]
            scope: Rooms
        """
    path = write_playbook(text)
    failed = cli("apply", path, "--yes", "--var", "who=nobody@contoso.com")
    assert failed.exit_code == 1
    # The plan reads every principal the playbook names: a missing one is an error at its position, before any change.
    assert "member 'nobody@contoso.com' does not exist on target 'sandbox'" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    fixed = cli("apply", path, "--yes", "--var", "who=svc-rooms@contoso.com", "--output", "json")
    assert fixed.exit_code == 0
    assert results(fixed.stdout) == [("ManagementScope", "created"), ("RoleGroup", "created")]


def test_confirmation_is_required_without_yes(cli, sandbox_state):
    result = cli("apply", REPO / "playbooks" / "classic.yaml")
    assert result.exit_code == 1
    assert "pass --yes" in result.stderr
    assert not sandbox_state.exists()


def test_custom_template_outside_the_subset_changes_nothing(cli, sandbox_state, tmp_path):
    (tmp_path / "tail.ps1.j2").write_text(
        "} catch {\n    throw\n}\nWrite-Host 'done'\n$exkitCounts[$exkitAction] += 1\n")
    result = cli("apply", REPO / "playbooks" / "classic.yaml", "--yes", "--templates", tmp_path)
    assert result.exit_code == 1
    assert "the sandbox does not implement the command 'Write-Host'" in result.stderr
    assert store.load(sandbox_state).to_json() == seed_organisation().to_json()


def test_inventory_targets_and_variables(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text((REPO / "inventory.example.yaml").read_text())
    hosted = REPO / "playbooks" / "hosted-tenant.yaml"
    result = cli("apply", hosted, "-i", inventory, "-t", "sandbox-fabrikam", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    state = store.load(tmp_path / ".exkit" / "hosting-sandbox.json")
    assert state.role_group("fabrikam room booking").members == ["svc-rooms@fabrikam.example"]
    assert cli("plan", hosted, "-i", inventory).exit_code == 1  # two targets: which one?
    unknown = cli("plan", hosted, "-i", inventory, "-t", "sandbox-fabrikm")
    assert unknown.exit_code == 1
    assert "did you mean 'sandbox-fabrikam'?" in unknown.stderr


def test_inventory_errors_are_positioned(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  lab:\n    kind: sandbox\n    stat: x.json\n")
    result = cli("plan", REPO / "playbooks" / "classic.yaml", "-i", inventory)
    assert result.exit_code == 1
    assert f"{inventory}:4:5: error: unknown key 'stat' in target 'lab'" in result.stderr
    assert "did you mean 'state'?" in result.stderr


def test_sandbox_show_and_reset(cli, sandbox_state):
    assert cli("apply", REPO / "playbooks" / "classic.yaml", "--yes").exit_code == 0
    shown = cli("sandbox", "show")
    assert "Room booking service accounts" in shown.stdout
    assert "17 RoomMailbox" in shown.stdout
    assert cli("sandbox", "reset").exit_code == 0
    assert sandbox_state.read_text() == seed_organisation().to_json()


def test_real_exchange_details_are_refused_or_rendered_the_supported_way(cli, write_playbook, tmp_path):
    """Issue 13: a name with '*' (a wildcard -Identity), a tenant id as -Organization, the snap-in by default."""
    starred = write_playbook("exkit: 1\nname: s\nscopes: [{name: 'Room*', rooms: true}]\n")
    result = cli("validate", starred)
    assert result.exit_code == 1 and "contains '*', which Exchange reads as a wildcard" in result.stdout + result.stderr
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  t: {kind: exchange-online, tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, "
                         "client_id: 11111111-2222-3333-4444-555555555555, certificate: app.pem}\n")
    result = cli("plan", REPO / "playbooks" / "online-rooms.yaml", "-i", inventory, "-t", "t")
    assert result.exit_code == 1
    assert "Connect-ExchangeOnline needs the tenant's initial domain as -Organization" in result.stdout + result.stderr
    default = cli("render", REPO / "playbooks" / "classic.yaml").stdout
    assert "Add-PSSnapin" not in default and "Run this in the Exchange Management Shell" in default
    remote = cli("render", REPO / "playbooks" / "classic.yaml", "--exchange-uri", "http://ex01/PowerShell/").stdout
    assert "-ConnectionUri 'http://ex01/PowerShell/'" in remote and "Remove-PSSession" in remote
    assert "Add-PSSnapin" in cli("render", REPO / "playbooks" / "classic.yaml", "--snapin").stdout


def test_migrate_for_ews_products_warns_of_the_retirement(cli):
    graph = cli("migrate", REPO / "playbooks" / "classic.yaml")
    assert "role: Application Calendars.ReadWrite" in graph.stdout
    ews = cli("migrate", REPO / "playbooks" / "classic.yaml", "--api", "ews")
    assert "role: Application EWS.AccessAsApp" in ews.stdout
    assert "switched off on 1 April 2027" in ews.stderr and "WARNING: EWS" in ews.stdout


def test_a_failed_read_is_not_an_absent_object(cli, sandbox_state):
    """A throttled or denied Get-* is not "does not exist" (Microsoft365DSC #6936): the probe fails with the real
    error, and no New-* runs for an object that is there."""
    classic = REPO / "playbooks" / "classic.yaml"
    assert cli("apply", classic, "--yes").exit_code == 0
    organisation = store.load(sandbox_state)
    organisation.failing_reads["room mailboxes"] = "The server is busy: the request was throttled (ADTransient)."
    store.save(sandbox_state, organisation)
    before = sandbox_state.read_text()
    plan = cli("plan", classic)
    assert plan.exit_code == 1
    assert "the request was throttled" in plan.stderr and "Traceback" not in plan.stderr
    assert cli("apply", classic, "--yes").exit_code == 1
    assert sandbox_state.read_text() == before  # nothing created twice, nothing changed
    # the apply script on its own (run by hand, or by a server): the block fails, it does not create a duplicate
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_script
    from toolkit.targets.sandbox import SandboxTarget

    model, _ = require_playbook(classic)
    ran = SandboxTarget(sandbox_state).run_script(render_script(model).text)
    assert [(r.kind, r.action) for r in ran.results] == [("ManagementScope", "failed")]
    assert "throttled" in ran.results[0].error
    assert [s.name for s in store.load(sandbox_state).management_scopes].count("Room mailboxes") == 1
