"""WinRM transports beyond NTLM, end to end: Kerberos against a real MIT KDC on loopback (k5test + krb5kdc), with
message encryption over http, over https, with delegation and from a ticket cache; the classic Kerberos failures
as one-line errors. The loopback WinRM server accepts with the service key from a keytab (MIT krb5 via gssapi).

Without MIT Kerberos on the machine these tests are skipped, saying the one command that enables them; in CI
(CI=true) a missing KDC fails them instead: .ci/run installs it."""

from __future__ import annotations

import base64
import json
import os
import ssl
import textwrap
from pathlib import Path

import pytest
import trustme
from conftest import REPO
from servers import kdc as kdc_module
from servers.winrm import LoopbackWinRM

PASSWORD = "Kerb3ros!pässwort"
CLASSIC = REPO / "playbooks" / "classic.yaml"


@pytest.fixture(scope="session")
def realm():
    """One throw-away realm for the whole test session."""
    reason = kdc_module.missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the Kerberos tests (.ci/run installs MIT Kerberos)")
        pytest.skip(f"{reason}; enable with: {kdc_module.ENABLE}")
    realm = kdc_module.Realm("exkit", PASSWORD)
    yield realm
    realm.stop()


@pytest.fixture
def krb(realm, tmp_path, monkeypatch):
    """This test's view of the realm: its krb5.conf and keytab, and a ticket cache path of its own (empty)."""
    ccache = tmp_path / "krb5cc"
    for key, value in realm.env(ccache).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXKIT_PASSWORD", PASSWORD)
    realm.ccache = ccache
    return realm


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """Start a loopback WinRM server accepting ``auth`` and write an inventory with one target 'lab' for it."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers = []

    def start(scheme="http", extra="", password=True, auth=("kerberos",), transport="kerberos",
              username=f"exkit@{kdc_module.REALM}"):
        tls = None
        if scheme == "https":
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("localhost", "127.0.0.1").configure_cert(tls)
        users = tmp_path / "ntlm-users"  # the NTLM accounts (inside CredSSP) of the server's domain
        users.write_text(f"CONTOSO:exkit-admin:{PASSWORD}\n", encoding="utf-8")
        monkeypatch.setenv("NTLM_USER_FILE", str(users))
        server = LoopbackWinRM(tmp_path / "exchange.json", {"CONTOSO\\exkit-admin": PASSWORD}, auth=auth, tls=tls)
        server.__enter__()
        servers.append(server)
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(textwrap.dedent(f"""\
            targets:
              lab:
                kind: exchange-server
                host: localhost
                port: {server.port}
                scheme: {scheme}
                transport: {transport}
                username: '{username}'
                exchange_uri: http://ex01.contoso.com/PowerShell/
                operation_timeout: 1
                read_timeout: 10
                ca_trust_path: {ca_file}
            """) + ("    password: env:EXKIT_PASSWORD\n" if password else "") + extra)
        return server, inventory

    yield start
    for server in servers:
        server.__exit__()


def actions(output):
    return [(r["kind"], r["action"]) for r in json.loads(output)["results"]]


def cycle(cli, inventory):
    """plan → apply → plan (no changes) → verify of the classic playbook; returns every output."""
    target = ("-i", inventory, "-t", "lab")
    plan = cli("plan", CLASSIC, *target, "--detailed-exitcode")
    assert plan.exit_code == 2, plan.stderr
    apply = cli("apply", CLASSIC, *target, "--yes", "--output", "json")
    assert apply.exit_code == 0, apply.stderr
    assert actions(apply.stdout) == [("ManagementScope", "created"), ("RoleGroup", "created")]
    again = cli("plan", CLASSIC, *target, "--detailed-exitcode")
    assert again.exit_code == 0, again.stdout + again.stderr
    verify = cli("verify", CLASSIC, *target)
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    return "".join(r.stdout + r.stderr for r in (plan, apply, again, verify))


@pytest.mark.parametrize("scheme", ["http", "https"], ids=["http-encrypted", "https"])
def test_kerberos_with_a_password_reference(cli, krb, lab, scheme, tmp_path, caplog):
    caplog.set_level("DEBUG")  # pyspnego, gssapi, pywinrm and requests log at debug level: no password there either
    server, inventory = lab(scheme)
    before = set(Path("/tmp").glob("krb5cc*"))
    text = cycle(cli, inventory)
    assert {logon.user for logon in server.logons} == {f"exkit@{kdc_module.REALM}"}
    if scheme == "http":
        assert server.encrypted_requests > 0 and server.encrypted_requests == sum(server.counts.values())
    # The ticket was acquired in memory: no cache file appeared (neither KRB5CCNAME's nor a default one).
    assert not krb.ccache.exists() and set(Path("/tmp").glob("krb5cc*")) == before
    assert PASSWORD not in text + caplog.text
    assert base64.b64encode(PASSWORD.encode()).decode() not in caplog.text  # the stdin segment, not logged either
    # remote-session over a logon without delegation: the credential on stdin made the second hop
    assert {logon.delegated for logon in server.logons} == {False}


def test_kerberos_delegation_forwards_the_ticket(cli, krb, lab):
    server, inventory = lab(extra="    kerberos_delegation: true\n")
    cycle(cli, inventory)
    assert server.logons and all(logon.delegated for logon in server.logons)


def test_kerberos_from_the_users_ticket_cache(cli, krb, lab):
    krb.kinit(krb.ccache, forwardable=True)
    server, inventory = lab(password=False, extra="    kerberos_delegation: true\n")
    cycle(cli, inventory)
    assert server.logons and all(logon.delegated for logon in server.logons)


def test_without_delegation_or_password_the_second_hop_is_refused(cli, krb, lab):
    krb.kinit(krb.ccache)
    server, inventory = lab(password=False)
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    assert result.exit_code == 1
    assert "Connecting to remote server ex01.contoso.com failed" in result.stderr and "Access is denied" in result.stderr


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert PASSWORD not in result.stdout + result.stderr and "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("case, expected", [
    ("wrong-password", "the KDC refused the password of exkit@EXKIT.TEST (pre-authentication failed)"),
    ("unknown-spn", "the KDC does not know the service principal HTTP/127.0.0.1"),
    ("kdc-unreachable", "cannot reach a KDC of EXKIT.TEST"),
    ("no-ticket-cache", "no ticket for exkit@EXKIT.TEST in the credential cache"),
    ("clock-skew", "the clocks of this machine and the KDC differ by more than the allowed skew"),
])
def test_kerberos_failures_are_one_line(cli, krb, lab, monkeypatch, case, expected):
    server, inventory = lab()
    text = inventory.read_text()
    if case == "wrong-password":
        monkeypatch.setenv("EXKIT_PASSWORD", PASSWORD + "-wrong")
    elif case == "unknown-spn":
        text = text.replace("host: localhost", "host: 127.0.0.1")
    elif case == "kdc-unreachable":
        import socket

        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        monkeypatch.setenv("KRB5_CONFIG", str(krb.config_with_kdc(port, "krb5-unreachable.conf")))
    elif case == "no-ticket-cache":
        text = text.replace("    password: env:EXKIT_PASSWORD\n", "")
    elif case == "clock-skew":
        monkeypatch.setenv("KRB5_CONFIG", str(krb.skewed_kdc(-3600)))
    inventory.write_text(text)
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    line = _one_line_error(result)
    assert expected in line, line
    assert server.scripts_run == []  # nothing ran


@pytest.mark.parametrize("scheme", ["http", "https"], ids=["http-encrypted", "https"])
def test_credssp_delegates_the_password(cli, lab, monkeypatch, scheme, caplog):
    caplog.set_level("DEBUG")
    """CredSSP: TLS inside HTTP, NTLM inside TLS, then the password is delegated to the server, which checks it and
    logs on with it: a logon that can make the second hop."""
    monkeypatch.setenv("EXKIT_PASSWORD", PASSWORD)
    server, inventory = lab(scheme, auth=("credssp",), transport="credssp", username="CONTOSO\\exkit-admin")
    text = cycle(cli, inventory)
    if scheme == "http":
        assert server.encrypted_requests > 0 and server.encrypted_requests == sum(server.counts.values())
    assert server.logons and {(logon.user, logon.delegated) for logon in server.logons} == {
        ("contoso\\exkit-admin", True)}
    assert PASSWORD not in text + caplog.text


def test_credssp_encryption_of_messages_over_16_kib(cli, lab, monkeypatch, write_playbook):
    monkeypatch.setenv("EXKIT_PASSWORD", PASSWORD)
    server, inventory = lab("http", auth=("credssp",), transport="credssp", username="CONTOSO\\exkit-admin")
    lines = ["exkit: 1", "name: big", "scopes:"]
    lines += [f"  - {{name: Rooms {i:03}, rooms: true, office: Office {i:03}}}" for i in range(60)]
    big = write_playbook("\n".join(lines) + "\n", "big.yaml")
    result = cli("apply", big, "-i", inventory, "-t", "lab", "--yes", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert {action for _, action in actions(result.stdout)} == {"created"}
    assert server.multi_encrypted_requests > 0


def test_credssp_with_a_wrong_password_is_refused(cli, lab, monkeypatch):
    monkeypatch.setenv("EXKIT_PASSWORD", PASSWORD + "-wrong")
    server, inventory = lab("https", auth=("credssp",), transport="credssp", username="CONTOSO\\exkit-admin")
    result = cli("plan", CLASSIC, "-i", inventory, "-t", "lab")
    line = _one_line_error(result)
    assert "refused the credentials of CONTOSO\\exkit-admin" in line, line
    assert server.scripts_run == []


def _client_certificate(ca, directory: Path, upn: str) -> tuple[Path, Path]:
    """A client certificate as a Windows CA issues it for WinRM: the UPN in the subject alternative name
    (otherName szOID_NT_PRINCIPAL_NAME) and the Client Authentication usage, signed by the test CA."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    encoded = upn.encode()
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, upn.partition("@")[0])]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.OtherName(
            ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c" + bytes([len(encoded)]) + encoded)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.parametrize("upn, mapped", [("exkit-admin@contoso.com", True), ("someone@contoso.com", False)],
                         ids=["mapped", "not-mapped"])
def test_certificate_transport_maps_the_client_certificate(cli, tmp_path, upn, mapped):
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(tls)
    tls.verify_mode = ssl.CERT_OPTIONAL  # WinRM asks for a client certificate; TLS checks it against the CA
    ca.configure_trust(tls)
    cert, key = _client_certificate(ca, tmp_path, upn)
    with LoopbackWinRM(tmp_path / "exchange.json", {}, auth=("certificate",), tls=tls,
                       certificates={"exkit-admin@contoso.com": "CONTOSO\\exkit-admin"}) as server:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(textwrap.dedent(f"""\
            targets:
              lab:
                kind: exchange-server
                host: localhost
                port: {server.port}
                transport: certificate
                cert_pem: {cert}
                cert_key_pem: {key}
                ca_trust_path: {ca_file}
                connect: snapin
                operation_timeout: 1
                read_timeout: 10
            """))
        if mapped:
            cycle(cli, inventory)
            assert {logon.user for logon in server.logons} == {"CONTOSO\\exkit-admin"}
        else:
            line = _one_line_error(cli("plan", CLASSIC, "-i", inventory, "-t", "lab"))
            assert "refused the credentials of the client certificate" in line
            assert server.scripts_run == []


def test_kerberos_without_the_extra_says_what_to_install(cli, lab, monkeypatch):
    """What a machine without MIT Kerberos's Python bindings sees (the check exkit makes before connecting)."""
    monkeypatch.setattr("toolkit.targets.winrm.is_available", lambda: False)
    monkeypatch.setenv("EXKIT_PASSWORD", PASSWORD)
    server, inventory = lab()
    line = _one_line_error(cli("plan", CLASSIC, "-i", inventory, "-t", "lab"))
    assert "pip install 'exkit[kerberos]'" in line and server.http_requests == 0
