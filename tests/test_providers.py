"""Hosting providers: inventory groups, variable precedence, template layering, --limit, templates commands."""

from __future__ import annotations

import json
import textwrap

import pytest
from conftest import REPO

from toolkit.inventory import resolve_target, select_targets

HOSTED = REPO / "playbooks" / "hosted-tenant.yaml"


@pytest.fixture
def provider(tmp_path):
    (tmp_path / "group-templates").mkdir()
    (tmp_path / "group-templates" / "head.ps1.j2").write_text(
        (REPO / "templates" / "common" / "head.ps1.j2").read_text().replace("# {{ kind }}", "# group: {{ kind }}"))
    (tmp_path / "target-templates").mkdir()
    (tmp_path / "target-templates" / "head.ps1.j2").write_text(
        (REPO / "templates" / "common" / "head.ps1.j2").read_text().replace("# {{ kind }}", "# target: {{ kind }}"))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent("""\
        vars:
          tenant: from-inventory
          tenant_ou: OU=Fabrikam,OU=Hosting,DC=hoster,DC=local
          service_account: svc-rooms@fabrikam.example
        targets:
          lab: {kind: sandbox, state: lab.json}
        groups:
          hosting:
            vars: {tenant: from-group}
            templates: group-templates
            targets:
              fabrikam: {kind: sandbox, state: fabrikam.json, vars: {tenant: from-target}, templates: target-templates}
              tailspin: {kind: sandbox, state: tailspin.json}
          other:
            targets:
              contoso-lab: {kind: sandbox, state: contoso.json}
        """))
    return inventory


def test_variable_precedence(cli, provider):
    assert resolve_target(provider, "lab").variables["tenant"] == "from-inventory"
    assert resolve_target(provider, "tailspin").variables["tenant"] == "from-group"
    assert resolve_target(provider, "fabrikam").variables["tenant"] == "from-target"
    rendered = cli("render", HOSTED, "-i", provider, "-t", "fabrikam", "--var", "tenant=from-cli")
    assert "'from-cli room mailboxes'" in rendered.stdout
    shown = json.loads(cli("inventory", "show", "tailspin", "-i", provider).stdout)
    assert shown["vars"]["tenant"] == {"value": "from-group", "from": "group hosting"}
    assert shown["vars"]["service_account"]["from"] == "inventory"
    assert shown["group"] == "hosting"


def test_template_layers_most_specific_wins(cli, provider, tmp_path):
    fabrikam = cli("render", HOSTED, "-i", provider, "-t", "fabrikam").stdout
    tailspin = cli("render", HOSTED, "-i", provider, "-t", "tailspin").stdout
    lab = cli("render", HOSTED, "-i", provider, "-t", "lab").stdout
    assert "# target: 'ManagementScope'" in fabrikam and "# group:" not in fabrikam
    assert "# group: 'ManagementScope'" in tailspin
    assert "# 'ManagementScope'" in lab and "# group:" not in lab
    cli_layer = tmp_path / "cli-templates"
    cli_layer.mkdir()
    (cli_layer / "head.ps1.j2").write_text(
        (REPO / "templates" / "common" / "head.ps1.j2").read_text().replace("# {{ kind }}", "# cli: {{ kind }}"))
    assert "# cli: 'ManagementScope'" in cli("render", HOSTED, "-i", provider, "-t", "fabrikam", "--templates",
                                             cli_layer).stdout
    applied = cli("apply", HOSTED, "-i", provider, "-t", "tailspin", "--yes")  # the layered script really runs
    assert applied.exit_code == 0, applied.stderr


def test_limit_patterns(cli, provider, tmp_path):
    assert [t.name for t in select_targets(provider, "hosting")] == ["fabrikam", "tailspin"]
    assert [t.name for t in select_targets(provider, "fab*,lab")] == ["fabrikam", "lab"]
    listed = json.loads(cli("inventory", "list", "-i", provider, "--limit", "other", "-o", "json").stdout)
    assert [r["target"] for r in listed] == ["contoso-lab"]
    none = cli("inventory", "list", "-i", provider, "--limit", "nobody*")
    assert none.exit_code == 1 and "no target of" in none.stderr
    out = tmp_path / "reviewed"
    assert cli("render", HOSTED, "-i", provider, "--limit", "hosting", "--out", out).exit_code == 0
    assert sorted(p.name for p in out.glob("*.ps1") if p.name.count(".") == 2) == [
        "hosted-tenant.fabrikam.ps1", "hosted-tenant.tailspin.ps1"]  # the apply scripts (and each one's other modes)


def test_duplicate_target_names_are_an_error(cli, tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  a: {kind: sandbox}\ngroups:\n  g:\n    targets:\n      a: {kind: sandbox}\n")
    result = cli("inventory", "list", "-i", inventory)
    assert result.exit_code == 1
    assert "target 'a' is declared in the top level and in group 'g'" in result.stderr


def test_templates_list_show_copy(cli, tmp_path):
    listed = cli("templates", "list").stdout.splitlines()
    assert "script.ps1.j2\texchange-server" in listed and "role_group.ps1.j2\tcommon" in listed
    online = cli("templates", "list", "--platform", "exchange-online").stdout
    assert "service_principal.ps1.j2\texchange-online" in online
    assert cli("templates", "show", "tail.ps1.j2").stdout == (REPO / "templates" / "common" / "tail.ps1.j2").read_text()
    assert cli("templates", "copy", "tail.ps1.j2", tmp_path / "mine").exit_code == 0
    assert (tmp_path / "mine" / "tail.ps1.j2").read_text() == (REPO / "templates" / "common" / "tail.ps1.j2").read_text()
    again = cli("templates", "copy", "tail.ps1.j2", tmp_path / "mine")
    assert again.exit_code == 1 and "pass --force" in again.stderr
    assert cli("templates", "copy", "tail.ps1.j2", tmp_path / "mine", "--force").exit_code == 0
    assert "no built-in template 'nope.j2'" in cli("templates", "show", "nope.j2").stderr


@pytest.fixture
def tenants(tmp_path):
    lines = ["groups:", "  hosting:", "    targets:"]
    for name, ou, account in (("fabrikam", "Fabrikam", "svc-rooms@fabrikam.example"),
                              ("tailspin", "Tailspin", "svc-rooms@tailspin.example"),
                              ("broken", "Tailspin", "nobody@nowhere.example")):
        lines.append(f"      {name}: {{kind: sandbox, state: {name}.json, vars: {{tenant: {name}, tenant_ou: "
                     f"'OU={ou},OU=Hosting,DC=hoster,DC=local', service_account: {account}}}}}")
    inventory = tmp_path / "tenants.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    return inventory


@pytest.mark.parametrize("processes", ["1", "2"])
def test_one_failing_tenant_does_not_stop_the_others(cli, tenants, runs_dir, processes):
    from toolkit.fleet import records as runs
    from toolkit.sandbox import org as store

    result = cli("apply", HOSTED, "-i", tenants, "--limit", "hosting", "--forks", "3", "--processes", processes,
                 "--yes", "--output", "json")
    assert result.exit_code == 1
    outcomes = {o["target"]: o for o in json.loads(result.stdout)["targets"]}
    assert outcomes["fabrikam"]["ok"] and outcomes["tailspin"]["ok"]
    assert not outcomes["broken"]["ok"]
    assert "member 'nobody@nowhere.example' does not exist on target 'broken'" in outcomes["broken"]["summary"]
    assert "nobody@nowhere.example" in outcomes["broken"]["summary"]
    assert store.load(tenants.parent / "fabrikam.json").role_group("fabrikam room booking") is not None
    assert store.load(tenants.parent / "tailspin.json").role_group("tailspin room booking") is not None
    records = {r["target"]: r for r in runs.read_all()}
    assert set(records) == {"fabrikam", "tailspin", "broken"}
    assert records["broken"]["exit_code"] == 1 and records["fabrikam"]["exit_code"] == 0
    assert "[3/3]" in result.stderr  # plain progress lines when not on a terminal


def test_fleet_plan_and_verify_exit_codes(cli, tenants):
    plan = cli("plan", HOSTED, "-i", tenants, "--limit", "fab*,tail*", "--detailed-exitcode")
    assert plan.exit_code == 2
    assert "fabrikam" in plan.stdout and "2 to create" in plan.stdout
    assert cli("apply", HOSTED, "-i", tenants, "--limit", "fab*,tail*", "--yes").exit_code == 0
    assert cli("plan", HOSTED, "-i", tenants, "--limit", "fab*,tail*", "--detailed-exitcode").exit_code == 0
    verified = cli("verify", HOSTED, "-i", tenants, "--limit", "fab*,tail*", "--forks", "1", "--output", "json")
    assert verified.exit_code == 0
    assert [o["target"] for o in json.loads(verified.stdout)["targets"]] == ["fabrikam", "tailspin"]


def test_fleet_apply_needs_confirmation(cli, tenants):
    result = cli("apply", HOSTED, "-i", tenants, "--limit", "hosting")
    assert result.exit_code == 1
    assert "pass --yes" in result.stderr


def test_rate_limits_slow_the_run_and_say_so(cli, tenants):
    import time

    started = time.monotonic()
    result = cli("plan", HOSTED, "-i", tenants, "--limit", "fab*,tail*", "--forks", "2", "--rate", "1",
                 "--output", "json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0
    outcomes = json.loads(result.stdout)["targets"]
    # one round trip each, one per second across both targets: the second waits about a second, and says so
    assert elapsed >= 0.8
    waited = [o for o in outcomes if "throttled_s" in o]
    assert len(waited) == 1 and "waited" in waited[0]["summary"] and "for rate limits" in waited[0]["summary"]


def test_per_target_rate_limit(tmp_path):
    from toolkit.fleet.throttle import RateLimiter

    limiter = RateLimiter(rate=20, burst=1)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits[0] == 0.0 and sum(waits) >= 0.15  # 4 more tokens at 20 per second
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  lab: {kind: sandbox, state: lab.json, rate_limit: 5}\n")
    assert len(resolve_target(inventory, "lab").target.limiters) == 1


def test_a_worker_process_that_dies_fails_only_its_target(cli, tenants, mocker):
    import os

    from toolkit.fleet import run as fleet

    parent = os.getpid()
    real = fleet.run_one

    def crash_on_broken(action, playbook, target, *args):
        if target.name == "broken" and os.getpid() != parent:
            os._exit(9)  # a worker killed mid-run (the OOM killer, a crash in a C library)
        return real(action, playbook, target, *args)

    # The seam: a process cannot be made to die on cue inside a real run any other way.
    mocker.patch.object(fleet, "run_one", crash_on_broken)
    result = cli("apply", HOSTED, "-i", tenants, "--limit", "hosting", "--forks", "2", "--processes", "2", "--yes",
                 "--output", "json")
    assert result.exit_code == 1
    outcomes = {o["target"]: o for o in json.loads(result.stdout)["targets"]}
    assert outcomes["fabrikam"]["ok"] and outcomes["tailspin"]["ok"]
    assert not outcomes["broken"]["ok"]
    assert "worker process running this target stopped (exit code 9)" in outcomes["broken"]["summary"]


def test_how_many_worker_processes(tmp_path, monkeypatch):
    from toolkit.fleet.run import worker_processes

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n" + "".join(f"  t{i}: {{kind: sandbox, state: t{i}.json}}\n" for i in range(6)) +
                         "  asks: {kind: exchange-server, host: ex01, transport: kerberos, username: u, "
                         "password: prompt}\n")
    six = select_targets(inventory, "t*")
    assert worker_processes(six, 32, None, None) == 6  # two per CPU, no more than the targets
    assert worker_processes(six * 2, 32, None, None) == 8
    assert worker_processes(six, 3, None, None) == 3  # never more than the forks
    assert worker_processes(six[:2], 32, None, None) == 2  # nor than the targets
    assert worker_processes(six, 32, 5.0, None) == 1  # a global rate stays exact in one process
    assert worker_processes(six, 32, None, 2) == 2  # --processes decides
    assert worker_processes(select_targets(inventory, "*"), 32, None, None) == 1  # a password prompt: one process
    monkeypatch.setattr("sys.platform", "win32")
    assert worker_processes(six, 32, None, None) == 1  # no fork()
