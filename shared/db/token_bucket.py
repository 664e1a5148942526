"""A token bucket in PostgreSQL, shared by every process that calls the supplier.

Nivoda's limit (~25 requests/s) is per account, while Functions scale out to many instances, each
with its own memory: an in-process limiter lets N instances send N times the limit (the original's
WAF 403s). Every process takes its tokens from one row instead; the database clock is the only clock.

Each `acquire()` is ONE statement that always takes a token and lets the level go negative: a negative
level is a queue of reservations, and the caller sleeps until its own slot (-level / rate seconds).
No caller polls, so the row is touched once per request whatever the number of waiting processes,
slots are handed out in arrival order, and over any interval T at most `capacity + rate * T` requests
start (the vendor's limit plus the small burst). A caller cancelled while sleeping leaves its slot
unused, which can only lower the rate.
"""

from __future__ import annotations

import asyncio

from shared.db.pool import Pool

_TAKE = """
WITH now AS (SELECT clock_timestamp() AS t)
UPDATE rate_limit_buckets r
SET tokens = least(r.capacity, r.tokens + r.rate_per_s * extract(epoch FROM now.t - r.updated_at)) - 1,
    updated_at = now.t
FROM now
WHERE r.key = %(key)s
RETURNING greatest(0, -r.tokens / r.rate_per_s)
"""

_ENSURE = """
INSERT INTO rate_limit_buckets (key, tokens, capacity, rate_per_s)
VALUES (%(key)s, %(capacity)s, %(capacity)s, %(rate)s)
ON CONFLICT (key) DO UPDATE SET capacity = EXCLUDED.capacity, rate_per_s = EXCLUDED.rate_per_s
    WHERE rate_limit_buckets.capacity IS DISTINCT FROM EXCLUDED.capacity
       OR rate_limit_buckets.rate_per_s IS DISTINCT FROM EXCLUDED.rate_per_s
"""


class PostgresTokenBucket:
    """Implements the feed client's RateLimiter protocol across processes."""

    def __init__(self, pool: Pool, *, key: str, rate_per_s: float, burst: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._pool = pool
        self._key = key
        self._rate = rate_per_s
        # A small burst: the vendor counts requests per second, so a large burst would exceed it.
        self._capacity = burst if burst is not None else max(1.0, rate_per_s / 5)
        self._ready = False
        self._init_lock = asyncio.Lock()

    async def _ensure(self) -> None:
        async with self._init_lock:
            if not self._ready:
                async with self._pool.connection() as conn:
                    await conn.execute(_ENSURE, {"key": self._key, "capacity": self._capacity, "rate": self._rate})
                self._ready = True

    async def acquire(self) -> None:
        if not self._ready:
            await self._ensure()
        while True:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_TAKE, {"key": self._key})
                row = await cur.fetchone()
            if row is not None:
                break
            # The row was removed (e.g. tests truncating): recreate it and take again.
            self._ready = False
            await self._ensure()
        wait_s = float(row[0])
        if wait_s > 0:
            await asyncio.sleep(wait_s)
