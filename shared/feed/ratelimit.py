"""Request-rate limiting for the supplier feed.

`RateLimiter` is the port: one `acquire()` per HTTP request, returning when the request may be
sent. `TokenBucket` is the in-process implementation (one instance shared by every concurrent call
of a process); a database-backed global limiter implements the same Protocol.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class RateLimiter(Protocol):
    async def acquire(self) -> None: ...


class TokenBucket:
    """A token bucket of `burst` tokens refilled at `rate_per_s`, as a virtual-scheduling (GCRA) clock.

    Each `acquire()` reserves the next free send slot at once, under a lock and without awaiting, so
    callers are served in call order, and then sleeps until its slot: no polling, no busy loop. A
    caller cancelled while waiting gives up its slot only if nobody reserved after it.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._interval = 1.0 / rate_per_s
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()  # the bucket may be shared by event loops in several threads
        self._theoretical_arrival = clock()

    def _reserve(self) -> tuple[float, float]:
        """Reserve a slot; return (seconds to wait, the reservation's arrival time)."""
        with self._lock:
            now = self._clock()
            arrival = max(self._theoretical_arrival, now)
            self._theoretical_arrival = arrival + self._interval
            return max(0.0, arrival - self._tolerance - now), arrival

    def _release(self, arrival: float) -> None:
        with self._lock:
            if self._theoretical_arrival == arrival + self._interval:
                self._theoretical_arrival = arrival

    async def acquire(self) -> None:
        wait, arrival = self._reserve()
        if wait <= 0:
            return
        try:
            await self._sleep(wait)
        except asyncio.CancelledError:
            self._release(arrival)
            raise
