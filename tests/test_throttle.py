"""Rate limits: the token bucket's waits, on a virtual clock (exact figures, no timing of the machine)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from toolkit.fleet import throttle
from toolkit.fleet.throttle import RateLimiter


class VirtualClock:
    """time.monotonic and time.sleep for the limiter: sleeping advances the clock by what was asked (at least a
    microsecond, as a real sleep does: a float clock cannot advance by 1e-14 at 1000 s)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, f"the limiter slept {seconds} s"
        assert len(self.sleeps) < 100, "the limiter keeps sleeping without getting a token"
        self.sleeps.append(seconds)
        self.now += max(seconds, 1e-6)
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()

    def idle(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    virtual = VirtualClock()
    monkeypatch.setattr(throttle, "time", virtual)
    return virtual


def test_a_fresh_limiter_lets_one_call_through_then_spaces_them(clock):
    limiter = RateLimiter(4, burst=1)
    assert [limiter.acquire() for _ in range(6)] == [0.0, 0.25, 0.25, 0.25, 0.25, 0.25]
    assert clock.sleeps == [0.25] * 5


def test_idle_time_refills_no_more_than_the_burst(clock):
    """At 5/s with burst 1, six calls after a long idle take one second, not zero."""
    limiter = RateLimiter(5, burst=1)
    limiter.acquire()
    clock.idle(3600)
    waits = [limiter.acquire() for _ in range(6)]
    assert waits[0] == 0.0
    assert sum(waits) == pytest.approx(1.0, abs=1e-4)
    assert clock.now - 1000.0 - 3600 == pytest.approx(1.0, abs=1e-4)


def test_a_burst_is_free_then_the_rate_holds(clock):
    limiter = RateLimiter(2, burst=3)
    assert [limiter.acquire() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 0.5]
    clock.idle(10)  # refills to the burst of 3, not 20
    assert [limiter.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_part_of_a_token_earned_while_idle_shortens_the_wait(clock):
    limiter = RateLimiter(4, burst=1)
    limiter.acquire()
    clock.idle(0.125)  # half a token
    assert limiter.acquire() == 0.125
    clock.idle(0.25)  # exactly one token
    assert limiter.acquire() == 0.0


def test_a_call_that_loses_the_token_to_another_waits_again(clock):
    """Another thread takes the token this call slept for: it sleeps again, and reports both waits."""
    limiter = RateLimiter(4, burst=1)
    limiter.acquire()
    clock.on_sleep = limiter.acquire  # wins the token during the first sleep (its own wait is 0)
    assert limiter.acquire() == 0.5
    assert clock.sleeps == [0.25, 0.25]


def test_burst_below_one_means_one(clock):
    limiter = RateLimiter(4, burst=0)
    assert [limiter.acquire() for _ in range(2)] == [0.0, 0.25]


@pytest.mark.parametrize("rate", [0, -1, -0.5])
def test_a_rate_must_be_positive(rate):
    with pytest.raises(ValueError, match="^a rate limit must be positive$"):
        RateLimiter(rate)


def test_threads_share_one_bucket(clock):
    """Many threads, one bucket: exactly the burst goes through without waiting (the lock guards the tokens)."""
    limiter = RateLimiter(1024, burst=5)
    lock = threading.Lock()
    waits: list[float] = []
    real_sleep = clock.sleep

    def sleep(seconds: float) -> None:
        with lock:
            real_sleep(seconds)

    clock.sleep = sleep  # type: ignore[method-assign]

    def worker() -> None:
        waited = limiter.acquire()
        with lock:
            waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(waits) == 20
    assert waits.count(0.0) >= 5


def test_the_default_burst_is_one(clock):
    limiter = RateLimiter(4)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.25, 0.25]


@pytest.mark.parametrize("rate, pause", [(0.5, 2.0), (1, 1.0)])
def test_slow_rates_are_allowed(clock, rate, pause):
    limiter = RateLimiter(rate)
    assert [limiter.acquire() for _ in range(2)] == [0.0, pause]
