"""Kerberos for WinRM: pyspnego over MIT krb5 (gssapi), installed with ``pip install 'exkit[kerberos]'``.

pywinrm's own Kerberos path needs pykerberos and a ticket cache a ``kinit`` wrote. exkit authenticates in-process:
with a password (a reference) the ticket-granting ticket is acquired into a MEMORY credential cache of this process
(pyspnego's kinit: krb5_get_init_creds_password, then gss_acquire_cred_from), never written to disk; without one, the
tickets come from the user's cache (KRB5CCNAME, or the default cache). Realms, KDCs and host-to-realm mapping are
MIT krb5's, as admins configure them (krb5.conf, KRB5_CONFIG).

On the wire it is what pywinrm does with Windows: ``Authorization: Negotiate <Kerberos AP-REQ>`` on the first
request (preemptive), mutual authentication (the server's AP-REP is checked), and for http WinRM message encryption
with the Kerberos session key (gss_wrap_iov, pyspnego's wrap_winrm; [MS-WSMV] 2.2.9.1).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import requests
import winrm.transport


class KerberosError(Exception):
    """Kerberos failed before the script started; ``message`` is one line and holds no secret."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# MIT krb5 error codes (krb5/krb5_err.et, the com_err table "krb5"): what each classic failure means for a user.
_SKEW = -1765328347                 # KRB5KRB_AP_ERR_SKEW "Clock skew too great"
_S_PRINCIPAL_UNKNOWN = -1765328377  # KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN "Server not found in Kerberos database"
_C_PRINCIPAL_UNKNOWN = -1765328378  # KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN "Client not found in Kerberos database"
_PREAUTH_FAILED = -1765328360       # KRB5KDC_ERR_PREAUTH_FAILED "Preauthentication failed"
_INTEGRITY = -1765328353            # KRB5KRB_AP_ERR_BAD_INTEGRITY (a wrong password without pre-authentication)
_KDC_UNREACH = -1765328228          # KRB5_KDC_UNREACH "Cannot contact any KDC for realm"
_REALM_UNKNOWN = -1765328230        # KRB5_REALM_UNKNOWN "Cannot find KDC for realm"
_NO_CACHE = (-1765328189, -1765328243)  # KRB5_FCC_NOFILE "No credentials cache found", KRB5_CC_NOTFOUND


def is_available() -> bool:
    try:
        import gssapi  # noqa: F401
        import krb5  # noqa: F401
        import spnego  # noqa: F401
    except ImportError:
        return False
    return True


class KerberosAuth(requests.auth.AuthBase):
    """A requests auth for one WinRM endpoint: one security context per connection (pywinrm keeps one)."""

    def __init__(self, principal: str | None, password: str | None, host: str, *, delegate: bool,
                 service: str = "HTTP") -> None:
        self.principal = principal
        self._password = password
        self.host = host
        self.service = service
        self.delegate = delegate
        self.context: Any = None
        self.server_authenticated = False

    def spn(self) -> str:
        return f"{self.service}/{self.host}"

    def _new_context(self) -> Any:
        import spnego

        wanted = (spnego.ContextReq.mutual_auth | spnego.ContextReq.sequence_detect | spnego.ContextReq.integrity |
                  spnego.ContextReq.confidentiality)
        if self.delegate:
            wanted |= spnego.ContextReq.delegate  # pyspnego then requests a forwardable TGT and forwards it
        return spnego.client(self.principal, self._password, hostname=self.host, service=self.service,
                             protocol="kerberos", context_req=wanted)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.context is None:
            try:
                self.context = self._new_context()
                token = self.context.step()
            except Exception as exc:  # krb5.Krb5Error, spnego.exceptions.SpnegoError (optional imports)
                raise KerberosError(self.explain(exc)) from None
            request.headers["Authorization"] = "Negotiate " + base64.b64encode(token).decode("ascii")
        request.register_hook("response", self._response)  # type: ignore[no-untyped-call]
        return request

    def _response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        token = _negotiate_token(response)
        if token is not None and self.context is not None and not self.context.complete:
            try:
                self.context.step(token)  # the AP-REP (the server proved it holds the service key), or a KRB-ERROR
            except Exception as exc:
                raise KerberosError(self.explain(exc)) from None
            self.server_authenticated = self.context.complete
        if response.status_code == 401 and not self.server_authenticated:
            raise KerberosError(f"Kerberos: {self.host} refused the ticket for {self.spn()} (HTTP 401): the keytab "
                                "of the WinRM host does not hold that service principal's current key, or the "
                                "account may not use WinRM there")
        if response.status_code < 400 and not self.server_authenticated:
            raise KerberosError(f"Kerberos: {self.host} answered without authenticating itself (no mutual "
                                "authentication token); refusing to talk to it")
        return response

    # pywinrm's Encryption calls these for transport kerberos (winrm/encryption.py).
    def wrap_winrm(self, host: str, message: bytes) -> tuple[bytes, bytes]:
        wrapped = self.context.wrap_winrm(message)
        return wrapped.data, wrapped.header

    def unwrap_winrm(self, host: str, message: bytes, signature: bytes) -> bytes:
        return bytes(self.context.unwrap_winrm(signature, message))

    def explain(self, exc: BaseException) -> str:
        """One line for a Kerberos failure: what it means and what to do. Passwords never reach these texts (MIT
        krb5's messages name principals and realms only)."""
        code = _code(exc)
        who = self.principal or "the default principal"
        realm = (self.principal or "").partition("@")[2] or "the default realm"
        if code == _SKEW:
            return ("Kerberos: the clocks of this machine and the KDC differ by more than the allowed skew (5 minutes "
                    "by default): synchronise this machine's clock (NTP) with the domain's")
        if code == _S_PRINCIPAL_UNKNOWN:
            return (f"Kerberos: the KDC does not know the service principal {self.spn()}: use the WinRM host's name "
                    f"as its SPN is registered (not an IP address or an alias), or register it (setspn -S "
                    f"{self.spn()} <computer account>)")
        if code == _C_PRINCIPAL_UNKNOWN:
            return f"Kerberos: the KDC does not know the account {who}: check username (user@REALM)"
        if code in (_PREAUTH_FAILED, _INTEGRITY):
            return (f"Kerberos: the KDC refused the password of {who} (pre-authentication failed): check the "
                    "password reference")
        if code in (_KDC_UNREACH, _REALM_UNKNOWN):
            return (f"Kerberos: cannot reach a KDC of {realm}: check its kdc entries in krb5.conf (KRB5_CONFIG) and "
                    "that port 88 is reachable")
        if code in _NO_CACHE or _is_no_credential(exc):
            return (f"Kerberos: no ticket for {who} in the credential cache ({_cache_name()}): run kinit "
                    f"{self.principal or ''}".rstrip() + ", or give the target a password reference")
        return f"Kerberos authentication to {self.spn()} failed: {_reason(exc)}"


class KerberosTransport(winrm.transport.Transport):
    """pywinrm's transport with exkit's Kerberos auth in place of pywinrm's (which needs pykerberos); everything
    else — the session, TLS settings, proxies, message encryption — is pywinrm's own."""

    def __init__(self, auth: KerberosAuth, **kwargs: Any) -> None:
        super().__init__(auth_method="kerberos", **kwargs)
        self.kerberos = auth

    def build_session(self) -> requests.Session:
        if self.session:
            return self.session
        wanted = self.message_encryption
        # pywinrm builds the session (verify, CA path, proxies, headers) without an auth of ours; then ours goes in
        self.auth_method, self.message_encryption = "plaintext", "never"
        try:
            session = super().build_session()
        finally:
            self.auth_method, self.message_encryption = "kerberos", wanted
        session.auth = self.kerberos
        if wanted == "always" or (wanted == "auto" and not self.endpoint.lower().startswith("https")):
            self.setup_encryption(session)  # an empty POST sets up the context, then Encryption(session, "kerberos")
        return session


def _negotiate_token(response: requests.Response) -> bytes | None:
    header = response.headers.get("WWW-Authenticate", "")
    match = re.search(r"(?:^|,)\s*(?:Negotiate|Kerberos)\s+([A-Za-z0-9+/=]+)", header)
    return base64.b64decode(match.group(1)) if match else None


def _code(exc: BaseException) -> int | None:
    """The krb5 error code: from krb5.Krb5Error, or the GSS minor status of a pyspnego error (unsigned there)."""
    code = getattr(exc, "err_code", None)
    if code is None:
        base = getattr(exc, "base_error", None)
        code = getattr(base, "min_code", None)
    if code is None:
        match = re.search(r"Minor \((\d+)\)", str(exc))
        code = int(match.group(1)) if match else None
    if isinstance(code, int) and code > 0x7FFFFFFF:
        code -= 1 << 32
    return code


def _is_no_credential(exc: BaseException) -> bool:
    return type(exc).__name__ in ("NoCredentialError", "MissingCredentialsError")


def _cache_name() -> str:
    import os

    return os.environ.get("KRB5CCNAME") or "the default cache"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"Minor \(\d+\): ([^,]+)", text)
    if match:
        return match.group(1).strip()
    return re.sub(r"\s+-?\d+$", "", text).strip() or type(exc).__name__
