"""The Exchange Online connector's exact outputs: the connection a rendered script makes in each cloud, and the
cmdlet names the tenant sees. (Mutation testing found these read only in part.)"""

from __future__ import annotations

import re
import textwrap
import threading

import pytest
from test_exchange_online import CLIENT_ID, ROOMS, TENANT, exo, pki  # noqa: F401  (fixtures)

ENVIRONMENTS = {"gcc-high": "O365USGovGCCHigh", "dod": "O365USGovDoD", "china": "O365China"}


@pytest.mark.parametrize("cloud", ["global", *ENVIRONMENTS])
def test_the_rendered_script_connects_to_its_cloud(cli, tmp_path, pki, cloud):  # noqa: F811
    _, app_cert, _ = pki
    (tmp_path / "app.pem").write_bytes(app_cert.private_key_pem.bytes() + app_cert.cert_chain_pems[0].bytes())
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          tenant: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, cloud: {cloud},
                   certificate: app.pem}}
        """))
    result = cli("render", ROOMS, "-i", inventory, "-t", "tenant")
    assert result.exit_code == 0, result.stderr
    connects = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("Connect-ExchangeOnline")]
    assert connects, result.stdout
    environment = f" -ExchangeEnvironmentName '{ENVIRONMENTS[cloud]}'" if cloud in ENVIRONMENTS else ""
    for line in connects:
        assert line.endswith(f"-Organization '{TENANT}'{environment} -ShowBanner:$false"), line


def test_the_tenant_is_sent_each_cmdlet_by_its_exact_name(cli, exo, write_playbook):  # noqa: F811
    """Apply, verify and plan of app and user assignments: every InvokeCommand names a cmdlet exactly as Exchange
    Online spells it, the principal reads and the service principal's authorization test among them."""
    from test_exchange_online import RBAC

    from toolkit.sandbox.cmdlets import ExchangeCmdlets
    from toolkit.sandbox.seed import seed_organisation

    server, inventory = exo
    for args in (("apply", ROOMS, "--yes"), ("verify", ROOMS), ("apply", write_playbook(RBAC), "--yes")):
        result = cli(*args, "-i", inventory, "-t", "cert")
        assert result.exit_code == 0, result.stdout + result.stderr
    spelled = set(ExchangeCmdlets(seed_organisation("exchange-online")).commands())
    assert set(server.log.invocations) <= spelled, set(server.log.invocations) - spelled
    assert {"Get-Recipient", "Test-ServicePrincipalAuthorization"} <= set(server.log.invocations)


def test_the_snapshot_reads_policies_and_scope_previews_field_by_field(cli, exo):  # noqa: F811
    from test_exchange_online import POLICY

    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot

    server, inventory = exo
    for playbook in (POLICY, ROOMS):
        assert cli("apply", playbook, "-i", inventory, "-t", "cert", "--yes").exit_code == 0
    target = resolve_target(inventory, "cert", "exchange-online").target
    model, _ = require_playbook(POLICY, {})
    facts = target.read_snapshot(render_snapshot(model), model)
    assert [f for f in facts if f["type"] == "policy"] == [{
        "type": "policy", "identity": f"{TENANT}\\6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11:bookable-rooms@contoso.com",
        "app_id": "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11", "scope_name": "Bookable rooms (all sites)",
        "access_right": "RestrictAccess",
        "description": "Room booking app may reach the members of Bookable Rooms only."}]
    model, _ = require_playbook(ROOMS, {})
    facts = target.read_snapshot(render_snapshot(model), model)
    [preview] = [f for f in facts if f["type"] == "preview"]
    assert preview["scope"] == "Room mailboxes"
    assert preview["recipients"][0] == {"name": "Room Berlin 1", "type": "RoomMailbox",
                                        "address": "room-berlin-1@contoso.com"}
    assert all(r["type"] == "RoomMailbox" and r["name"] and r["address"].endswith("@contoso.com")
               for r in preview["recipients"]), preview
    # the scope exists in the tenant: its own filter's preview is read too, with the same fields
    assert [f for f in facts if f["type"] == "live_preview"] == [
        {"type": "live_preview", "scope": "Room mailboxes", "recipients": preview["recipients"]}]


def test_a_refused_cmdlet_is_exchanges_message_and_exception_type_whole(exo):  # noqa: F811
    from toolkit.inventory import resolve_target
    from toolkit.targets.exchange_online import CmdletFailed

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    scope = {"Name": "Rooms | Berlin", "RecipientRestrictionFilter": "Office -eq 'Berlin'"}
    assert target.invoke("New-ManagementScope", scope)[0]["Name"] == "Rooms | Berlin"
    with pytest.raises(CmdletFailed) as refused:
        target.invoke("New-ManagementScope", scope)
    failed = refused.value
    assert (failed.cmdlet, failed.message, failed.exception_type, failed.not_found) == (
        "New-ManagementScope", "The management scope 'Rooms | Berlin' already exists.",
        "ADObjectAlreadyExistsException", False)
    with pytest.raises(CmdletFailed) as missing:
        target.invoke("Get-ManagementScope", {"Identity": "No | such scope"})
    assert (missing.value.message, missing.value.exception_type, missing.value.not_found) == (
        "The operation couldn't be performed because object 'No | such scope' couldn't be found on "
        "'EURPR01A001DC01.eurprd01.prod.outlook.com'.", "ManagementObjectNotFoundException", True)


def test_an_assignee_the_copy_lacks_is_read_once_by_identity(exo):  # noqa: F811
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    result = target.run_script("Get-ManagementRoleAssignment -RoleAssignee 'clara.costa@contoso.com'\n"
                               "Get-ManagementRoleAssignment -RoleAssignee 'clara.costa@contoso.com'", read_only=True)
    assert result.exit_code == 0, result.stderr
    assert server.log.invocations == ["Get-ManagementRoleAssignment", "Get-Recipient"]


APP = "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11"


def test_a_read_only_run_makes_its_changes_in_the_copy_only(exo):  # noqa: F811
    """read_only sends no change: the script's changes are made in exkit's copy of the tenant (with the tenant's
    roles), so its later reads see them; members read one call each are kept in the copy (a member added again is
    refused as Exchange refuses it)."""
    from toolkit.inventory import resolve_target
    from toolkit.sandbox.seed import seed_organisation

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    result = target.run_script(textwrap.dedent(f"""\
        $p = New-ServicePrincipal -AppId {APP} -ObjectId 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21 -DisplayName App
        $a = New-ManagementRoleAssignment -Role 'Application Mail.Read' -App App
        $a.Name
        (Get-ManagementRoleAssignment -Role 'Application Mail.Read').RoleAssignee
        (Get-RoleGroupMember -Identity 'Organization Management').PrimarySmtpAddress
        Add-RoleGroupMember -Identity 'Organization Management' -Member admin@contoso.com
        (Get-RoleGroup -Identity 'Organization Management').Name
        """), read_only=True)
    assert (result.exit_code, result.stdout, result.stderr, result.notices) == (
        0, "Application Mail.Read-App\n0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21\nadmin@contoso.com\n"
           "Organization Management\n",
        'The recipient "admin@contoso.com" is already a member of the group "Organization Management".\n'
        "    At line:6 char:1", [])
    # the two collections the script names are read ahead, concurrently (either may come first); nothing is changed
    assert sorted(server.log.invocations[:2]) == ["Get-ManagementRoleAssignment", "Get-RoleGroup"]
    assert server.log.invocations[2:] == ["Get-RoleGroupMember"]
    assert server.state_path.read_text() == seed_organisation("exchange-online").to_json()


def test_a_custom_clouds_endpoints_are_used_as_written_less_trailing_slashes(tmp_path):
    from toolkit.inventory import resolve_target

    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          tenant: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, certificate: app.pem,
                   cloud: custom, login_endpoint: 'https://login.contoso.example/AUX/',
                   exchange_endpoint: 'https://exchange.contoso.example/X//', graph_endpoint: 'https://graph.example/'}}
        """))
    assert resolve_target(inventory, "tenant", "exchange-online").target.where() == {
        "endpoint": f"https://exchange.contoso.example/X/adminapi/beta/{TENANT}/InvokeCommand",
        "login": f"https://login.contoso.example/AUX/{TENANT}", "transport": "rest"}


def test_a_certificate_exkit_cannot_sign_in_with_is_refused_with_the_reason(tmp_path, pki):  # noqa: F811
    """Entra's app-only client assertion is signed RS256: an EC key cannot sign it; a PFX without the key cannot
    sign at all. Each is refused before any request, naming the target."""
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import NoEncryption, load_pem_private_key, pkcs12

    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    _, app_cert, _ = pki
    ec = trustme.CA().issue_cert("exkit-app", key_type=trustme.KeyType.ECDSA)
    (tmp_path / "ec.pem").write_bytes(ec.private_key_pem.bytes() + ec.cert_chain_pems[0].bytes())
    certificate = x509.load_pem_x509_certificate(app_cert.cert_chain_pems[0].bytes())
    (tmp_path / "no-key.pfx").write_bytes(pkcs12.serialize_key_and_certificates(b"app", None, certificate, None,
                                                                                NoEncryption()))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          ec: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, certificate: ec.pem}}
          no-key: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, certificate_pfx: no-key.pfx}}
        """))
    key_type = type(load_pem_private_key(ec.private_key_pem.bytes(), None)).__name__.removeprefix("_")  # ECPrivateKey
    for name, message in (
            ("ec", f"target 'ec': the certificate's key is {key_type}; Entra app-only sign-in needs an RSA key (the "
                   "client assertion is signed RS256)"),
            ("no-key", "target 'no-key': the certificate file holds no certificate and key")):
        with pytest.raises(TargetError) as refused:
            resolve_target(inventory, name, "exchange-online").target.connection()
        assert str(refused.value) == message


def test_the_snapshot_sends_each_read_with_exchanges_parameter_names(cli, exo, write_playbook):  # noqa: F811
    """read_snapshot's calls, each as the tenant received it (cmdlet and parameters, spelled as the cmdlet reference
    spells them), and the assignment facts it makes of them: the user of an assignment is resolved for a User
    assignee only (a security group's name is a recipient's name too, but no user)."""
    from test_exchange_online import RBAC

    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot
    from toolkit.targets.sandbox import SandboxTarget

    server, inventory = exo
    assert cli("apply", ROOMS, "-i", inventory, "-t", "cert", "--yes").exit_code == 0
    target = resolve_target(inventory, "cert", "exchange-online").target
    model, _ = require_playbook(ROOMS, {})
    del server.log.calls[:]
    target.read_snapshot(render_snapshot(model), model)
    principal, every = "0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21", {"ResultSize": "Unlimited"}
    previews = [("Get-Recipient", {"RecipientPreviewFilter": "(RecipientTypeDetails -eq 'RoomMailbox')", **every}),
                ("Get-Recipient", {"RecipientPreviewFilter": "RecipientTypeDetails -eq 'RoomMailbox'", **every})]
    assert server.log.calls == [
        ("Get-ManagementScope", {}), ("Get-Recipient", every), ("Get-ManagementRoleAssignment", {}),
        ("Get-ServicePrincipal", {}), ("Get-ApplicationAccessPolicy", {}), *previews,
        ("Get-Recipient", {"RecipientTypeDetails": ["UserMailbox"], **every}),
        ("Test-ServicePrincipalAuthorization", {"Identity": principal, "Resource": "room-berlin-1@contoso.com"}),
        ("Test-ServicePrincipalAuthorization", {"Identity": principal, "Resource": "admin@contoso.com"})]

    assert SandboxTarget(server.state_path, platform="exchange-online").run_script(
        "$g = New-ManagementRoleAssignment -Name 'Group viewer' -Role 'View-Only Recipients' "
        "-SecurityGroup bookable-rooms@contoso.com\n"
        "$u = New-ManagementRoleAssignment -Name 'Clara viewer' -Role 'View-Only Recipients' "
        "-User clara.costa@contoso.com\n$r = New-RoleGroup -Name 'Readers' -Roles 'View-Only Recipients' "
        "-Members clara.costa@contoso.com").exit_code == 0
    model, _ = require_playbook(write_playbook(RBAC), {})
    del server.log.calls[:]
    facts = target.read_snapshot(render_snapshot(model), model)
    assert server.log.calls == [
        ("Get-ManagementScope", {}), ("Get-Recipient", every), ("Get-Recipient", every), ("Get-RoleGroup", {}),
        *[("Get-RoleGroupMember", {"Identity": group, **every})
          for group in ("Organization Management", "Readers", "Recipient Management",
                        "View-Only Organization Management")],
        ("Get-ManagementRoleAssignment", {"Delegating": False}),
        ("Get-ManagementRoleAssignment", {"Role": "Mail Recipients", "GetEffectiveUsers": True, "Delegating": False}),
        ("Get-ManagementRoleAssignment", {"Role": "View-Only Recipients", "GetEffectiveUsers": True,
                                          "Delegating": False}),
        ("Get-ServicePrincipal", {}), ("Get-ApplicationAccessPolicy", {}), *previews]
    unscoped = {"type": "assignment", "role": "View-Only Recipients", "scope": "", "ou_scope": "",
                "resource_scope": "", "exclusive_scope": "", "enabled": "True"}
    assert [f for f in facts if f["type"] == "assignment" and f["name"] in ("Group viewer", "Clara viewer")] == [
        {**unscoped, "name": "Clara viewer", "assignee": "Clara Costa",
         "assignee_id": "contoso.com/Users/Clara Costa", "assignee_type": "User", "user": "clara.costa@contoso.com"},
        {**unscoped, "name": "Group viewer", "assignee": "Bookable Rooms",
         "assignee_id": "contoso.com/Rooms/Bookable Rooms", "assignee_type": "SecurityGroup", "user": ""}]
    assert [f for f in facts if f["type"] == "group" and f["name"] == "Organization Management"] == [
        {"type": "group", "name": "Organization Management", "members": ["admin@contoso.com"],
         "description": "Members of this management role group have permissions to manage Exchange objects and their "
                        "properties in the Exchange organization."}]
    clara = {"type": "effective", "role": "View-Only Recipients", "user_name": "Clara Costa",
             "user": "clara.costa@contoso.com"}
    assert [f for f in facts if f["type"] == "group" and f["name"] == "Readers"] + [
        f for f in facts if f["type"] == "effective" and f["user"] == "clara.costa@contoso.com"] == [
        {"type": "group", "name": "Readers", "description": "", "members": ["clara.costa@contoso.com"]},
        {**clara, "assignment": "Clara viewer"}, {**clara, "assignment": "View-Only Recipients-Readers"}]


def test_each_call_carries_the_invoke_command_headers(exo):  # noqa: F811
    """The headers Exchange Online's InvokeCommand reads beside the body: the cmdlet's name, JSON answers in pages of
    up to 1000 (OData's odata.maxpagesize preference), the app's anchor mailbox and the client's name."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    assert target.invoke("Get-ServicePrincipal") == []
    [sent] = server.log.headers
    assert {name: sent.get(name) for name in ("content-type", "x-cmdletname", "x-responseformat", "prefer",
                                              "x-anchormailbox", "x-clientapplication")} == {
        "content-type": "application/json", "x-cmdletname": "Get-ServicePrincipal", "x-responseformat": "json",
        "prefer": "odata.maxpagesize=1000", "x-clientapplication": "exkit",
        "x-anchormailbox": f"APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{TENANT}"}


def test_a_tenant_at_its_concurrency_limit_is_retried_whatever_the_status(exo):  # noqa: F811
    """Refused for concurrency with a status that is no throttling status: retried like throttling (backoff capped at
    max_wait, 0.2 s here), and each retry reported."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    server.switches.busy_next = 2
    assert target.invoke("Get-ServicePrincipal") == []
    assert server.log.statuses == [400, 400, 200]
    assert target.retries == ["Get-ServicePrincipal: HTTP 400, retried after 0.20 s"] * 2


class _ConnectProxy:
    """A forward proxy on loopback that tunnels HTTPS (CONNECT host:port, then bytes both ways), as a corporate
    proxy does; it records each CONNECT request line. The first ``resets`` CONNECT requests are answered with a TCP
    reset instead (SO_LINGER with a zero timeout: close() aborts the connection, socket(7) and tcp(7)), as a proxy
    refusing a destination can; the first ``stalls`` after them are read and never answered (until close()), as a
    proxy that cannot reach the destination in time."""

    def __init__(self, resets: int = 0, stalls: int = 0) -> None:
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.tunnels: list[str] = []
        self.resets = resets
        self.stalls = stalls
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client) -> None:  # type: ignore[no-untyped-def]
        import socket
        import struct
        import threading

        def pump(source, sink) -> None:  # type: ignore[no-untyped-def]
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode()
            self.tunnels.append(line)
            if self.resets > 0:
                self.resets -= 1
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed by the with block: a reset
            if self.stalls > 0:
                self.stalls -= 1
                self.closed.wait(60)
                return
            host, port = line.split()[1].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
                back.start()
                pump(client, upstream)
                back.join(10)

    def close(self) -> None:
        self.closed.set()
        self.server.close()


def _proxied(monkeypatch, proxy: _ConnectProxy) -> None:  # type: ignore[no-untyped-def]
    """HTTPS_PROXY names ``proxy``, and no other proxy variable is set."""
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")


def test_the_tenant_is_reached_through_the_proxy_the_environment_names(exo, monkeypatch):  # noqa: F811
    """HTTPS_PROXY (requests' environment proxies): the sign-in and the cmdlet calls go through the proxy's tunnel."""
    from urllib.parse import urlsplit

    from toolkit.inventory import resolve_target

    server, inventory = exo
    proxy = _ConnectProxy()
    try:
        _proxied(monkeypatch, proxy)
        target = resolve_target(inventory, "cert", "exchange-online").target
        assert target.invoke("Get-ServicePrincipal") == []
        assert server.log.invocations == ["Get-ServicePrincipal"]
        assert set(proxy.tunnels) == {f"CONNECT {urlsplit(server.base).netloc} HTTP/1.0"}  # urllib3 speaks 1.0 here
    finally:
        proxy.close()


def test_a_proxy_that_resets_the_connection_is_named_in_the_sign_in_failure(exo, monkeypatch):  # noqa: F811
    """The proxy aborts the connection (a TCP reset) when asked for the tunnel: the sign-in fails at once (a reset is
    no timeout: not retried), and the message says what happened in exkit's words, not the exception's class."""
    from urllib.parse import urlsplit

    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    server, inventory = exo
    proxy = _ConnectProxy(resets=1)
    try:
        _proxied(monkeypatch, proxy)
        target = resolve_target(inventory, "cert", "exchange-online").target
        with pytest.raises(TargetError) as refused:
            target.invoke("Get-ServicePrincipal")
        assert str(refused.value) == (f"cannot reach the sign-in endpoint of target 'cert' (the token endpoint "
                                      f"{server.base}/{TENANT}): Connection reset")
        assert (proxy.tunnels, server.log.requests) == ([f"CONNECT {urlsplit(server.base).netloc} HTTP/1.0"], 0)
    finally:
        proxy.close()


def test_an_assignee_that_is_nowhere_is_looked_up_once_by_its_identity(exo):  # noqa: F811
    """-RoleAssignee naming no recipient: the tenant is asked once (Get-Recipient -Identity), not again for the
    script's second call; the answer (not found) is Exchange's, and the assignments match nobody."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    script = "@(Get-ManagementRoleAssignment -RoleAssignee 'nobody@contoso.com').Count\n"
    result = target.run_script(script * 2, read_only=True)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "0\n0\n", "")
    assert server.log.calls == [("Get-ManagementRoleAssignment", {}),
                                ("Get-Recipient", {"Identity": "nobody@contoso.com"})]


def test_a_cmdlet_the_tenant_refuses_is_the_scripts_error_record_whole(exo):  # noqa: F811
    """Exchange's message, category and reason (its exception type) reach the script's error record; a change the
    copy alone refuses (read-only) is worded with the tenant in place of a domain controller."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    scope = "New-ManagementScope -Name 'Rooms' -RecipientRestrictionFilter \"Office -eq 'Berlin'\" -ErrorAction Stop"
    caught = f"try {{ {scope} }} catch {{ $_.Exception.Message; $_.CategoryInfo.Category; $_.CategoryInfo.Reason }}\n"
    assert target.run_script(f"$s = {scope}\n").exit_code == 0
    result = target.run_script(caught)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "The management scope 'Rooms' already exists.\nNotSpecified\nADObjectAlreadyExistsException\n", "")
    result = target.run_script("Remove-ManagementScope -Identity 'No such scope' -Confirm:$false", read_only=True)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "The operation couldn't be performed because object 'No such scope' couldn't be found on "
               "'(the tenant)'.\n    At line:1 char:1")


_NOTE = "Get-ServicePrincipal: HTTP 429, retried after 0.01 s"


@pytest.mark.parametrize("throttled, listed", [(1, _NOTE), (6, "; ".join([_NOTE] * 5) + " …")])
def test_retried_calls_are_noted_the_first_five_then_an_ellipsis(exo, throttled, listed):  # noqa: F811
    """One retry is noted whole; of six, the first five and an ellipsis."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    server.switches.throttle_next, server.switches.retry_after = throttled, "0.01"
    result = resolve_target(inventory, "cert", "exchange-online").target.run_script("@(Get-ServicePrincipal).Count")
    assert (result.exit_code, result.stdout, result.notices) == (
        0, "0\n", [f"{throttled} call(s) were retried after throttling or transient errors: {listed}"])


def test_a_pem_file_named_as_a_pfx_is_refused_even_after_it_was_read_as_pem(tmp_path, pki):  # noqa: F811
    """Certificates are parsed once per file and kind: the same bytes given as a PFX are parsed as a PFX (and
    refused), not handed the PEM parse."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    _, app_cert, _ = pki
    (tmp_path / "app.pem").write_bytes(app_cert.private_key_pem.bytes() + app_cert.cert_chain_pems[0].bytes())
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        targets:
          pem: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, certificate: app.pem}}
          pfx: {{kind: exchange-online, tenant: {TENANT}, client_id: {CLIENT_ID}, certificate_pfx: app.pem}}
        """))
    assert resolve_target(inventory, "pem", "exchange-online").target.connection().certificate_thumbprint
    with pytest.raises(TargetError) as refused:
        resolve_target(inventory, "pfx", "exchange-online").target.connection()
    assert str(refused.value) == ("target 'pfx': the certificate file cannot be read (a PEM file needs the certificate "
                                  "and an unencrypted private key; a PFX needs its password)")


def test_the_snapshot_reads_explicit_permissions_only(exo, write_playbook):  # noqa: F811
    """Delegates' facts: each mailbox's explicit Allow entries; entries inherited from above the mailbox, Deny entries
    and the mailbox's own SELF entry are no delegation."""
    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot
    from toolkit.sandbox import org as store
    from toolkit.sandbox.model import MailboxPermission
    from toolkit.targets.sandbox import SandboxTarget

    server, inventory = exo
    assert SandboxTarget(server.state_path, platform="exchange-online").run_script(
        "$a = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User ben.becker@contoso.com "
        "-AccessRights @('FullAccess', 'ReadPermission') -AutoMapping $false\n"
        "$d = Add-MailboxPermission -Identity room-berlin-1@contoso.com -User anna.adler@contoso.com "
        "-AccessRights SendAs -Deny").exit_code == 0
    organisation = store.load(server.state_path, "exchange-online")
    organisation.mailbox_permissions.append(MailboxPermission(
        identity="room-berlin-1@contoso.com", user="clara.costa@contoso.com", access_rights=["FullAccess"],
        is_inherited=True))
    store.save(server.state_path, organisation)
    model, _ = require_playbook(write_playbook("""\
        exkit: 1
        name: online-delegates
        platform: exchange-online
        delegates:
          - user: ben.becker@contoso.com
            mailboxes: [room-berlin-1@contoso.com]
        """), {})
    facts = resolve_target(inventory, "cert", "exchange-online").target.read_snapshot(render_snapshot(model), model)
    assert ("Get-Recipient", {"RecipientTypeDetails": ["UserMailbox", "SharedMailbox", "RoomMailbox",
                                                       "EquipmentMailbox"], "ResultSize": "Unlimited"}) in server.log.calls
    assert [f for f in facts if f["type"] == "permission"] == [
        {"type": "permission", "mailbox": "room-berlin-1@contoso.com", "user_name": "ben.becker@contoso.com",
         "user": "ben.becker@contoso.com", "rights": "FullAccess ReadPermission"}]


def test_a_request_closed_without_an_answer_is_retried_and_noted(exo):  # noqa: F811
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    server.switches.close_next = 1
    assert target.invoke("Get-ServicePrincipal") == []
    assert (server.log.invocations, target.retries) == (["Get-ServicePrincipal"], [
        "Get-ServicePrincipal: no complete answer (Remote end closed connection without response), retried after "
        "0.20 s"])


def test_a_read_outside_the_collections_goes_to_the_tenant_and_a_known_app_is_not_looked_up(exo):  # noqa: F811
    """A read-only run sends every read (Get-OrganizationalUnit has no collection form and changes nothing); an app id
    the copy knows as a service principal needs no Get-Recipient to match -RoleAssignee."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    assert target.run_script(f"$p = New-ServicePrincipal -AppId {APP} -ObjectId 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21 "
                             "-DisplayName App").exit_code == 0
    del server.log.calls[:]
    result = target.run_script(f"Get-OrganizationalUnit\n$p = @(Get-ServicePrincipal)\n"
                               f"@(Get-ManagementRoleAssignment -RoleAssignee '{APP}').Count", read_only=True)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "0\n", "")
    assert sorted(name for name, _ in server.log.calls) == [
        "Get-ManagementRoleAssignment", "Get-OrganizationalUnit", "Get-ServicePrincipal"]


def test_the_ca_bundle_the_environment_names_is_trusted_without_ca_trust_path(exo, monkeypatch):  # noqa: F811
    """REQUESTS_CA_BUNDLE (requests' environment setting) is honoured when the target names no ca_trust_path."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    text = inventory.read_text()
    assert "ca_trust_path: ca.pem, " in text
    inventory.write_text(text.replace("ca_trust_path: ca.pem, ", ""))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(inventory.parent / "ca.pem"))
    assert resolve_target(inventory, "cert", "exchange-online").target.invoke("Get-ServicePrincipal") == []
    assert server.log.invocations == ["Get-ServicePrincipal"]


def test_the_snapshot_tests_no_authorization_of_an_app_the_tenant_has_no_principal_for(exo):  # noqa: F811
    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot

    server, inventory = exo
    model, _ = require_playbook(ROOMS, {})
    facts = resolve_target(inventory, "cert", "exchange-online").target.read_snapshot(render_snapshot(model), model)
    assert [f for f in facts if f["type"] in ("principal", "authorization")] == []
    assert "Test-ServicePrincipalAuthorization" not in server.log.invocations


def _with_setting(inventory, setting: str) -> None:  # type: ignore[no-untyped-def]
    text = inventory.read_text()
    assert text.count("max_wait: 0.2") == 3
    inventory.write_text(text.replace("max_wait: 0.2", f"max_wait: 0.2, {setting}"))


def test_a_call_the_tenant_never_answers_ends_with_call_timeout_after_one_attempt(exo):  # noqa: F811
    """InvokeCommand reads the request and never answers: the attempt's read timeout is what is left of
    call_timeout (3 s: room for a starved machine to start the attempt), so the call ends with the bound named (it
    would hang without a timeout)."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError
    from toolkit.targets.waits import TimedOut

    server, inventory = exo
    _with_setting(inventory, "call_timeout: 3")
    target = resolve_target(inventory, "cert", "exchange-online").target
    assert target.invoke("Get-ServicePrincipal") == []  # signed in before: the call's bound is its own
    server.switches.hang_invoke = True
    ended: list[BaseException] = []

    def call() -> None:
        try:
            target.invoke("Get-ManagementScope")
        except TargetError as exc:
            ended.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(30)  # a guard against a hang (the server lets the request go when the test ends), not a timing
    assert not worker.is_alive(), "the call did not end: InvokeCommand was sent without a timeout"
    [expired] = ended
    assert type(expired) is TimedOut
    assert re.fullmatch(rf"no answer from InvokeCommand Get-ManagementScope at {re.escape(server.base)}: waited "
                        r"\d+\.\d s in total over 1 attempt\(s\) \(call_timeout 3 s\)", str(expired)), expired


def test_a_sign_in_never_answered_ends_with_token_timeout_after_one_attempt(exo):  # noqa: F811
    """The identity endpoint reads the request and never answers: msal's request is bounded by what is left of
    token_timeout, counted as an attempt of the sign-in, and no second attempt fits."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.waits import TimedOut

    server, inventory = exo
    _with_setting(inventory, "token_timeout: 3")
    server.switches.silent = True
    target = resolve_target(inventory, "cert", "exchange-online").target
    with pytest.raises(TimedOut) as expired:
        target.invoke("Get-ServicePrincipal")
    assert re.fullmatch(rf"no answer from the token endpoint {re.escape(server.base)}/{TENANT}: waited \d+\.\d s in "
                        r"total over 1 attempt\(s\) \(token_timeout 3 s\)", str(expired.value)), expired.value
    assert server.log.invocations == []


BERLIN_APP = """\
    exkit: 1
    name: online-berlin-app
    platform: exchange-online
    scopes:
      - name: Berlin mailboxes
        filter: "Office -eq 'Berlin'"
    applications:
      - name: Room booking app
        app_id: 6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11
        object_id: 0b7c2e44-9d1a-4e5f-8c3b-7a6d5e4f3c21
    application_role_assignments:
      - application: Room booking app
        role: Application Calendars.ReadWrite
        scope: Berlin mailboxes
    """


def test_the_snapshot_tests_a_room_in_scope_and_the_first_user_outside(cli, exo, write_playbook):  # noqa: F811
    """The scope holds the first user mailbox (Anna Adler, Berlin): the user sample is the first user outside the
    scope (Ben Becker, Munich), the room sample the scope's first room; each authorization fact whole."""
    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot

    server, inventory = exo
    playbook = write_playbook(BERLIN_APP)
    applied = cli("apply", playbook, "-i", inventory, "-t", "cert", "--yes")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    model, _ = require_playbook(playbook, {})
    facts = resolve_target(inventory, "cert", "exchange-online").target.read_snapshot(render_snapshot(model), model)
    assert [f for f in facts if f["type"] == "authorization"] == [
        {"type": "authorization", "app_id": APP, "resource": "room-berlin-1@contoso.com",
         "role": "Application Calendars.ReadWrite", "scope": "Berlin mailboxes", "in_scope": "True"},
        {"type": "authorization", "app_id": APP, "resource": "ben.becker@contoso.com",
         "role": "Application Calendars.ReadWrite", "scope": "Berlin mailboxes", "in_scope": "False"}]


def test_the_snapshot_names_an_assignments_exclusive_scope(cli, exo, write_playbook):  # noqa: F811
    """An assignment whose write scope is exclusive: the snapshot's assignment fact names it as such, whole."""
    from test_exchange_online import RBAC

    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot

    server, inventory = exo
    assert RBAC.count("        rooms: true\n") == 1
    playbook = write_playbook(RBAC.replace("        rooms: true\n", "        rooms: true\n        exclusive: true\n"))
    applied = cli("apply", playbook, "-i", inventory, "-t", "cert", "--yes")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    model, _ = require_playbook(playbook, {})
    facts = resolve_target(inventory, "cert", "exchange-online").target.read_snapshot(render_snapshot(model), model)
    assert [f for f in facts if f["type"] == "scope"] == [
        {"type": "scope", "name": "Room mailboxes", "filter": "(RecipientTypeDetails -eq 'RoomMailbox')",
         "recipient_root": "", "exclusive": "True"}]
    assert [f for f in facts if f["type"] == "assignment" and f["name"] == "Room viewer"] == [
        {"type": "assignment", "name": "Room viewer", "role": "View-Only Recipients", "assignee": "Clara Costa",
         "assignee_id": "contoso.com/Users/Clara Costa", "assignee_type": "User", "user": "clara.costa@contoso.com",
         "scope": "Room mailboxes", "ou_scope": "", "resource_scope": "", "exclusive_scope": "Room mailboxes",
         "enabled": "True"}]


def test_a_tenant_that_cannot_be_reached_is_a_connection_error_in_the_script(exo):  # noqa: F811
    """The tenant's next page link points elsewhere (refused: the token goes nowhere else): the script's error record
    is a connection error whose reason is exkit's TargetError, with the refusal as its message."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    server.switches.page_size, server.switches.next_link_base = 1, "https://elsewhere.example"
    result = target.run_script("try { $r = Get-User -ErrorAction Stop } catch { $_.CategoryInfo.Category; "
                               "$_.CategoryInfo.Reason; $_.Exception.Message }", read_only=True)
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "ConnectionError\nTargetError\nGet-User on tenant contoso.onmicrosoft.com: the next page link points to "
           "another host (https://elsewhere.example:443); refused\n", "")


def test_a_certificate_the_trusted_ca_did_not_sign_fails_the_sign_in_by_name(exo):  # noqa: F811
    """ca_trust_path names another CA: the sign-in fails before any request is answered, and says why in OpenSSL's
    words (not the exception's class)."""
    import trustme

    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    server, inventory = exo
    trustme.CA().cert_pem.write_to_path(str(inventory.parent / "ca.pem"))  # another CA than the server's
    with pytest.raises(TargetError) as refused:
        resolve_target(inventory, "cert", "exchange-online").target.invoke("Get-ServicePrincipal")
    assert str(refused.value) == (f"cannot reach the sign-in endpoint of target 'cert' (the token endpoint "
                                  f"{server.base}/{TENANT}): CERTIFICATE_VERIFY_FAILED")
    assert server.log.requests == 0


def test_a_sign_in_request_that_could_not_connect_in_time_is_tried_again(exo, monkeypatch):  # noqa: F811
    """The proxy holds the first tunnel unanswered: that request ends with connect_timeout (0.5 s), token_timeout
    (20 s) leaves room, so the sign-in tries again through a new tunnel and the call goes out."""
    from urllib.parse import urlsplit

    from toolkit.inventory import resolve_target

    server, inventory = exo
    _with_setting(inventory, "connect_timeout: 0.5")
    proxy = _ConnectProxy(stalls=1)
    try:
        _proxied(monkeypatch, proxy)
        target = resolve_target(inventory, "cert", "exchange-online").target
        assert target.invoke("Get-ServicePrincipal") == []
        # the first tunnel stalled, the second carried the sign-in (on a starved machine a handshake may miss
        # connect_timeout once more: then a third does)
        assert proxy.tunnels[:2] == [f"CONNECT {urlsplit(server.base).netloc} HTTP/1.0"] * 2
        assert set(proxy.tunnels) == {f"CONNECT {urlsplit(server.base).netloc} HTTP/1.0"}
        assert (server.log.token_requests, server.log.invocations) == (1, ["Get-ServicePrincipal"])
    finally:
        proxy.close()


def test_a_session_reads_its_proxy_settings_once(exo, monkeypatch):  # noqa: F811
    """The environment's proxy and CA settings are read once per session (a tenant's run): a proxy named after the
    first call does not reroute the run's later calls."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    proxy = _ConnectProxy()
    try:
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.delenv(name, raising=False)
        target = resolve_target(inventory, "cert", "exchange-online").target
        assert target.invoke("Get-ServicePrincipal") == []
        _proxied(monkeypatch, proxy)
        assert target.invoke("Get-ManagementScope") == []
        assert (proxy.tunnels, server.log.invocations) == ([], ["Get-ServicePrincipal", "Get-ManagementScope"])
    finally:
        proxy.close()


def test_a_sign_in_refused_without_a_description_names_the_error_code(exo, monkeypatch):  # noqa: F811
    """RFC 6749 (5.2) makes error_description optional: an identity provider answering with the error code alone
    (the loopback endpoint can) is reported with that code."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    server, inventory = exo
    server.switches.bare_token_errors = True
    monkeypatch.setenv("EXKIT_EXO_SECRET", "not-the-secret")
    with pytest.raises(TargetError) as refused:
        resolve_target(inventory, "secret", "exchange-online").target.invoke("Get-ServicePrincipal")
    assert str(refused.value) == f"sign-in of app {CLIENT_ID} to tenant {TENANT} failed: invalid_client"
    assert server.log.invocations == []


def test_a_token_the_tenant_refuses_twice_is_exchanges_error_code_and_message(exo):  # noqa: F811
    """Tokens that expire as they are issued: the call is refused (401), signed in for again once, refused again; the
    error (no details) is reported with its code and message, and no cmdlet ran."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.exchange_online import CmdletFailed

    server, inventory = exo
    server.switches.token_lifetime = 0
    with pytest.raises(CmdletFailed) as refused:
        resolve_target(inventory, "cert", "exchange-online").target.invoke("Get-ServicePrincipal")
    failed = refused.value
    assert (failed.cmdlet, failed.message, failed.exception_type, failed.not_found) == (
        "Get-ServicePrincipal", "Access token has expired or is not yet valid.", "InvalidAuthenticationToken", False)
    assert (server.log.token_requests, server.log.rejected_tokens, server.log.invocations) == (2, 2, [])


def test_a_policy_a_read_only_run_creates_is_named_in_exkits_copy_of_the_tenant(exo):  # noqa: F811
    """A read-only run makes its changes in exkit's copy only: a new application access policy is named after the
    copy's organisation ('tenant'), not the tenant's, and only the read of its group is sent."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    result = resolve_target(inventory, "cert", "exchange-online").target.run_script(
        "$group = Get-Recipient -Identity bookable-rooms@contoso.com\n"
        f"(New-ApplicationAccessPolicy -AppId {APP} -PolicyScopeGroupId bookable-rooms@contoso.com "
        "-AccessRight RestrictAccess -Description 'Rooms only').Identity", read_only=True)
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"tenant\\{APP}:bookable-rooms@contoso.com\n", "")
    assert server.log.invocations == ["Get-Recipient"]


def test_a_redirect_without_a_location_is_refused_as_one_to_nowhere(exo):  # noqa: F811
    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    server, inventory = exo
    server.switches.bare_redirect = True
    with pytest.raises(TargetError) as refused:
        resolve_target(inventory, "cert", "exchange-online").target.invoke("Get-ServicePrincipal")
    assert str(refused.value) == (
        f"Get-ServicePrincipal: {server.base} answered HTTP 302, a redirect to nowhere; exkit does not follow it (the "
        "request carries the tenant's token): check exchange_endpoint")


class _PlainExchange:
    """A plain-HTTP InvokeCommand endpoint (a custom cloud's) answering every call with ``body``; it counts the
    connections it accepted."""

    def __init__(self, body: bytes) -> None:
        import http.server

        accepted = self.accepted = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                accepted.append(1)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, server, inventory) -> None:  # type: ignore[no-untyped-def]
        """The loopback tenant's targets call this endpoint (its identity endpoint issues tokens for it)."""
        server.switches.resources = [self.base]
        text = inventory.read_text()
        assert text.count(f"exchange_endpoint: '{server.base}'") == 3
        inventory.write_text(text.replace(f"exchange_endpoint: '{server.base}'", f"exchange_endpoint: '{self.base}'"))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_tenants_on_a_plain_http_endpoint_share_the_process_connections(exo):  # noqa: F811
    """Two tenants' calls to one plain-HTTP Exchange endpoint (a custom cloud) go over one kept-alive connection: the
    process's pool serves http:// as it serves https://."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    plain = _PlainExchange(b'{"value": []}')
    try:
        plain.serve(server, inventory)
        for name in ("cert", "secret"):
            assert resolve_target(inventory, name, "exchange-online").target.invoke("Get-ServicePrincipal") == []
        assert len(plain.accepted) == 1
    finally:
        plain.close()


def test_an_answer_that_is_not_utf8_is_read_with_replacement_characters(exo):  # noqa: F811
    """A byte that is no UTF-8 in an answer (a front end that garbles text) becomes U+FFFD, as requests reads it;
    the call does not fail."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    plain = _PlainExchange(b'{"value": [{"Name": "Room \xff"}]}')
    try:
        plain.serve(server, inventory)
        assert resolve_target(inventory, "cert", "exchange-online").target.invoke("Get-Mailbox") == [
            {"Name": "Room \ufffd"}]
    finally:
        plain.close()


def test_a_script_reading_one_collection_reads_it_whole_once(exo):  # noqa: F811
    """One collection the script reads (no read-ahead: nothing to overlap): read whole once, kept in the copy, and
    the script's reads see the tenant's objects."""
    from toolkit.inventory import resolve_target

    server, inventory = exo
    target = resolve_target(inventory, "cert", "exchange-online").target
    for name in ("Rooms A", "Rooms B"):
        assert target.invoke("New-ManagementScope", {"Name": name, "RecipientRestrictionFilter": "Office -eq 'A'"})
    del server.log.calls[:]
    result = target.run_script("@(Get-ManagementScope).Count\n(Get-ManagementScope -Identity 'Rooms B').Name",
                               read_only=True)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "2\nRooms B\n", "")
    assert server.log.calls == [("Get-ManagementScope", {})]


def test_an_assignment_to_a_user_that_is_gone_has_no_address_in_the_snapshot(cli, exo, write_playbook):  # noqa: F811
    """The user a role is assigned to no longer exists (the assignment outlived it): its fact names the assignee
    Exchange shows and no address."""
    from test_exchange_online import RBAC

    from toolkit.inventory import resolve_target
    from toolkit.playbook.validate import require_playbook
    from toolkit.render.engine import render_snapshot
    from toolkit.sandbox import org as store

    server, inventory = exo
    playbook = write_playbook(RBAC)
    applied = cli("apply", playbook, "-i", inventory, "-t", "cert", "--yes")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    organisation = store.load(server.state_path, "exchange-online")
    organisation.recipients = [r for r in organisation.recipients if r.primary_smtp_address != "clara.costa@contoso.com"]
    store.save(server.state_path, organisation)
    model, _ = require_playbook(playbook, {})
    facts = resolve_target(inventory, "cert", "exchange-online").target.read_snapshot(render_snapshot(model), model)
    assert [f for f in facts if f["type"] == "assignment" and f["name"] == "Room viewer"] == [
        {"type": "assignment", "name": "Room viewer", "role": "View-Only Recipients",
         "assignee": "clara.costa@contoso.com", "assignee_id": "clara.costa@contoso.com", "assignee_type": "User",
         "user": "", "scope": "Room mailboxes", "ou_scope": "", "resource_scope": "", "exclusive_scope": "",
         "enabled": "True"}]
