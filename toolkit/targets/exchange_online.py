"""Exchange Online: app-only tokens from msal, cmdlets through the admin REST endpoint (InvokeCommand).

That endpoint runs one cmdlet per call, so exkit runs the rendered script itself and sends each cmdlet it calls
(toolkit/targets/exchange_online_script.py: whole collections read once, changes one call each). Throttling
(429) and transient failures are retried with backoff honouring Retry-After, capped, and reported. A token is kept per tenant and refreshed before it expires
(msal's cache), and once more if the endpoint says it expired.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import msal
import requests
import requests.adapters
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
)

from toolkit.render.engine import Connection, RenderedScript
from toolkit.secrets import resolve
from toolkit.targets import http_rules, proxy_environment
from toolkit.targets.base import RESULT_PREFIX, RunResult, Target, TargetError, parse_output
from toolkit.targets.exchange_online_script import CallFailed, TenantScriptRunner
from toolkit.targets.specs import ExchangeOnlineTargetSpec
from toolkit.targets.waits import RUN, Wait

proxy_environment.install()  # pywinrm's and requests' proxy lookups run in many threads (see the module)


@dataclass(frozen=True)
class Cloud:
    login: str
    exchange: str
    environment: str  # Connect-ExchangeOnline -ExchangeEnvironmentName
    graph: str = ""  # Microsoft Graph root ("" with cloud: custom and no graph_endpoint: Entra is not read)


# Graph roots: Microsoft Learn, "Microsoft Graph national cloud deployments".
CLOUDS = {
    "global": Cloud("https://login.microsoftonline.com", "https://outlook.office365.com", "O365Default",
                    "https://graph.microsoft.com"),
    "gcc-high": Cloud("https://login.microsoftonline.us", "https://outlook.office365.us", "O365USGovGCCHigh",
                      "https://graph.microsoft.us"),
    "dod": Cloud("https://login.microsoftonline.us", "https://outlook-dod.office365.us", "O365USGovDoD",
                 "https://dod-graph.microsoft.us"),
    "china": Cloud("https://login.partner.microsoftonline.cn", "https://partner.outlook.cn", "O365China",
                   "https://microsoftgraph.chinacloudapi.cn"),
}
MAILBOX_TYPES = ("UserMailbox", "SharedMailbox", "RoomMailbox", "EquipmentMailbox")
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# reads_in_flight (default 4): at most this many InvokeCommand reads of one tenant at once (the collection reads a
# script starts with). Exchange Online throttles per tenant and app; Microsoft documents no concurrency figure for the
# REST cmdlets: a small bound keeps a tenant's plan near one round trip without provoking 429s ("maximum number of
# concurrent requests" answers are retried as throttling).
_T = TypeVar("_T")
LOGIN_RETRY_PAUSE_S = 1.0


class CmdletFailed(Exception):
    def __init__(self, cmdlet: str, message: str, exception_type: str = "") -> None:
        super().__init__(f"{cmdlet}: {message}")
        self.cmdlet = cmdlet
        self.message = message
        self.exception_type = exception_type

    @property
    def not_found(self) -> bool:
        return "NotFound" in self.exception_type


class _Transient(Exception):
    """A failure worth retrying: HTTP 408/429/5xx, or no answer (status 0: ``reason`` says why)."""

    def __init__(self, status: int, retry_after: float | None, reason: str = "") -> None:
        super().__init__(f"HTTP {status}" if status else reason)
        self.status = status
        self.retry_after = retry_after
        self.reason = reason


class _Session(requests.Session):
    """A tenant's HTTP settings and connections: the environment's proxy and CA settings (read once per origin), the
    configured CA (requests lets REQUESTS_CA_BUNDLE override Session.verify; an explicitly configured CA must win),
    the process's shared connection pool. InvokeCommand and msal's requests go through :meth:`send_direct`; the Graph
    reader uses requests' own path."""

    def __init__(self) -> None:
        super().__init__()
        # the environment's settings per origin, read once per session (a tenant's run): requests reads the proxy
        # variables and CA bundle again for every request (~0.1 ms each)
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._routes: dict[str, tuple[Any, bool]] = {}  # origin → (connection pool, whether the URL goes whole)

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        key = (http_rules.origin(url), stream, verify, cert) if not proxies else None
        known = self._environment.get(key) if key is not None else None
        if known is not None:
            return {name: dict(value) if isinstance(value, dict) else value for name, value in known.items()}
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify in (None, True):
            settings["verify"] = self.verify
        if key is not None:
            self._environment[key] = {name: dict(value) if isinstance(value, dict) else value
                                      for name, value in settings.items()}
        return settings

    def send_direct(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
                    timeout: tuple[float, float]) -> _Answer:
        """Send one request with the session's default headers, the environment's proxy and CA settings and the
        connection pool its adapter has for ``url``, through urllib3 directly. requests' own per-request work
        (merging cookies, hooks and settings, preparing and checking every header, building a Response: ~0.9 ms
        of CPU a request) was a fifth of a tenant's client CPU, for requests that use none of it. Errors are raised
        as requests raises them (requests.adapters.HTTPAdapter.send maps urllib3's errors the same way); redirects
        are not followed (a bearer token never follows one; the caller sees the 3xx)."""
        pool, full_url = self._route(url)
        sent = urllib3.HTTPHeaderDict(self.headers)  # requests' defaults; a caller's name replaces one in any case
        for name, value in headers.items():
            sent[name] = value
        if full_url:
            target = url  # through a plain HTTP proxy: the request line names the whole URL
        else:
            parts = urlsplit(url)
            target = (parts.path or "/") + ("?" + parts.query if parts.query else "")  # as requests' path_url
        try:
            response = pool.urlopen(method, target, body=body,
                                    headers=sent, redirect=False, assert_same_host=False, preload_content=True,
                                    decode_content=True, retries=False,
                                    timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(exc) from None
        except urllib3.exceptions.ProxyError as exc:
            raise requests.exceptions.ProxyError(exc) from None
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of ConnectTimeoutError, but refused
            raise requests.exceptions.ConnectionError(exc) from None
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise requests.exceptions.ConnectTimeout(exc) from None
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(exc) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            raise requests.exceptions.ConnectionError(exc) from None
        # a field sent more than once reads as its values joined with ", " (RFC 9110 5.3), as requests gives it
        return _Answer(response.status, response.data.decode("utf-8", "replace"),
                       requests.structures.CaseInsensitiveDict(response.headers))

    def _route(self, url: str) -> tuple[Any, bool]:
        """The connection pool requests' adapter gives ``url`` with the environment's proxy and CA settings, and
        whether the request line names the whole URL (a plain HTTP proxy); looked up once per origin for the
        session. The pool is keyed by its TLS settings (requests ≥ 2.32.2), and its CA is set as requests sets it:
        certifi's bundle by default, the configured file or folder, OSError for a path that names nothing."""
        origin = http_rules.origin(url)
        route = self._routes.get(origin)
        if route is None:
            settings = self.merge_environment_settings(url, {}, False, None, None)
            request = requests.PreparedRequest()
            request.prepare_method("GET")
            request.url = url
            adapter = self.get_adapter(url)
            pool = adapter.get_connection_with_tls_context(request, settings["verify"], settings["proxies"],
                                                           settings["cert"])
            adapter.cert_verify(pool, url, settings["verify"], settings["cert"])
            full_url = adapter.request_url(request, settings["proxies"]) == url and not url.startswith("https:")
            route = self._routes[origin] = (pool, full_url)
        return route


class _Answer(NamedTuple):
    """What a caller of :meth:`_Session.send_direct` reads of a response (the names requests' Response has, and
    msal's HttpClient interface asks for)."""

    status_code: int
    text: str
    headers: Mapping[str, str]


_REDIRECTS = 10  # redirects a discovery GET follows


def _with_query(url: str, params: dict[str, Any] | None) -> str:
    """``url`` with msal's ``params`` added to its query, as requests adds them (a list value repeats its key)."""
    return url + ("&" if "?" in url else "?") + urlencode(params, doseq=True) if params else url


class _SignInHttp:
    """msal's http_client, in the interface msal documents for one (msal.oauth2cli.http.HttpClient: ``get`` and
    ``post`` answering status_code, text and headers): its discovery and token requests go through the tenant's
    session like the InvokeCommand calls, each after ``before()`` (the rate limits: they are round trips too) and
    bounded by ``timeout()`` (what is left of token_timeout) unless msal passes its own."""

    def __init__(self, session: _Session, before: Callable[[], None],
                 timeout: Callable[[], tuple[float, float]]) -> None:
        self.session, self.before, self.timeout = session, before, timeout

    def post(self, url: str, params: dict[str, Any] | None = None, data: Any = None,
             headers: dict[str, str] | None = None, **kwargs: Any) -> _Answer:
        headers = dict(headers or {})
        if isinstance(data, dict):  # a form (msal's token requests), as requests sends a dict
            body: bytes | None = urlencode(data, doseq=True).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            body = data.encode() if isinstance(data, str) else data
        return self._send("POST", _with_query(url, params), body, headers, kwargs.get("timeout"))

    def get(self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
            **kwargs: Any) -> _Answer:
        """A GET (msal's discovery: public metadata, no secret) follows redirects as requests did, at most
        ``_REDIRECTS``; a POST (the token request carries the credential) never does."""
        url = _with_query(url, params)
        answer = self._send("GET", url, None, dict(headers or {}), kwargs.get("timeout"))
        for _ in range(_REDIRECTS):
            location = answer.headers.get("Location") if answer.status_code in (301, 302, 303, 307, 308) else None
            if not location:
                break
            url = urljoin(url, location)
            answer = self._send("GET", url, None, dict(headers or {}), kwargs.get("timeout"))
        return answer

    def close(self) -> None:
        """The connections are the process's (shared by every tenant): nothing of this tenant's to close."""

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: Any) -> _Answer:
        self.before()
        if timeout is None:
            timeout = self.timeout()
        elif not isinstance(timeout, tuple):
            timeout = (timeout, timeout)
        return self.session.send_direct(method, url, body, headers, timeout)


_ADAPTERS: dict[int, requests.adapters.HTTPAdapter] = {}  # process id → the connection pool of that process
_ADAPTERS_LOCK = threading.Lock()


def _shared_connections() -> requests.adapters.HTTPAdapter:
    """One connection pool per process for every tenant's calls. A provider's tenants all talk to the same Microsoft
    endpoints (login, Exchange, Graph): a worker keeps a few TLS connections to each open instead of opening one per
    tenant (a TLS handshake costs both ends CPU). Only connections are shared: each tenant keeps its own session
    (cookies, CA setting, timeouts), every request carries its own tenant's bearer token, and a connection's
    certificate checks are those of the requests using it (urllib3 keys its pools by host and TLS settings). Per
    process: a forked worker must never write to its parent's sockets."""
    pid = os.getpid()
    with _ADAPTERS_LOCK:
        adapter = _ADAPTERS.get(pid)
        if adapter is None:
            _ADAPTERS.clear()
            adapter = _ADAPTERS[pid] = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=64)
        return adapter


class ExchangeOnlineTarget(Target):
    platform = "exchange-online"

    def __init__(self, spec: ExchangeOnlineTargetSpec, name: str, base_dir: Path | None = None) -> None:
        self.spec = spec
        self.name = name
        self.base_dir = base_dir or Path.cwd()
        self.cloud = (CLOUDS[spec.cloud] if spec.cloud != "custom" else
                      Cloud(str(spec.login_endpoint).rstrip("/"), str(spec.exchange_endpoint).rstrip("/"),
                            "O365Default", str(spec.graph_endpoint or "").rstrip("/")))
        self._application: msal.ConfidentialClientApplication | None = None
        self.http = _Session()
        connections = _shared_connections()
        self.http.mount("https://", connections)
        self.http.mount("http://", connections)
        # msal's: every request bounded by the sign-in's Wait, after the rate limits
        self.login_http = _SignInHttp(self.http, self.throttle, self._login_timeout)
        self._login_wait: Wait | None = None
        self._local = threading.local()  # per thread: the call retrying() is working on (reads run concurrently)
        self._signing_lock = threading.Lock()  # one sign-in at a time: concurrent reads share its token
        # resource → the token last handed out for it, and until when (time.monotonic) it is handed out again
        # without asking msal
        self._issued: dict[str, tuple[str, float]] = {}
        if spec.ca_trust_path:
            self.http.verify = str(self._path(spec.ca_trust_path))
        self._thumbprint = ""
        self.retries: list[str] = []
        self.calls = 0

    def describe(self) -> str:
        return f"Exchange Online tenant {self.spec.tenant} ({self.spec.cloud})"

    # A REST call after the stop is never sent; only the call in flight may be unknown.
    after_stop = "not started"

    def where(self) -> dict[str, str]:
        return {"endpoint": f"{self.cloud.exchange}/adminapi/beta/{self.spec.tenant}/InvokeCommand",
                "login": f"{self.cloud.login}/{self.spec.tenant}", "transport": "rest"}

    def prompts(self) -> bool:
        return "prompt" in (self.spec.client_secret, self.spec.certificate_password)

    def connection(self) -> Connection:
        """For rendered scripts: certificate app-only Connect-ExchangeOnline (a secret cannot be used there)."""
        if self.spec.client_secret:
            return Connection()
        self._credential()
        return Connection(app_id=self.spec.client_id, certificate_thumbprint=self._thumbprint.upper(),
                          organization=self.spec.organization or self.spec.tenant, environment=self.cloud.environment,
                          certificate_file=self.spec.certificate_pfx or "")

    # ------------------------------------------------------------------------------------------- auth
    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _credential(self) -> dict[str, Any] | str:
        spec = self.spec
        if spec.client_secret:
            return resolve(spec.client_secret, f"client secret of target {self.name!r}")
        try:
            if spec.certificate_pfx:
                password = (resolve(spec.certificate_password, f"certificate password of target {self.name!r}")
                            if spec.certificate_password else None)
                parsed = _parsed_certificate(self._path(spec.certificate_pfx).read_bytes(), password, pfx=True)
            else:
                parsed = _parsed_certificate(self._path(str(spec.certificate)).read_bytes(), None, pfx=False)
        except FileNotFoundError as exc:
            raise TargetError(f"target {self.name!r}: certificate file {exc.filename} not found") from None
        except ValueError:
            raise TargetError(f"target {self.name!r}: the certificate file cannot be read (a PEM file needs the "
                              "certificate and an unencrypted private key; a PFX needs its password)") from None
        if isinstance(parsed, str):
            raise TargetError(f"target {self.name!r}: {parsed}")
        self._thumbprint = parsed["thumbprint"]
        return dict(parsed)

    def _login_timeout(self) -> tuple[float, float]:
        """msal's requests (discovery, token) share the sign-in's bound: token_timeout in total."""
        wait = self._login_wait or Wait(self._login_what(), self.spec.token_timeout, "token_timeout")
        left = wait.timeout()
        return min(self.spec.connect_timeout, left), left

    def _login_what(self) -> str:
        return f"the token endpoint {self.cloud.login}/{self.spec.tenant}"

    def _signing_in(self, call: Any) -> Any:
        """Run an msal call (discovery and token requests) bounded by token_timeout in total, each request's
        connection and TLS handshake by connect_timeout: msal itself never gives up. A request that got no
        answer is tried again while the bound leaves room."""
        self._login_wait = wait = Wait(self._login_what(), self.spec.token_timeout, "token_timeout")
        try:
            while True:
                try:
                    return call()
                except requests.exceptions.Timeout:
                    if not wait.may_retry(LOGIN_RETRY_PAUSE_S):
                        raise wait.expired() from None
                RUN.stop.wait(LOGIN_RETRY_PAUSE_S)
        except (ValueError, requests.exceptions.RequestException) as exc:
            raise TargetError(f"cannot reach the sign-in endpoint of target {self.name!r} ({self._login_what()}): "
                              f"{_short(exc)}") from None
        except (msal.exceptions.MsalError, RuntimeError) as exc:  # msal's own: an answer it cannot use (discovery
            # answered with a status it does not expect, a 5xx)
            said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TargetError(f"cannot sign in at the sign-in endpoint of target {self.name!r} "
                              f"({self._login_what()}): {said}") from None
        except OSError as exc:  # e.g. ca_trust_path names no file
            raise TargetError(f"target {self.name!r}: {exc}") from None
        finally:
            self._login_wait = None

    def _app(self) -> msal.ConfidentialClientApplication:
        if self._application is None:
            credential = self._credential()
            self._application = self._signing_in(lambda: msal.ConfidentialClientApplication(
                self.spec.client_id, client_credential=credential,
                authority=f"{self.cloud.login}/{self.spec.tenant}", http_client=self.login_http,
                instance_discovery=False if self.spec.cloud == "custom" else None,
                token_cache=msal.TokenCache()))
        return self._application

    def _token(self, resource: str = "", rejected: str | None = None) -> str:
        """An app-only token for ``resource`` (default: Exchange; the Graph reader asks for Graph's): from msal's
        cache (one sign-in per tenant for the run) or signed in for, one thread at a time. ``rejected``: the token a
        call was refused with (401); it is dropped and a new one signed in for, unless another call already did
        (concurrent reads sent with one expired token are all refused: one sign-in replaces it for all of them)."""
        with self._signing_lock:
            return self._token_now(resource, rejected)

    def _token_now(self, resource: str, rejected: str | None) -> str:
        issued = self._issued.get(resource)
        if issued is not None and rejected is None and time.monotonic() < issued[1]:
            return issued[0]  # msal would answer from its cache: asking it costs ~0.3 ms a call
        app = self._app()
        if rejected is not None and issued is not None and rejected == issued[0]:
            app.token_cache = msal.TokenCache()  # drop the rejected token; msal refreshes before expiry otherwise
        result = self._signing_in(lambda: app.acquire_token_for_client(
            scopes=[f"{resource or self.cloud.exchange}/.default"]))
        if "access_token" not in result:
            description = str(result.get("error_description") or result.get("error") or "no token").splitlines()[0]
            raise TargetError(f"sign-in of app {self.spec.client_id} to tenant {self.spec.tenant} failed: "
                              f"{description}")
        token = str(result["access_token"])
        self._issued[resource] = (token, time.monotonic() + _reuse_for(result))
        return token

    # ------------------------------------------------------------------------------------------- calls
    def invoke(self, cmdlet: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one cmdlet; follow paging; retry throttling and transient failures; map errors."""
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": parameters or {}}}
        url = f"{self.cloud.exchange}/adminapi/beta/{self.spec.tenant}/InvokeCommand"
        values: list[dict[str, Any]] = []
        while url:
            page = self._post(url, cmdlet, body)
            values += page.get("value") or []
            url = page.get("@odata.nextLink") or ""
            if url and not http_rules.same_origin(url, self.cloud.exchange):
                # the bearer token goes to the configured endpoint only, never where a response points
                raise TargetError(f"{cmdlet} on tenant {self.spec.tenant}: the next page link points to another "
                                  f"host ({http_rules.origin(url)}); refused")
        return values

    def _post(self, url: str, cmdlet: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.retrying(cmdlet, self._post_once, url, cmdlet, body,
                             what=f"InvokeCommand {cmdlet} at {self.cloud.exchange}")

    def retrying(self, label: str, call: Callable[..., _T], *args: Any, what: str = "") -> _T:
        """Run ``call`` retrying what raises :class:`_Transient` (throttling, 5xx, lost or cut connections) with a
        capped backoff that honours Retry-After; each retry is recorded under ``label``. The attempts and pauses
        share call_timeout and the run's --timeout: no retry starts whose pause ends past them, and each attempt's
        read timeout is what is left (``request_timeout()``). The Graph reader uses it too."""
        wait = Wait(what or label, self.spec.call_timeout, "call_timeout")

        def pause(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            backoff = min(self.spec.max_wait, 0.5 * 2 ** (state.attempt_number - 1))
            if isinstance(error, _Transient) and error.retry_after is not None:
                backoff = min(self.spec.max_wait, error.retry_after)
            return backoff

        def note(state: RetryCallState) -> None:  # before a retry's pause: only retries that happen are noted
            error = state.outcome.exception() if state.outcome else None
            self.retries.append(f"{label}: {error}, retried after {state.upcoming_sleep:.2f} s")

        outer, self._local.call_wait = getattr(self._local, "call_wait", None), wait
        try:
            try:
                return call(*args)  # most calls succeed at once: tenacity's objects are made once one has failed
            except _Transient as exc:  # (they refer to each other: each set would wait for the cycle collector)
                failed: _Transient | None = exc

            def attempt() -> _T:
                nonlocal failed
                if failed is not None:  # the attempt made above, given to tenacity as its first
                    first, failed = failed, None
                    raise first
                return call(*args)

            retrying = Retrying(retry=retry_if_exception_type(_Transient), wait=pause, before_sleep=note,
                                reraise=True, stop=stop_any(stop_after_attempt(self.spec.max_retries + 1),
                                                            lambda state: not wait.may_retry(pause(state))),
                                sleep=RUN.stop.wait)  # a Ctrl-C ends a backoff pause at once
            return retrying(attempt)
        except _Transient as exc:
            if RUN.stopping:
                RUN.check(f"a retry of {label}")  # stopped between attempts: say so, not "still failed"
            if exc.reason == "timeout":
                raise wait.expired() from None
            what = f"HTTP {exc.status}" if exc.status else exc.reason
            raise TargetError(f"{label} on tenant {self.spec.tenant} still failed ({what}) after "
                              f"{wait.attempts} attempt(s) over {wait.elapsed:.1f} s (max_retries "
                              f"{self.spec.max_retries}, call_timeout {self.spec.call_timeout:g} s)") from None
        finally:
            self._local.call_wait = outer

    def request_timeout(self) -> tuple[float, float]:
        """(connect, read) timeout for the next attempt of the call being retried: what is left of its bound.
        Raises TimedOut when nothing is left, Interrupted once the run is stopping (no further call is sent)."""
        wait = getattr(self._local, "call_wait", None) or Wait("a call", self.spec.call_timeout, "call_timeout")
        left = wait.timeout()
        return min(self.spec.connect_timeout, left), left

    def _post_once(self, url: str, cmdlet: str, body: dict[str, Any], rejected: str | None = None) -> dict[str, Any]:
        self.throttle()
        token = self._token(rejected=rejected)
        headers = {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "X-CmdletName": cmdlet, "X-ResponseFormat": "json", "Prefer": "odata.maxpagesize=1000",
            "X-AnchorMailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{self.spec.tenant}",
            "X-ClientApplication": "exkit", "client-request-id": str(uuid.uuid4()),
        }
        timeout = self.request_timeout()  # raises once the call's bound or the run's deadline has passed, or on a stop
        try:
            response = self.http.send_direct("POST", url, json.dumps(body, allow_nan=False).encode(), headers, timeout)
        except requests.exceptions.RequestException as exc:
            raise no_answer(exc, self.cloud.exchange) from None
        self.calls += 1
        if response.status_code == 401 and rejected is None:
            return self._post_once(url, cmdlet, body, rejected=token)
        if 300 <= response.status_code < 400:  # InvokeCommand answers, it does not redirect: never resend the token
            location = response.headers.get("Location") or "nowhere"
            raise TargetError(f"{cmdlet}: {self.cloud.exchange} answered HTTP {response.status_code}, a redirect to "
                              f"{location}; exkit does not follow it (the request carries the tenant's token): check "
                              "exchange_endpoint")
        text = response.text
        if response.status_code in RETRY_STATUS or "maximum number of concurrent requests" in text:
            wait = http_rules.retry_after_seconds(response.headers.get("Retry-After"))  # seconds or an HTTP-date
            raise _Transient(response.status_code, wait)
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            raise TargetError(f"{cmdlet}: the endpoint answered HTTP {response.status_code} with no JSON") from None
        if response.status_code >= 400 or "error" in data:
            raise _cmdlet_error(cmdlet, response.status_code, data)
        return data

    # ------------------------------------------------------------------------------------------- facts and apply
    def _addresses(self) -> dict[str, str]:
        """Every recipient's name, display name, alias and address (lower case) → its primary address: how the
        snapshot script resolves names with Get-Recipient -Identity, from one call."""
        address: dict[str, str] = {}
        for recipient in self.invoke("Get-Recipient", {"ResultSize": "Unlimited"}):
            for key in ("Name", "DisplayName", "Alias", "PrimarySmtpAddress"):
                address.setdefault(_lower(recipient.get(key)), str(recipient.get("PrimarySmtpAddress") or ""))
        return address

    def _rbac_facts(self, playbook: Any) -> list[dict[str, Any]]:
        """The snapshot template's group, assignment and effective-user facts: one call per collection, one per
        role group for its members and one per declared role for its effective users."""
        from toolkit.render.engine import snapshot_roles

        address = self._addresses()
        facts: list[dict[str, Any]] = []
        for group in self.invoke("Get-RoleGroup"):
            members = self.invoke("Get-RoleGroupMember", {"Identity": group.get("Name"), "ResultSize": "Unlimited"})
            facts.append({"type": "group", "name": group.get("Name"), "description": group.get("Description") or "",
                          "members": [str(m.get("PrimarySmtpAddress") or "") for m in members]})
        for row in self.invoke("Get-ManagementRoleAssignment", {"Delegating": False}):
            user = address.get(_lower(row.get("RoleAssigneeName")), "") if row.get("RoleAssigneeType") == "User" else ""
            facts.append(_assignment_row(row, user))
        for role in snapshot_roles(playbook):
            for row in self.invoke("Get-ManagementRoleAssignment", {"Role": role, "GetEffectiveUsers": True,
                                                                    "Delegating": False}):
                facts.append({"type": "effective", "assignment": row.get("Name"), "role": row.get("Role"),
                              "user_name": row.get("EffectiveUserName"),
                              "user": address.get(_lower(row.get("EffectiveUserName")), "")})
        return facts

    def _permission_facts(self) -> list[dict[str, Any]]:
        """Every explicit permission on every mailbox (one call per mailbox), users resolved to addresses: the
        snapshot template's permission facts."""
        address = self._addresses()
        facts = []
        mailboxes = self.invoke("Get-Recipient", {"RecipientTypeDetails": list(MAILBOX_TYPES),
                                                  "ResultSize": "Unlimited"})
        for mailbox in mailboxes:
            mailbox_address = str(mailbox.get("PrimarySmtpAddress") or "")
            for row in self.invoke("Get-MailboxPermission", {"Identity": mailbox_address}):
                user = str(row.get("User") or "")
                if row.get("IsInherited") or row.get("Deny") or user.upper() == "NT AUTHORITY\\SELF":
                    continue
                facts.append({"type": "permission", "mailbox": mailbox_address, "user_name": user,
                              "user": address.get(user.lower(), ""), "rights": _rights(row)})
        return facts

    def read_snapshot(self, script: RenderedScript, playbook: Any) -> list[dict[str, Any]]:
        """The snapshot facts from whole collections, previews per declared scope, and authorization tests."""
        try:
            facts: list[dict[str, Any]] = [
                {"type": "scope", "name": s.get("Name"), "filter": s.get("RecipientFilter") or "",
                 "recipient_root": s.get("RecipientRoot") or "", "exclusive": str(s.get("Exclusive", False))}
                for s in self.invoke("Get-ManagementScope")]
            # every recipient with the attributes filters use, in one collection read (the access evaluator's input)
            facts += [{"type": "recipient", **{k: v for k, v in r.items() if not k.startswith("@")}}
                      for r in self.invoke("Get-Recipient", {"ResultSize": "Unlimited"})]
            if playbook.role_groups or playbook.role_assignments:
                facts += self._rbac_facts(playbook)  # every group, every assignment, effective users
            else:
                # -RoleAssigneeType has no ServicePrincipal value: filter on the client, as Microsoft365DSC does.
                facts += [_assignment_row(a, "") for a in self.invoke("Get-ManagementRoleAssignment")
                          if a.get("RoleAssigneeType") == "ServicePrincipal"]
            principals = self.invoke("Get-ServicePrincipal")
            facts += [{"type": "principal", "app_id": p.get("AppId"), "object_id": p.get("ObjectId"),
                       "display_name": p.get("DisplayName")} for p in principals]
            facts += [{"type": "policy", "identity": p.get("Identity"), "app_id": p.get("AppId"),
                       "scope_name": p.get("ScopeName"), "access_right": p.get("AccessRight"),
                       "description": p.get("Description") or ""} for p in self.invoke("Get-ApplicationAccessPolicy")]
            if playbook.delegates:
                facts += self._permission_facts()
            previews: dict[str, list[dict[str, Any]]] = {}
            stored = {_lower(f["name"]): f for f in facts if f["type"] == "scope"}
            for scope in playbook.scopes:
                live = stored.get(scope.name.lower())
                if live is not None:
                    matched = self.invoke("Get-Recipient", {"RecipientPreviewFilter": live["filter"],
                                                            "ResultSize": "Unlimited"})
                    facts.append({"type": "live_preview", "scope": scope.name, "recipients": [
                        {"name": r.get("Name"), "type": r.get("RecipientTypeDetails"),
                         "address": r.get("PrimarySmtpAddress")} for r in matched]})
                matched = self.invoke("Get-Recipient", {"RecipientPreviewFilter": scope.filter_text(),
                                                        "ResultSize": "Unlimited"})
                previews[scope.name] = [{"name": r.get("Name"), "type": r.get("RecipientTypeDetails"),
                                         "address": r.get("PrimarySmtpAddress")} for r in matched]
                facts.append({"type": "preview", "scope": scope.name, "recipients": previews[scope.name]})
            users = None
            for assignment in playbook.application_role_assignments:
                app = playbook.application_named(assignment.application)
                principal = next((p for p in principals if _lower(p.get("AppId")) == (app.app_id if app else "")),
                                 None)
                if not assignment.scope or principal is None:
                    continue
                in_scope = [str(r["address"]).lower() for r in previews.get(assignment.scope, [])]
                if users is None:
                    users = self.invoke("Get-Recipient", {"RecipientTypeDetails": ["UserMailbox"],
                                                          "ResultSize": "Unlimited"})
                samples = [r["address"] for r in previews.get(assignment.scope, []) if r["type"] == "RoomMailbox"][:1]
                samples += [u.get("PrimarySmtpAddress") for u in users
                            if _lower(u.get("PrimarySmtpAddress")) not in in_scope][:1]
                for sample in samples:
                    for row in self.invoke("Test-ServicePrincipalAuthorization",
                                           {"Identity": principal.get("ObjectId"), "Resource": sample}):
                        facts.append({"type": "authorization", "app_id": app.app_id if app else "",
                                      "resource": sample, "role": row.get("RoleName"),
                                      "scope": row.get("AllowedResourceScope"), "in_scope": str(row.get("InScope"))})
        except CmdletFailed as exc:
            raise TargetError(f"reading the state of tenant {self.spec.tenant} failed: {exc}") from None
        return facts

    def run_script(self, script: str, *, read_only: bool = False) -> RunResult:
        """Run a rendered script in exkit's interpreter, each Exchange cmdlet sent to the tenant (see
        toolkit/targets/exchange_online_script.py); ``read_only`` sends no change."""
        try:
            self._token()  # signed in before reads go out concurrently (they share the token)
            reads = self.spec.reads_in_flight
        except TargetError:
            reads = 1  # the script's first call meets the sign-in failure and reports it
        runner = TenantScriptRunner(self._call, send_changes=not read_only, concurrent_reads=reads)

        def noted(line: str) -> None:  # each result as soon as it is known: a run cut short still records it
            if not read_only and line.startswith(RESULT_PREFIX):
                self.note(parse_output(line)[0][0])

        outcome = runner.run(script, noted)
        stdout = "\n".join(outcome.output) + ("\n" if outcome.output else "")
        results, facts = parse_output(stdout)
        notices = runner.notes + ([f"{len(self.retries)} call(s) were retried after throttling or transient errors: "
                                   + "; ".join(self.retries[:5]) + (" …" if len(self.retries) > 5 else "")]
                                  if self.retries else [])
        return RunResult(outcome.exit_code, stdout, "\n".join(outcome.errors), results, facts,
                         hashlib.sha256(script.encode()).hexdigest(), notices)

    def _call(self, cmdlet: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """One cmdlet for the script runner: Exchange's refusals as CallFailed (with the exception type); a tenant
        that cannot be reached at all fails the call as a connection error."""
        try:
            return self.invoke(cmdlet, parameters)
        except CmdletFailed as exc:
            raise CallFailed(exc.message, exc.exception_type) from None
        except TargetError as exc:
            raise CallFailed(str(exc), "TargetError", "ConnectionError") from None


_CERTIFICATES: dict[str, dict[str, Any] | str] = {}  # sha-256 of file and password → parsed, for the process
_CERTIFICATES_LOCK = threading.Lock()


def _parsed_certificate(data: bytes, password: str | None, *, pfx: bool) -> dict[str, Any] | str:
    """msal's certificate credential from a PEM or PFX file's bytes, or why it cannot be one. Loading an RSA key
    checks it (primality tests of its factors), which costs tens of milliseconds of CPU: a provider's many tenants
    share one certificate, so each file is parsed once per process (keyed by a digest of its content and password,
    never by the secret itself). The key goes to msal as the loaded key object, which msal hands to PyJWT as it is
    (PyJWT signs with a key object directly; given PEM text it would load and check the key again for every
    tenant's sign-in: half of a provider fleet's client CPU)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12

    digest = hashlib.sha256(data + b"\0" + (password or "").encode() + (b"pfx" if pfx else b"pem")).hexdigest()
    with _CERTIFICATES_LOCK:
        if digest in _CERTIFICATES:
            return _CERTIFICATES[digest]
        if pfx:
            key, certificate, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
            certificate = x509.load_pem_x509_certificate(data)
        parsed: dict[str, Any] | str
        if key is None or certificate is None:
            parsed = "the certificate file holds no certificate and key"
        elif not isinstance(key, rsa.RSAPrivateKey):
            parsed = (f"the certificate's key is {type(key).__name__.removeprefix('_')}; Entra app-only sign-in "
                      "needs an RSA key (the client assertion is signed RS256)")
        else:
            parsed = {"private_key": key,
                      "thumbprint": certificate.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - Entra's x5t
                      "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode()}
        _CERTIFICATES[digest] = parsed
        return parsed


def _reuse_for(result: dict[str, Any]) -> float:
    """How long a token msal handed out is handed out again without asking msal: until msal itself would sign in
    again, which it does five minutes before the token expires or once the token's refresh_in has passed
    (msal's TokenCache); a token with less left than that is never reused (msal is asked every time)."""
    try:
        left = float(result.get("expires_in") or 0) - 300
        refresh = float(result.get("refresh_in") or left)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, min(left, refresh))


def _lower(value: Any) -> str:
    return str(value or "").lower()


def _assignment_row(row: dict[str, Any], user: str) -> dict[str, Any]:
    """One assignment as the snapshot template prints it."""
    return {"type": "assignment", "name": row.get("Name"), "role": row.get("Role"),
            "assignee": row.get("RoleAssigneeName"), "assignee_id": row.get("RoleAssignee"),
            "assignee_type": row.get("RoleAssigneeType"), "user": user,
            "scope": row.get("CustomRecipientWriteScope") or "", "ou_scope": row.get("RecipientOrganizationalUnitScope")
            or "", "resource_scope": row.get("CustomResourceScope") or "",
            "exclusive_scope": row.get("ExclusiveRecipientWriteScope") or "", "enabled": str(row.get("Enabled", True))}


def _rights(row: dict[str, Any]) -> str:
    """AccessRights as the script's [string] cast prints them ("FullAccess ReadPermission")."""
    rights = row.get("AccessRights")
    return " ".join(map(str, rights)) if isinstance(rights, list) else str(rights or "")


def _cmdlet_error(cmdlet: str, status: int, data: dict[str, Any]) -> CmdletFailed:
    """Error bodies: {"error": {"message", "details": [{"message": "<id>|<exception type>|<text>"}]}}."""
    error = data.get("error") if isinstance(data.get("error"), dict) else {}
    for detail in error.get("details") or []:
        parts = str(detail.get("message", "")).split("|", 2)
        if len(parts) == 3:
            return CmdletFailed(cmdlet, parts[2].strip(), parts[1].rsplit(".", 1)[-1])
    message = str(error.get("message") or f"HTTP {status}")
    return CmdletFailed(cmdlet, message, str(error.get("code") or ""))


def no_answer(exc: requests.exceptions.RequestException, endpoint: str) -> Exception:
    """What a request that got no answer raises, for retrying() (InvokeCommand and the Graph reader): a TLS refusal
    (a certificate, the protocol) is final; a timeout and a refused, reset or dropped connection are transient. A
    connection closed without TLS's goodbye (OpenSSL's unexpected EOF: a kept-alive connection the far end dropped,
    a middlebox cutting it) is lost like any dropped connection, not a refusal."""
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "UNEXPECTED_EOF_WHILE_READING" in text or "EOF occurred in violation of protocol" in text:
            return _Transient(0, None, "no complete answer (connection closed during TLS)")
        return TargetError(f"TLS with {endpoint} failed: {_short(exc)}")
    if isinstance(exc, requests.exceptions.Timeout):
        return _Transient(0, None, "timeout")
    return _Transient(0, None, f"no complete answer ({_short(exc)})")  # refused, reset, dropped in a reply


def _short(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "Connection refused", "Name or service not known",
                   "Connection reset", "IncompleteRead", "Remote end closed connection without response"):
        if marker in text:
            return marker
    return type(exc).__name__
