"""Loopback Exchange Online for tests: one HTTPS server (trustme CA) playing both Entra ID and the admin REST endpoint.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``POST /{tenant}/oauth2/v2.0/token``: the
  client-credentials grant as msal performs it. A client assertion must be an RS256 JWT signed by the key of the
  app's registered certificate (matched by its x5t / x5t#S256 thumbprint), for this token endpoint, not expired;
  or a client secret. Tokens expire (switchable).
- ``POST /adminapi/beta/{tenant}/InvokeCommand``: one cmdlet per call on the Exchange Online sandbox organisation,
  with paging (@odata.nextLink), throttling (429 + Retry-After), 5xx, and the error body format of the real endpoint.
- ``GET /graph/v1.0/…``: Microsoft Graph over the tenant's Entra directory (tests/servers/entra.py). Tokens are per
  resource: scope ``{base}/.default`` for Exchange, ``{base}/graph/.default`` for Graph; one for the other is 401.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from servers.entra import Directory

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
    expire_tokens_after_calls: int = 0  # after this many successful calls, every issued token expires
    token_lifetime: int = 3600
    next_link_base: str = ""  # the base URL @odata.nextLink names (default: this server's)
    # Faults of the network or of a hung service (the client's bounded waits are tested against them):
    silent: bool = False  # read every request, never answer (identity and InvokeCommand alike)
    hang_invoke: bool = False  # the token endpoint answers; InvokeCommand reads the request and never answers
    answer_after: float = 0.0  # every InvokeCommand answer comes after this many seconds
    drop_next: int = 0  # cut this many InvokeCommand replies in the middle (headers and half the body, then close)


@dataclass
class Log:
    token_requests: int = 0
    invocations: list[str] = field(default_factory=list)  # cmdlet names, one per HTTP call that ran a cmdlet
    throttled: int = 0
    failed: int = 0
    rejected_tokens: int = 0
    # Every InvokeCommand request in order: when it arrived (time.monotonic()) and the HTTP status it was answered.
    arrivals: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


class LoopbackExchangeOnline:
    def __init__(self, state_path: Path, tls: ssl.SSLContext, tenant: str, apps: list[App],
                 directory: Directory | None = None) -> None:
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
        self.released = threading.Event()  # set on exit: requests held by a silent fault end then
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackExchangeOnline:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = {token: 0.0 for token in self.tokens}

    # ------------------------------------------------------------------------------------------- identity
    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.log.token_requests += 1
        app = self.apps.get(form.get("client_id", ""))
        if form.get("grant_type") != "client_credentials" or app is None:
            return 400, {"error": "unauthorized_client", "error_description": "AADSTS700016: Application with "
                         f"identifier '{form.get('client_id')}' was not found in the directory '{self.tenant}'."}
        resources = {f"{self.base}/.default": self.base, f"{self.graph_root}/.default": self.graph_root}
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
        certificate = x509.load_pem_x509_certificate(app.certificate_pem)
        header = jwt.get_unverified_header(assertion)
        thumbprints = {
            "x5t": base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA1())).decode().rstrip("="),
            "x5t#S256": base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA256())).decode().rstrip("="),
        }
        if not any(str(header.get(k, "")).rstrip("=") == v for k, v in thumbprints.items()):
            return ("AADSTS700027: The certificate with identifier used to sign the client assertion is not "
                    "registered on application.")
        try:
            claims = jwt.decode(assertion, certificate.public_key(), algorithms=["RS256", "PS256"],  # type: ignore[arg-type]
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
        cmdlet_input = body.get("CmdletInput") or {}
        name = str(cmdlet_input.get("CmdletName", ""))
        self.log.invocations.append(name)
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
            organisation = store.load(self.state_path, "exchange-online")
            commands = {k.lower(): v for k, v in ExchangeCmdlets(organisation).commands().items()}
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
            store.save(self.state_path, organisation)
        return 200, {"@odata.context": f"{self.base}/adminapi/beta/{self.tenant}/$metadata#Collection",
                     "value": [to_json_value(item, 4) for item in output]}


def _error(text: str, exception_type: str) -> dict[str, Any]:
    return {"error": {"code": "BadRequest", "message": "Error executing cmdlet", "details": [
        {"code": "Client", "target": "", "message": f"{uuid.uuid4()}|{exception_type}|{text}"}],
        "innererror": {"message": text, "type": exception_type}}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

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

    def do_GET(self) -> None:
        owner, parts = self.owner, urlsplit(self.path)
        path = parts.path
        if owner.switches.silent:
            return self._hang()
        if path.startswith("/graph/v1.0/"):
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._json(*owner.graph(token, path.removeprefix("/graph"), parts.query,
                                    self.headers.get("client-request-id", "")))
        elif path == f"/{owner.tenant}/v2.0/.well-known/openid-configuration":
            base = f"{owner.base}/{owner.tenant}"
            self._json(200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                             "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                             "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode"})
        else:
            self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        owner = self.owner
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        invoke = parts.path == f"/adminapi/beta/{owner.tenant}/InvokeCommand"
        if owner.switches.silent or (invoke and owner.switches.hang_invoke):
            return self._hang()
        if invoke and owner.switches.answer_after:
            owner.released.wait(owner.switches.answer_after)
        if parts.path == f"/{owner.tenant}/oauth2/v2.0/token":
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            self._json(*owner.issue_token(form))
        elif parts.path == f"/adminapi/beta/{owner.tenant}/InvokeCommand":
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            skip = int(parse_qs(parts.query).get("$skiptoken", ["0"])[0])
            status, data, headers = owner.invoke(token, json.loads(raw or b"{}"), skip)
            with owner.lock:
                cut, owner.switches.drop_next = owner.switches.drop_next > 0, max(0, owner.switches.drop_next - 1)
            self._json(status, data, headers, cut=cut)
        else:
            self._json(404, {"error": {"code": "NotFound", "message": f"no route {parts.path}"}})
