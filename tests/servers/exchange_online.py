"""Loopback Exchange Online for tests: one HTTPS server (trustme CA) playing both Entra ID and the admin REST endpoint,
for one tenant or many (each its own organisation state, app registrations, tokens, switches and log; the tenant is
the one the URL names, as on the real endpoints: ``login.microsoftonline.com/{tenant}/…`` and
``outlook.office365.com/adminapi/beta/{tenant}/InvokeCommand``).

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``POST /{tenant}/oauth2/v2.0/token``: the
  client-credentials grant as msal performs it. A client assertion must be an RS256 JWT signed by the key of the
  app's registered certificate (matched by its x5t / x5t#S256 thumbprint), for this token endpoint, not expired;
  or a client secret. Tokens expire (switchable).
- ``POST /adminapi/beta/{tenant}/InvokeCommand``: one cmdlet per call on the Exchange Online sandbox organisation,
  with paging (@odata.nextLink), throttling (429 + Retry-After), 5xx, and the error body format of the real endpoint.
- ``GET /graph/v1.0/…``: Microsoft Graph over the tenant's Entra directory (tests/servers/entra.py). Tokens are per
  resource: scope ``{base}/.default`` for Exchange, ``{base}/graph/.default`` for Graph; one for the other is 401.

``delay_ms`` stands for the network: the server waits that long before every reply (identity and InvokeCommand).
A tenant the URL names that the server does not hold gets Entra's AADSTS90002 (identity) or a 404 (InvokeCommand).
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from servers.entra import Directory
from servers.http11 import LeanRequestHandler

from toolkit.sandbox import org as store
from toolkit.sandbox.cmdlets import ExchangeCmdlets
from toolkit.sandbox.commands import BindingError, CmdletError, convert
from toolkit.sandbox.values import to_json_value


@dataclass
class App:
    client_id: str
    certificate_pem: bytes | None = None
    secret: str | None = None


@dataclass
class Switches:
    page_size: int = 0  # 0: no paging
    throttle_next: int = 0  # answer this many InvokeCommand calls with 429
    retry_after: str = "0.05"
    fail_next: int = 0  # answer this many InvokeCommand calls with 503
    # answer this many InvokeCommand calls saying the tenant is serving its maximum number of concurrent requests:
    # the admin REST endpoint refuses so in its body ("maximum number of concurrent requests per tenant",
    # /work/shared/reference/exchange.md, Throttling); no status is documented for it, so HTTP 400 here checks that
    # the connector goes by the text (it retries it as throttling)
    busy_next: int = 0
    close_next: int = 0  # read this many InvokeCommand requests and close the connection without a byte of answer
    expire_tokens_after_calls: int = 0  # after this many successful calls, every issued token expires
    token_lifetime: int = 3600
    next_link_base: str = ""  # the base URL @odata.nextLink names (default: this server's)
    # Faults of the network or of a hung service (the client's bounded waits are tested against them):
    silent: bool = False  # read every request, never answer (identity and InvokeCommand alike)
    hang_invoke: bool = False  # the token endpoint answers; InvokeCommand reads the request and never answers
    answer_after: float = 0.0  # every InvokeCommand answer comes after this many seconds
    drop_next: int = 0  # cut this many InvokeCommand replies in the middle (headers and half the body, then close)
    redirect_to: str = ""  # answer InvokeCommand with 307 Temporary Redirect to this URL
    discovery_moved: bool = False  # answer discovery with 301 Moved Permanently to the same URL with ?moved=1
    bare_redirect: bool = False  # answer InvokeCommand with 302 Found and no Location (a misconfigured front end)
    # more resources (URIs) the identity endpoint issues tokens for: a test's Exchange endpoint on another server
    resources: list[str] = field(default_factory=list)
    # set: every InvokeCommand request, once read and its headers logged, waits until the test sets this event (a
    # test steps the server: it acts while the request is in flight, then lets the answer go)
    hold: threading.Event | None = None
    # token errors with the error code only: RFC 6749 section 5.2 makes error_description optional (Entra sends it)
    bare_token_errors: bool = False


@dataclass
class Log:
    token_requests: int = 0
    invocations: list[str] = field(default_factory=list)  # cmdlet names, one per HTTP call that ran a cmdlet
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # each of them: (cmdlet, its Parameters)
    headers: list[dict[str, str]] = field(default_factory=list)  # each InvokeCommand request's, names lower-cased
    throttled: int = 0
    failed: int = 0
    rejected_tokens: int = 0
    # Every InvokeCommand request in order: when it arrived (time.monotonic()) and the HTTP status it was answered.
    arrivals: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    requests: int = 0  # HTTP requests (identity and InvokeCommand)
    received: list[float] = field(default_factory=list)  # when each of them came in (time.monotonic()), in order
    rounds: int = 0  # of them, those that started while no other request of the tenant was being answered


class Tenant:
    """One tenant: its organisation (a sandbox state file), its app registrations and directory, the tokens it
    issued, its fault switches and its log."""

    def __init__(self, server: LoopbackExchangeOnline, state_path: Path, tenant: str, apps: list[App],
                 directory: Directory | None = None) -> None:
        self.server = server
        self.state_path = state_path
        self.tenant = tenant
        self.apps = {a.client_id: a for a in apps}
        self.directory = directory or Directory.seeded(list(self.apps))
        self.switches = Switches()
        self.log = Log()
        self.tokens: dict[str, float] = {}
        self.audiences: dict[str, str] = {}  # token → the resource it was issued for
        self.graph_roles: dict[str, set[str]] = {}  # Graph token → its roles claim (fixed at issue)
        self.lock = threading.Lock()
        self.in_flight = 0  # this tenant's requests being answered now
        # the cmdlet table of the organisation last taken from the state file (a tenant's calls mostly find the same
        # organisation object: see org.take): built once for it, not for every call
        self._commands: tuple[object, dict[str, Any]] | None = None

    @property
    def base(self) -> str:
        return self.server.base

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = {token: 0.0 for token in self.tokens}

    def arrived(self) -> None:
        """A request of this tenant came in: it starts a new sequential round trip unless another request of the
        tenant is being answered (then the client sent them concurrently and their waits overlap)."""
        with self.lock:
            if self.in_flight == 0:
                self.log.rounds += 1
            self.in_flight += 1
            self.log.requests += 1
            self.log.received.append(time.monotonic())

    def answered(self) -> None:
        with self.lock:
            self.in_flight -= 1

    # ------------------------------------------------------------------------------------------- identity
    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.log.token_requests += 1
        app = self.apps.get(form.get("client_id", ""))
        if form.get("grant_type") != "client_credentials" or app is None:
            return 400, {"error": "unauthorized_client", "error_description": "AADSTS700016: Application with "
                         f"identifier '{form.get('client_id')}' was not found in the directory '{self.tenant}'."}
        resources = {f"{uri}/.default": uri for uri in (self.base, self.graph_root, *self.switches.resources)}
        if form.get("scope") not in resources:
            return 400, {"error": "invalid_scope", "error_description": f"AADSTS70011: The provided value for scope "
                         f"{form.get('scope')} is not valid."}
        assertion = form.get("client_assertion")
        if assertion:
            problem = self._check_assertion(app, assertion)
            if problem:
                return 401, {"error": "invalid_client", "error_description": problem}
        elif not (app.secret and form.get("client_secret") == app.secret):
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret "
                         "provided."}
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.time() + self.switches.token_lifetime
            self.audiences[token] = resources[str(form.get("scope"))]
            self.graph_roles[token] = self.directory.graph_roles(app.client_id)
        return 200, {"token_type": "Bearer", "expires_in": self.switches.token_lifetime, "access_token": token}

    def _check_assertion(self, app: App, assertion: str) -> str:
        if app.certificate_pem is None:
            return "AADSTS700027: the application has no certificate credential."
        public_key, thumbprints = _registered(app.certificate_pem)
        header = jwt.get_unverified_header(assertion)
        if not any(str(header.get(k, "")).rstrip("=") == v for k, v in thumbprints.items()):
            return ("AADSTS700027: The certificate with identifier used to sign the client assertion is not "
                    "registered on application.")
        try:
            claims = jwt.decode(assertion, public_key, algorithms=["RS256", "PS256"],  # type: ignore[arg-type]
                                audience=f"{self.base}/{self.tenant}/oauth2/v2.0/token")
        except jwt.InvalidSignatureError:
            return "AADSTS700027: Client assertion contains an invalid signature."
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: Client assertion failed validation: {exc}."
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            return "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter."
        return ""

    # ------------------------------------------------------------------------------------------- InvokeCommand
    def invoke(self, token: str, body: dict[str, Any], skip: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        arrived = time.monotonic()
        answer = self._invoke(token, body, skip)
        with self.lock:
            self.log.arrivals.append(arrived)
            self.log.statuses.append(answer[0])
        return answer

    def _invoke(self, token: str, body: dict[str, Any], skip: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None or expiry < time.time() or self.audiences.get(token) != self.base:
            self.log.rejected_tokens += 1
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or "
                                   "is not yet valid."}}, {}
        if self.switches.throttle_next > 0:
            self.switches.throttle_next -= 1
            self.log.throttled += 1
            return 429, {"error": {"code": "TooManyRequests", "message": "Too many requests"}}, {
                "Retry-After": self.switches.retry_after}
        if self.switches.fail_next > 0:
            self.switches.fail_next -= 1
            self.log.failed += 1
            return 503, {"error": {"code": "ServiceUnavailable", "message": "Service Unavailable"}}, {}
        if self.switches.busy_next > 0:
            self.switches.busy_next -= 1
            return 400, _error("The request was refused: the tenant is already serving the maximum number of "
                               "concurrent requests.", "Microsoft.Exchange.Configuration.Tasks.ThrottlingException"), {}
        cmdlet_input = body.get("CmdletInput") or {}
        name = str(cmdlet_input.get("CmdletName", ""))
        self.log.invocations.append(name)
        self.log.calls.append((name, dict(cmdlet_input.get("Parameters") or {})))
        status, data = self._run(name, cmdlet_input.get("Parameters") or {})
        if status == 200 and self.switches.page_size:
            values, size = data["value"], self.switches.page_size
            data["value"] = values[skip:skip + size]
            if skip + size < len(values):
                data["@odata.nextLink"] = (f"{self.switches.next_link_base or self.base}/adminapi/beta/"
                                           f"{self.tenant}/InvokeCommand"
                                           f"?$skiptoken={skip + size}")
        if self.switches.expire_tokens_after_calls and len(self.log.invocations) >= \
                self.switches.expire_tokens_after_calls:
            self.switches.expire_tokens_after_calls = 0
            self.expire_tokens()
        return status, data, {}

    @property
    def graph_root(self) -> str:
        return f"{self.base}/graph"

    def graph(self, token: str, path: str, query: str, client_request_id: str) -> tuple[int, dict[str, Any],
                                                                                       dict[str, str]]:
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None or expiry < time.time() or self.audiences.get(token) != self.graph_root:
            self.log.rejected_tokens += 1
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation "
                                   "failure. Invalid audience."}}, {}
        return self.directory.handle(self.graph_root, path, query, self.graph_roles.get(token, set()),
                                     client_request_id)

    def _run(self, name: str, parameters: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with store.locked(self.state_path):
            organisation, loaded = store.take(self.state_path, "exchange-online")
            if self._commands is None or self._commands[0] is not organisation:
                self._commands = (organisation, {k.lower(): v for k, v in
                                                 ExchangeCmdlets(organisation).commands().items()})
            commands = self._commands[1]
            command = commands.get(name.lower())
            if command is None:
                return 400, _error(f"The term '{name}' is not recognized as a name of a cmdlet.",
                                   "System.Management.Automation.CommandNotFoundException")
            try:
                bound = {}
                for key, value in parameters.items():
                    if key.startswith("@odata"):
                        continue
                    parameter = command.resolve_parameter(key)
                    bound[parameter] = convert(command.name, parameter, command.all_parameters[parameter], value)
                missing = [p for p in command.mandatory if p not in bound]
                if missing:
                    raise BindingError(f"{name}: Cannot process command because of one or more missing mandatory "
                                       f"parameters: {' '.join(missing)}.")
                bound.pop("Confirm", None)
                output = command.run(bound, [])
            except BindingError as exc:
                return 400, _error(str(exc), "System.Management.Automation.ParameterBindingException")
            except CmdletError as exc:
                exception = exc.error_id or "TaskException"
                return 400, _error(exc.message, f"Microsoft.Exchange.Management.Tasks.{exception}")
            # A cmdlet that cannot change anything has no -WhatIf (PowerShell's rule: a command that changes state
            # supports ShouldProcess, about_Functions_CmdletBindingAttribute; Exchange's Get-* pages list no
            # -WhatIf): its organisation is put back as read, not serialised to be compared with the file. A change
            # is saved (nothing is written when it changed nothing); a refused call changed nothing and is not
            # remembered (taken again from the file).
            if command.should_process or loaded is None:
                # not fsynced: a tenant's organisation stands for Microsoft's storage, not a file on the client's
                # machine (the fleet benchmark measures the client; the servers' disk flushes are not its cost)
                loaded = store.save(self.state_path, organisation, unless=loaded, durable=False)
            store.keep(self.state_path, organisation, loaded)
        return 200, {"@odata.context": f"{self.base}/adminapi/beta/{self.tenant}/$metadata#Collection",
                     "value": [to_json_value(item, 4) for item in output]}


class LoopbackExchangeOnline:
    """The HTTPS server. Constructed with one tenant (``server.switches``, ``server.log``, … are that tenant's);
    :meth:`add_tenant` adds more."""

    def __init__(self, state_path: Path, tls: ssl.SSLContext, tenant: str, apps: list[App],
                 directory: Directory | None = None, *, delay_ms: float = 0.0) -> None:
        self.delay_s = delay_ms / 1000
        self.released = threading.Event()  # set on exit: requests held by a silent fault end then
        self.connections = 0  # TCP connections accepted (each one TLS handshake)
        self.connections_lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 1024  # many clients connect at once in the fleet benchmark
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.tenants: dict[str, Tenant] = {}
        self.first = self.add_tenant(state_path, tenant, apps, directory)

    def add_tenant(self, state_path: Path, tenant: str, apps: list[App], directory: Directory | None = None) -> Tenant:
        self.tenants[tenant.lower()] = found = Tenant(self, state_path, tenant, apps, directory)
        return found

    def tenant_of(self, name: str) -> Tenant | None:
        return self.tenants.get(name.lower())

    # the first tenant's, for tests of one tenant
    state_path = property(lambda self: self.first.state_path)
    tenant = property(lambda self: self.first.tenant)
    apps = property(lambda self: self.first.apps)
    directory = property(lambda self: self.first.directory)
    switches = property(lambda self: self.first.switches)
    log = property(lambda self: self.first.log)
    tokens = property(lambda self: self.first.tokens)
    graph_root = property(lambda self: self.first.graph_root)

    def expire_tokens(self) -> None:
        self.first.expire_tokens()

    @property
    def requests(self) -> int:
        return sum(t.log.requests for t in self.tenants.values())

    @property
    def rounds(self) -> int:
        return sum(t.log.rounds for t in self.tenants.values())

    def __enter__(self) -> LoopbackExchangeOnline:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@functools.lru_cache(maxsize=64)
def _registered(certificate_pem: bytes) -> tuple[Any, dict[str, str]]:
    """An app's registered certificate: its public key and its thumbprints as a client assertion's header names
    them (x5t: SHA-1, x5t#S256: SHA-256, base64url without padding; RFC 7515 sections 4.1.7 and 4.1.8). Parsed once
    per certificate, not for every token request (the fleet benchmark's tenants all register the provider's app)."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    return certificate.public_key(), {
        "x5t": base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA1())).decode().rstrip("="),
        "x5t#S256": base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).decode().rstrip("="),
    }


def _error(text: str, exception_type: str) -> dict[str, Any]:
    return {"error": {"code": "BadRequest", "message": "Error executing cmdlet", "details": [
        {"code": "Client", "target": "", "message": f"{uuid.uuid4()}|{exception_type}|{text}"}],
        "innererror": {"message": text, "type": exception_type}}}


class _Handler(LeanRequestHandler):
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner.connections_lock:
            self.owner.connections += 1

    @property
    def owner(self) -> LoopbackExchangeOnline:
        return self.server.owner  # type: ignore[attr-defined]

    def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None,
              cut: bool = False) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # the connection drops in the middle of the reply
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _hang(self) -> None:
        """Never answer: hold the request until the server closes."""
        self.owner.released.wait()
        self.close_connection = True

    def _tenant(self, path: str) -> tuple[Tenant | None, str]:
        """The tenant the URL names ({tenant}/… for identity, /adminapi/beta/{tenant}/… for Exchange) and the rest."""
        parts = path.split("/")
        if path.startswith("/adminapi/beta/") and len(parts) > 4:
            return self.owner.tenant_of(parts[3]), "/adminapi/beta/{tenant}/" + "/".join(parts[4:])
        if len(parts) > 2:
            return self.owner.tenant_of(parts[1]), "/{tenant}/" + "/".join(parts[2:])
        return None, path

    def _graph_tenant(self) -> Tenant:
        """Graph URLs name no tenant: the token says which (an unknown token: the first tenant rejects it)."""
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        return next((t for t in self.owner.tenants.values() if token in t.tokens), self.owner.first)

    def _answer(self, tenant: Tenant | None, reply: Any) -> None:
        """Count the request for its tenant, wait the simulated network delay, answer."""
        if tenant is None:
            return reply()
        tenant.arrived()
        try:
            if self.owner.delay_s:
                time.sleep(self.owner.delay_s)
            reply()
        finally:
            tenant.answered()

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/graph/v1.0/"):
            tenant = self._graph_tenant()
            if tenant.switches.silent:
                return self._hang()
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            return self._answer(tenant, lambda: self._json(*tenant.graph(
                token, path.removeprefix("/graph"), parts.query, self.headers.get("client-request-id", ""))))
        tenant, route = self._tenant(path)
        if tenant is not None and tenant.switches.silent:
            return self._hang()
        if tenant is not None and tenant.switches.discovery_moved and route == \
                "/{tenant}/v2.0/.well-known/openid-configuration" and "moved=1" not in parts.query:
            self._json(301, {}, {"Location": f"{path}?moved=1"})
        elif tenant is not None and route == "/{tenant}/v2.0/.well-known/openid-configuration":
            base = f"{tenant.base}/{tenant.tenant}"
            self._answer(tenant, lambda: self._json(200, {
                "token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"}))
        elif route == "/{tenant}/v2.0/.well-known/openid-configuration":
            # Entra's answer for a tenant it does not know (Microsoft Learn, AADSTS error codes: AADSTS90002)
            self._json(400, {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant "
                             f"'{path.split('/')[1]}' not found."})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        tenant, route = self._tenant(parts.path)
        if tenant is None:
            return self._json(404, {"error": {"code": "NotFound", "message": f"no route {parts.path}"}})
        invoke = route == "/adminapi/beta/{tenant}/InvokeCommand"
        if tenant.switches.silent or (invoke and tenant.switches.hang_invoke):
            return self._hang()
        if invoke and tenant.switches.answer_after:
            self.owner.released.wait(tenant.switches.answer_after)
        if route == "/{tenant}/oauth2/v2.0/token":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}

            def issue() -> None:
                status, data = tenant.issue_token(form)
                if status != 200 and tenant.switches.bare_token_errors:
                    data = {"error": data["error"]}
                self._json(status, data)

            self._answer(tenant, issue)
        elif invoke:
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            skip = int(parse_qs(parts.query).get("$skiptoken", ["0"])[0])
            tenant.log.headers.append({k.lower(): v for k, v in self.headers.items()})  # field names ignore case
            if tenant.switches.redirect_to:
                return self._json(307, {}, {"Location": tenant.switches.redirect_to})
            if tenant.switches.bare_redirect:
                return self._json(302, {})
            if tenant.switches.hold is not None:
                tenant.switches.hold.wait(60)
            if tenant.switches.close_next > 0:  # a front end dropping the request (Python's RemoteDisconnected)
                tenant.switches.close_next -= 1
                self.close_connection = True
                return

            def reply() -> None:
                status, data, headers = tenant.invoke(token, json.loads(raw or b"{}"), skip)
                with tenant.lock:
                    cut, tenant.switches.drop_next = tenant.switches.drop_next > 0, max(0, tenant.switches.drop_next - 1)
                self._json(status, data, headers, cut=cut)

            self._answer(tenant, reply)
        else:
            self._json(404, {"error": {"code": "NotFound", "message": f"no route {parts.path}"}})
