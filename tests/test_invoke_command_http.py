"""InvokeCommand's HTTP: exkit sends each call with urllib3 through its session's pool and settings (not requests'
per-request path), so what requests did for it is checked here: the certificate is verified against the configured
CA or the environment's bundle, and a redirect is never followed with the tenant's token."""

from __future__ import annotations

import ssl
import textwrap

import pytest
import trustme
from servers.exchange_online import App, LoopbackExchangeOnline
from test_exchange_online import CLIENT_ID, TENANT, exo, pki  # noqa: F401  (fixtures)

from toolkit.inventory import resolve_target
from toolkit.targets.base import TargetError


@pytest.fixture
def elsewhere(tmp_path, pki):  # noqa: F811
    """A second tenant server, its certificate from another CA than the one the inventory trusts."""
    _, app_cert, _ = pki
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other_ca = trustme.CA()
    other_ca.issue_cert("127.0.0.1").configure_cert(tls)
    other_ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    with LoopbackExchangeOnline(tmp_path / "elsewhere.json", tls, TENANT,
                                [App(CLIENT_ID, app_cert.cert_chain_pems[0].bytes())]) as server:
        yield server


def _target(tmp_path, login, exchange, trust="ca_trust_path: ca.pem, "):
    inventory = tmp_path / "http-inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          t: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, cloud: custom, certificate: app.pem,
              login_endpoint: '{login}', exchange_endpoint: '{exchange}', {trust}max_wait: 0.2}}
        """))
    return resolve_target(inventory, "t", "exchange-online").target


def test_an_exchange_endpoint_whose_certificate_is_not_trusted_gets_nothing(exo, elsewhere, tmp_path):  # noqa: F811
    server, _ = exo
    server.switches.resources = [elsewhere.base]  # signed in at the trusted one, for the other
    target = _target(tmp_path, server.base, elsewhere.base)
    with pytest.raises(TargetError) as refused:
        target.invoke("Get-ServicePrincipal")
    assert str(refused.value) == f"TLS with {elsewhere.base} failed: CERTIFICATE_VERIFY_FAILED"
    assert (server.log.token_requests, elsewhere.log.headers, target.calls) == (1, [], 0)


def test_the_environment_ca_bundle_is_used_when_the_target_names_none(exo, elsewhere, tmp_path,  # noqa: F811
                                                                      monkeypatch):
    """requests' rule, kept: without ca_trust_path, REQUESTS_CA_BUNDLE names the CAs (here: the other server's
    only, so the sign-in at the first server is refused and the call to the second is verified)."""
    server, _ = exo
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "other-ca.pem"))
    target = _target(tmp_path, elsewhere.base, elsewhere.base, trust="")
    assert target.invoke("Get-ServicePrincipal") == []
    assert (elsewhere.log.invocations, elsewhere.log.token_requests) == (["Get-ServicePrincipal"], 1)
    refused = _target(tmp_path, server.base, server.base, trust="")
    with pytest.raises(TargetError) as failed:
        refused.invoke("Get-ServicePrincipal")
    assert str(failed.value).endswith(": CERTIFICATE_VERIFY_FAILED"), failed.value
    assert server.log.invocations == []


def test_a_redirect_is_refused_and_the_token_goes_nowhere_else(exo, elsewhere, tmp_path):  # noqa: F811
    server, inventory = exo
    server.switches.redirect_to = f"{elsewhere.base}/adminapi/beta/{TENANT}/InvokeCommand"
    target = resolve_target(inventory, "cert", "exchange-online").target
    with pytest.raises(TargetError) as refused:
        target.invoke("Get-ServicePrincipal")
    assert str(refused.value) == (
        f"Get-ServicePrincipal: {server.base} answered HTTP 307, a redirect to {server.switches.redirect_to}; exkit "
        "does not follow it (the request carries the tenant's token): check exchange_endpoint")
    assert (len(server.log.headers), target.retries, elsewhere.connections, elsewhere.log.headers) == (1, [], 0, [])
