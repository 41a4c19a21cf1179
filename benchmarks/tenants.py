"""Benchmark: plan + apply of the classic playbook on N simulated tenants over real WinRM.

Each tenant is its own organisation behind the loopback WinRM server (NTLM with message encryption, real pywinrm),
which sleeps --rtt-ms before every reply to stand for the network. exkit runs them with --forks workers (plan: one
facts script; apply: one script). In the same run, a naive baseline does the same work one cmdlet per round trip
(pywinrm's run_ps: a shell and an authentication for each cmdlet).

    python benchmarks/tenants.py --tenants 100 --rtt-ms 50 --forks 32

The last line is: tenants=N wall_s=… floor_s=… ratio=… http_per_tenant=… naive_ratio=… peak_rss_mb=…
where floor_s = tenants × http_per_tenant × RTT ÷ forks (the time the round trips alone need) and ratio = wall_s ÷
floor_s; naive_ratio is the naive baseline's wall time ÷ the same floor_s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PASSWORD = "bench-Passw0rd"
USER = "BENCH\\exkit"


def serve(state_dir: str, delay_ms: float, port: int, port_queue: multiprocessing.Queue,
          stop: multiprocessing.Event, counter: multiprocessing.Value,
          cpu: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    """One loopback WinRM server process; several share one port (the kernel spreads the connections). Ctrl-C
    reaches the whole process group: the server ignores it and stops when the benchmark sets ``stop``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1

    from tests.servers.winrm import LoopbackWinRM

    # The accounts database holds hashes, as a domain controller does (user:id:LM:NT:: lines).
    users = Path(state_dir) / f"ntlm-users-{os.getpid()}"
    users.write_text(f"BENCH\\exkit:1000:{lmowfv1(PASSWORD).hex()}:{ntowfv1(PASSWORD).hex()}::\n")
    os.environ["NTLM_USER_FILE"] = str(users)
    with LoopbackWinRM(Path(state_dir) / "unused.json", {USER: PASSWORD}, state_dir=Path(state_dir),
                       delay_ms=delay_ms, port=port, reuse_port=True) as server:
        port_queue.put(server.port)
        while not stop.wait(0.2):
            counter.value, cpu.value = server.http_requests, time.process_time()
        counter.value, cpu.value = server.http_requests, time.process_time()


def existing_tenants(state_dir: Path, tenants: int, prefix: str = "t", platform: str = "exchange-server") -> None:
    """The tenants' organisations exist before exkit runs: the sandbox's seed organisation (of ``platform``), each
    with its own room-booking service account, so every tenant's scripts differ (as with real tenants)."""
    from toolkit.sandbox.org import Recipient
    from toolkit.sandbox.seed import CONTOSO_USERS, seed_organisation

    for index in range(tenants):
        organisation = seed_organisation(platform)
        name = f"Room Booking Service t{index:04d}"
        organisation.recipients.append(Recipient(
            name=name, alias=f"svc-rooms-t{index:04d}", primary_smtp_address=f"svc-rooms-t{index:04d}@contoso.com",
            recipient_type_details="UserMailbox", display_name=name, distinguished_name=f"CN={name},{CONTOSO_USERS}"))
        (state_dir / f"{prefix}{index:04d}.json").write_text(organisation.to_json(), encoding="utf-8")


def inventory(path: Path, port: int, tenants: int) -> None:
    lines = ["groups:", "  tenants:", "    targets:"]
    for index in range(tenants):
        lines.append(f"      t{index:04d}: {{kind: exchange-server, host: 127.0.0.1, port: {port}, scheme: http, "
                     f"transport: ntlm, username: 'BENCH\\exkit', password: 'env:EXKIT_BENCH_PASSWORD', "
                     f"connect: snapin, path: /wsman/t{index:04d}, read_timeout: 120, "
                     f"vars: {{service_account: svc-rooms-t{index:04d}@contoso.com}}}}")
    path.write_text("\n".join(lines) + "\n")


def naive(port: int, tenants: int, forks: int, state_dir: Path) -> float:
    """The same work, one cmdlet per round trip (read each object, then create it)."""
    import winrm

    existing_tenants(state_dir, tenants, prefix="naive")
    cmdlets = [
        "Get-ManagementScope -Identity 'Room mailboxes' -ErrorAction SilentlyContinue | Out-Null",
        "Get-RoleGroup -Identity 'Room booking service accounts' -ErrorAction SilentlyContinue | Out-Null",
        "Get-ManagementScope -Identity 'Room mailboxes' -ErrorAction SilentlyContinue | Out-Null",
        "New-ManagementScope -Name 'Room mailboxes' -RecipientRestrictionFilter \"RecipientTypeDetails -eq "
        "'RoomMailbox'\" | Out-Null",
        "Get-RoleGroup -Identity 'Room booking service accounts' -ErrorAction SilentlyContinue | Out-Null",
        "New-RoleGroup -Name 'Room booking service accounts' -Roles 'ApplicationImpersonation' -Members "
        "'svc-rooms-t{index:04d}@contoso.com' -CustomRecipientWriteScope 'Room mailboxes' | Out-Null",
    ]

    def one(index: int) -> None:
        session = winrm.Session(f"http://127.0.0.1:{port}/wsman/naive{index:04d}", auth=(USER, PASSWORD),
                                transport="ntlm", message_encryption="always", read_timeout_sec=120,
                                operation_timeout_sec=20)
        for cmdlet in cmdlets:
            result = session.run_ps(cmdlet.replace("{index:04d}", f"{index:04d}"))
            if result.status_code != 0:
                raise RuntimeError(f"naive tenant {index}: {result.std_err.decode(errors='replace')[:200]}")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=forks) as pool:
        list(pool.map(one, range(tenants)))
    return time.monotonic() - started


def _total(values: list) -> float:  # type: ignore[type-arg]
    return sum(v.value for v in values)


def _client_cpu() -> float:
    """CPU seconds of this process and its finished children: exkit's worker processes (the server is still
    running, so it is not counted here)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def fleet_arguments(description: str, servers_help: str) -> argparse.Namespace:
    """The fleet benchmarks' command line: --tenants, --rtt-ms, --forks, --no-naive, --server-processes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--forks", type=int, default=32)
    parser.add_argument("--no-naive", action="store_true", help="Skip the naive baseline.")
    parser.add_argument("--server-processes", type=int, default=os.cpu_count() or 1, help=servers_help)
    return parser.parse_args()


def main() -> None:
    arguments = fleet_arguments(__doc__.splitlines()[0], "Loopback server processes sharing the port (default: "
                                "one per CPU). They stand for many tenants' servers, which do not queue behind one "
                                "Python interpreter lock.")
    os.environ["EXKIT_BENCH_PASSWORD"] = PASSWORD
    scratch = Path(tempfile.mkdtemp(prefix="exkit-bench-"))  # the tenants' organisations: ~64 MB for 1000
    os.environ["EXKIT_RUNS_DIR"] = str(scratch / "runs")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # a kill cleans up too (finally below), as Ctrl-C does
    context = multiprocessing.get_context("spawn")
    port_queue, stop = context.Queue(), context.Event()
    counters = [context.Value("l", 0) for _ in range(arguments.server_processes)]
    cpus = [context.Value("d") for _ in range(arguments.server_processes)]
    servers = []
    port = 0
    try:
        for counter, cpu in zip(counters, cpus):
            servers.append(context.Process(target=serve, args=(str(scratch), arguments.rtt_ms, port, port_queue,
                                                               stop, counter, cpu)))
            servers[-1].start()
            port = port_queue.get(timeout=30)
        existing_tenants(scratch, arguments.tenants)
        inventory(scratch / "tenants.yaml", port, arguments.tenants)
        from toolkit.fleet.run import run_many
        from toolkit.inventory import select_targets

        targets = select_targets(scratch / "tenants.yaml", "tenants")
        time.sleep(0.5)  # let the server publish its figures
        before, server_cpu_before, client_cpu_before = _total(counters), _total(cpus), _client_cpu()
        started = time.monotonic()
        outcomes = run_many("apply", REPO / "playbooks" / "classic.yaml", targets, {}, None, arguments.forks)
        wall = time.monotonic() - started
        client_cpu = _client_cpu() - client_cpu_before
        time.sleep(0.5)
        requests, server_cpu_used = _total(counters) - before, _total(cpus) - server_cpu_before
        failed = [o for o in outcomes if not o.ok]
        if failed:
            print(f"{len(failed)} tenant(s) failed, e.g. {failed[0].target}: {failed[0].summary}", file=sys.stderr)
            sys.exit(1)
        per_tenant = requests / arguments.tenants
        floor = arguments.tenants * per_tenant * arguments.rtt_ms / 1000 / arguments.forks
        naive_wall = float("nan") if arguments.no_naive else naive(port, arguments.tenants, arguments.forks, scratch)
    finally:
        stop.set()
        for server in servers:
            server.join(timeout=10)
            if server.is_alive():
                server.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"exkit: {arguments.tenants} tenants planned and applied with {arguments.forks} forks; {requests} HTTP "
          f"requests; CPU s during the run: client {client_cpu:.1f}, server {server_cpu_used:.1f}", file=sys.stderr)
    print(f"tenants={arguments.tenants} wall_s={wall:.2f} floor_s={floor:.2f} ratio={wall / floor:.2f} "
          f"http_per_tenant={per_tenant:.1f} naive_ratio={naive_wall / floor:.2f} peak_rss_mb={rss / 1024:.0f}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: the servers are stopped and the scratch folder is gone (main's finally)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
