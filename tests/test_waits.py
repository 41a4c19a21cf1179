"""A bounded wait's arithmetic, exactly: which retry may still start, how attempts are counted, what an expired
wait says. Margins of seconds against microseconds of elapsed time: no timing assertion."""

from __future__ import annotations

import re
import time

import pytest

from toolkit.targets.waits import RUN, Interrupted, TimedOut, Wait


@pytest.fixture
def run_control():
    RUN.reset()
    yield RUN
    RUN.reset()


def test_a_retry_starts_only_when_its_pause_and_a_shortest_attempt_fit_in_what_is_left(run_control):
    wait = Wait("InvokeCommand Get-RoleGroup at https://outlook.office365.com", 10.0, "call_timeout")
    assert wait.may_retry(9.0)  # 9 s + 0.5 s < 10 s
    assert not wait.may_retry(9.6)  # 9.6 s + 0.5 s: past the bound
    run_control.set_timeout(5.0)  # the run's --timeout is shorter: it bounds the wait
    assert wait.may_retry(4.0)
    assert not wait.may_retry(4.6)
    run_control.request_stop("SIGINT")
    assert not wait.may_retry(0.0)  # stopping: no retry at all


def test_each_attempt_is_counted_and_an_answer_starts_the_wait_afresh(run_control):
    wait = Wait("WinRM Create (open a shell)", 30.0, "read_timeout")
    first = wait.timeout()
    assert 29.0 < first <= 30.0 and wait.attempts == 1
    wait.timeout()
    assert wait.attempts == 2
    wait.answered()
    assert wait.attempts == 0 and wait.elapsed < 1.0
    assert re.fullmatch(r"waited 0\.\d s in total over 0 attempt\(s\)", wait.summary())


def test_an_expired_wait_names_what_was_waited_for_and_the_bound_that_ended_it(run_control):
    wait = Wait("InvokeCommand Get-RoleGroup at https://outlook.office365.com", 2.0, "call_timeout",
                started=time.monotonic() - 3.0, attempts=2)
    with pytest.raises(TimedOut) as expired:
        wait.timeout()
    assert re.fullmatch(r"no answer from InvokeCommand Get-RoleGroup at https://outlook\.office365\.com: waited 3\.\d "
                        r"s in total over 2 attempt\(s\) \(call_timeout 2 s\)", str(expired.value)), expired.value
    assert wait.attempts == 2  # a refused attempt is not counted
    run_control.set_timeout(1.0)
    message = str(Wait("WinRM Receive", 30.0, "read_timeout").expired("the shell was deleted"))
    assert re.fullmatch(r"no answer from WinRM Receive: waited 0\.\d s in total over 0 attempt\(s\) \(the run's "
                        r"--timeout of 1 s\); the shell was deleted", message), message


def test_nothing_new_starts_once_the_run_is_stopping_or_past_its_timeout(run_control):
    run_control.set_timeout(0.0)
    with pytest.raises(TimedOut) as late:
        Wait("WinRM Create (open a shell)", 30.0, "read_timeout").timeout()
    assert str(late.value) == ("WinRM Create (open a shell) was not started: the run's --timeout (0 s) has passed")
    run_control.reset()
    run_control.request_stop("SIGTERM")
    run_control.request_stop("SIGINT")  # the first reason stays
    with pytest.raises(Interrupted) as stopped:
        Wait("InvokeCommand Get-RoleGroup", 30.0, "call_timeout").timeout()
    assert str(stopped.value) == "InvokeCommand Get-RoleGroup was not started: the run was interrupted (SIGTERM)"


def test_a_wait_with_nothing_left_starts_no_attempt(run_control, monkeypatch):
    """On a virtual clock: at exactly the bound, nothing is left and no attempt starts."""
    import toolkit.targets.waits as waits

    now = [1000.0]
    monkeypatch.setattr(waits.time, "monotonic", lambda: now[0])
    wait = Wait("WinRM Receive", 2.0, "read_timeout", started=now[0])
    now[0] += 1.5
    assert wait.timeout() == 0.5 and wait.attempts == 1
    now[0] += 0.5
    with pytest.raises(TimedOut) as expired:
        wait.timeout()
    assert str(expired.value) == ("no answer from WinRM Receive: waited 2.0 s in total over 1 attempt(s) "
                                  "(read_timeout 2 s)")


def test_a_wait_that_ends_with_the_runs_timeout_names_its_own_setting(run_control, monkeypatch):
    """On a virtual clock: the setting and --timeout end at the same moment; the message names the setting, and
    the run's --timeout only when it ends first."""
    import toolkit.targets.waits as waits

    now = [1000.0]
    monkeypatch.setattr(waits.time, "monotonic", lambda: now[0])
    run_control.set_timeout(2.0)
    wait = Wait("WinRM Receive", 2.0, "read_timeout", started=now[0])
    now[0] += 1.5
    assert str(wait.expired()) == ("no answer from WinRM Receive: waited 1.5 s in total over 0 attempt(s) "
                                   "(read_timeout 2 s)")
    run_control.set_timeout(0.25)  # now the run ends 0.25 s before the setting does
    assert str(wait.expired()) == ("no answer from WinRM Receive: waited 1.5 s in total over 0 attempt(s) "
                                   "(the run's --timeout of 0.25 s)")


def test_a_retry_whose_pause_and_shortest_attempt_end_exactly_at_the_bound_does_not_start(run_control, monkeypatch):
    """On a virtual clock: 9.5 s of pause and the shortest attempt (0.5 s) end exactly at the 10 s bound."""
    import toolkit.targets.waits as waits

    now = [1000.0]
    monkeypatch.setattr(waits.time, "monotonic", lambda: now[0])
    wait = Wait("InvokeCommand Get-RoleGroup", 10.0, "call_timeout", started=now[0])
    assert wait.may_retry(9.25) and not wait.may_retry(9.5)
