"""Retries as the servers see them: exact attempt counts, Retry-After honoured, max_wait capping it, backoff.

Waits are checked from the loopback server's side (when each request arrived) with one-sided bounds only: a lower
bound where exkit must wait at least so long, and an upper bound far below what an uncapped wait would be."""

from __future__ import annotations

import re
import threading
import time

import pytest
from servers.winrm import Fault
from test_exchange_online import TENANT, exo, pki  # noqa: F401  (fixtures)
from test_winrm import CLASSIC, ca, winrm_lab  # noqa: F401  (fixtures)

from toolkit.sandbox import org as store
from toolkit.sandbox.seed import seed_organisation
from toolkit.targets.waits import RUN

ROOMS_ONLINE = CLASSIC.parent / "online-rooms.yaml"


def exo_inventory(exo, **settings):  # noqa: F811
    """The loopback tenant's inventory with other retry settings (the fixture writes max_wait: 0.2)."""
    server, inventory = exo
    text = inventory.read_text()
    assert text.count("max_wait: 0.2") == 3
    settings = {"reads_in_flight": 1, **settings}  # one call at a time: each call's attempts in order
    extra = ", ".join(f"{key}: {value}" for key, value in settings.items())
    inventory.write_text(text.replace("max_wait: 0.2", extra))
    return server, inventory


def plan(cli, inventory):
    return cli("plan", ROOMS_ONLINE, "-i", inventory, "-t", "cert", "--output", "json")


def gaps(server):
    return [b - a for a, b in zip(server.log.arrivals, server.log.arrivals[1:])]


@pytest.mark.parametrize("retries", [0, 3])
def test_exchange_online_makes_max_retries_plus_one_attempts(cli, exo, retries):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=retries, max_wait=0.01)
    server.switches.fail_next = 100
    result = plan(cli, inventory)
    assert result.exit_code == 1
    assert server.log.statuses == [503] * (retries + 1)
    assert f"Get-ManagementScope on tenant {TENANT} still failed (HTTP 503) after {retries + 1} attempt(s) over " \
        in result.stderr
    assert f"(max_retries {retries}, call_timeout " in result.stderr


def test_exchange_online_429s_within_the_retries_complete(cli, exo):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=3, max_wait=1)
    server.switches.throttle_next = 3
    server.switches.retry_after = "0.01"
    result = plan(cli, inventory)
    assert result.exit_code == 0, result.stderr
    assert server.log.statuses == [429, 429, 429, 200, 200, 200]  # then the two other reads, at once
    assert server.log.invocations == ["Get-ManagementScope", "Get-ServicePrincipal", "Get-ManagementRoleAssignment"]


def test_max_wait_caps_a_long_retry_after(cli, exo):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=2, max_wait=0.05)
    server.switches.throttle_next = 2
    server.switches.retry_after = "20"  # uncapped, the plan would wait 40 s
    result = plan(cli, inventory)
    assert result.exit_code == 0, result.stderr
    assert server.log.statuses[:3] == [429, 429, 200]
    assert max(gaps(server)[:2]) < 10, gaps(server)


def test_retry_after_is_honoured_below_max_wait(cli, exo):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=2, max_wait=30)
    server.switches.throttle_next = 1
    server.switches.retry_after = "0.4"
    assert plan(cli, inventory).exit_code == 0
    assert server.log.statuses[:2] == [429, 200]
    assert gaps(server)[0] >= 0.4


def test_without_retry_after_the_backoff_doubles(cli, exo):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=2, max_wait=30)
    server.switches.fail_next = 2  # 503 without Retry-After: 0.5 s, then 1 s
    result = cli("apply", ROOMS_ONLINE, "-i", inventory, "-t", "cert", "--yes")
    assert result.exit_code == 0, result.stderr
    assert server.log.statuses[:3] == [503, 503, 200]
    first, second = gaps(server)[:2]
    assert first >= 0.5 and second >= 1.0
    assert second < 10  # not the 60 s default of max_wait
    notes = re.findall(r"Get-ManagementScope: HTTP 503, retried after ([0-9.]+) s", result.stdout)
    assert notes == ["0.50", "1.00"]


def test_exchange_online_backoff_is_capped_by_max_wait(cli, exo):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=4, max_wait=0.05)
    server.switches.fail_next = 4  # uncapped: 0.5 + 1 + 2 + 4 s
    result = cli("apply", ROOMS_ONLINE, "-i", inventory, "-t", "cert", "--yes")
    assert result.exit_code == 0, result.stderr
    assert server.log.statuses[:5] == [503, 503, 503, 503, 200]
    assert sum(gaps(server)[:4]) < 6, gaps(server)
    notes = re.findall(r"Get-ManagementScope: HTTP 503, retried after ([0-9.]+) s", result.stdout)
    assert notes == ["0.05"] * 4


# ------------------------------------------------------------------------------------------------ WinRM
@pytest.mark.parametrize("retries, failures, applied", [(0, 1, False), (1, 1, True), (1, 2, False), (2, 2, True)])
def test_winrm_starts_a_script_at_most_retries_plus_one_times(cli, winrm_lab, retries, failures,  # noqa: F811
                                                               applied):
    """The facts script is Command 1; the apply script's attempts are Command 2, 3, …: the first ``failures``
    of them are answered HTTP 500 before anything ran."""
    server, inventory = winrm_lab(extra=f"    retries: {retries}\n")
    server.faults += [Fault("Command", 2 + n, "500") for n in range(failures)]
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert server.counts["Command"] == 1 + min(failures + 1, retries + 1), (result.stdout, result.stderr)
    if applied:
        assert result.exit_code == 0, result.stderr
        assert re.findall(r"nothing ran; retried after ([0-9.]+) s", result.stdout) == ["0.5", "1.0"][:failures]
        assert store.load(server.state_path).role_group("Room booking service accounts") is not None
    else:
        assert result.exit_code == 1
        assert "could not start the script (the WinRM server answered HTTP 500); nothing ran" in result.stderr
        tried = re.search(r"nothing ran( \((\d+) attempts over \d+\.\d s\))?\n", result.stderr)
        assert tried is not None, result.stderr
        assert tried.group(2) == (str(retries + 1) if retries else None)  # the attempts, when there was a retry
        from toolkit.fleet import records

        assert records.read_all()[-1]["status"] == "failed"  # an answer that refused: not "timed-out"
        assert server.state_path.read_text() == seed_organisation().to_json()


class _RecordedPauses(threading.Event):
    """The run's stop switch, with each pause asked of it recorded and not slept (a virtual clock for backoffs)."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        return self.is_set()


def test_winrm_backoff_doubles_up_to_half_a_minute(cli, winrm_lab, monkeypatch):  # noqa: F811
    """Seven refused starts: the pauses before the retries are 0.5, 1, 2, 4, 8, 16 and then 30 s, the cap (recorded
    as the run's stop switch is asked to wait them, not slept)."""
    server, inventory = winrm_lab(extra="    retries: 7\n")
    inventory.write_text(inventory.read_text().replace("read_timeout: 10", "read_timeout: 60"))  # 30 s + more fits
    server.faults += [Fault("Command", 2 + n, "500") for n in range(7)]
    import types

    import toolkit.targets.waits as waits

    monkeypatch.setattr(RUN, "stop", recorded := _RecordedPauses())
    monkeypatch.setattr(waits, "threading", types.SimpleNamespace(Event=lambda: recorded))  # the CLI resets RUN
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert result.exit_code == 0, result.stderr
    assert recorded.pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert re.findall(r"nothing ran; retried after ([0-9.]+) s", result.stdout) == [
        "0.5", "1.0", "2.0", "4.0", "8.0", "16.0", "30.0"]


def test_a_stop_during_a_winrm_backoff_pause_starts_no_retry_and_says_so(winrm_lab, monkeypatch):  # noqa: F811
    """The script's start is refused (HTTP 500); the run is stopped during the pause: no second start, and the error
    names what was not started and why."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.waits import Interrupted

    class StopDuringPause(_RecordedPauses):
        def wait(self, timeout: float | None = None) -> bool:
            self.pauses.append(timeout)
            RUN.request_stop("SIGINT")
            return True

    server, inventory = winrm_lab()
    server.faults.append(Fault("Command", 1, "500"))
    target = resolve_target(inventory, "lab", "exchange-server").target
    monkeypatch.setattr(RUN, "stop", stop := StopDuringPause())
    try:
        with pytest.raises(Interrupted) as stopped:
            target.run_script("'ran'")
    finally:
        RUN.reset()
    assert str(stopped.value) == (f"the script on http://127.0.0.1:{server.port}/wsman was not started: the run was "
                                  "interrupted (SIGINT)")
    assert (stop.pauses, server.counts["Command"]) == ([0.5], 1)


def test_winrm_start_that_timed_out_before_the_script_ran_is_recorded_as_timed_out(cli, winrm_lab):  # noqa: F811
    """The apply script's start is never answered (read_timeout 2 s, no room for a retry): a timeout, not a failure,
    in the message and in the run record."""
    from toolkit.fleet import records

    server, inventory = winrm_lab()
    inventory.write_text(inventory.read_text().replace("read_timeout: 10", "read_timeout: 2"))
    server.faults.append(Fault("Command", 2, "silent"))  # Command 1 is the facts script
    result = cli("apply", CLASSIC, "-i", inventory, "-t", "lab", "--yes")
    assert result.exit_code == 1, result.stderr
    [record] = records.read_all()
    assert (record["status"], record["exit_code"]) == ("timed-out", 1), record  # a refusal would be "failed"
    assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/wsman: could not start the script \(no answer from WinRM "
                        r"Command \(start the script\): waited \d+\.\d s in total over 1 attempt\(s\) \(read_timeout 2 "
                        r"s\)\); nothing ran", record["error"]), record["error"]


def test_a_stop_ends_a_backoff_pause_at_once(cli, exo):  # noqa: F811
    """Ctrl-C during a 20 s Retry-After pause: the pause ends when the run is stopped, and no call follows."""
    server, inventory = exo_inventory(exo, max_retries=2, max_wait=30)
    server.switches.throttle_next = 1
    server.switches.retry_after = "20"

    def stop_after_the_429() -> None:
        deadline = time.monotonic() + 60
        while not server.log.statuses and time.monotonic() < deadline:
            time.sleep(0.01)
        RUN.request_stop("SIGINT")

    stopper = threading.Thread(target=stop_after_the_429, daemon=True)
    stopper.start()
    started = time.monotonic()
    try:
        result = plan(cli, inventory)
    finally:
        stopper.join(timeout=60)
        RUN.reset()
    assert time.monotonic() - started < 10  # not the 20 s pause
    assert result.exit_code != 0
    assert server.log.statuses == [429]


def test_a_stop_while_a_call_is_in_flight_starts_no_retry_and_says_so(exo):  # noqa: F811
    """Ctrl-C while the tenant holds the call; then it answers 429: the retry is not started, and the error says
    which call's retry it did not start and why (the run record of an apply keeps it; plan prints its own notice)."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.waits import Interrupted

    server, inventory = exo_inventory(exo, max_retries=2, max_wait=30)
    target = resolve_target(inventory, "cert", "exchange-online").target
    server.switches.throttle_next = 1
    server.switches.hold = held = threading.Event()

    def stop_while_held() -> None:
        deadline = time.monotonic() + 60
        while not server.log.headers and time.monotonic() < deadline:
            time.sleep(0.01)
        RUN.request_stop("SIGINT")
        held.set()

    stopper = threading.Thread(target=stop_while_held, daemon=True)
    stopper.start()
    try:
        with pytest.raises(Interrupted) as stopped:
            target.invoke("Get-ServicePrincipal")
    finally:
        held.set()
        stopper.join(timeout=60)
        RUN.reset()
    assert str(stopped.value) == "a retry of Get-ServicePrincipal was not started: the run was interrupted (SIGINT)"
    assert server.log.statuses == [429]


def test_a_call_never_answered_completely_says_why_when_its_retries_are_spent(exo):  # noqa: F811
    """Each attempt is closed without an answer (no HTTP status): the failure names what happened, not a status."""
    from toolkit.inventory import resolve_target
    from toolkit.targets.base import TargetError

    server, inventory = exo_inventory(exo, max_retries=1, max_wait=0.2)
    server.switches.close_next = 2
    with pytest.raises(TargetError) as failed:
        resolve_target(inventory, "cert", "exchange-online").target.invoke("Get-ServicePrincipal")
    assert re.fullmatch(r"Get-ServicePrincipal on tenant contoso\.onmicrosoft\.com still failed \(no complete answer "
                        r"\(Remote end closed connection without response\)\) after 2 attempt\(s\) over \d+\.\d s "
                        r"\(max_retries 1, call_timeout 900 s\)", str(failed.value)), failed.value
    assert (len(server.log.headers), server.log.invocations) == (2, [])


def test_a_reply_cut_in_the_middle_is_retried_and_noted_with_why(cli, exo):  # noqa: F811
    server, inventory = exo_inventory(exo, max_retries=2, max_wait=30)
    server.switches.drop_next = 1  # headers and half the body, then the connection closes
    result = cli("apply", ROOMS_ONLINE, "-i", inventory, "-t", "cert", "--yes")
    assert result.exit_code == 0, result.stderr
    assert server.log.invocations[:2] == ["Get-ManagementScope", "Get-ManagementScope"]  # the cut one, then again
    assert re.findall(r"^Note: .*$", result.stdout, re.MULTILINE) == [
        "Note: 1 call(s) were retried after throttling or transient errors: Get-ManagementScope: no complete answer "
        "(IncompleteRead), retried after 0.50 s"]
