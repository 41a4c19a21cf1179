"""A group's target_defaults (settings declared once, the target's own win), Exchange Online tenants named by their
initial domain, positioned errors for what the defaults hold, and `exkit inventory show` naming where each setting
comes from."""

from __future__ import annotations

import json
import textwrap

import pytest

from toolkit.inventory import resolve_target, select_targets

APP = "7c1d2e3f-4a5b-4c6d-8e7f-90a1b2c3d4e5"


def errors(result) -> list[str]:
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if ": error: " in line]


def write(tmp_path, text: str):
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def app_once(tmp_path, *targets: str):
    """An inventory whose group 'msp' declares the app once and lists ``targets`` (one line each)."""
    return write(tmp_path, f"groups:\n  msp:\n    target_defaults: {{kind: exchange-online, client_id: {APP}, "
                           "certificate: app.pem}\n    targets:\n" + "".join(f"      {t}\n" for t in targets))


@pytest.fixture
def msp(tmp_path):
    return write(tmp_path, f"""
        groups:
          msp:
            vars: {{app_id: {APP}}}
            target_defaults:
              kind: exchange-online
              client_id: {APP}
              certificate_pfx: /etc/exkit/msp.pfx
              certificate_password: env:EXKIT_MSP_PFX_PASSWORD
              max_retries: 5
            targets:
              adatum.onmicrosoft.com:
                vars: {{sp_object_id: 11111111-1111-4111-8111-111111111111}}
              litware.onmicrosoft.com:
                max_retries: 2
                vars: {{sp_object_id: 22222222-2222-4222-8222-222222222222}}
              northwind:
                tenant: 3f2504e0-4f89-41d3-9a0c-0305e82c3301
                organization: northwind.onmicrosoft.com
              tailspin.onmicrosoft.com:
        """)


def test_settings_declared_once_the_targets_own_win_and_the_name_is_the_tenant(msp):
    adatum, litware, northwind, tailspin = select_targets(msp, "msp")
    assert [t.name for t in (adatum, litware, northwind, tailspin)] == [
        "adatum.onmicrosoft.com", "litware.onmicrosoft.com", "northwind", "tailspin.onmicrosoft.com"]
    for resolved in (adatum, litware, northwind, tailspin):
        spec = resolved.target.spec
        assert (spec.client_id, spec.certificate_pfx, spec.certificate_password) == (
            APP, "/etc/exkit/msp.pfx", "env:EXKIT_MSP_PFX_PASSWORD")
    assert (adatum.target.spec.tenant, adatum.target.spec.max_retries) == ("adatum.onmicrosoft.com", 5)
    assert litware.target.spec.max_retries == 2  # its own
    assert tailspin.target.spec.tenant == "tailspin.onmicrosoft.com"  # nothing under it but the defaults
    assert northwind.target.spec.tenant == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    assert adatum.variables == {"app_id": APP, "sp_object_id": "11111111-1111-4111-8111-111111111111"}
    assert litware.variables["sp_object_id"] == "22222222-2222-4222-8222-222222222222"
    assert adatum.endpoint != litware.endpoint


def test_a_tenant_given_by_its_id_takes_its_initial_domain_from_the_name(tmp_path):
    inventory = app_once(tmp_path, "contoso.onmicrosoft.com: {tenant: 3f2504e0-4f89-41d3-9a0c-0305e82c3301}")
    spec = resolve_target(inventory, "contoso.onmicrosoft.com").target.spec
    assert (spec.tenant, spec.organization) == ("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "contoso.onmicrosoft.com")


def test_inventory_show_names_where_each_setting_comes_from_and_shows_secrets_only_as_references(cli, msp):
    shown = json.loads(cli("inventory", "show", "litware.onmicrosoft.com", "-i", msp).stdout)
    settings = shown["settings"]
    assert settings["client_id"] == {"value": APP, "from": "target_defaults of group msp"}
    assert settings["certificate_password"] == {"value": "env:EXKIT_MSP_PFX_PASSWORD",
                                                "from": "target_defaults of group msp"}
    assert settings["kind"]["from"] == "target_defaults of group msp"
    assert settings["tenant"] == {"value": "litware.onmicrosoft.com", "from": "the target's name"}
    assert settings["max_retries"] == {"value": 2, "from": "target"}
    assert settings["cloud"] == {"value": "global", "from": "exkit's default"}
    assert "vars" not in settings and "certificate" not in settings  # not set: not shown
    assert shown["vars"]["sp_object_id"]["from"] == "target litware.onmicrosoft.com"
    assert shown["vars"]["app_id"]["from"] == "group msp"
    northwind = json.loads(cli("inventory", "show", "northwind", "-i", msp).stdout)["settings"]
    assert northwind["tenant"]["from"] == northwind["organization"]["from"] == "target"
    listed = json.loads(cli("inventory", "list", "-i", msp, "-o", "json").stdout)
    assert [(r["target"], r["group"], r["platform"]) for r in listed][:2] == [
        ("adatum.onmicrosoft.com", "msp", "exchange-online"), ("litware.onmicrosoft.com", "msp", "exchange-online")]
    assert listed[0]["where"] == "Exchange Online tenant adatum.onmicrosoft.com (global)"


def test_every_problem_in_the_defaults_is_reported_once_at_its_own_line(cli, tmp_path):
    inventory = write(tmp_path, f"""
        groups:
          msp:
            target_defaults:
              kind: exchange-online
              clent_id: {APP}
              certificate_pfx: /etc/exkit/msp.pfx
              certificate_password: hunter2-not-a-reference
              cloud: mars
              vars: {{app_id: {APP}}}
            targets:
              adatum.onmicrosoft.com: {{client_id: {APP}}}
              litware.onmicrosoft.com: {{client_id: {APP}, max_retries: many}}
              fabrikam.onmicrosoft.com: {{client_id: {APP}, certifcate: app.pem}}
        """)
    result = cli("inventory", "list", "-i", inventory)
    assert errors(result) == [
        f"{inventory}:5:7: error: unknown key 'clent_id' in the target_defaults of group 'msp'",
        f"{inventory}:7:29: error: a plaintext secret is not allowed in an inventory",
        f"{inventory}:8:14: error: 'cloud' in the target_defaults of group 'msp' must be 'global', 'gcc-high', "
        "'dod', 'china' or 'custom', not 'mars'",
        f"{inventory}:9:7: error: 'vars' is not a target setting: target_defaults of group 'msp' cannot hold it",
        f"{inventory}:12:95: error: 'max_retries' in target 'litware.onmicrosoft.com' of group 'msp' must be a "
        "whole number, not 'many'",
        f"{inventory}:13:83: error: unknown key 'certifcate' in target 'fabrikam.onmicrosoft.com' of group 'msp'",
    ], result.stderr
    assert "did you mean 'client_id'?" in result.stderr  # the hint names the settings of the target's kind
    assert "did you mean 'certificate'?" in result.stderr
    assert "hunter2" not in result.stderr  # a secret is never echoed


def test_a_tenant_not_named_by_its_domain_needs_tenant(cli, tmp_path):
    inventory = app_once(tmp_path, "adatum:", "litware: {vars: {x: 1}}")
    result = cli("inventory", "list", "-i", inventory)
    assert errors(result) == [
        f"{inventory}:5:7: error: missing required key 'tenant' in target 'adatum' of group 'msp'",
        f"{inventory}:6:16: error: missing required key 'tenant' in target 'litware' of group 'msp'",
    ], result.stderr
    assert ("    hint: add 'tenant: …' here (the tenant id or its initial domain), or name the target by its initial "
            "domain ('adatum.onmicrosoft.com:'): that name is then its tenant\n") in result.stderr


def test_targets_without_defaults_are_as_before(cli, tmp_path):
    """No target_defaults: every target says everything itself; a top-level target may be named by its domain."""
    inventory = write(tmp_path, f"""
        targets:
          contoso.onmicrosoft.com: {{kind: exchange-online, client_id: {APP}, certificate: app.pem}}
          lab: {{kind: sandbox}}
        groups:
          hosting:
            targets:
              fabrikam:
        """)
    result = cli("inventory", "list", "-i", inventory)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (f"{inventory}:7:7: error: target 'fabrikam' of group 'hosting' must "
                                             "be a mapping, not empty"), result.stderr
    inventory.write_text(inventory.read_text().replace("      fabrikam:\n", "      fabrikam: {kind: sandbox}\n"))
    assert resolve_target(inventory, "contoso.onmicrosoft.com").target.spec.tenant == "contoso.onmicrosoft.com"
    shown = json.loads(cli("inventory", "show", "fabrikam", "-i", inventory).stdout)
    assert shown["settings"]["kind"] == {"value": "sandbox", "from": "target"}


def test_defaults_of_a_kind_are_for_the_targets_of_that_kind(tmp_path):
    """A sandbox lab among the tenants gets none of the Exchange Online defaults; targets without a kind get it."""
    inventory = app_once(tmp_path, "lab: {kind: sandbox, platform: exchange-online, state: lab.json}",
                         "adatum.onmicrosoft.com:")
    lab, adatum = (resolve_target(inventory, name) for name in ("lab", "adatum.onmicrosoft.com"))
    assert lab.target.platform == adatum.target.platform == "exchange-online"
    assert lab.settings()["kind"] == {"value": "sandbox", "from": "target"} and "client_id" not in lab.settings()
    assert adatum.settings()["client_id"]["from"] == "target_defaults of group msp"


def test_defaults_no_target_inherits_are_still_checked(cli, tmp_path):
    """A typo in defaults nothing uses yet is an error now, not the day a target first inherits it; defaults that
    are fine but incomplete (no tenant, no host: each target would add its own) are no error."""
    inventory = write(tmp_path, f"""
        groups:
          lab:
            target_defaults: {{kind: exchange-online, clent_id: {APP}, cloud: mars}}
            targets:
              local: {{kind: sandbox}}
          onprem:
            target_defaults: {{kind: exchange-server, transport: ntlm, usrname: exkit}}
            targets:
              local2: {{kind: sandbox}}
          fine:
            target_defaults: {{kind: exchange-online, client_id: {APP}, certificate: app.pem}}
            targets:
              local3: {{kind: sandbox}}
        """)
    result = cli("inventory", "list", "-i", inventory)
    assert errors(result) == [
        f"{inventory}:3:46: error: unknown key 'clent_id' in the target_defaults of group 'lab'",
        f"{inventory}:3:101: error: 'cloud' in the target_defaults of group 'lab' must be 'global', 'gcc-high', "
        "'dod', 'china' or 'custom', not 'mars'",
        f"{inventory}:7:63: error: unknown key 'usrname' in the target_defaults of group 'onprem'",
    ], result.stderr
    assert "did you mean 'client_id'?" in result.stderr and "did you mean 'username'?" in result.stderr
    fixed = inventory.read_text().replace("clent_id", "client_id").replace("mars", "global").replace("usrname",
                                                                                                      "username")
    inventory.write_text(fixed)
    assert cli("inventory", "list", "-i", inventory).exit_code == 0
