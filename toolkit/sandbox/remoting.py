"""The second hop: what a remote session opened from inside a WinRM session needs, as a real Exchange checks it.

A script run over WinRM that opens ``New-PSSession -ConnectionUri http://<exchange>/PowerShell/ -Authentication
Kerberos`` authenticates a second time, from the WinRM server to Exchange. Without ``-Credential`` that logon uses
what the WinRM logon holds: after NTLM (or Kerberos without delegation) nothing usable, so it fails with "Access is
denied"; after Kerberos with a forwarded ticket-granting ticket, or after CredSSP (the password was delegated), it
succeeds. With ``-Credential`` Kerberos authenticates those credentials, whatever the first hop was.
Sources: learn.microsoft.com/powershell/scripting/security/remoting/ps-remoting-second-hop (the second hop problem,
CredSSP, Kerberos delegation, passing credentials inside the Invoke-Command script block) and
learn.microsoft.com/powershell/exchange/connect-to-exchange-servers-using-remote-powershell (New-PSSession
-ConfigurationName Microsoft.Exchange -ConnectionUri http://<ServerFQDN>/PowerShell/ -Authentication Kerberos
-Credential $UserCredential). The error text is PowerShell's PSRemotingTransportException for a refused logon
(about_Remote_Troubleshooting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from toolkit.sandbox.commands import CmdletError
from toolkit.sandbox.dotnet import SecureString
from toolkit.sandbox.values import PSObject


@dataclass(frozen=True)
class RemoteLogon:
    """Who a WinRM session runs as, and whether its logon can make a second hop (a delegated ticket or CredSSP's
    delegated password). ``accounts`` are the domain's accounts (``DOMAIN\\user`` or ``user@REALM``, lower case →
    password) against which an explicit ``-Credential`` is checked, unless ``verify`` checks it (a Kerberos
    domain: the KDC decides)."""

    user: str
    delegated: bool
    accounts: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify: Callable[[str, str], bool] | None = field(default=None, repr=False, compare=False)


def check_second_hop(logon: RemoteLogon | None, uri: str, credential: Any) -> None:
    """Raise the error Exchange's remote session would give, or return when the logon succeeds. No logon: the
    script runs where its user is logged on interactively (the plain sandbox, or by hand): the first hop."""
    host = urlsplit(uri).hostname or uri
    if credential is not None:
        if not (isinstance(credential, PSObject) and credential.type_name.endswith(".PSCredential")):
            raise CmdletError("Cannot process argument transformation on parameter 'Credential'. A command that "
                              "prompts the user failed because the host program or the command type does not "
                              "support user interaction.", "InvalidArgument")
        if logon is None:
            return
        password = credential.get("Password")
        user = str(credential.get("UserName"))
        if isinstance(password, SecureString):
            if logon.verify is not None and logon.verify(user, password.reveal()):
                return
            known = logon.accounts.get(user.lower())
            if logon.verify is None and known is not None and known == password.reveal():
                return
        raise CmdletError(_denied(host, "The user name or password is incorrect."), "OpenError")
    if logon is None or logon.delegated:
        return
    raise CmdletError(_denied(host, "Access is denied."), "OpenError")


def _denied(host: str, reason: str) -> str:
    return (f"[{host}] Connecting to remote server {host} failed with the following error message : {reason} For "
            "more information, see the about_Remote_Troubleshooting Help topic.")
