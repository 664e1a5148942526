"""TokenBucket on a virtual clock: slots are exact, callers are served in call order, nobody spins."""

from __future__ import annotations

import asyncio

import pytest

from shared.feed.ratelimit import RateLimiter, TokenBucket


class VirtualTime:
    """A clock and a sleep that advances it, so the bucket's schedule is observed exactly."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(10, burst=0)


async def test_burst_then_one_slot_per_interval_in_call_order() -> None:
    time = VirtualTime()
    bucket = TokenBucket(10, burst=3, clock=time.clock, sleep=time.sleep)
    limiter: RateLimiter = bucket
    finished: list[int] = []

    async def call(index: int) -> None:
        await limiter.acquire()
        finished.append(index)

    await asyncio.gather(*(call(i) for i in range(8)))
    # Three go at once; the rest wait 0.1 s more each, in the order they asked.
    assert time.sleeps == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert finished == list(range(8))


async def test_idle_time_refills_only_up_to_the_burst() -> None:
    time = VirtualTime()
    bucket = TokenBucket(5, burst=2, clock=time.clock, sleep=time.sleep)
    for _ in range(2):
        await bucket.acquire()
    time.now += 60  # a long pause must not bank 300 tokens
    for _ in range(3):
        await bucket.acquire()
    assert time.sleeps == pytest.approx([0.2])


async def test_cancelled_waiter_returns_its_slot() -> None:
    time = VirtualTime()
    released = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        time.sleeps.append(seconds)
        await released.wait()

    bucket = TokenBucket(1, burst=1, clock=time.clock, sleep=blocking_sleep)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    released.set()
    await bucket.acquire()
    # The cancelled caller's slot went to the next one: it waits one interval, not two.
    assert time.sleeps == pytest.approx([1.0, 1.0])
