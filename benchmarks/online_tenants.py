"""Benchmark: plan + apply of the Exchange Online playbook on N tenants through the REST connector.

Every tenant is its own organisation (the sandbox's Exchange Online seed, with its own room-booking app object id)
behind the loopback HTTPS identity + InvokeCommand servers (tests/servers/exchange_online.py: real msal sign-in
with a certificate, real requests, TLS), which wait --rtt-ms before every reply to stand for the network. As a
managed-service provider would, exkit signs in to every tenant as one multi-tenant app with one certificate and runs
them with --forks workers: per tenant, plan (the facts script, read only) and apply (the apply script).

In the same run, a naive baseline does the same work on fresh copies of the tenants the way a hand-written client
would: one cmdlet per call, each with a new token (msal's discovery and token requests) and a new TLS connection,
reading the objects one at a time.

    python benchmarks/online_tenants.py --tenants 100 --rtt-ms 50 --forks 32

The last line is: tenants=N wall_s=… floor_s=… ratio=… http_per_tenant=… naive_ratio=… peak_rss_mb=…
where floor_s = tenants × (sequential round trips per tenant) × RTT ÷ forks: the time the round trips alone need
when every fork always waits on one. A tenant's sequential round trips are counted by the servers: a request that
arrives while another request of the same tenant is being answered overlaps it and adds no latency of its own, so it
is not counted; http_per_tenant counts every HTTP request. ratio = wall_s ÷ floor_s; naive_ratio is the naive
baseline's wall time ÷ the same floor_s.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import ssl
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from benchmarks.tenants import _client_cpu, _total, existing_tenants, fleet_arguments  # noqa: E402

CLIENT_ID = "6d1e8a53-4f2b-4c1e-9a7d-2b5c8e9f0a11"  # the provider's automation app (the playbook's app_id default)
PLAYBOOK = REPO / "playbooks" / "online-rooms.yaml"


def tenant_domain(prefix: str, index: int) -> str:
    return f"{prefix}{index:04d}.onmicrosoft.com"


def serve(scratch: str, delay_ms: float, shard: int, shards: int, tenants: int, port_queue: multiprocessing.Queue,
          stop: multiprocessing.Event, requests: multiprocessing.Value, rounds: multiprocessing.Value,
          cpu: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    """One loopback server process serving every tenant whose index ≡ shard (mod shards): many tenants' servers
    do not queue behind one Python interpreter lock, so neither do these."""
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from servers.exchange_online import App, LoopbackExchangeOnline

    folder = Path(scratch)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(folder / "server.pem"))
    apps = [App(CLIENT_ID, (folder / "app-cert.pem").read_bytes())]
    mine = [(prefix, index) for prefix in ("t", "naive") for index in range(tenants) if index % shards == shard]
    (first_prefix, first), rest = mine[0], mine[1:]
    server = LoopbackExchangeOnline(folder / f"{first_prefix}{first:04d}.json", tls,
                                    tenant_domain(first_prefix, first), apps, delay_ms=delay_ms)
    for prefix, index in rest:
        server.add_tenant(folder / f"{prefix}{index:04d}.json", tenant_domain(prefix, index), apps)
    with server:
        port_queue.put((shard, server.base))
        while not stop.wait(0.2):
            requests.value, rounds.value, cpu.value = server.requests, server.rounds, time.process_time()
        requests.value, rounds.value, cpu.value = server.requests, server.rounds, time.process_time()


def object_id(index: int) -> str:
    return str(uuid.UUID(int=0x0B7C2E44_9D1A_4E5F_8C3B_000000000000 + index))


def inventory(path: Path, bases: dict[int, str], tenants: int) -> None:
    lines = ["groups:", "  tenants:", "    targets:"]
    for index in range(tenants):
        base = bases[index % len(bases)]
        lines.append(f"      t{index:04d}: {{kind: exchange-online, tenant: {tenant_domain('t', index)}, "
                     f"client_id: {CLIENT_ID}, certificate: app.pem, ca_trust_path: ca.pem, cloud: custom, "
                     f"login_endpoint: '{base}', exchange_endpoint: '{base}', "
                     f"vars: {{sp_object_id: {object_id(index)}}}}}")
    path.write_text("\n".join(lines) + "\n")


def naive(scratch: Path, bases: dict[int, str], tenants: int, forks: int) -> float:
    """The same work as plan + apply, one cmdlet per call, each with a new token and a new TLS connection; the
    objects are read one at a time (plan: 3 reads; apply: the same reads, the app again, 3 creations)."""
    import msal
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = (scratch / "app.pem").read_text()
    certificate = x509.load_pem_x509_certificate(pem.encode())
    credential = {"private_key": pem, "thumbprint": certificate.fingerprint(hashes.SHA1()).hex()}  # noqa: S303
    ca = str(scratch / "ca.pem")
    from toolkit.targets.exchange_online import _Session  # requests.Session whose configured CA wins over the env's

    def cmdlets(index: int) -> list[tuple[str, dict[str, object]]]:
        reads: list[tuple[str, dict[str, object]]] = [
            ("Get-ManagementScope", {"Identity": "Room mailboxes"}),
            ("Get-ServicePrincipal", {"Identity": CLIENT_ID}),
            ("Get-ManagementRoleAssignment", {"Identity": "Calendars.ReadWrite-Room booking app"})]
        return reads + reads[:1] + [
            ("New-ManagementScope", {"Name": "Room mailboxes",
                                     "RecipientRestrictionFilter": "RecipientTypeDetails -eq 'RoomMailbox'"})] + \
            reads[1:2] + [("New-ServicePrincipal", {"AppId": CLIENT_ID, "ObjectId": object_id(index),
                                                    "DisplayName": "Room booking app"})] + reads[2:] + reads[1:2] + [
            ("New-ManagementRoleAssignment", {"Name": "Calendars.ReadWrite-Room booking app",
                                              "App": object_id(index), "Role": "Application Calendars.ReadWrite",
                                              "CustomResourceScope": "Room mailboxes"})]

    def one(index: int) -> None:
        base, tenant = bases[index % len(bases)], tenant_domain("naive", index)
        for cmdlet, parameters in cmdlets(index):
            with _Session() as login, _Session() as http:
                login.verify = http.verify = ca
                app = msal.ConfidentialClientApplication(CLIENT_ID, client_credential=credential,
                                                         authority=f"{base}/{tenant}", http_client=login,
                                                         instance_discovery=False, token_cache=msal.TokenCache())
                token = app.acquire_token_for_client(scopes=[f"{base}/.default"])["access_token"]
                answer = http.post(f"{base}/adminapi/beta/{tenant}/InvokeCommand", headers={
                    "Authorization": f"Bearer {token}"}, json={"CmdletInput": {"CmdletName": cmdlet,
                                                                                "Parameters": parameters}})
                if answer.status_code != 200 and not (cmdlet.startswith("Get-") and "NotFound" in answer.text):
                    raise RuntimeError(f"naive tenant {index}: {cmdlet}: HTTP {answer.status_code} "
                                       f"{answer.text[:200]}")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=forks) as pool:
        list(pool.map(one, range(tenants)))
    return time.monotonic() - started


def pki(scratch: Path) -> None:
    """A CA the client trusts, the servers' certificate, and the provider app's certificate (one for all tenants)."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(scratch / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(scratch / "server.pem"))
    app = trustme.CA().issue_cert("exkit-app", key_type=trustme.KeyType.RSA)
    (scratch / "app.pem").write_bytes(app.private_key_pem.bytes() + app.cert_chain_pems[0].bytes())
    (scratch / "app-cert.pem").write_bytes(app.cert_chain_pems[0].bytes())


def main() -> None:
    arguments = fleet_arguments(__doc__.splitlines()[0], "Loopback server processes, each serving its share of "
                                "the tenants (default: one per CPU).")
    shards = max(1, min(arguments.server_processes, arguments.tenants))
    scratch = Path(tempfile.mkdtemp(prefix="exkit-online-bench-"))
    os.environ["EXKIT_RUNS_DIR"] = str(scratch / "runs")
    pki(scratch)
    existing_tenants(scratch, arguments.tenants, "t", "exchange-online")
    existing_tenants(scratch, arguments.tenants, "naive", "exchange-online")
    context = multiprocessing.get_context("spawn")
    port_queue, stop = context.Queue(), context.Event()
    counters = [[context.Value("l", 0), context.Value("l", 0), context.Value("d")] for _ in range(shards)]
    servers, bases = [], {}
    try:
        for shard, figures in enumerate(counters):
            servers.append(context.Process(target=serve, args=(str(scratch), arguments.rtt_ms, shard, shards,
                                                               arguments.tenants, port_queue, stop, *figures)))
            servers[-1].start()
        for _ in range(shards):
            shard, base = port_queue.get(timeout=120)
            bases[shard] = base
        inventory(scratch / "tenants.yaml", bases, arguments.tenants)
        from toolkit.fleet.run import run_many
        from toolkit.inventory import select_targets

        targets = select_targets(scratch / "tenants.yaml", "tenants")
        time.sleep(0.5)  # let the servers publish their figures

        def figures() -> tuple[float, float, float]:
            return (_total([c[0] for c in counters]), _total([c[1] for c in counters]),
                    _total([c[2] for c in counters]))

        (requests_before, rounds_before, server_cpu_before), client_cpu_before = figures(), _client_cpu()
        started = time.monotonic()
        outcomes = run_many("apply", PLAYBOOK, targets, {}, None, arguments.forks)
        wall = time.monotonic() - started
        client_cpu = _client_cpu() - client_cpu_before
        time.sleep(0.5)
        requests_after, rounds_after, server_cpu_after = figures()
        requests, rounds = requests_after - requests_before, rounds_after - rounds_before
        failed = [o for o in outcomes if not o.ok]
        if failed:
            print(f"{len(failed)} tenant(s) failed, e.g. {failed[0].target}: {failed[0].summary}", file=sys.stderr)
            sys.exit(1)
        per_tenant, sequential = requests / arguments.tenants, rounds / arguments.tenants
        floor = arguments.tenants * sequential * arguments.rtt_ms / 1000 / arguments.forks
        naive_wall = float("nan") if arguments.no_naive else naive(scratch, bases, arguments.tenants, arguments.forks)
    finally:
        stop.set()
        for server in servers:
            server.join(timeout=10)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"exkit: {arguments.tenants} Exchange Online tenants planned and applied with {arguments.forks} forks; "
          f"{requests:.0f} HTTP requests, {sequential:.1f} sequential round trips per tenant; CPU s during the run: "
          f"client {client_cpu:.1f}, servers {server_cpu_after - server_cpu_before:.1f}", file=sys.stderr)
    print(f"tenants={arguments.tenants} wall_s={wall:.2f} floor_s={floor:.2f} ratio={wall / floor:.2f} "
          f"http_per_tenant={per_tenant:.1f} naive_ratio={naive_wall / floor:.2f} peak_rss_mb={rss / 1024:.0f}")


if __name__ == "__main__":
    main()
