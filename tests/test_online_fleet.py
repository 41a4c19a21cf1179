"""A provider's fleet of Exchange Online tenants behind one loopback server (one app, one certificate, each tenant its
own organisation): throttled tenants and a tenant that rejects the token do not stop the others, and every
outcome is reported."""

from __future__ import annotations

import json
import ssl
import textwrap

import pytest
import trustme
from conftest import REPO
from servers.exchange_online import App, LoopbackExchangeOnline

from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation

CLIENT_ID = "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11"
ROOMS = REPO / "playbooks" / "online-rooms.yaml"
NAMES = ["calm", "storm", "gale", "rejects", "quiet"]


@pytest.fixture
def fleet(tmp_path):
    ca = trustme.CA()
    app_cert = trustme.CA().issue_cert("exkit-provider-app", key_type=trustme.KeyType.RSA)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "app.pem").write_bytes(app_cert.private_key_pem.bytes() + app_cert.cert_chain_pems[0].bytes())
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    apps = [App(CLIENT_ID, app_cert.cert_chain_pems[0].bytes())]
    for name in NAMES:
        (tmp_path / f"{name}.json").write_text(seed_organisation("exchange-online").to_json())
    server = LoopbackExchangeOnline(tmp_path / "calm.json", tls, "calm.onmicrosoft.com", apps)
    tenants = {"calm": server.first} | {name: server.add_tenant(tmp_path / f"{name}.json",
                                                                f"{name}.onmicrosoft.com", apps) for name in NAMES[1:]}
    lines = ["groups:", "  provider:", "    targets:"]
    for index, name in enumerate(NAMES):
        lines.append(f"      {name}: {{kind: exchange-online, tenant: {name}.onmicrosoft.com, client_id: {CLIENT_ID}, "
                     f"certificate: app.pem, ca_trust_path: ca.pem, cloud: custom, login_endpoint: '{server.base}', "
                     f"exchange_endpoint: '{server.base}', max_retries: 3, max_wait: 0.2, "
                     f"vars: {{sp_object_id: 0b7c2e44-9d1a-4e5f-8c3b-00000000000{index}}}}}")
    (tmp_path / "inventory.yaml").write_text("\n".join(lines) + "\n")
    with server:
        yield server, tenants, tmp_path / "inventory.yaml"


def test_throttled_tenants_and_a_rejected_token_leave_every_other_tenant_done(cli, fleet):
    server, tenants, inventory = fleet
    tenants["storm"].switches.throttle_next, tenants["storm"].switches.retry_after = 3, "0.05"  # weathered
    tenants["gale"].switches.throttle_next, tenants["gale"].switches.retry_after = 1000, "0.05"  # outlasts retries
    tenants["rejects"].switches.token_lifetime = -600  # every token it issues is expired: InvokeCommand says 401

    result = cli("apply", ROOMS, "-i", inventory, "--limit", "provider", "--forks", "3", "--yes", "-o", "json")

    assert result.exit_code == 1, result.stdout
    outcomes = {o["target"]: o for o in json.loads(result.stdout)["targets"]}
    assert sorted(outcomes) == sorted(NAMES)  # every tenant has its outcome
    for name in ("calm", "storm", "quiet"):
        assert outcomes[name]["ok"], outcomes[name]
        state = store.load(tenants[name].state_path, "exchange-online")
        assert state.assignment("Calendars.ReadWrite-Room booking app") is not None
    assert tenants["storm"].log.throttled == 3
    assert any("3 call(s) were retried after throttling" in str(n) for n in outcomes["storm"]["notices"]), outcomes
    assert not outcomes["gale"]["ok"]
    assert ("reading the current state from Exchange Online tenant gale.onmicrosoft.com (custom) failed: "
            "Get-ManagementScope on tenant gale.onmicrosoft.com still failed (HTTP 429) after 4 attempt(s)"
            in outcomes["gale"]["summary"]), outcomes["gale"]
    assert not outcomes["rejects"]["ok"]
    assert "Access token has expired or is not yet valid" in outcomes["rejects"]["summary"], outcomes["rejects"]
    assert tenants["rejects"].log.rejected_tokens >= 1
    for name in ("gale", "rejects"):  # nothing was changed on the tenants that failed
        assert tenants[name].state_path.read_text() == seed_organisation("exchange-online").to_json()
    # one sign-in per tenant for the whole run (plan and apply share the token); the rejecting tenant's token is
    # asked for again once, after the 401
    assert [tenants[n].log.token_requests for n in ("calm", "storm", "quiet")] == [1, 1, 1]


def test_the_runs_rate_spaces_every_request_the_tenants_see(cli, fleet):
    """--rate R caps the run's round trips to all tenants together — sign-ins (discovery, token) and InvokeCommand
    calls alike. Seen from the server: in any stretch of k consecutive requests (over every tenant), the first and
    the last are at least (k - burst) / R apart, less an allowance for the way from the client's bucket to the
    server's clock (a new connection's TLS handshake comes after the wait). The bucket's burst is min(forks, R).
    Only lower bounds: a slow machine only widens the gaps."""
    server, tenants, inventory = fleet
    rate, forks, names = 4.0, 3, ("calm", "storm", "quiet")

    result = cli("plan", ROOMS, "-i", inventory, "--limit", ",".join(names), "--forks", str(forks),
                 "--rate", str(rate), "-o", "json")

    assert result.exit_code == 0, result.stdout + result.stderr
    outcomes = json.loads(result.stdout)["targets"]
    assert all(o["ok"] for o in outcomes), outcomes
    received = sorted(t for name in names for t in tenants[name].log.received)
    assert all(tenants[name].log.token_requests == 1 for name in names)  # each tenant's sign-in is in there
    assert len(received) >= 5 * len(names), len(received)  # per tenant: sign-in (discovery, token), the reads
    burst, allowance = min(forks, int(rate)), 0.3  # a handshake on a busy machine
    too_close = [(i, j, round(received[j] - received[i], 3)) for i in range(len(received))
                 for j in range(i + burst, len(received))
                 if received[j] - received[i] < (j - i + 1 - burst) / rate - allowance]
    assert not too_close, too_close[:5]
    assert any(o.get("throttled_s", 0) > 0 for o in outcomes), outcomes  # the waits are reported per tenant


@pytest.fixture
def provider(tmp_path, monkeypatch):
    """The provider's shape: one automation app (its client id, PFX certificate and password reference, cloud and
    endpoints) declared once in the group's target_defaults; tenants listed by their initial domain (one by its
    tenant id, named by its domain), each with its own room-booking service principal object id."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    ca = trustme.CA()
    app_cert = trustme.CA().issue_cert("exkit-provider-app", key_type=trustme.KeyType.RSA)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    key = serialization.load_pem_private_key(app_cert.private_key_pem.bytes(), password=None)
    certificate = x509.load_pem_x509_certificate(app_cert.cert_chain_pems[0].bytes())
    (tmp_path / "app.pfx").write_bytes(pkcs12.serialize_key_and_certificates(
        b"exkit", key, certificate, None, serialization.BestAvailableEncryption(b"msp-pfx-password")))
    monkeypatch.setenv("EXKIT_MSP_PFX_PASSWORD", "msp-pfx-password")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    apps = [App(CLIENT_ID, app_cert.cert_chain_pems[0].bytes())]
    by_url = {"adatum.onmicrosoft.com": "adatum.onmicrosoft.com", "litware.onmicrosoft.com": "litware.onmicrosoft.com",
              "northwind.onmicrosoft.com": NORTHWIND_ID}  # the tenant as the endpoints' URLs name it
    for name in by_url:
        (tmp_path / f"{name}.json").write_text(seed_organisation("exchange-online").to_json())
    first, *others = by_url
    server = LoopbackExchangeOnline(tmp_path / f"{first}.json", tls, by_url[first], apps)
    tenants = {first: server.first} | {name: server.add_tenant(tmp_path / f"{name}.json", by_url[name], apps)
                                       for name in others}
    (tmp_path / "inventory.yaml").write_text(textwrap.dedent(f"""\
        groups:
          msp:
            vars:
              app_id: {CLIENT_ID}          # the room-booking app: multi-tenant, one app id everywhere
            target_defaults:
              kind: exchange-online
              client_id: {CLIENT_ID}
              certificate_pfx: app.pfx
              certificate_password: env:EXKIT_MSP_PFX_PASSWORD
              ca_trust_path: ca.pem
              cloud: custom
              login_endpoint: '{server.base}'
              exchange_endpoint: '{server.base}'
            targets:
              adatum.onmicrosoft.com:
                vars: {{sp_object_id: {OBJECT_IDS["adatum.onmicrosoft.com"]}}}
              litware.onmicrosoft.com:
                vars: {{sp_object_id: {OBJECT_IDS["litware.onmicrosoft.com"]}}}
              northwind.onmicrosoft.com:
                tenant: {NORTHWIND_ID}
                vars: {{sp_object_id: {OBJECT_IDS["northwind.onmicrosoft.com"]}}}
        """))
    with server:
        yield tenants, tmp_path / "inventory.yaml"


NORTHWIND_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
OBJECT_IDS = {"adatum.onmicrosoft.com": "0b7c2e44-9d1a-4e5f-8c3b-0000000000a1",
              "litware.onmicrosoft.com": "0b7c2e44-9d1a-4e5f-8c3b-0000000000b2",
              "northwind.onmicrosoft.com": "0b7c2e44-9d1a-4e5f-8c3b-0000000000c3"}


def test_one_app_declared_once_reaches_each_tenant_with_its_own_values(cli, provider):
    tenants, inventory = provider

    planned = cli("plan", ROOMS, "-i", inventory, "--limit", "msp", "--detailed-exitcode", "-o", "json")
    assert planned.exit_code == 2, planned.stdout + planned.stderr  # changes pending on every tenant
    applied = cli("apply", ROOMS, "-i", inventory, "--limit", "msp", "--forks", "3", "--yes", "-o", "json")

    assert applied.exit_code == 0, applied.stdout + applied.stderr
    outcomes = {o["target"]: o for o in json.loads(applied.stdout)["targets"]}
    assert sorted(outcomes) == sorted(OBJECT_IDS) and all(o["ok"] for o in outcomes.values()), outcomes
    for name, tenant in tenants.items():
        state = store.load(tenant.state_path, "exchange-online")
        assert [(p.app_id, p.object_id) for p in state.service_principals] == [(CLIENT_ID, OBJECT_IDS[name])]
        assert state.assignment("Calendars.ReadWrite-Room booking app") is not None
        assert tenant.log.token_requests == 2  # signed in with the one PFX once per tenant and run (plan, apply)
    assert tenants["northwind.onmicrosoft.com"].tenant == NORTHWIND_ID  # reached by its tenant id
    again = cli("plan", ROOMS, "-i", inventory, "--limit", "*.onmicrosoft.com", "--detailed-exitcode")
    assert again.exit_code == 0, again.stdout + again.stderr  # nothing left to do anywhere
    rendered = cli("render", ROOMS, "-i", inventory, "-t", "northwind.onmicrosoft.com").stdout
    assert "-Organization 'northwind.onmicrosoft.com'" in rendered  # the name gives Connect-ExchangeOnline's domain
    assert "msp-pfx-password" not in rendered + applied.stdout + applied.stderr
