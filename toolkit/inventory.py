"""Inventories: the targets a playbook can run against, and the variables each supplies.

Variable precedence (lowest first): the playbook's ``vars:`` → the inventory's top-level ``vars:`` → the target's
``vars:`` → ``--var`` on the command line. With no inventory, the target is the embedded sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import ExkitError
from toolkit.playbook.diagnostics import Diagnostics, PlaybookError
from toolkit.playbook.load import parse_yaml
from toolkit.playbook.model import VariableValue, problem
from toolkit.secrets import REFERENCE_HINT, is_reference
from toolkit.playbook.validate import report_model_errors
from toolkit.targets.base import Target
from toolkit.throttle import RateLimiter

DEFAULT_TARGET = "sandbox"


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
    read_timeout: int = Field(30, ge=2, description="HTTP read timeout, seconds; must exceed operation_timeout.")
    proxy: str | None = Field(None, description="HTTP proxy URL for WinRM; none by default (environment proxy "
                                                "variables are not read, as pywinrm recommends).")
    retries: int = Field(2, ge=0, le=10, description="Retries (with backoff) when connecting or starting the script "
                                                     "fails; a script that started is never re-sent.")
    connect: Literal["snapin", "remote-session"] = Field(
        "remote-session", description="How the script loads the Exchange cmdlets: an Exchange remote session "
                                      "(supported; a second hop) or the snap-in on the Exchange server itself.")
    exchange_uri: str | None = Field(None, description="Exchange PowerShell URI; default http://<host>/PowerShell/.")
    vars: dict[str, VariableValue] = Field(default_factory=dict)
    templates: str | None = Field(None, description="Template folder layered over the group's and the built-ins.")
    rate_limit: float | None = Field(None, gt=0, description="Round trips per second to this target at most.")

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
        if self.connect == "remote-session" and self.transport not in ("kerberos", "credssp"):
            raise problem(f"connect: remote-session is a second hop, which transport {self.transport} cannot make "
                          "(no credentials to delegate)",
                          "use transport kerberos (with delegation) or credssp, or connect: snapin on the Exchange "
                          "server itself")
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
    ca_trust_path: str | None = Field(None, description="CA bundle for TLS validation (default: the system's).")
    max_retries: int = Field(8, ge=0, description="Retries of a throttled or failed call.")
    max_wait: float = Field(60.0, gt=0, description="Longest single wait between retries, seconds.")
    vars: dict[str, VariableValue] = Field(default_factory=dict)
    templates: str | None = Field(None, description="Template folder layered over the group's and the built-ins.")
    rate_limit: float | None = Field(None, gt=0, description="Round trips per second to this target at most.")

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
        if (self.cloud == "custom") != bool(self.login_endpoint and self.exchange_endpoint):
            raise problem("login_endpoint and exchange_endpoint go with cloud: custom, and only with it",
                          "the clouds global, gcc-high, dod and china know their own endpoints")
        return self


TargetSpec = Annotated[SandboxTargetSpec | ExchangeServerTargetSpec | ExchangeOnlineTargetSpec,
                       Field(discriminator="kind")]


class Group(BaseModel):
    """Targets that share variables and template overrides, e.g. a hosting provider's tenants."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vars: dict[str, VariableValue] = Field(default_factory=dict, description="Variables for the group's targets.")
    templates: str | None = Field(None, description="Template folder layered over the built-in templates.")
    targets: dict[str, TargetSpec] = Field(default_factory=dict)


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vars: dict[str, VariableValue] = Field(default_factory=dict, description="Variables for every target.")
    targets: dict[str, TargetSpec] = Field(default_factory=dict)
    groups: dict[str, Group] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> Inventory:
        seen: dict[str, str] = {name: "the top level" for name in self.targets}
        for group_name, group in self.groups.items():
            for name in group.targets:
                if name in seen:
                    raise problem(f"target {name!r} is declared in {seen[name]} and in group {group_name!r}",
                                  "target names must be unique across the inventory")
                seen[name] = f"group {group_name!r}"
        return self

    def entries(self) -> dict[str, tuple[str | None, Any]]:
        """Every target by name: (its group or None, its spec), in a stable order."""
        found: dict[str, tuple[str | None, Any]] = {name: (None, spec) for name, spec in self.targets.items()}
        for group_name, group in self.groups.items():
            found.update({name: (group_name, spec) for name, spec in group.targets.items()})
        return dict(sorted(found.items()))


class InventoryError(ExkitError):
    pass


def load_inventory(path: Path) -> Inventory:
    diagnostics = Diagnostics()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read the inventory {path}: {exc.strerror or exc}") from None
    document = parse_yaml(text, str(path), diagnostics)
    if document is not None:
        try:
            return Inventory.model_validate(document.data or {})
        except ValidationError as exc:
            report_model_errors(exc, document, diagnostics, Inventory)
    raise PlaybookError(diagnostics)


class ResolvedTarget:
    """A chosen target: its connector, the variables it supplies (with where each came from), its template layers
    (most specific first) and its group."""

    def __init__(self, name: str, target: Target, variables: dict[str, Any], *, group: str | None = None,
                 templates: list[Path] | None = None, sources: dict[str, str] | None = None) -> None:
        self.name = name
        self.target = target
        self.variables = variables
        self.group = group
        self.templates = templates or []
        self.sources = sources or {}

    def template_layers(self, cli_templates: Path | None) -> list[Path]:
        """--templates (most specific), then the target's folder, then its group's; the built-ins come last."""
        return ([cli_templates] if cli_templates else []) + self.templates


def resolve_target(inventory_path: Path | None, target_name: str | None,
                   platform: str = "exchange-server") -> ResolvedTarget:
    """The target to run on. Without an inventory: the sandbox organisation of the playbook's platform."""
    from toolkit.targets.sandbox import SandboxTarget

    if inventory_path is None:
        if target_name not in (None, DEFAULT_TARGET):
            raise InventoryError(f"target {target_name!r} needs an inventory: pass -i INVENTORY "
                                 "(see inventory.example.yaml)")
        return ResolvedTarget(DEFAULT_TARGET, SandboxTarget(platform=platform), {})
    inventory = load_inventory(inventory_path)
    entries = inventory.entries()
    if target_name is None:
        if len(entries) != 1:
            names = ", ".join(entries) or "none"
            raise InventoryError(f"choose a target with -t NAME (the inventory has: {names})")
        target_name = next(iter(entries))
    if target_name not in entries:
        import difflib

        close = difflib.get_close_matches(target_name, list(entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (targets: {', '.join(entries)})"
        raise InventoryError(f"no target {target_name!r} in {inventory_path}{hint}")
    return _resolve(inventory, inventory_path, target_name, *entries[target_name])


def _resolve(inventory: Inventory, inventory_path: Path, name: str, group_name: str | None,
             spec: Any) -> ResolvedTarget:
    from toolkit.targets.sandbox import SandboxTarget

    base = inventory_path.parent
    group = inventory.groups.get(group_name) if group_name else None
    layers = [("inventory", inventory.vars), (f"group {group_name}", group.vars if group else {}),
              (f"target {name}", spec.vars)]
    variables: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            variables[key] = value
            sources[key] = source
    templates = [base / t for t in (spec.templates, group.templates if group else None) if t]
    extra = {"group": group_name, "templates": templates, "sources": sources}
    limiters = (RateLimiter(spec.rate_limit),) if spec.rate_limit else ()
    if isinstance(spec, ExchangeOnlineTargetSpec):
        from toolkit.targets.exchange_online import ExchangeOnlineTarget

        return _limited(ResolvedTarget(name, ExchangeOnlineTarget(spec, name, base), variables, **extra), limiters)
    if isinstance(spec, ExchangeServerTargetSpec):
        from toolkit.targets.winrm import WinRMTarget

        return _limited(ResolvedTarget(name, WinRMTarget(spec, name, base), variables, **extra), limiters)
    state = None
    if spec.state:
        state = Path(spec.state)
        if not state.is_absolute():
            state = base / state
    return _limited(ResolvedTarget(name, SandboxTarget(state, name=name, platform=spec.platform), variables, **extra),
                    limiters)


def _limited(resolved: ResolvedTarget, limiters: tuple[RateLimiter, ...]) -> ResolvedTarget:
    resolved.target.limiters = limiters
    return resolved


def select_targets(inventory_path: Path, limit: str | None = None, platform: str | None = None) -> list[ResolvedTarget]:
    """Targets whose name or group matches the --limit pattern (fnmatch; comma-separated patterns), optionally only
    those of one platform."""
    import fnmatch

    inventory = load_inventory(inventory_path)
    patterns = [p.strip() for p in (limit or "*").split(",") if p.strip()]
    chosen = []
    for name, (group, spec) in inventory.entries().items():
        if any(fnmatch.fnmatchcase(name, p) or (group and fnmatch.fnmatchcase(group, p)) for p in patterns):
            resolved = _resolve(inventory, inventory_path, name, group, spec)
            if platform is None or resolved.target.platform == platform:
                chosen.append(resolved)
    if not chosen:
        raise InventoryError(f"no target of {inventory_path} matches --limit {limit!r}"
                             + (f" on platform {platform}" if platform else ""))
    return chosen
