"""A throw-away MIT Kerberos realm on loopback for tests: the real krb5kdc, its database made with kdb5_util and
kadmin.local (k5test drives them), a user principal with pre-authentication required (as Active Directory
requires it), and the loopback WinRM server's service principal HTTP/localhost in a keytab.

The realm's krb5.conf is what an admin would write for a domain: the realm's KDC, no DNS lookups or reverse
canonicalisation of host names (the service principal is named after the host name exkit is given), forwardable
tickets allowed. Tests point KRB5_CONFIG (both sides), KRB5_KTNAME (the server's keytab) and KRB5CCNAME (the
client's cache) at it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

REALM = "EXKIT.TEST"
SERVICE_HOST = "localhost"
SERVICE = f"HTTP/{SERVICE_HOST}"
ENABLE = ("apt-get install -y krb5-kdc krb5-admin-server krb5-user libkrb5-dev && "
          ".venv/bin/pip install -e '.[test,kerberos]'")


def missing() -> str | None:
    """Why a realm cannot start here (None: it can)."""
    for tool in ("krb5kdc", "kdb5_util", "kadmin.local"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"MIT Kerberos's {tool} is not installed"
    try:
        import gssapi  # noqa: F401
        import k5test  # noqa: F401
        import krb5  # noqa: F401
    except ImportError as exc:
        return f"the Python package {exc.name} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mit_realm(**options: object) -> object:
    from k5test.realm import MITRealm

    class LoopbackRealm(MITRealm):  # type: ignore[misc]
        @property
        def hostname(self) -> str:
            return SERVICE_HOST  # k5test asks socket.getfqdn(), a DNS lookup that can take seconds

        @property
        def _kdc_conf(self) -> dict[str, object]:
            # k5test searches the library folders for a krb5 plugin folder (seconds, and it finds none on Debian);
            # the distribution's krb5kdc knows its own, which an absent db_module_dir means.
            from k5test import _utils

            search, _utils.find_plugin_dir = _utils.find_plugin_dir, lambda: None
            try:
                return super()._kdc_conf  # type: ignore[no-any-return]
            finally:
                _utils.find_plugin_dir = search

    return LoopbackRealm(**options)


class Realm:
    def __init__(self, user: str, password: str) -> None:
        self.user = f"{user}@{REALM}"
        self.password = password
        last: Exception | None = None
        for _ in range(3):  # the free port may be taken between probing and the KDC binding it
            port = _free_port()
            try:
                self.k5 = _mit_realm(
                    realm=REALM, portbase=port, create_user=False, create_host=False, get_creds=False,
                    krb5_conf={"libdefaults": {"rdns": "false", "dns_canonicalize_hostname": "false",
                                               "dns_lookup_realm": "false", "forwardable": "true"},
                               "realms": {"$realm": {"kdc": "127.0.0.1:$port0",
                                                     "admin_server": "127.0.0.1:$port1",
                                                     "kpasswd_server": "127.0.0.1:$port2"}}},
                    start_kdc=False)
                # kadmin's query parser (libss) knows double quotes, not the shell's single ones
                assert '"' not in password
                self.k5.run_kadminl(f'addprinc +requires_preauth -pw "{password}" {self.user}')
                self.k5.run_kadminl(["addprinc", "-randkey", f"{SERVICE}@{REALM}"])
                self.k5.extract_keytab(f"{SERVICE}@{REALM}", self.k5.keytab)
                self.k5.start_kdc()
                break
            except Exception as exc:  # k5test raises plain exceptions when a daemon does not start
                last = exc
                self.stop()
        else:
            raise RuntimeError(f"the test KDC did not start: {last}")
        self.port = port
        self.dir = Path(self.k5.tmpdir)
        self.krb5_conf = Path(self.k5.env["KRB5_CONFIG"])
        self.keytab = Path(self.k5.keytab)
        self._extra: list[subprocess.Popen[bytes]] = []

    def env(self, ccache: Path) -> dict[str, str]:
        """The environment both sides use: this realm's krb5.conf, the server's keytab, the client's cache."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5_KTNAME": f"FILE:{self.keytab}",
                "KRB5CCNAME": f"FILE:{ccache}", "KRB5RCACHEDIR": str(self.dir)}

    def kinit(self, ccache: Path, *, forwardable: bool = False) -> None:
        """A ticket cache as a user's own kinit writes it."""
        flags = ["-f"] if forwardable else ["-F"]
        self.k5.run(["kinit", *flags, "-c", f"FILE:{ccache}", self.user], input=self.password + "\n")

    def config_with_kdc(self, port: int, name: str) -> Path:
        """A copy of krb5.conf whose realm's KDC is at another port (a stopped one, or a second KDC)."""
        text = self.krb5_conf.read_text().replace(f"127.0.0.1:{self.port}", f"127.0.0.1:{port}")
        path = self.dir / name
        path.write_text(text)
        return path

    def skewed_kdc(self, seconds: int) -> Path:
        """A second KDC of this realm whose clock is off by ``seconds`` (krb5kdc -T, MIT's own time offset for
        testing); returns a krb5.conf that uses it."""
        port = _free_port()
        profile = self.dir / "kdc-skewed.conf"  # its own ports: kdc.conf's kdc_ports win over krb5kdc -p
        profile.write_text(Path(self.k5.env["KRB5_KDC_PROFILE"]).read_text().replace(str(self.port), str(port)))
        process = subprocess.Popen([shutil.which("krb5kdc") or "/usr/sbin/krb5kdc", "-n", "-T", str(seconds),
                                    "-P", str(self.dir / "skewed.pid")],
                                   env={**os.environ, **self.k5.env, "KRB5_KDC_PROFILE": str(profile)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._extra.append(process)
        for _ in range(100):  # it listens within milliseconds; bounded at 10 s
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError("the skewed test KDC did not start")
            time.sleep(0.1)
        return self.config_with_kdc(port, "krb5-skewed.conf")

    def stop(self) -> None:
        for process in getattr(self, "_extra", []):
            process.terminate()
            process.wait(timeout=10)
        if hasattr(self, "k5"):
            self.k5.stop()
            shutil.rmtree(self.k5.tmpdir, ignore_errors=True)
