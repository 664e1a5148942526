"""One OS process sharing the global token bucket, for tests/azure/test_global_rate_limit.py:
`python -m tests.azure.rate_probe URL KEY RATE SECONDS TASKS START_AT` prints its grant times (JSON)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from shared.db.token_bucket import PostgresTokenBucket


async def probe(url: str, key: str, rate: float, seconds: float, tasks: int) -> list[float]:
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        url, min_size=1, max_size=tasks, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    bucket = PostgresTokenBucket(pool, key=key, rate_per_s=rate)
    grants: list[float] = []
    deadline = time.time() + seconds

    async def worker() -> None:
        while time.time() < deadline:
            await bucket.acquire()
            grants.append(time.time())

    await asyncio.gather(*(worker() for _ in range(tasks)))
    await pool.close()
    return grants


if __name__ == "__main__":
    url, key, rate, seconds, tasks, start_at = sys.argv[1:7]
    time.sleep(max(0.0, float(start_at) - time.time()))
    print(json.dumps(asyncio.run(probe(url, key, float(rate), float(seconds), int(tasks)))))
