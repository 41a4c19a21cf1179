"""Exchange Server (and hosted Exchange) over WinRM, with pywinrm.

The rendered script runs exactly as rendered. It does not travel on the command line (real Windows limits a command
line to 8191 characters): the command line carries a short fixed bootstrap as ``-EncodedCommand``, which reads the
script from standard input (sent base64-encoded, in chunks, over WS-Management ``Send``) and runs it. A script
costs Command, Send…, Receive…, Signal in a shell (Create … Delete); inside ``session()`` (plan, then apply) the
scripts share one authenticated connection and one shell.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import requests
import winrm
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)

from toolkit.render.engine import Connection
from toolkit.secrets import resolve
from toolkit.targets import proxy_environment
from toolkit.targets.base import RESULT_PREFIX, RunResult, Target, TargetError, parse_output
from toolkit.targets.kerberos import KerberosAuth, KerberosError, KerberosTransport, is_available
from toolkit.targets.specs import ExchangeServerTargetSpec
from toolkit.targets.waits import RUN, Interrupted, TimedOut, Wait

proxy_environment.install()  # pywinrm's and requests' proxy lookups run in many threads (see the module)

try:
    from requests_credssp.exceptions import AuthenticationException, NTStatusException

    _CREDSSP_ERRORS: tuple[type[Exception], ...] = (AuthenticationException, NTStatusException)
except ImportError:  # the credssp extra is not installed: transport credssp says so before connecting
    _CREDSSP_ERRORS = ()

# The only thing on the command line. Standard input is "<script>" or "<script>.<user>.<password>", each part Base64
# of UTF-8 ('.' is not in the Base64 alphabet). The optional part becomes $exkitCredential, a PSCredential the
# script's remote session uses (the second hop): the credential never enters the script text, so the reviewed
# script and its sha256 are the same with or without it, and PowerShell's script block logging records no password.
BOOTSTRAP = (
    "$ErrorActionPreference = 'Stop'\n"
    "$exkitIn = [System.Console]::In.ReadToEnd().Split('.')\n"
    "$exkitUtf8 = [System.Text.Encoding]::UTF8\n"
    "$exkitCredential = $null\n"
    "if ($exkitIn.Count -eq 3) {\n"
    "    $exkitCredential = [System.Management.Automation.PSCredential]::new("
    "$exkitUtf8.GetString([System.Convert]::FromBase64String($exkitIn[1])), [System.Net.NetworkCredential]::new("
    "'', $exkitUtf8.GetString([System.Convert]::FromBase64String($exkitIn[2]))).SecurePassword)\n"
    "}\n"
    "$exkitScript = $exkitUtf8.GetString([System.Convert]::FromBase64String($exkitIn[0]))\n"
    "$exkitIn = $null\n"
    "& ([scriptblock]::Create($exkitScript))\n"
)
BOOTSTRAP_ARGUMENTS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand",
                       base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode("ascii"))
STDIN_CHUNK = 64 * 1024  # well under pywinrm's MaxEnvelopeSize of 150 KB
# A kept shell idle longer than this is not reused: HTTP.sys closes idle connections after 120 s by default, and
# winrs shells time out after IdleTimeout (2 hours by default).
SHELL_REUSE_S = 60.0
# Signal terminate (and Delete) after a stop go over a fresh connection, each request bounded by this.
SIGNAL_TIMEOUT_S = 5.0


def stdin_payload(script: str, credential: tuple[str, str] | None = None) -> bytes:
    """What the bootstrap reads from standard input: the script, then the optional second-hop credential."""
    parts = [script] + (list(credential) if credential else [])
    return b".".join(base64.b64encode(part.encode("utf-8")) for part in parts)


def decode_clixml(data: str) -> str:
    """Readable text from PowerShell's CLIXML error stream (``#< CLIXML`` + <Objs>); other text is returned as is."""
    if not data.startswith("#< CLIXML"):
        return data
    body = data.split("\n", 1)[1] if "\n" in data else ""
    messages = []
    for chunk in re.findall(r"<Objs.*?</Objs>", body, flags=re.S):
        try:
            root = ET.fromstring(chunk)
        except ET.ParseError:
            continue
        for element in root:
            if element.tag.endswith("}S") and element.get("S") == "Error" and element.text:
                messages.append(element.text)
    text = "".join(messages)
    text = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)
    return text.replace("\r\n", "\n").strip()


class _StaleShell(Exception):
    """A kept shell could not start a command: its connection was closed or the server dropped the shell."""


@dataclass
class _Shell:
    protocol: winrm.Protocol
    shell_id: str
    last_used: float = 0.0


def _delete_shell(shell: _Shell, close_session: bool = True) -> None:
    try:
        shell.protocol.close_shell(shell.shell_id, close_session=close_session)
    except (WinRMError, WinRMTransportError, WinRMOperationTimeoutError, requests.exceptions.RequestException):
        pass  # a shell the server could not delete expires by itself (its idle timeout)


class _NotStarted(Exception):
    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


@dataclass
class _Running:
    """The command a script runs in, while it runs: what interrupt() stops."""

    shell: _Shell
    command_id: str
    stopped: bool = False


@lru_cache(maxsize=16)
def ntlm_hash_credential(password: str) -> str:
    """The password as NTLM uses it: its LM and NT hashes, "LM:NT" in hex. pyspnego takes a password of that form
    as an NTLM hash credential (its ``NTLMHash``; unify_credentials checks ``is_ntlm_hash``) and otherwise derives
    both hashes for every new context, the LM one with DES written in Python: about a millisecond per target. Here
    they are derived once per password in this process. A password that already has that form is one pyspnego
    would read as hashes anyway: it is passed on as it is."""
    try:
        from spnego._ntlm_raw.crypto import is_ntlm_hash, lmowfv1, ntowfv1  # pyspnego's own derivation
    except ImportError:  # a pyspnego that moved them: the password as it is (pyspnego derives per context again)
        return password
    if is_ntlm_hash(password):
        return password
    return f"{lmowfv1(password).hex()}:{ntowfv1(password).hex()}"


class WinRMTarget(Target):
    def __init__(self, spec: ExchangeServerTargetSpec, name: str, base_dir: Path | None = None) -> None:
        self.spec = spec
        self.name = name
        self.base_dir = base_dir or Path.cwd()
        self._keep_shell = False  # inside session()
        self._kept: _Shell | None = None
        self._resolved_password: str | None = None  # in memory only, resolved once (a prompt asks once)
        self._running: _Running | None = None
        self._running_lock = threading.Lock()

    def describe(self) -> str:
        return f"Exchange Server {self.spec.endpoint} ({self.spec.transport})"

    def where(self) -> dict[str, str]:
        return {"endpoint": self.spec.endpoint, "transport": self.spec.transport}

    def prompts(self) -> bool:
        return self.spec.password == "prompt"

    def connection(self) -> Connection:
        if self.spec.connect == "snapin":
            return Connection("snapin")
        uri = self.spec.exchange_uri or f"http://{self.spec.host}/PowerShell/"
        # Exchange's /PowerShell/ virtual directory authenticates with Kerberos whatever the outer transport: the
        # credential comes from the bootstrap ($exkitCredential), a delegated ticket, or CredSSP's delegated logon.
        return Connection("remote-session", uri, "Kerberos")

    def _password(self) -> str | None:
        if self.spec.password and self._resolved_password is None:
            self._resolved_password = resolve(self.spec.password, f"password of target {self.name!r}")
        return self._resolved_password

    def _second_hop_credential(self) -> tuple[str, str] | None:
        """The account's credential for the script's remote session, handed over on standard input at run time;
        none with snapin, with kerberos_delegation (the forwarded ticket serves), or without a password."""
        spec = self.spec
        if spec.connect != "remote-session" or spec.kerberos_delegation or not spec.username:
            return None
        password = self._password()
        return (spec.username, password) if password else None

    def _path(self, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base_dir / path)

    def _protocol(self) -> winrm.Protocol:
        spec = self.spec
        password = self._password()
        if spec.transport == "ntlm" and password:
            password = ntlm_hash_credential(password)
        transport = {"certificate": "certificate", "basic": "basic", "ntlm": "ntlm", "kerberos": "kerberos",
                     "credssp": "credssp"}[spec.transport]
        try:
            protocol = winrm.Protocol(
                endpoint=spec.endpoint, transport=transport, username=spec.username, password=password,
                server_cert_validation=spec.server_cert_validation,
                ca_trust_path=self._path(spec.ca_trust_path),  # None: the system's CA bundle
                cert_pem=self._path(spec.cert_pem), cert_key_pem=self._path(spec.cert_key_pem),
                read_timeout_sec=spec.read_timeout, operation_timeout_sec=spec.operation_timeout,
                message_encryption=spec.message_encryption, proxy=spec.proxy,
                kerberos_delegation=spec.kerberos_delegation,
            )
        except (WinRMError, ValueError) as exc:
            raise TargetError(f"cannot set up WinRM for target {self.name!r}: {exc}") from None
        if spec.transport == "credssp" and not winrm.transport.HAVE_CREDSSP:
            raise TargetError("transport credssp needs exkit's credssp extra: pip install 'exkit[credssp]'")
        if spec.transport == "kerberos":
            if not is_available():
                raise TargetError("transport kerberos needs MIT Kerberos and exkit's kerberos extra: apt-get install "
                                  "libkrb5-dev (or your system's MIT krb5 development package), then pip install "
                                  "'exkit[kerberos]'")
            auth = KerberosAuth(spec.username, password, spec.host, delegate=spec.kerberos_delegation)
            protocol.transport = KerberosTransport(
                auth, endpoint=spec.endpoint, server_cert_validation=spec.server_cert_validation,
                ca_trust_path=self._path(spec.ca_trust_path), read_timeout_sec=spec.read_timeout,
                message_encryption=spec.message_encryption, proxy=spec.proxy)
        return protocol

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one authenticated connection and one shell for every script run inside (plan's facts script, then
        apply's script): one NTLM handshake and one shell per target instead of one per script. The shell is
        deleted on leaving; a shell idle longer than SHELL_REUSE_S is not reused (the server may have closed the
        connection)."""
        self._keep_shell = True
        try:
            yield
        finally:
            self._keep_shell = False
            kept, self._kept = self._kept, None
            if kept is not None:
                _delete_shell(kept)

    def run_script(self, script: str, *, read_only: bool = False) -> RunResult:
        """Run the script; a failure before it started (connecting, opening the shell) is retried with backoff.
        The attempts and the pauses between them share read_timeout: the wait for an answer is bounded in total,
        not per attempt, and no retry starts whose pause would end past the bound (or the run's --timeout)."""
        notices: list[str] = []
        wait = Wait("WinRM Create (open a shell)", self.spec.read_timeout, "read_timeout")
        for attempt in range(self.spec.retries + 1):
            RUN.check(f"the script on {self.spec.endpoint}")
            try:
                result = self._run_once(script, wait)
            except _NotStarted as exc:
                pause = min(30.0, 0.5 * 2 ** attempt)
                if attempt == self.spec.retries or not wait.may_retry(pause):
                    tried = f" ({attempt + 1} attempts over {wait.elapsed:.1f} s)" if attempt else ""
                    raise (TimedOut if exc.timed_out else TargetError)(exc.message + tried) from None
                notices.append(f"{exc.message}; retried after {pause:.1f} s")
                RUN.stop.wait(pause)  # a Ctrl-C ends the pause at once (the next check refuses to start)
                continue
            result.notices = notices + result.notices
            return result
        raise AssertionError("unreachable")

    def _run_once(self, script: str, wait: Wait) -> RunResult:
        self.throttle()
        kept, self._kept = self._kept, None
        if kept is not None and time.monotonic() - kept.last_used > SHELL_REUSE_S:
            _delete_shell(kept)
            kept = None
        if kept is not None:
            try:
                return self._run_in_shell(script, kept, wait)
            except _StaleShell:
                # The kept shell or its connection is gone: a new one, without counting it as a retry. The old
                # shell is deleted over the new connection (servers allow a user few shells: MaxShellsPerUser).
                return self._run_in_shell(script, None, wait, stale_shell_id=kept.shell_id)
        return self._run_in_shell(script, None, wait)

    def _request(self, protocol: winrm.Protocol, wait: Wait, operation: str, call: object, *args: object,
                 **kwargs: object) -> object:
        """One WS-Management request bounded by what is left of ``wait`` (connect: connect_timeout at most)."""
        wait.what = f"WinRM {operation}"
        left = wait.timeout()
        protocol.transport.read_timeout_sec = (min(self.spec.connect_timeout, left), left)
        result = call(*args, **kwargs)  # type: ignore[operator]
        wait.answered()
        return result

    def _run_in_shell(self, script: str, kept: _Shell | None, wait: Wait,
                      stale_shell_id: str | None = None) -> RunResult:
        sha = hashlib.sha256(script.encode()).hexdigest()
        stage = "connect" if kept is None else "start"
        shell = kept
        try:
            if shell is None:
                protocol = self._protocol()
                shell = _Shell(protocol, self._request(protocol, wait, "Create (open a shell)",  # type: ignore[arg-type]
                                                       protocol.open_shell, codepage=65001))
                # pywinrm built its session on that first request, with the proxies (none, or spec.proxy) already
                # on it: requests need not re-read every environment variable for each further request.
                if protocol.transport.session is not None:
                    protocol.transport.session.trust_env = False
                if stale_shell_id is not None:
                    _delete_shell(_Shell(protocol, stale_shell_id), close_session=False)
                stage = "start"
            protocol, shell_id = shell.protocol, shell.shell_id
            command_id = self._request(protocol, wait, "Command (start the script)", protocol.run_command, shell_id,
                                       "powershell.exe", BOOTSTRAP_ARGUMENTS)
            with self._running_lock:
                self._running = _Running(shell, str(command_id))
            payload = stdin_payload(script, self._second_hop_credential())
            chunks = [payload[i:i + STDIN_CHUNK] for i in range(0, len(payload), STDIN_CHUNK)] or [b""]
            for index, chunk in enumerate(chunks):
                self._request(protocol, wait, "Send (the script)", protocol.send_command_input, shell_id,
                              command_id, chunk, index == len(chunks) - 1)
            stage = "run"
            stdout, stderr, exit_code = self._receive(shell, str(command_id))
            stage = "close"
            with self._running_lock:
                self._running = None
            self._finish(shell, str(command_id))
        except KerberosError as exc:
            raise TargetError(exc.message) from None
        except _CREDSSP_ERRORS as exc:
            # requests-credssp: the server refused the logon inside CredSSP (e.g. SEC_E_LOGON_DENIED), or the
            # exchange failed; its text names NT status codes, never the password.
            denied = "0x8009030c" in str(exc).lower()  # SEC_E_LOGON_DENIED
            reason = "the logon was denied" if denied else type(exc).__name__
            raise TargetError(f"{self.spec.endpoint} refused the credentials of {self.spec.username} (CredSSP: "
                              f"{reason}): check the username and the password reference") from None
        except (requests.exceptions.RequestException, WinRMError, WinRMOperationTimeoutError,
                WinRMTransportError) as exc:
            running = self._take_running()
            if running is not None and stage == "run":
                self._terminate(running)  # the script may still run there: stop it where the server can
            stale = isinstance(exc, (requests.exceptions.ConnectionError, InvalidCredentialsError, WSManFaultError))
            if stale and kept is not None and stage == "start" and not isinstance(exc, requests.exceptions.SSLError):
                raise _StaleShell() from None
            if shell is not None and stage == "start" and not isinstance(exc, requests.exceptions.ConnectionError):
                _delete_shell(shell)  # the server answered: it can delete the shell the script never started in
            raise self._as_failure(exc, stage, wait) from None
        except (Interrupted, TimedOut):
            running = self._take_running()
            if running is not None:
                self._terminate(running)
            raise
        out = stdout.decode("utf-8", "replace").replace("\r\n", "\n")
        err = decode_clixml(stderr.decode("utf-8", "replace"))
        results, facts = parse_output(out)
        return RunResult(exit_code, out, err, results, facts, sha)

    def _receive(self, shell: _Shell, command_id: str) -> tuple[bytes, bytes, int]:
        """Receive until the command is done. Each Receive waits at most read_timeout for an answer (the server
        answers within operation_timeout, with output or an OperationTimeout fault: both are answers); a stop
        between Receives sends Signal terminate and raises Interrupted with what was received. Each resource's
        result line is noted as it arrives."""
        protocol = shell.protocol
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        pending = b""
        while True:
            if RUN.stopping:
                raise self._stopped(stdout)
            wait = Wait("WinRM Receive (the script's output)", self.spec.read_timeout, "read_timeout")
            left = wait.timeout()
            # The server must answer before the read timeout: its OperationTimeout stays below what is left.
            protocol.operation_timeout_sec = max(1, min(self.spec.operation_timeout, int(left) - 1))
            protocol.transport.read_timeout_sec = (min(self.spec.connect_timeout, left), left)
            try:
                out, err, exit_code, done = protocol.get_command_output_raw(shell.shell_id, command_id)
            except WinRMOperationTimeoutError:
                continue  # the script runs on and has printed nothing new
            except requests.exceptions.Timeout:
                raise TimedOut(self._lost("run", str(wait.expired()))) from None
            except (WinRMError, WinRMTransportError, requests.exceptions.RequestException):
                if RUN.stopping:  # the answer to a Receive cut short by Signal terminate
                    raise self._stopped(stdout) from None
                raise
            finally:
                protocol.operation_timeout_sec = self.spec.operation_timeout
            stdout.append(out)
            stderr.append(err)
            pending += out
            lines, _, pending = pending.rpartition(b"\n")
            for line in lines.decode("utf-8", "replace").splitlines():
                if line.strip().startswith(RESULT_PREFIX):
                    for result in parse_output(line)[0]:
                        self.note(result)
            if done:
                return b"".join(stdout), b"".join(stderr), exit_code

    def _stopped(self, stdout: list[bytes]) -> Interrupted:
        results = parse_output(b"".join(stdout).decode("utf-8", "replace"))[0]
        return Interrupted(f"{self.spec.endpoint}: the script was stopped ({RUN.reason}; WS-Management Signal "
                           f"terminate sent) after {len(results)} resource result(s); what it did after its last "
                           "result is unknown: run exkit plan to see the state")

    def _take_running(self) -> _Running | None:
        with self._running_lock:
            running, self._running = self._running, None
        return running

    def interrupt(self) -> None:
        """From the thread handling Ctrl-C / SIGTERM: stop the running script now (Signal terminate, then Delete
        of its shell) over a fresh connection, the worker's own being busy with its Receive."""
        with self._running_lock:
            running = self._running
        if running is not None:
            self._terminate(running)

    def _terminate(self, running: _Running) -> None:
        with self._running_lock:
            if running.stopped:
                return
            running.stopped = True
        original = running.shell.protocol
        fresh = copy.copy(original)
        fresh.transport = copy.copy(original.transport)
        fresh.transport.session = None  # a new connection and authentication; the old one may be mid-request
        fresh.transport.encryption = None
        fresh.transport.read_timeout_sec = (min(self.spec.connect_timeout, SIGNAL_TIMEOUT_S), SIGNAL_TIMEOUT_S)
        try:
            fresh.cleanup_command(running.shell.shell_id, running.command_id)  # Signal …/signal/terminate
        except (WinRMError, WinRMTransportError, WinRMOperationTimeoutError, requests.exceptions.RequestException,
                AssertionError):
            pass  # the server did not answer: what the script does now is unknown (said in the message)
        _delete_shell(_Shell(fresh, running.shell.shell_id))

    def _as_failure(self, exc: BaseException, stage: str, wait: Wait) -> Exception:
        """What a transport failure at ``stage`` means for the user (TargetError, or _NotStarted to retry)."""
        if isinstance(exc, requests.exceptions.SSLError):
            return TargetError(f"TLS with {self.spec.endpoint} failed: {_reason(exc)}. The server certificate must "
                               "be signed by a CA in ca_trust_path (certificate validation stays on)")
        if isinstance(exc, InvalidCredentialsError):
            who = self.spec.username or "the client certificate"
            return TargetError(f"{self.spec.endpoint} refused the credentials of {who} (HTTP 401): check the "
                               "username and the password reference")
        if isinstance(exc, requests.exceptions.Timeout):
            return self._failure(stage, str(wait.expired()), timed_out=True)
        if isinstance(exc, WinRMOperationTimeoutError):
            return self._failure(stage, "the WinRM operation timed out")
        if isinstance(exc, WinRMTransportError):
            return self._failure(stage, f"the WinRM server answered HTTP {exc.code}")
        if isinstance(exc, WinRMError):
            return TargetError(self._lost(stage, f"WinRM fault: {_fault_reason(exc)}"))
        return self._failure(stage, _reason(exc))  # connection refused, reset, closed…

    def _finish(self, shell: _Shell, command_id: str) -> None:
        """After the script finished: end the command, then keep the shell for the next script or delete it."""
        try:
            shell.protocol.cleanup_command(shell.shell_id, command_id)
        except (WinRMError, WinRMTransportError, WinRMOperationTimeoutError, requests.exceptions.RequestException):
            return  # the script has finished; a shell the server could not clean up expires by itself
        if self._keep_shell:
            shell.last_used = time.monotonic()
            self._kept = shell
        else:
            _delete_shell(shell)

    def _failure(self, stage: str, reason: str, timed_out: bool = False) -> Exception:
        """Before the script started, a transient failure may be retried; after, it must be reported."""
        if stage in ("connect", "start"):
            return _NotStarted(self._lost(stage, reason), timed_out)
        return (TimedOut if timed_out else TargetError)(self._lost(stage, reason))

    def _lost(self, stage: str, reason: str) -> str:
        where = self.spec.endpoint
        if stage == "connect":
            return f"cannot reach {where}: {reason}"
        if stage == "start":
            return f"{where}: could not start the script ({reason}); nothing ran"
        return (f"{where}: the connection failed while the script ran ({reason}); some resources may have been "
                "applied. Run exkit plan to see the state, then apply again: the script is idempotent")


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern in (r"\[SSL: ([A-Z_]+)\] ([^(]+)", r"(Connection refused)", r"(Connection aborted)",
                    r"(Remote end closed connection without response)", r"(Name or service not known)"):
        match = re.search(pattern, text)
        if match:
            return " ".join(g.strip() for g in match.groups())
    return type(exc).__name__


def _fault_reason(exc: WinRMError) -> str:
    return str(getattr(exc, "reason", None) or exc)
