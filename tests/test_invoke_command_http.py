"""InvokeCommand's and msal's HTTP: exkit sends those requests with urllib3 through its session's pool and settings
(not requests' per-request path), so what requests did for them is checked here: the certificate is verified against
the configured CA or the environment's bundle, a redirect is never followed with the tenant's token, and msal's
requests (query parameters, forms) are sent as requests would send them. Last, the loopback server's own reading of
HTTP/1.1 requests (tests/servers/http11.py), which the other tests rely on."""

from __future__ import annotations

import json
import ssl
import textwrap

import pytest
import trustme
from servers.exchange_online import App, LoopbackExchangeOnline
from test_exchange_online import CLIENT_ID, SECRET, TENANT, exo, pki  # noqa: F401  (fixtures)

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


class _Recorder:
    """A plain-HTTP loopback server that records each request (method, path, headers, body) and answers JSON."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen = self.seen = []
        accepted = self.accepted = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append((self.command, self.path, self.headers.get("Content-Type"), body))
                self.accepts = self.headers.get_all("Accept")
                accepted.append(self.accepts)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("WWW-Authenticate", "Bearer a")  # one field twice: read as "Bearer a, Basic b"
                self.send_header("WWW-Authenticate", "Basic b")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_msal_requests_are_sent_as_requests_would_send_them():
    """msal's HttpClient interface: a GET's params go into the query, a dict is sent as a form, a str as it is;
    each request waits for the rate limits first and is bounded by the sign-in's time left unless msal gives one."""
    from toolkit.targets.exchange_online import _Session, _SignInHttp

    server, waits, bounds = _Recorder(), [], []
    try:
        client = _SignInHttp(_Session(), lambda: waits.append(1), lambda: bounds.append(1) or (5.0, 5.0))
        answers = [
            client.get(f"{server.base}/common/discovery/instance",
                       params={"authorization_endpoint": "https://login/x/oauth2/v2.0/authorize", "api-version": "1.0"}),
            client.post(f"{server.base}/t/oauth2/v2.0/token", data={"scope": "https://x/.default", "grant_type": "c c"},
                        headers={"Accept": "application/json"}),
            client.post(f"{server.base}/raw?a=1", params={"b": "2"}, data="as=is", timeout=3),
            client.get(f"{server.base}/lower", headers={"accept": "application/json"}, timeout=(2, 4)),
        ]
    finally:
        server.close()
    assert [(a.status_code, a.text, a.headers["www-authenticate"]) for a in answers] == [
        (200, "{}", "Bearer a, Basic b")] * 4
    assert server.seen == [
        ("GET", ("/common/discovery/instance?authorization_endpoint=https%3A%2F%2Flogin%2Fx%2Foauth2%2Fv2.0%2F"
                 "authorize&api-version=1.0"), None, b""),
        ("POST", "/t/oauth2/v2.0/token", "application/x-www-form-urlencoded",
         b"scope=https%3A%2F%2Fx%2F.default&grant_type=c+c"),
        ("POST", "/raw?a=1&b=2", None, b"as=is"), ("GET", "/lower", None, b"")]
    # a header named in other case replaces the session's default (one Accept), as requests merges them
    assert server.accepted == [["*/*"], ["application/json"], ["*/*"], ["application/json"]]
    assert (len(waits), len(bounds)) == (4, 2)  # msal's own timeouts (the third and fourth) are used as given


def test_the_default_trust_is_certifi_not_the_system_store(exo, tmp_path, monkeypatch):  # noqa: F811
    """As requests: with no ca_trust_path and no REQUESTS_CA_BUNDLE, certifi's bundle decides (here it does not hold
    the loopback CA, though OpenSSL's default store — SSL_CERT_FILE — does)."""
    server, _ = exo
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    with pytest.raises(TargetError) as refused:
        _target(tmp_path, server.base, server.base, trust="").invoke("Get-ServicePrincipal")
    assert str(refused.value) == (f"cannot reach the sign-in endpoint of target 't' (the token endpoint "
                                  f"{server.base}/{TENANT}): CERTIFICATE_VERIFY_FAILED")
    assert (server.log.token_requests, server.log.invocations) == (0, [])


def test_a_ca_file_that_is_not_there_is_named(exo, tmp_path):  # noqa: F811
    server, _ = exo
    with pytest.raises(TargetError) as refused:
        _target(tmp_path, server.base, server.base, trust="ca_trust_path: gone.pem, ").invoke("Get-ServicePrincipal")
    assert str(refused.value) == (f"target 't': Could not find a suitable TLS CA certificate bundle, invalid path: "
                                  f"{tmp_path / 'gone.pem'}")


def test_a_discovery_that_moved_is_followed(exo):  # noqa: F811
    """msal's discovery GET follows a redirect (public metadata), as requests did; the token POST is then sent."""
    server, inventory = exo
    server.switches.discovery_moved = True
    target = resolve_target(inventory, "cert", "exchange-online").target
    assert target.invoke("Get-ServicePrincipal") == []
    assert (server.log.token_requests, server.log.invocations) == (1, ["Get-ServicePrincipal"])


def test_an_exchange_endpoint_that_refuses_connections_is_retried_then_named(exo, tmp_path):  # noqa: F811
    import socket

    server, _ = exo
    with socket.socket() as closed:  # a port nothing listens on (bound, never listening: connections are refused)
        closed.bind(("127.0.0.1", 0))
        refusing = f"https://127.0.0.1:{closed.getsockname()[1]}"
        server.switches.resources = [refusing]
        target = _target(tmp_path, server.base, refusing, trust="ca_trust_path: ca.pem, max_retries: 2, ")
        with pytest.raises(TargetError) as refused:
            target.invoke("Get-ServicePrincipal")
    assert str(refused.value).startswith(f"Get-ServicePrincipal on tenant {TENANT} still failed (no complete answer "
                                         "(Connection refused)) after 3 attempt(s) over "), refused.value
    assert str(refused.value).endswith(" s (max_retries 2, call_timeout 900 s)"), refused.value
    # two retries noted, not the third attempt that was not retried
    assert (target.calls, target.retries, server.log.token_requests) == (0, [
        "Get-ServicePrincipal: no complete answer (Connection refused), retried after 0.20 s"] * 2, 1)


def test_a_connection_closed_during_tls_is_retried_as_lost(exo, tmp_path):  # noqa: F811
    """A connection the far end closes without TLS's goodbye (OpenSSL: unexpected EOF) is a lost connection, retried
    within max_retries like any other, not a TLS refusal that no retry changes."""
    import socket
    import threading

    server, _ = exo
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def close_each():  # read the ClientHello, then close: the handshake meets EOF
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection.recv(4096)[:1])
            connection.close()

    threading.Thread(target=close_each, daemon=True).start()
    closing = f"https://127.0.0.1:{listener.getsockname()[1]}"
    server.switches.resources = [closing]
    target = _target(tmp_path, server.base, closing, trust="ca_trust_path: ca.pem, max_retries: 2, ")
    try:
        with pytest.raises(TargetError) as lost:
            target.invoke("Get-ServicePrincipal")
    finally:
        listener.close()
    assert str(lost.value).startswith(f"Get-ServicePrincipal on tenant {TENANT} still failed (no complete answer "
                                      "(connection closed during TLS)) after 3 attempt(s) over "), lost.value
    assert (accepted, target.retries) == ([b"\x16"] * 3, [
        "Get-ServicePrincipal: no complete answer (connection closed during TLS), retried after 0.20 s"] * 2)


def _recording_http_server(answers):
    """A plain HTTP server (or proxy) on loopback that records each request line and answers 200 with JSON."""
    import http.server
    import threading

    lines = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            lines.append(self.requestline)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = answers.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, lines


def test_a_request_line_names_the_path_or_through_a_plain_http_proxy_the_whole_url(monkeypatch):
    """As requests sends it: the path and query to the endpoint itself; the whole URL to a proxy of a plain HTTP
    endpoint (RFC 9112 3.2.2, absolute-form), looked up once per origin and kept for the session's next request."""
    from toolkit.targets.exchange_online import _Session

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server, lines = _recording_http_server('{"value": []}')
    proxy, proxied = _recording_http_server('{"value": [1]}')
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        with _Session() as direct:
            for query in ("", "?$skiptoken=2"):
                answer = direct.send_direct("POST", f"{endpoint}/adminapi/beta/t/InvokeCommand{query}", b"{}", {},
                                            (5, 5))
                assert (answer.status_code, answer.text) == (200, '{"value": []}')
        assert lines == ["POST /adminapi/beta/t/InvokeCommand HTTP/1.1",
                         "POST /adminapi/beta/t/InvokeCommand?$skiptoken=2 HTTP/1.1"]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        with _Session() as through:
            for query in ("", "?$skiptoken=2"):
                answer = through.send_direct("POST", f"http://exchange.test/adminapi/beta/t/InvokeCommand{query}",
                                             b"{}", {}, (5, 5))
                assert answer.text == '{"value": [1]}'
        assert proxied == ["POST http://exchange.test/adminapi/beta/t/InvokeCommand HTTP/1.1",
                           "POST http://exchange.test/adminapi/beta/t/InvokeCommand?$skiptoken=2 HTTP/1.1"]
        assert len(lines) == 2  # nothing went to the endpoint itself
    finally:
        server.shutdown()
        proxy.shutdown()


# ------------------------------------------------------------------ the loopback server's HTTP/1.1 (servers/http11.py)
def _connection(server, tmp_path):
    """A TLS connection to the loopback server (http.client's, so raw request bytes can be sent and answers read)."""
    import http.client

    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    host, port = server.base.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=trusted)
    connection.connect()
    return connection


def _exchange(connection, raw: bytes):
    """Send raw request bytes; read one answer: (status, headers, body)."""
    import http.client

    connection.send(raw)
    answer = http.client.HTTPResponse(connection.sock, method="POST")
    answer.begin()
    return answer.status, answer.headers, answer.read()


def test_the_loopback_server_reads_fields_in_any_case_folded_repeated_and_keeps_the_connection(exo, tmp_path):
    """Two requests on one connection (HTTP/1.1 keeps it open): a token request whose body is read by its
    Content-Length named in another case, then InvokeCommand with that token, a field folded over two lines (RFC 9112
    section 5.2: read as one space) and Authorization twice (the first is the one read, as http.server's
    email.message did)."""
    server, _ = exo
    connection = _connection(server, tmp_path)
    tenant = f"/{TENANT}"
    form = (f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}"
            f"&scope={server.base}/.default").encode()
    status, headers, body = _exchange(connection, (
        f"POST {tenant}/oauth2/v2.0/token HTTP/1.1\r\nhOsT: x\r\ncontent-TYPE: application/x-www-form-urlencoded\r\n"
        f"CONTENT-length: {len(form)}\r\n\r\n").encode() + form)
    assert (status, headers["content-type"]) == (200, "application/json; charset=utf-8")
    token = json.loads(body)["access_token"]
    call = json.dumps({"CmdletInput": {"CmdletName": "Get-ServicePrincipal", "Parameters": {}}}).encode()
    status, headers, body = _exchange(connection, (
        f"POST /adminapi/beta/{TENANT}/InvokeCommand HTTP/1.1\r\nHost: x\r\nauthorization:   Bearer {token}  \r\n"
        f"Authorization: Bearer not-the-token\r\nX-Folded: first\r\n \t second\r\nContent-Length: {len(call)}\r\n"
        "\r\n").encode() + call)
    assert (status, json.loads(body)["value"], int(headers["Content-Length"])) == (200, [], len(body))
    assert server.connections == 1 and server.log.invocations == ["Get-ServicePrincipal"]
    assert server.log.headers[0]["x-folded"] == "first second"
    assert server.log.headers[0]["authorization"] == "Bearer not-the-token"  # the log keeps every field, the last wins
    connection.close()


@pytest.mark.parametrize("line", [b"X-Name : space before the colon", b"no colon at all", b"X-Bad\x01: value",
                                  b"X-Control: a\x00b", b" folded right after the request line"])
def test_a_malformed_header_line_is_a_400_and_the_connection_ends(exo, tmp_path, line):
    """RFC 9112 section 5.1 (whitespace before the colon) and section 5: a field line is name ":" value, the name a
    token, the value without control characters; section 2.2: no whitespace-led line after the request line."""
    server, _ = exo
    connection = _connection(server, tmp_path)
    status, headers, _ = _exchange(connection, f"GET /{TENANT}/v2.0/.well-known/openid-configuration HTTP/1.1\r\n"
                                   .encode() + line + b"\r\nHost: x\r\n\r\n")
    assert (status, headers["Connection"]) == (400, "close")
    assert connection.sock.recv(1) == b""  # closed
    assert server.log.requests == 0


def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(exo, tmp_path):
    server, _ = exo
    for request in (f"GET /{TENANT}/v2.0/.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n", f"GET /{TENANT}/v2.0/.well-known/openid-configuration HTTP/1.0\r\n\r\n"):
        connection = _connection(server, tmp_path)
        status, _, body = _exchange(connection, request.encode())
        assert status == 200 and json.loads(body)["token_endpoint"].endswith("/oauth2/v2.0/token")
        assert connection.sock.recv(1) == b""
    assert server.log.requests == 2


def test_a_request_expecting_100_continue_gets_it_before_it_sends_its_body(exo, tmp_path):
    """RFC 9110 section 10.1.1: the client waits for the interim answer (the server's buffered answers must not hold
    it back), then sends the body."""
    server, _ = exo
    connection = _connection(server, tmp_path)
    connection.sock.settimeout(30)
    form = f"grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={SECRET}" \
           f"&scope={server.base}/.default".encode()
    connection.send(f"POST /{TENANT}/oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                    f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n".encode())
    assert connection.sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    status, _, body = _exchange(connection, form)
    assert status == 200 and json.loads(body)["token_type"] == "Bearer"
