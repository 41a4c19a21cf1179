"""Rate limits: a token bucket per target and one shared by all targets of a run.

A connector calls :meth:`Target.throttle` before each round trip; the time spent waiting is reported.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """At most ``rate`` acquisitions per second on average, bursts of up to ``burst``; safe across threads."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = rate
        self.capacity = max(1, burst)
        self.tokens = float(self.capacity)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; return the seconds waited."""
        waited = 0.0
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return waited
                pause = (1 - self.tokens) / self.rate
            time.sleep(pause)
            waited += pause
