"""A loopback WinRM server for tests: real HTTP/1.1, the WS-Management shell protocol, real NTLM (pyspnego's
acceptor) with WinRM message encryption, basic auth, HTTPS with a trustme CA, the 8191-character command line of
real Windows, and switchable faults. Commands run on the sandbox organisation with exkit's interpreter.

``powershell -EncodedCommand <text>`` runs <text> in the interpreter, as PowerShell would, with the command's
standard input as ``[System.Console]::In``: exkit's bootstrap (read stdin, decode, build the second-hop credential,
run the script block) is executed, not recognised. A command whose text reads ``[System.Console]::In`` starts when
its standard input has ended (ReadToEnd blocks until then). The script runs with the WinRM session's logon, so an
Exchange remote session it opens succeeds only with a credential or a delegated logon (toolkit/sandbox/remoting.py).
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import spnego
from winrm.encryption import Encryption

from toolkit.sandbox.remoting import RemoteLogon
from toolkit.targets.sandbox import SandboxTarget

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
ACTIONS = {
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create": "Create",
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete": "Delete",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command": "Command",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send": "Send",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive": "Receive",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal": "Signal",
}
BOUNDARY = b"--Encrypted Boundary"
PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
CREDSSP_PROTOCOL = "application/HTTP-CredSSP-session-encrypted"
CREDSSP_CHUNK = 16384
COMMAND_LINE_LIMIT = 8191
CERTIFICATE_AUTH = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
UPN_OID = "1.3.6.1.4.1.311.20.2.3"  # szOID_NT_PRINCIPAL_NAME
OPERATION_TIMEOUT_CODE = 2150858793


@dataclass
class Fault:
    """At the ``occurrence``-th request of ``action``: 'drop' (process it, then close without answering),
    '500' (answer HTTP 500 without processing), 'delay' (hold Receive replies for ``seconds``: the command runs
    after that, unless Signal terminate stops it first), 'forget' (the shell timed out just before: every shell is
    gone), 'close' (answer, then close the connection, as HTTP.sys does with an idle one), 'silent' (read the
    request, never answer), 'slow' (answer after ``seconds``) or 'cut' (send half the reply, then close)."""

    action: str
    occurrence: int
    kind: str
    seconds: float = 0.0


@dataclass
class _Command:
    command_line: str
    script: str | None
    needs_stdin: bool
    logon: RemoteLogon | None = None
    state_path: Path | None = None
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    result: tuple[bytes, bytes, int] | None = None
    hold_until: float = 0.0
    terminated: threading.Event = field(default_factory=threading.Event)  # Signal terminate arrived


class _SharedPortServer(ThreadingHTTPServer):
    allow_reuse_port = True


class LoopbackWinRM:
    def __init__(self, state_path: Path, users: dict[str, str], *, auth: tuple[str, ...] = ("ntlm",),
                 tls: ssl.SSLContext | None = None, require_encryption_over_http: bool = True,
                 port: int = 0, state_dir: Path | None = None, delay_ms: float = 0.0,
                 reuse_port: bool = False, certificates: dict[str, str] | None = None) -> None:
        self.state_path = state_path
        # With state_dir, each endpoint path (/wsman/<name>) is its own organisation: <state_dir>/<name>.json.
        self.state_dir = state_dir
        self.delay_ms = delay_ms  # an injected round-trip time, slept before every reply
        self.users = {k.lower(): v for k, v in users.items()}  # "DOMAIN\\user" → password
        # What a second-hop -Credential is checked against: DOMAIN\user, and the bare user name (basic auth's).
        self.accounts = {**{k.split("\\")[-1]: v for k, v in self.users.items()}, **self.users}
        self.auth = auth
        self.tls = tls
        # Client certificate mappings, as WSMan:\localhost\ClientCertificate holds them: the UPN in the
        # certificate's subject alternative name → the account it logs on as ("certificate" in auth).
        self.certificates = {k.lower(): v for k, v in (certificates or {}).items()}
        self.require_encryption_over_http = require_encryption_over_http
        self.faults: list[Fault] = []
        self.released = threading.Event()  # set on exit: requests held by a 'silent' fault end then
        self.signals: list[str] = []  # the Code of every Signal received (…/signal/terminate)
        self.refuse_credentials = False
        self.counts: dict[str, int] = {}
        self.http_requests = 0
        self.encrypted_requests = 0
        self.multi_encrypted_requests = 0  # CredSSP messages over 16 KiB, sealed in several chunks
        self.authentications = 0  # completed NTLM handshakes
        self.shells: dict[str, dict[str, _Command]] = {}
        self.scripts_run: list[str] = []  # the scripts clients sent (stdin's first part, or the command text)
        self.logons: list[RemoteLogon] = []  # the logon each command ran with
        self.lock = threading.Lock()
        # reuse_port: several server processes share one port (the kernel spreads the connections over them).
        self.httpd = (_SharedPortServer if reuse_port else ThreadingHTTPServer)(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackWinRM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault_for(self, action: str) -> Fault | None:
        with self.lock:
            self.counts[action] = self.counts.get(action, 0) + 1
            count = self.counts[action]
        return next((f for f in self.faults if f.action == action and f.occurrence == count), None)

    # ------------------------------------------------------------------------------------------- commands
    def start_command(self, command: str, arguments: str, logon: RemoteLogon | None = None) -> _Command:
        line = f"{command} {arguments}".strip()
        if len(line) > COMMAND_LINE_LIMIT:
            return _Command(line, None, False, result=(b"", b"The command line is too long.\r\n", 1))
        match = re.search(r"\s-(?:e|ec|enc|encodedcommand)\s+([A-Za-z0-9+/=]+)", line, flags=re.I)
        if not command.lower().startswith("powershell") or match is None:
            return _Command(line, None, False, result=(b"", b"'" + command.encode() + b"' is not supported by the "
                                                       b"loopback server.\r\n", 1))
        text = base64.b64decode(match.group(1)).decode("utf-16-le")
        return _Command(line, text, "[system.console]::in" in text.lower(), logon)

    def execute(self, command: _Command) -> tuple[bytes, bytes, int]:
        if command.result is None:
            assert command.script is not None
            stdin = bytes(command.stdin).decode("utf-8", "replace")
            sent = stdin.split(".")[0] if command.needs_stdin else ""
            # Recorded for the tests only; what runs is the command text, executed by the interpreter.
            self.scripts_run.append(base64.b64decode(sent).decode("utf-8", "replace") if sent else command.script)
            if command.logon is not None:
                self.logons.append(command.logon)
            result = SandboxTarget(command.state_path or self.state_path, logon=command.logon).run_script(
                command.script, stdin=stdin)
            stderr = _clixml(result.stderr) if result.stderr else b""
            command.result = (result.stdout.replace("\n", "\r\n").encode("utf-8"), stderr, result.exit_code)
        return command.result


def _der_utf8(value: bytes) -> str:
    """An otherName's value: a DER UTF8String (tag 0x0C, short or long length)."""
    if not value or value[0] != 0x0C:
        return ""
    length, start = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(value[2:2 + count], "big"), 2 + count
    return value[start:start + length].decode("utf-8", "replace")


def _kdc_accepts(user: str, password: str) -> bool:
    """Whether the realm's KDC accepts this password (an AS exchange, as the second hop's Kerberos logon does)."""
    import krb5

    context = krb5.init_context()
    try:
        principal = krb5.parse_name_flags(context, user.encode())
        krb5.get_init_creds_password(context, principal, krb5.get_init_creds_opt_alloc(context),
                                     password=password.encode())
    except krb5.Krb5Error:
        return False
    return True


def _clixml(text: str) -> bytes:
    """PowerShell's error stream as WinRM delivers it: CLIXML with _x000D__x000A_ line breaks."""
    encoded = escape(text.replace("\r\n", "\n")).replace("\n", "_x000D__x000A_")
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            f'<S S="Error">{encoded}_x000D__x000A_</S></Objs>').encode("utf-8")


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    namespaces = " ".join(f'xmlns:{k}="{v}"' for k, v in NS.items())
    return (f'<s:Envelope xml:lang="en-US" {namespaces}><s:Header><a:Action>{action}Response</a:Action>'
            f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID><a:RelatesTo>{relates_to}</a:RelatesTo>"
            "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To></s:Header>"
            f"<s:Body>{body}</s:Body></s:Envelope>").encode("utf-8")


def _fault(code: int, subcode: str, text: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}"><s:Header/><s:Body><s:Fault>'
            f"<s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:{subcode}</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{escape(text)}</s:Text></s:Reason><s:Detail>'
            f'<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}" '
            f'Machine="127.0.0.1"><f:Message>{escape(text)}</f:Message></f:WSManFault></s:Detail></s:Fault>'
            "</s:Body></s:Envelope>").encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without TCP_NODELAY each costs ~40 ms
    # A reply's headers and body leave in one send (handle_one_request flushes after each request; the faults that
    # cut a reply short flush themselves): one system call and one wake-up of the client instead of two.
    wbufsize = 256 * 1024

    def setup(self) -> None:
        super().setup()
        self.ntlm: spnego.ContextProxy | None = None
        self.credssp: spnego.ContextProxy | None = None
        self.security: spnego.ContextProxy | None = None  # the completed context that seals messages (NTLM, Kerberos)
        self.auth_reply: str | None = None  # Kerberos mutual authentication: the AP-REP, sent with the next reply
        self.authenticated = False
        self.logon: RemoteLogon | None = None

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    @property
    def owner(self) -> LoopbackWinRM:
        return self.server.owner  # type: ignore[attr-defined]

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
               content_type: str = "application/soap+xml;charset=UTF-8") -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.auth_reply is not None:
            self.send_header("WWW-Authenticate", self.auth_reply)
            self.auth_reply = None
        if body:
            self.send_header("Content-Type", content_type)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self, token: bytes | None = None, scheme: str = "Negotiate") -> None:
        self.send_response(401)
        if token is not None:
            self.send_header("WWW-Authenticate", f"{scheme} {base64.b64encode(token).decode()}")
        else:
            if "ntlm" in self.owner.auth or "kerberos" in self.owner.auth:
                self.send_header("WWW-Authenticate", "Negotiate")
            if "kerberos" in self.owner.auth:
                self.send_header("WWW-Authenticate", "Kerberos")
            if "ntlm" in self.owner.auth:
                self.send_header("WWW-Authenticate", "NTLM")
            if "credssp" in self.owner.auth:
                self.send_header("WWW-Authenticate", "CredSSP")
            if "basic" in self.owner.auth:
                self.send_header("WWW-Authenticate", 'Basic realm="WSMAN"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authenticate(self) -> bool:
        owner = self.owner
        header = self.headers.get("Authorization", "")
        if owner.refuse_credentials:
            self._challenge()
            return False
        if header.startswith("Basic ") and "basic" in owner.auth:
            raw = base64.b64decode(header[6:])
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError:
                decoded = raw.decode("latin-1")  # what requests sends for non-ASCII passwords
            user, _, password = decoded.partition(":")
            known = {k.split("\\")[-1]: v for k, v in owner.users.items()}
            if known.get(user.lower()) == password:
                self.logon = RemoteLogon(user, False, owner.accounts)  # a network logon: no second hop
                return True
            self._challenge()
            return False
        scheme, _, token = header.partition(" ")
        if header == CERTIFICATE_AUTH and "certificate" in owner.auth and owner.tls is not None:
            return self._certificate()
        if scheme == "CredSSP" and "credssp" in owner.auth and token:
            return self._credssp(base64.b64decode(token))
        if scheme in ("Negotiate", "Kerberos") and "kerberos" in owner.auth and token.startswith("YI"):
            return self._kerberos(base64.b64decode(token))  # a GSS-API initial token (0x60): Kerberos AP-REQ
        if scheme in ("Negotiate", "NTLM") and "ntlm" in owner.auth and token:
            if self.ntlm is None or self.ntlm.complete:
                self.ntlm = spnego.server(protocol="ntlm")
                self.authenticated = False
            try:
                out = self.ntlm.step(base64.b64decode(token))
            except spnego.exceptions.SpnegoError:
                self.ntlm = None
                self._challenge()
                return False
            if not self.ntlm.complete:
                self._challenge(out, scheme)
                return False
            self.authenticated = True
            self.security = self.ntlm
            # NTLM proves the password without handing it over: the session cannot authenticate onward.
            self.logon = RemoteLogon(str(self.ntlm.client_principal), False, owner.accounts)
            with owner.lock:
                owner.authentications += 1
            return True
        if self.authenticated:
            return True
        self._challenge()
        return False

    def _certificate(self) -> bool:
        """Certificate authentication ([MS-WSMV] 2.2.9.3, Authorization: …/secprofile/https/mutual): TLS verified
        the client certificate against the trusted CA; WinRM then maps it to an account by the user principal name
        in its subject alternative name (otherName UPN) and requires the Client Authentication usage
        (learn.microsoft.com/windows/win32/winrm/authentication-for-remote-connections, "Certificate-based
        authentication"; New-Item WSMan:\\localhost\\ClientCertificate -Subject <UPN> -Credential …)."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        owner = self.owner
        der = self.connection.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        account = None
        if der:
            certificate = x509.load_der_x509_certificate(der)
            try:
                names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                names, usages = None, None
            if names is not None and usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH in usages:
                upns = [_der_utf8(n.value) for n in names.get_values_for_type(x509.OtherName)
                        if n.type_id.dotted_string == UPN_OID]
                account = next((owner.certificates[u.lower()] for u in upns if u.lower() in owner.certificates),
                               None)
        if account is None:
            self._challenge()
            return False
        self.authenticated = True
        self.logon = RemoteLogon(account, False, owner.accounts)  # a mapped logon: no credential to pass on
        with owner.lock:
            owner.authentications += 1
        return True

    def _credssp(self, token: bytes) -> bool:
        """CredSSP ([MS-CSSP]) with pyspnego's acceptor: TLS inside HTTP, NTLM inside TLS (NTLM_USER_FILE), then the
        client delegates its password (TSPasswordCreds). Like Windows, the logon is the delegated credential's: it
        must be a valid account, and it can make a second hop."""
        owner = self.owner
        if self.credssp is None or self.credssp.complete:
            self.credssp = spnego.server(protocol="credssp")
            self.authenticated = False
        try:
            out = self.credssp.step(token)
        except spnego.exceptions.SpnegoError:
            self.credssp = None
            self._challenge()
            return False
        if not self.credssp.complete:
            self._challenge(out or None, "CredSSP")
            return False
        delegated = self.credssp.get_extra_info("client_credential")
        user = f"{delegated.domain_name}\\{delegated.username}".lower()
        if owner.users.get(user) != delegated.password:
            self.credssp = None
            self._challenge()  # Windows refuses a logon with a delegated credential that does not authenticate
            return False
        self.authenticated = True
        self.security = self.credssp
        self.logon = RemoteLogon(user, True, owner.accounts)
        with owner.lock:
            owner.authentications += 1
        return True

    def _kerberos(self, token: bytes) -> bool:
        """A Kerberos AP-REQ, accepted with the service key from the keytab (KRB5_KTNAME) by MIT krb5 (gssapi via
        pyspnego). The logon can make a second hop only when the client forwarded its ticket-granting ticket: the
        delegated credential must be the client's own (gss_accept_sec_context's delegated_cred_handle)."""
        import gssapi

        owner = self.owner
        # python-gssapi's raw call, not pyspnego, accepts: on a failure it hands back MIT's KRB-ERROR token (clock
        # skew, …), which goes to the client in the 401 as [MS-KILE] 3.4.5 says; pyspnego's proxy then seals.
        try:
            accepted = gssapi.raw.accept_sec_context(token)
        except gssapi.raw.GSSError as exc:
            self.authenticated = False
            self._challenge(getattr(exc, "token", None) or None)
            return False
        out = accepted.token
        gss = gssapi.SecurityContext(base=accepted.context)
        context = spnego.server(protocol="kerberos")
        context._context, context._context_attr = gss, int(accepted.flags)  # type: ignore[attr-defined]
        self.authenticated = True
        self.security = context
        self.auth_reply = "Negotiate " + base64.b64encode(out).decode()
        principal = str(gssapi.Name(base=accepted.initiator_name))
        delegated = accepted.delegated_creds
        forwarded = delegated is not None and str(gssapi.Credentials(base=delegated).name) == principal
        self.logon = RemoteLogon(principal, forwarded, verify=_kdc_accepts)
        with owner.lock:
            owner.authentications += 1
        return True

    def do_POST(self) -> None:
        owner = self.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        with owner.lock:
            owner.http_requests += 1
        if owner.delay_ms:
            time.sleep(owner.delay_ms / 1000)
        if not self._authenticate():
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))
        if content_type.startswith("multipart/x-multi-encrypted"):
            with owner.lock:
                owner.multi_encrypted_requests += 1
        if encrypted:
            body = self._decrypt(body)
            with owner.lock:
                owner.encrypted_requests += 1
        elif body and owner.tls is None and owner.require_encryption_over_http and (
                {"ntlm", "kerberos", "credssp"} & set(owner.auth)):
            self._reply(401)  # WinRM refuses unencrypted messages over http (AllowUnencrypted = false)
            return
        if not body:
            self._reply(200)
            return
        root = ET.fromstring(body)
        action_uri = root.findtext("s:Header/a:Action", namespaces=NS) or ""
        message_id = root.findtext("s:Header/a:MessageID", namespaces=NS) or ""
        action = ACTIONS.get(action_uri, "Unknown")
        fault = owner.fault_for(action)
        if fault is not None and fault.kind == "500":
            self._reply(500, b"Internal Server Error", content_type="text/plain")
            return
        if fault is not None and fault.kind == "forget":
            owner.shells.clear()
        if fault is not None and fault.kind == "close":
            self.close_connection = True
        if fault is not None and fault.kind == "silent":
            owner.released.wait()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "slow":
            owner.released.wait(fault.seconds)
        status, reply = self._dispatch(action, action_uri, message_id, root, fault)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "cut":
            self.send_response(status)
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply[: len(reply) // 2])
            self.wfile.flush()
            self.close_connection = True
            return  # (encrypted or not: the client gets half a reply)
        if encrypted:
            self._reply_encrypted(status, reply)
        else:
            self._reply(status, reply)

    def _reply_encrypted(self, status: int, reply: bytes) -> None:
        """[MS-WSMV] 2.2.9.1: SPNEGO (NTLM, Kerberos) seals the message with a signature header; CredSSP seals it
        as TLS records in chunks of at most 16 KiB (multipart/x-multi-encrypted when there are several), each after
        the 4-byte length of the TLS trailer."""
        credssp = self.security is self.credssp
        protocol = CREDSSP_PROTOCOL if credssp else PROTOCOL
        size = CREDSSP_CHUNK if credssp else max(len(reply), 1)
        chunks = [reply[i:i + size] for i in range(0, len(reply), size)] or [b""]
        framed = b""
        for chunk in chunks:
            if credssp:
                cipher = self.security.get_extra_info("ssl_object").cipher()[0]  # type: ignore[union-attr]
                trailer = Encryption._get_credssp_trailer_length(None, len(chunk), cipher)  # type: ignore[arg-type]
                payload = struct.pack("<i", trailer) + self.security.wrap(chunk).data  # type: ignore[union-attr]
            else:
                wrapped = self.security.wrap_winrm(chunk)  # type: ignore[union-attr]
                payload = struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
            framed += (BOUNDARY + b"\r\n\tContent-Type: " + protocol.encode() + b"\r\n\tOriginalContent: "
                       b"type=application/soap+xml;charset=UTF-8;Length=" + str(len(chunk)).encode() + b"\r\n" +
                       BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n" + payload)
        kind = "multipart/x-multi-encrypted" if len(chunks) > 1 else "multipart/encrypted"
        self._reply(status, framed + BOUNDARY + b"--\r\n",
                    content_type=f'{kind};protocol="{protocol}";boundary="Encrypted Boundary"')

    def _decrypt(self, body: bytes) -> bytes:
        parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
        plain = b""
        for header, payload in zip(parts[0::2], parts[1::2], strict=False):
            length = int(re.search(rb"Length=(\d+)", header).group(1))  # type: ignore[union-attr]
            if payload.endswith(BOUNDARY + b"--\r\n"):
                payload = payload[: -len(BOUNDARY + b"--\r\n")]
            payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            if self.security is self.credssp:
                chunk = self.security.unwrap(payload[4:]).data  # type: ignore[union-attr]  # after the trailer length
            else:
                signature_length = struct.unpack("<i", payload[:4])[0]
                chunk = self.security.unwrap_winrm(  # type: ignore[union-attr]
                    payload[4:4 + signature_length], payload[4 + signature_length:])
            assert len(chunk) == length
            plain += chunk
        return plain

    def _dispatch(self, action: str, action_uri: str, message_id: str, root: ET.Element,
                  fault: Fault | None) -> tuple[int, bytes]:
        owner = self.owner
        shell_id = root.findtext("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", namespaces=NS)
        timeout = root.findtext("s:Header/w:OperationTimeout", namespaces=NS) or "PT20S"
        if action == "Create":
            shell_id = str(uuid.uuid4()).upper()
            owner.shells[shell_id] = {}
            body = ('<x:ResourceCreated xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
                    "<a:Address>http://127.0.0.1/wsman</a:Address><a:ReferenceParameters>"
                    "<w:ResourceURI>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd</w:ResourceURI>"
                    f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
                    f"</a:ReferenceParameters></x:ResourceCreated><rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId>"
                    "</rsp:Shell>")
            return 200, _envelope(action_uri, message_id, body)
        if shell_id not in owner.shells:
            return 500, _fault(2150858843, "InvalidSelectors", f"The request for the Windows Remote Shell with "
                                                               f"ShellId {shell_id} failed because the shell was not "
                                                               "found on the server.")
        commands = owner.shells[shell_id]
        if action == "Command":
            command = root.findtext("s:Body/rsp:CommandLine/rsp:Command", namespaces=NS) or ""
            arguments = root.findtext("s:Body/rsp:CommandLine/rsp:Arguments", namespaces=NS) or ""
            command_id = str(uuid.uuid4()).upper()
            commands[command_id] = owner.start_command(command, arguments, self.logon)
            if owner.state_dir is not None:
                name = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
                commands[command_id].state_path = owner.state_dir / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.json"
            body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
            return 200, _envelope(action_uri, message_id, body)
        if action == "Send":
            stream = root.find("s:Body/rsp:Send/rsp:Stream", namespaces=NS)
            command = commands[stream.get("CommandId", "")]  # type: ignore[union-attr]
            command.stdin.extend(base64.b64decode(stream.text or ""))  # type: ignore[union-attr]
            command.stdin_closed = stream.get("End", "false").lower() == "true"  # type: ignore[union-attr]
            return 200, _envelope(action_uri, message_id, "<rsp:SendResponse/>")
        if action == "Receive":
            stream = root.find("s:Body/rsp:Receive/rsp:DesiredStream", namespaces=NS)
            command_id = stream.get("CommandId", "")  # type: ignore[union-attr]
            command = commands.get(command_id)
            if command is None:  # ended by Signal terminate before
                return 500, _fault(2150858843, "InvalidSelectors", f"The command {command_id} was terminated.")
            if fault is not None and fault.kind == "delay":
                command.hold_until = time.monotonic() + fault.seconds
            wait = command.hold_until - time.monotonic()
            if wait > 0 or (command.needs_stdin and not command.stdin_closed):
                seconds = float(re.sub(r"[^0-9.]", "", timeout) or 20)
                # A Signal terminate on another connection ends the wait (the command never runs then).
                if not command.terminated.wait(min(max(wait, 0.0), seconds)):
                    return 500, _fault(OPERATION_TIMEOUT_CODE, "TimedOut", "The WS-Management service cannot "
                                       "complete the operation within the time specified in OperationTimeout.")
            if command.terminated.is_set():
                # Unverified against real Windows: a Receive for a terminated command answers with a fault.
                return 500, _fault(2150858843, "InvalidSelectors", f"The command {command_id} was terminated.")
            stdout, stderr, exit_code = owner.execute(command)
            streams = "".join(
                f'<rsp:Stream Name="{name}" CommandId="{command_id}">{base64.b64encode(data).decode()}</rsp:Stream>'
                for name, data in (("stdout", stdout), ("stderr", stderr)) if data)
            body = (f"<rsp:ReceiveResponse>{streams}"
                    f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"></rsp:Stream>'
                    f'<rsp:Stream Name="stderr" CommandId="{command_id}" End="true"></rsp:Stream>'
                    f'<rsp:CommandState CommandId="{command_id}" '
                    'State="http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done">'
                    f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>")
            return 200, _envelope(action_uri, message_id, body)
        if action == "Signal":
            signal = root.find("s:Body/rsp:Signal", namespaces=NS)
            owner.signals.append(root.findtext("s:Body/rsp:Signal/rsp:Code", namespaces=NS) or "")
            stopped = commands.pop(signal.get("CommandId", "") if signal is not None else "", None)
            if stopped is not None:
                stopped.terminated.set()
            return 200, _envelope(action_uri, message_id, "<rsp:SignalResponse/>")
        if action == "Delete":
            owner.shells.pop(shell_id, None)
            return 200, _envelope(action_uri, message_id, "")
        return 500, _fault(2150858817, "ActionNotSupported", f"The action {action_uri} is not supported.")


def main() -> None:
    """Run the loopback server by hand: python -m tests.servers.winrm --port 55985 (see the README)."""
    import argparse
    import os
    import signal
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description="Loopback WinRM server backed by the exkit sandbox organisation.")
    parser.add_argument("--port", type=int, default=55985)
    parser.add_argument("--state", type=Path, default=Path(".exkit/loopback-exchange.json"))
    parser.add_argument("--user", default="LAB\\exkit-admin", help="DOMAIN\\user allowed to connect")
    arguments = parser.parse_args()
    password = os.environ.get("EXKIT_WINRM_PASSWORD")
    if not password:
        parser.error("set EXKIT_WINRM_PASSWORD to the password the server should accept")
    domain, _, user = arguments.user.partition("\\")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # cleans up as Ctrl-C does
    with tempfile.TemporaryDirectory(prefix="exkit-winrm-") as scratch:  # removed on exit, Ctrl-C included
        users = Path(scratch) / "ntlm-users"
        users.write_text(f"{domain}:{user}:{password}\n", encoding="utf-8")
        os.environ["NTLM_USER_FILE"] = str(users)
        try:
            server = LoopbackWinRM(arguments.state, {arguments.user: password}, port=arguments.port)
        except OSError as exc:  # e.g. EADDRINUSE: another server (or a test) holds the port
            parser.exit(1, f"loopback WinRM: cannot listen on 127.0.0.1:{arguments.port}: {exc.strerror or exc}; "
                           "stop the other server or choose another --port\n")
        _serve(server, arguments.state)


def _serve(server: LoopbackWinRM, state: Path) -> None:
    with server:
        try:  # a Ctrl-C right after the line is out (while print returns) stops it as quietly as a later one
            print(f"loopback WinRM (NTLM, http with message encryption) on 127.0.0.1:{server.port}, "
                  f"organisation {state}; Ctrl-C stops it", flush=True)
            server.thread.join()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
