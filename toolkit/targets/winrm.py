"""Exchange Server (and hosted Exchange) over WinRM, with pywinrm.

The rendered script runs exactly as rendered. It does not travel on the command line (real Windows limits a command
line to 8191 characters): the command line carries a short fixed bootstrap as ``-EncodedCommand``, which reads the
script from standard input (sent base64-encoded, in chunks, over WS-Management ``Send``) and runs it. Each run costs
one shell: Create, Command, Send…, Receive…, Signal, Delete.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMOperationTimeoutError, WinRMTransportError

from toolkit.inventory import ExchangeServerTargetSpec
from toolkit.render.engine import Connection
from toolkit.secrets import resolve
from toolkit.targets.base import RunResult, Target, TargetError, parse_output

# Reads the base64 script from stdin and runs it. Kept short: it is the only thing on the command line.
BOOTSTRAP = (
    "$ErrorActionPreference = 'Stop'\n"
    "$exkitScript = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String("
    "[System.Console]::In.ReadToEnd()))\n"
    "& ([scriptblock]::Create($exkitScript))\n"
)
BOOTSTRAP_ARGUMENTS = ("-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand",
                       base64.b64encode(BOOTSTRAP.encode("utf-16-le")).decode("ascii"))
STDIN_CHUNK = 64 * 1024  # well under pywinrm's MaxEnvelopeSize of 150 KB


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


class _NotStarted(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WinRMTarget(Target):
    def __init__(self, spec: ExchangeServerTargetSpec, name: str, base_dir: Path | None = None) -> None:
        self.spec = spec
        self.name = name
        self.base_dir = base_dir or Path.cwd()

    def describe(self) -> str:
        return f"Exchange Server {self.spec.endpoint} ({self.spec.transport})"

    def connection(self) -> Connection:
        if self.spec.connect == "snapin":
            return Connection("snapin")
        uri = self.spec.exchange_uri or f"http://{self.spec.host}/PowerShell/"
        return Connection("remote-session", uri, "CredSSP" if self.spec.transport == "credssp" else "Kerberos")

    def _path(self, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base_dir / path)

    def _protocol(self) -> winrm.Protocol:
        spec = self.spec
        password = resolve(spec.password, f"password of target {self.name!r}") if spec.password else None
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
            )
        except (WinRMError, ValueError) as exc:
            raise TargetError(f"cannot set up WinRM for target {self.name!r}: {exc}") from None
        return protocol

    def run_script(self, script: str, *, read_only: bool = False) -> RunResult:
        """Run the script; a failure before it started (connecting, opening the shell) is retried with backoff."""
        notices: list[str] = []
        for attempt in range(self.spec.retries + 1):
            try:
                result = self._run_once(script)
            except _NotStarted as exc:
                if attempt == self.spec.retries:
                    raise TargetError(exc.message) from None
                pause = min(30.0, 0.5 * 2 ** attempt)
                notices.append(f"{exc.message}; retried after {pause:.1f} s")
                time.sleep(pause)
                continue
            result.notices = notices + result.notices
            return result
        raise AssertionError("unreachable")

    def _run_once(self, script: str) -> RunResult:
        self.throttle()
        sha = hashlib.sha256(script.encode()).hexdigest()
        protocol = self._protocol()
        stage = "connect"
        shell_id = command_id = None
        try:
            shell_id = protocol.open_shell(codepage=65001)
            # pywinrm built its session on that first request, with the proxies (none, or spec.proxy) already on
            # it: requests need not re-read every environment variable for each further request.
            if protocol.transport.session is not None:
                protocol.transport.session.trust_env = False
            stage = "start"
            command_id = protocol.run_command(shell_id, "powershell.exe", BOOTSTRAP_ARGUMENTS)
            payload = base64.b64encode(script.encode("utf-8"))
            chunks = [payload[i:i + STDIN_CHUNK] for i in range(0, len(payload), STDIN_CHUNK)] or [b""]
            for index, chunk in enumerate(chunks):
                protocol.send_command_input(shell_id, command_id, chunk, end=index == len(chunks) - 1)
            stage = "run"
            stdout, stderr, exit_code = protocol.get_command_output(shell_id, command_id)
            stage = "close"
            self._close(protocol, shell_id, command_id)
        except requests.exceptions.SSLError as exc:
            raise TargetError(f"TLS with {self.spec.endpoint} failed: {_reason(exc)}. The server certificate must be "
                              "signed by a CA in ca_trust_path (certificate validation stays on)") from None
        except InvalidCredentialsError:
            who = self.spec.username or "the client certificate"
            raise TargetError(f"{self.spec.endpoint} refused the credentials of {who} (HTTP 401): check the username "
                              "and the password reference") from None
        except requests.exceptions.ConnectionError as exc:
            raise self._failure(stage, _reason(exc)) from None
        except requests.exceptions.Timeout:
            raise self._failure(stage, f"no answer within read_timeout ({self.spec.read_timeout} s)") from None
        except WinRMOperationTimeoutError:
            raise self._failure(stage, "the WinRM operation timed out") from None
        except WinRMTransportError as exc:
            raise self._failure(stage, f"the WinRM server answered HTTP {exc.code}") from None
        except WinRMError as exc:
            raise TargetError(self._lost(stage, f"WinRM fault: {_fault_reason(exc)}")) from None
        out = stdout.decode("utf-8", "replace").replace("\r\n", "\n")
        err = decode_clixml(stderr.decode("utf-8", "replace"))
        results, facts = parse_output(out)
        return RunResult(exit_code, out, err, results, facts, sha)

    def _close(self, protocol: winrm.Protocol, shell_id: str, command_id: str) -> None:
        try:
            protocol.cleanup_command(shell_id, command_id)
            protocol.close_shell(shell_id)
        except (WinRMError, requests.exceptions.RequestException):
            pass  # the script has finished; a shell the server could not close expires by itself

    def _failure(self, stage: str, reason: str) -> Exception:
        """Before the script started, a transient failure may be retried; after, it must be reported."""
        if stage in ("connect", "start"):
            return _NotStarted(self._lost(stage, reason))
        return TargetError(self._lost(stage, reason))

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
