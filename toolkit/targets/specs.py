"""What an inventory says about each kind of target (the connectors' settings), validated with pydantic.

The connectors read their settings from here, and the inventory builds connectors through
:func:`toolkit.targets.factory.build_target`: the import arrow runs inventory → targets, never back."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toolkit.boundary import Boundary
from toolkit.playbook.model import VariableValue, problem
from toolkit.secrets import REFERENCE_HINT, is_reference


def _no_credentials_in_url(value: str | None) -> str | None:
    """A URL with user:password@ would put the secret into rendered scripts, logs and records: refused (without
    echoing it)."""
    from urllib.parse import urlsplit

    if value is not None:
        try:
            parts = urlsplit(value)
            has_credentials = parts.username is not None or parts.password is not None
        except ValueError:
            has_credentials = "@" in value
        if has_credentials:
            raise problem("a URL with a user name or password in it is not allowed (the value is not shown)",
                          "give the URL without user:password@; credentials are references: "
                          "username + password: env:NAME")
    return value


class SandboxTargetSpec(BaseModel):
    """The embedded sandbox organisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sandbox"]
    platform: Literal["exchange-server", "exchange-online"] = Field(
        "exchange-server", description="Which Exchange the simulated organisation behaves like.")
    state: str | None = Field(None, description="State file; relative paths are relative to the inventory file. "
                                                "Default: $EXKIT_SANDBOX_STATE or ~/.local/state/exkit/sandbox.json.")
    vars: dict[str, VariableValue] = Field(default_factory=dict)
    templates: str | None = Field(None, description="Template folder layered over the group's and the built-ins.")
    rate_limit: float | None = Field(None, gt=0, description="Round trips per second to this target at most.")
    boundary: Boundary | None = Field(None, description="What this tenant may reach (replaces its group's).")


class ExchangeServerTargetSpec(BaseModel):
    """Exchange Server 2016 / 2019 / SE or a hosted-Exchange management host, over WinRM."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["exchange-server"]
    host: str = Field(description="Host name of the WinRM endpoint (the Exchange server or a management host).")
    port: int | None = Field(None, description="Default 5986 for https, 5985 for http.")
    scheme: Literal["https", "http"] = "https"
    path: str = "/wsman"
    transport: Literal["kerberos", "ntlm", "credssp", "certificate", "basic"]
    username: str | None = Field(None, description="DOMAIN\\user (ntlm, credssp), user@REALM (kerberos), user (basic).")
    password: str | None = Field(None, description="A reference: env:NAME, keyring:SERVICE/USER or prompt.")
    cert_pem: str | None = Field(None, description="Client certificate (transport: certificate).")
    cert_key_pem: str | None = Field(None, description="Client certificate key (transport: certificate).")
    ca_trust_path: str | None = Field(None, description="CA bundle that validates the server certificate.")
    server_cert_validation: Literal["validate", "ignore"] = "validate"
    message_encryption: Literal["auto", "always", "never"] = "auto"
    operation_timeout: int = Field(20, ge=1, description="WS-Management OperationTimeout, seconds.")
    read_timeout: int = Field(30, ge=2, description="Longest wait for an answer from the server, seconds, in total "
                                                     "over the retries of a request; must exceed operation_timeout.")
    connect_timeout: float = Field(10.0, gt=0, description="TCP connect and TLS handshake, seconds.")
    proxy: str | None = Field(None, description="HTTP proxy URL for WinRM; none by default (environment proxy "
                                                "variables are not read, as pywinrm recommends).")
    retries: int = Field(2, ge=0, le=10, description="Retries (with backoff) when connecting or starting the script "
                                                     "fails; a script that started is never re-sent.")
    connect: Literal["snapin", "remote-session"] = Field(
        "remote-session", description="How the script loads the Exchange cmdlets: an Exchange remote session "
                                      "(supported; a second hop) or the snap-in on the Exchange server itself.")
    exchange_uri: str | None = Field(None, description="Exchange PowerShell URI; default http://<host>/PowerShell/.")
    kerberos_delegation: bool = Field(False, description="transport kerberos: forward the account's ticket-granting "
                                                         "ticket, which the remote session then uses instead of a "
                                                         "passed credential.")
    vars: dict[str, VariableValue] = Field(default_factory=dict)
    templates: str | None = Field(None, description="Template folder layered over the group's and the built-ins.")
    rate_limit: float | None = Field(None, gt=0, description="Round trips per second to this target at most.")
    boundary: Boundary | None = Field(None, description="What this tenant may reach (replaces its group's).")

    _urls = field_validator("exchange_uri", "proxy")(_no_credentials_in_url)

    @field_validator("password")
    @classmethod
    def _password_is_a_reference(cls, value: str | None) -> str | None:
        if value is not None and not is_reference(value):
            # Never echo the value: it may be a real password.
            raise problem("a plaintext password is not allowed in an inventory", REFERENCE_HINT)
        return value

    @model_validator(mode="after")
    def _transport_rules(self) -> ExchangeServerTargetSpec:
        if self.transport == "basic" and self.scheme != "https":
            raise problem("transport basic sends the password in clear: it is allowed only with scheme https",
                          "set scheme: https, or use ntlm or kerberos with message encryption")
        if self.scheme == "http" and (self.message_encryption == "never" or
                                      self.transport not in ("ntlm", "kerberos", "credssp")):
            raise problem("scheme http is allowed only with WinRM message encryption (ntlm, kerberos or credssp, "
                          "message_encryption auto or always)", "use scheme: https, or an encrypting transport")
        if self.transport == "certificate" and not (self.cert_pem and self.cert_key_pem):
            raise problem("transport certificate needs cert_pem and cert_key_pem", "give the client certificate "
                                                                                     "and key files")
        if self.transport in ("ntlm", "credssp", "basic") and (
                not self.username or not self.password):
            raise problem(f"transport {self.transport} needs username and password (a reference)",
                          "e.g. username: CONTOSO\\exkit-admin, password: env:EXKIT_WINRM_PASSWORD")
        if self.kerberos_delegation and self.transport != "kerberos":
            raise problem("kerberos_delegation goes with transport kerberos only", "remove it, or use kerberos")
        if self.connect == "remote-session" and self.transport == "certificate":
            raise problem("connect: remote-session is a second hop, which needs the account's password (passed to "
                          "the remote session) or a delegated ticket: a client certificate gives neither",
                          "use connect: snapin on the Exchange server itself, or another transport")
        if self.read_timeout <= self.operation_timeout:
            raise problem("read_timeout must be greater than operation_timeout", "e.g. 20 and 30")
        return self

    @property
    def endpoint(self) -> str:
        port = self.port or (5986 if self.scheme == "https" else 5985)
        return f"{self.scheme}://{self.host}:{port}{self.path}"


class ExchangeOnlineTargetSpec(BaseModel):
    """An Exchange Online tenant, reached with app-only auth (msal) and the admin REST endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["exchange-online"]
    tenant: str = Field(description="Tenant id or initial domain (contoso.onmicrosoft.com).")
    organization: str | None = Field(None, description="Initial domain for Connect-ExchangeOnline; default: tenant.")
    client_id: str = Field(description="Application (client) id of the app exkit signs in as.")
    certificate: str | None = Field(None, description="PEM file with the certificate and its private key.")
    certificate_pfx: str | None = Field(None, description="PFX (PKCS#12) file with the certificate and key.")
    certificate_password: str | None = Field(None, description="Reference to the PFX password.")
    client_secret: str | None = Field(None, description="Reference to a client secret (certificates are preferred).")
    cloud: Literal["global", "gcc-high", "dod", "china", "custom"] = "global"
    login_endpoint: str | None = Field(None, description="cloud: custom only.")
    exchange_endpoint: str | None = Field(None, description="cloud: custom only.")
    graph_endpoint: str | None = Field(None, description="cloud: custom only: the Microsoft Graph root verify reads "
                                                          "Entra consent from (without it, that check is not done).")
    ca_trust_path: str | None = Field(None, description="CA bundle for TLS validation (default: the system's).")
    max_retries: int = Field(8, ge=0, description="Retries of a throttled or failed call.")
    connect_timeout: float = Field(10.0, gt=0, description="TCP connect and TLS handshake, seconds.")
    token_timeout: float = Field(20.0, gt=0, description="Sign-in (the identity endpoint's discovery and token "
                                                         "requests), seconds in total.")
    call_timeout: float = Field(900.0, gt=0, description="Each InvokeCommand call, seconds in total over its retries "
                                                         "(Microsoft documents a 15-minute timeout for REST-backed "
                                                         "cmdlets).")
    max_wait: float = Field(60.0, gt=0, description="Longest single wait between retries, seconds.")
    reads_in_flight: int = Field(4, ge=1, le=16, description="The collection reads a script needs are sent before "
                                                             "it runs, at most this many at once (1: one at a time).")
    vars: dict[str, VariableValue] = Field(default_factory=dict)
    templates: str | None = Field(None, description="Template folder layered over the group's and the built-ins.")
    rate_limit: float | None = Field(None, gt=0, description="Round trips per second to this target at most.")
    boundary: Boundary | None = Field(None, description="What this tenant may reach (replaces its group's).")

    _urls = field_validator("login_endpoint", "exchange_endpoint")(_no_credentials_in_url)

    @field_validator("client_secret", "certificate_password")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not is_reference(value):
            raise problem("a plaintext secret is not allowed in an inventory", REFERENCE_HINT)
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ExchangeOnlineTargetSpec:
        given = [k for k in ("certificate", "certificate_pfx", "client_secret") if getattr(self, k)]
        if len(given) != 1:
            raise problem("give exactly one credential: certificate, certificate_pfx or client_secret",
                          "a certificate is Microsoft's documented path for app-only Exchange Online")
        if self.graph_endpoint and self.cloud != "custom":
            raise problem("graph_endpoint goes with cloud: custom only",
                          "the clouds global, gcc-high, dod and china know their own Graph endpoint")
        if (self.cloud == "custom") != bool(self.login_endpoint and self.exchange_endpoint):
            raise problem("login_endpoint and exchange_endpoint go with cloud: custom, and only with it",
                          "the clouds global, gcc-high, dod and china know their own endpoints")
        organization = (self.organization or self.tenant).lower()
        if not organization.endswith(ORGANIZATION_DOMAINS):
            # Connect-ExchangeOnline -Organization takes the tenant's initial (*.onmicrosoft.com) domain, not its id.
            raise problem(f"Connect-ExchangeOnline needs the tenant's initial domain as -Organization, not "
                          f"{organization!r}", "add organization: <tenant>.onmicrosoft.com (its initial domain)")
        return self


ORGANIZATION_DOMAINS = (".onmicrosoft.com", ".onmicrosoft.us", ".onmschina.cn")  # global, US government, China


TargetSpec = Annotated[SandboxTargetSpec | ExchangeServerTargetSpec | ExchangeOnlineTargetSpec,
                       Field(discriminator="kind")]
