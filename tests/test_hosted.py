"""Hosted providers: each tenant's values everywhere, required variables, and tenant boundaries as an invariant."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest
from conftest import REPO

from toolkit.boundary import Boundary, BoundaryFacts, check_playbook, check_reach, within
from toolkit.playbook.diagnostics import Diagnostics
from toolkit.playbook.validate import load_document
from toolkit.sandbox import org as store

HOSTED = REPO / "playbooks" / "hosted-tenant.yaml"
TENANT_OU = "OU={},OU=Hosting,DC=hoster,DC=local"


@pytest.fixture
def fleet(tmp_path):
    """Three tenants in their own OUs of one shared sandbox organisation, bounded per group with {{ target }}."""
    inventory = tmp_path / "tenants.yaml"
    inventory.write_text(textwrap.dedent("""\
        groups:
          hosting:
            boundary:
              recipient_root: "OU={{ target }},OU=Hosting,DC=hoster,DC=local"
              domains: ["{{ target }}.example"]
            targets:
              fabrikam: {kind: sandbox, state: org.json, vars: {tenant: fabrikam, tenant_ou: "OU=Fabrikam,OU=Hosting,DC=hoster,DC=local", service_account: svc-rooms@fabrikam.example}}
              tailspin: {kind: sandbox, state: org.json, vars: {tenant: tailspin, tenant_ou: "OU=Tailspin,OU=Hosting,DC=hoster,DC=local", service_account: svc-rooms@tailspin.example}}
        """))
    return inventory


def _document(write_playbook, text: str, variables: dict[str, str] | None = None):
    path = write_playbook(text)
    diagnostics = Diagnostics()
    playbook, document = load_document(path, variables or {}, diagnostics)
    assert playbook is not None and document is not None, diagnostics.items
    return playbook, document


def test_required_variables_have_no_default_and_are_positioned_per_target(cli, fleet):
    inventory = fleet.read_text().replace(", service_account: svc-rooms@tailspin.example", "")
    fleet.write_text(inventory)
    result = cli("validate", HOSTED, "-i", fleet)
    assert result.exit_code == 1
    assert (f"{HOSTED}:10:3: error: required variable 'service_account' has no value for target 'tailspin'"
            in result.stderr)
    assert "fabrikam" not in result.stderr  # the other tenant is fine
    assert "1 error(s)" in result.stderr
    assert cli("validate", HOSTED, "-i", fleet, "-t", "fabrikam").exit_code == 0
    assert cli("validate", HOSTED).exit_code == 0  # no target chosen: the values are left to the targets
    alone = cli("render", HOSTED)
    assert alone.exit_code == 1 and "required variable 'tenant' has no value" in alone.stderr
    plan = cli("plan", HOSTED, "-i", fleet, "--limit", "hosting", "-o", "json")
    outcomes = {o["target"]: o for o in json.loads(plan.stdout)["targets"]}
    assert outcomes["fabrikam"]["ok"] and outcomes["fabrikam"]["boundary"] == "ok"
    assert not outcomes["tailspin"]["ok"]
    assert "required variable 'service_account' has no value for target 'tailspin'" in outcomes["tailspin"]["summary"]


def test_inventory_show_gives_a_tenants_boundary_with_its_values_expanded(cli, fleet):
    shown = json.loads(cli("inventory", "show", "tailspin", "-i", fleet).stdout)
    assert shown["boundary"] == {"recipient_root": "OU=tailspin,OU=Hosting,DC=hoster,DC=local",
                                 "domains": ["tailspin.example"]}
    assert shown["same_organisation"] == ["fabrikam"]


def test_a_required_variable_with_a_default_is_an_error(cli, write_playbook):
    path = write_playbook("""
        exkit: 1
        name: p
        vars: {tenant: x}
        requires: {tenant: The tenant.}
        """)
    result = cli("validate", path)
    assert result.exit_code == 1
    assert f"{path}:3:8: error: required variable 'tenant' also has a default under 'vars:'" in result.stderr


def test_folder_render_with_limit_and_check_use_each_targets_values(cli, fleet, tmp_path):
    out = tmp_path / "reviewed"
    result = cli("render", HOSTED, "-i", fleet, "--limit", "hosting", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "'svc-rooms@tailspin.example'" in (out / "hosted-tenant.tailspin.ps1").read_text(encoding="utf-8-sig")
    assert "'svc-rooms@fabrikam.example'" in (out / "hosted-tenant.fabrikam.ps1").read_text(encoding="utf-8-sig")
    assert cli("check", out).exit_code == 0


def test_pointing_a_tenant_at_another_tenants_ou_is_refused_before_anything_runs(cli, fleet):
    other = TENANT_OU.format("Tailspin")
    plan = cli("plan", HOSTED, "-i", fleet, "-t", "fabrikam", "--var", f"tenant_ou={other}")
    assert plan.exit_code == 1
    assert (f"{HOSTED}:14:21: error: recipient_root '{other}' of management scope 'fabrikam room mailboxes' is "
            "outside the boundary of target 'fabrikam' — it is inside the boundary of target 'tailspin'"
            in plan.stderr)
    applied = cli("apply", HOSTED, "-i", fleet, "--limit", "hosting", "--var", f"tenant_ou={other}", "--yes",
                  "-o", "json")
    assert applied.exit_code == 1
    outcomes = {o["target"]: o for o in json.loads(applied.stdout)["targets"]}
    assert outcomes["fabrikam"]["boundary"] == "violated" and outcomes["tailspin"]["ok"]
    organisation = store.load(fleet.parent / "org.json")
    assert organisation.role_group("fabrikam room booking") is None  # nothing applied for the refused tenant
    assert organisation.role_group("tailspin room booking") is not None


def test_a_grant_changed_behind_exkits_back_fails_verify_naming_both_tenants(cli, fleet):
    assert cli("apply", HOSTED, "-i", fleet, "--limit", "hosting", "--yes").exit_code == 0
    verified = cli("verify", HOSTED, "-i", fleet, "--limit", "hosting", "-o", "json")
    assert verified.exit_code == 0, verified.stdout
    assert all(o["boundary"] == "ok" for o in json.loads(verified.stdout)["targets"])
    path = fleet.parent / "org.json"
    organisation = store.load(path)
    next(s for s in organisation.management_scopes if s.name == "fabrikam room mailboxes").recipient_root = (
        TENANT_OU.format("Tailspin"))  # Set-ManagementScope -RecipientRoot by hand
    store.save(path, organisation)
    result = cli("verify", HOSTED, "-i", fleet, "-t", "fabrikam", "-o", "json")
    assert result.exit_code == 1
    crossed = [c["message"] for c in json.loads(result.stdout)["checks"] if c["subject"] == "boundary"]
    assert crossed == ["scope 'fabrikam room mailboxes' reaches Tailspin Projector (projector@tailspin.example), "
                       "Tailspin Room 1 (room-1@tailspin.example), Tailspin Room 2 (room-2@tailspin.example), "
                       "Tailspin Room 3 (room-3@tailspin.example), outside the boundary of target 'fabrikam': inside "
                       "the boundary of target 'tailspin'"]
    fleet_run = cli("verify", HOSTED, "-i", fleet, "--limit", "hosting", "-o", "json")
    outcomes = {o["target"]: o for o in json.loads(fleet_run.stdout)["targets"]}
    assert outcomes["fabrikam"]["boundary"] == "violated" and outcomes["tailspin"]["boundary"] == "ok"
    assert outcomes["fabrikam"]["summary"].startswith("BOUNDARY CROSSED")


def test_offline_scope_preview_with_each_targets_values_and_boundary(cli, fleet, tmp_path):
    from toolkit.sandbox.seed import seed_organisation

    export = tmp_path / "recipients.csv"
    with export.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Name", "RecipientTypeDetails", "PrimarySmtpAddress", "DistinguishedName"])
        for r in seed_organisation().recipients:
            writer.writerow([r.name, r.recipient_type_details, r.primary_smtp_address, r.distinguished_name])
    ok = cli("scope", "preview", HOSTED, "--recipients", export, "-i", fleet, "-t", "tailspin", "-o", "json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["scopes"][0]["samples"][0] == "Tailspin Projector"
    both = cli("scope", "preview", HOSTED, "--recipients", export, "-i", fleet, "--limit", "hosting", "-o", "json")
    assert both.exit_code == 0 and [t["target"] for t in json.loads(both.stdout)["targets"]] == ["fabrikam",
                                                                                                  "tailspin"]
    # A room in Fabrikam's OU with a Tailspin address (moved by hand): Fabrikam's scope reaches it; the preview
    # fails, naming both tenants.
    with export.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(["Stray Room", "RoomMailbox", "room-9@tailspin.example",
                                     f"CN=Stray Room,{TENANT_OU.format('Fabrikam')}"])
    refused = cli("scope", "preview", HOSTED, "--recipients", export, "-i", fleet, "-t", "fabrikam", "-o", "json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["scopes"][0]["problem"] == (
        "scope 'fabrikam room mailboxes' reaches Stray Room (room-9@tailspin.example), outside the boundary of target "
        "'fabrikam': inside the boundary of target 'tailspin'")


def test_boundary_checks_are_pure_and_positioned(write_playbook):
    playbook, document = _document(write_playbook, """
        exkit: 1
        name: p
        scopes:
          - {name: Rooms, rooms: true, recipient_root: "OU=Tailspin,OU=Hosting,DC=hoster,DC=local"}
          - {name: Everywhere, rooms: true}
        role_groups:
          - {name: G, roles: [ApplicationImpersonation], members: [svc@fabrikam.example, svc@tailspin.example], scope: Rooms}
          - {name: H, roles: [ApplicationImpersonation], members: [svc@fabrikam.example], all_mailboxes: true}
        """)
    fabrikam = Boundary(recipient_root=TENANT_OU.format("Fabrikam"), domains=["fabrikam.example"])
    tailspin = Boundary(recipient_root=TENANT_OU.format("Tailspin"), domains=["tailspin.example"])
    found = check_playbook(document, playbook, fabrikam, "fabrikam", {"tailspin": tailspin})
    lines = [(d.position.line, d.position.column, d.message) for d in found.sorted()]
    assert lines == [
        (4, 48, f"recipient_root '{TENANT_OU.format('Tailspin')}' of management scope 'Rooms' is outside the "
                "boundary of target 'fabrikam' — it is inside the boundary of target 'tailspin'"),
        (5, 12, "management scope 'Everywhere' has no recipient_root: on target 'fabrikam' it would reach every "
                "tenant of the organisation"),
        (7, 82, "member 'svc@tailspin.example' is not an address of the domains of target 'fabrikam' — it is inside the "
                "boundary of target 'tailspin'"),
        (8, 83, "role group #2 is organisation-wide (all_mailboxes: true): on target 'fabrikam' it reaches every "
                "tenant"),
    ]
    inside, document = _document(write_playbook, """
        exkit: 1
        name: p
        scopes: [{name: Rooms, rooms: true, recipient_root: "OU=Rooms, ou=Fabrikam,OU=Hosting,DC=hoster,DC=local"}]
        role_groups: [{name: G, roles: [ApplicationImpersonation], members: [svc@fabrikam.example], scope: Rooms}]
        """)
    assert check_playbook(document, inside, fabrikam, "fabrikam").items == []
    # Facts read from the target (the plan's job) add what the playbook alone cannot tell.
    facts = BoundaryFacts(organizational_units=frozenset({"ou=fabrikam,ou=hosting,dc=hoster,dc=local"}),
                          distinguished_names={"svc@fabrikam.example": "CN=svc,OU=Tailspin,OU=Hosting,DC=hoster,"
                                                                       "DC=local"})
    messages = [d.message for d in check_playbook(document, inside, fabrikam, "fabrikam", {"tailspin": tailspin},
                                                  facts).sorted()]
    assert messages == [
        "recipient_root 'OU=Rooms, ou=Fabrikam,OU=Hosting,DC=hoster,DC=local' of management scope 'Rooms' does not "
        "exist on target 'fabrikam'",
        "member 'svc@fabrikam.example' lives in 'CN=svc,OU=Tailspin,OU=Hosting,DC=hoster,DC=local', outside the "
        "boundary of target 'fabrikam' — it is inside the boundary of target 'tailspin'"]


def test_reach_and_dn_containment():
    assert within("CN=Room 1,OU=Fabrikam,OU=Hosting,DC=hoster,DC=local", "ou=fabrikam, ou=hosting,dc=hoster,dc=local")
    assert not within("CN=Room 1,OU=NotFabrikam,OU=Hosting,DC=hoster,DC=local", TENANT_OU.format("Fabrikam"))
    assert not within("OU=Hosting,DC=hoster,DC=local", TENANT_OU.format("Fabrikam"))
    fabrikam = Boundary(domains=["fabrikam.example"])
    assert check_reach(fabrikam, {"Rooms": [{"name": "R", "address": "r@fabrikam.example"}]},
                       {"role group 'G'": ["svc@fabrikam.example", "Display Name Without Address"]}) == []
    [violation] = check_reach(fabrikam, {}, {"role group 'G'": ["svc@tailspin.example"]},
                              {"tailspin": Boundary(domains=["tailspin.example"])})
    assert violation.message("fabrikam") == ("role group 'G' is held by svc@tailspin.example, outside the boundary "
                                             "of target 'fabrikam': inside the boundary of target 'tailspin'")


def test_a_malformed_boundary_names_the_target(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  t: {kind: sandbox, boundary: {recipient_root: 'Hosting/Fabrikam'}}\n")
    result = cli("plan", HOSTED, "-i", inventory)
    assert result.exit_code == 1
    assert "the boundary of target 't': boundary recipient_root 'Hosting/Fabrikam' is not a distinguished name" in (
        result.stderr)


def test_templates_know_their_target_and_errors_name_variable_file_and_line(cli, fleet, tmp_path):
    layer = tmp_path / "overrides"
    layer.mkdir()
    head = (REPO / "templates" / "common" / "head.ps1.j2").read_text()
    (layer / "head.ps1.j2").write_text(head.replace(
        "# {{ kind }}", "# {{ kind }} for {{ target.name }} ({{ target.platform }}), tenant {{ target.vars.tenant }}"))
    rendered = cli("render", HOSTED, "-i", fleet, "-t", "tailspin", "--templates", layer)
    assert rendered.exit_code == 0, rendered.stderr
    assert "# 'ManagementScope' for 'tailspin' ('exchange-server'), tenant 'tailspin'" in rendered.stdout
    hostile = cli("render", HOSTED, "-i", fleet, "-t", "tailspin", "--templates", layer, "--var", "tenant=x'; evil")
    assert hostile.exit_code == 0  # a value reaches the script only through the quoting function
    assert "tenant 'x''; evil'" in hostile.stdout
    lines = head.splitlines()
    lines.insert(2, "# {{ tenant }}")
    (layer / "head.ps1.j2").write_text("\n".join(lines) + "\n")
    broken = cli("render", HOSTED, "-i", fleet, "-t", "tailspin", "--templates", layer)
    assert broken.exit_code == 1
    assert f"{layer / 'head.ps1.j2'}:3: template uses an undefined value: 'tenant' is undefined" in broken.stderr
    assert "target.vars.NAME" in broken.stderr


def test_the_fleet_plan_folds_identical_changes_and_shows_the_odd_one_in_full(cli, fleet):
    from toolkit.fleet.summary import fold

    def plan(tenant: str, members: list[str]) -> dict:
        return {"changes": [
            {"kind": "RoleGroup", "name": f"{tenant} room booking", "action": "create",
             "fields": [{"field": "members", "before": None, "after": members}]},
            {"kind": "ManagementScope", "name": f"{tenant} rooms", "action": "noop", "fields": []}]}

    tenants = {f"t{i}": {"tenant": f"t{i}-name", "service_account": f"svc@t{i}.example", "base": "OU=Hosting"}
               for i in range(200)}
    plans = {name: plan(v["tenant"], [v["service_account"]]) for name, v in tenants.items()}
    plans["t7"] = plan("t7-name", ["svc@t7.example", "svc@t8.example"])  # one tenant differs
    plans["t9"] = {"changes": []}
    lines = fold(plans, tenants)
    assert lines == [
        "on 198 targets (t0, t1, t2, t3, t4, t5, … 192 more):",
        "  + RoleGroup '<tenant> room booking' (create)",
        "      members: (none) → [<service_account>]",
        "on t7:",
        "  + RoleGroup 't7-name room booking' (create)",
        "      members: (none) → [svc@t7.example, svc@t8.example]",
        "nothing to change on 1 target(s): t9",
    ]
    shown = cli("plan", HOSTED, "-i", fleet, "--limit", "hosting")
    assert "on 2 targets (fabrikam, tailspin):" in shown.stdout
    assert "      members: (none) → [<service_account>]" in shown.stdout


def test_fleet_destroy(cli, fleet):
    assert cli("apply", HOSTED, "-i", fleet, "--limit", "hosting", "--yes").exit_code == 0
    refused = cli("destroy", HOSTED, "-i", fleet, "--limit", "hosting")
    assert refused.exit_code == 1 and "pass --yes" in refused.stderr
    result = cli("destroy", HOSTED, "-i", fleet, "--limit", "hosting", "--yes", "-o", "json")
    assert result.exit_code == 0, result.stdout
    assert all(o["summary"] == "boundary ok: 2 removed" for o in json.loads(result.stdout)["targets"])
    assert store.load(fleet.parent / "org.json").role_group("tailspin room booking") is None


def test_sandbox_add_tenant_gives_a_tenant_the_hosted_playbook_can_run_on(cli, tmp_path):
    state = tmp_path / "org.json"
    added = cli("sandbox", "add-tenant", "Northwind", "--rooms", "5", "--state", state)
    assert added.exit_code == 0, added.stderr
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("groups:\n  hosting:\n    targets:\n" + textwrap.indent(added.stdout, "      "))
    applied = cli("apply", HOSTED, "-i", inventory, "--limit", "hosting", "--yes", "-o", "json")
    assert applied.exit_code == 0, applied.stdout
    [outcome] = json.loads(applied.stdout)["targets"]
    assert outcome["target"] == "northwind" and outcome["summary"] == "boundary ok: 2 created"
    verified = cli("verify", HOSTED, "-i", inventory, "-t", "northwind", "-o", "json")
    assert verified.exit_code == 0
    boundary = next(c for c in json.loads(verified.stdout)["checks"] if c["subject"] == "boundary")
    assert boundary["message"] == ("boundary ok: the grants reach 6 recipient(s), all inside OU=Northwind,OU=Hosting,"
                                   "DC=hoster,DC=local; domains northwind.example")  # 5 rooms and the projector
    again = cli("sandbox", "add-tenant", "Northwind", "--state", state)
    assert again.exit_code == 1 and "the OU OU=Northwind,OU=Hosting,DC=hoster,DC=local already exists" in again.stderr
    clash = cli("sandbox", "add-tenant", "Other", "--domain", "northwind.example", "--state", state)
    assert clash.exit_code == 1 and "addresses already in use: " in clash.stderr


def test_the_loopback_winrm_server_reports_a_busy_port_in_one_line(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "tests.servers.winrm", "--port", str(port), "--state",
                                 str(tmp_path / "org.json")], cwd=REPO, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "EXKIT_WINRM_PASSWORD": "pw"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"loopback WinRM: cannot listen on 127.0.0.1:{port}: Address already in use; "
                                          "stop the other server or choose another --port"]


def test_fleet_apply_writes_one_report_for_the_fleet(cli, fleet, tmp_path):
    fleet.write_text(fleet.read_text() + "      broken: {kind: sandbox, state: org.json, vars: {tenant: broken, "
                                         "tenant_ou: 'OU=Broken,OU=Hosting,DC=hoster,DC=local'}}\n")
    page = tmp_path / "fleet.html"
    result = cli("apply", HOSTED, "-i", fleet, "--limit", "hosting", "--yes", "--report", page)
    assert result.exit_code == 1  # broken has no service_account
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_mode & 0o777 == 0o600
    assert "exkit apply report: " in text and "on 3 target(s)" in text
    assert "2 ok, 1 failed; boundary ok on 2; verify failed on 0" in text
    assert '<a href="#t-tailspin">tailspin</a></td><td>ok</td><td>ok</td><td>passed</td>' in text
    assert "required variable &#x27;service_account&#x27; has no value for target &#x27;broken&#x27;" in text
    assert "on 2 targets (fabrikam, tailspin):\n  + ManagementScope &#x27;&lt;tenant&gt; room mailboxes&#x27;" in text
    assert "<td>RoleGroup</td><td>tailspin room booking</td><td>created</td>" in text
    markdown = tmp_path / "fleet.md"
    cli("apply", HOSTED, "-i", fleet, "--limit", "fab*,tail*", "--yes", "--report", markdown)
    lines = markdown.read_text(encoding="utf-8").splitlines()
    assert "| [fabrikam](#fabrikam) | ok | ok | passed | boundary ok: 2 unchanged |" in lines


def test_export_on_every_tenant_with_each_tenants_principal(cli, fleet, tmp_path):
    assert cli("apply", HOSTED, "-i", fleet, "--limit", "hosting", "--yes").exit_code == 0
    out = tmp_path / "exported"
    result = cli("export", "-i", fleet, "--limit", "hosting", "--principal", "{{ service_account }}", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["fabrikam.yaml", "tailspin.yaml"]
    exported = out / "tailspin.yaml"
    assert "svc-rooms@tailspin.example" in exported.read_text() and "fabrikam" not in exported.read_text()
    plan = cli("plan", exported, "-i", fleet, "-t", "tailspin", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.stdout + plan.stderr  # applied, it plans as a no-op
    assert cli("export", "-i", fleet, "--limit", "hosting").exit_code == 2  # a folder is needed


def test_diff_on_every_tenant_with_each_tenants_values(cli, fleet, tmp_path):
    new = tmp_path / "hosted-tenant.yaml"
    new.write_text(HOSTED.read_text().replace("roles: [ApplicationImpersonation]",
                                              "roles: [ApplicationImpersonation, View-Only Recipients]"))
    result = cli("diff", HOSTED, new, "-i", fleet, "--limit", "hosting")
    assert result.exit_code == 1
    assert "target fabrikam:\n~ RoleGroup 'fabrikam room booking': role added: View-Only Recipients" in result.stdout
    assert "target tailspin:\n~ RoleGroup 'tailspin room booking': role added: View-Only Recipients" in result.stdout
    shown = json.loads(cli("diff", HOSTED, new, "-i", fleet, "--limit", "hosting", "-o", "json").stdout)
    assert [p["target"] for p in shown["playbooks"]] == ["fabrikam", "tailspin"]
    assert cli("diff", HOSTED, HOSTED, "-i", fleet, "--limit", "hosting").exit_code == 0


def test_check_names_the_template_that_made_a_script_stale(cli, fleet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layer = tmp_path / "templates-hosting"
    layer.mkdir()
    assert cli("templates", "copy", "role_group.ps1.j2", layer).exit_code == 0
    fleet.write_text(fleet.read_text().replace("    targets:\n", "    templates: templates-hosting\n    targets:\n", 1))
    out = tmp_path / "reviewed"
    assert cli("render", HOSTED, "-i", fleet, "--limit", "hosting", "--out", out).exit_code == 0
    assert cli("check", out).exit_code == 0
    override = layer / "role_group.ps1.j2"
    override.write_text("# the provider's tweak\n" + override.read_text())
    stale = cli("check", out)
    assert stale.exit_code == 1
    assert "changed since review: the templates (../templates-hosting/role_group.ps1.j2))" in stale.stderr
    assert "review: the playbook" not in stale.stderr
    one = cli("check", out, "--limit", "fab*")  # only one tenant's scripts
    assert one.exit_code == 1 and "hosted-tenant.fabrikam.ps1: stale" in one.stderr and "tailspin" not in one.stderr
    assert "tailspin" not in cli("check", out, "-t", "fabrikam").stderr
