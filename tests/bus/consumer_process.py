"""A competing consumer in its own process, for tests that need real separate processes.

`python -m tests.bus.consumer_process URL LOCK_S MODE`; it prints `<message_id> <delivery_count>`
per message it handles, flushed. MODE `drain`: prints `ready`, waits for a line on stdin (so that
all processes start together), then runs four concurrent receive-and-complete loops until the queue
stays empty for a second. MODE `hold`: receive the one message waiting, print it, then sleep (the test
kills the process while it holds the lock).
"""

from __future__ import annotations

import asyncio
import sys

from psycopg_pool import AsyncConnectionPool

from shared.bus.local import LocalBus
from tests.bus.support import QUEUES, Q, sized_properties


async def _drain(bus: LocalBus) -> None:
    idle_since: float | None = None
    loop = asyncio.get_running_loop()
    while True:
        batch = await bus.receive(Q, 5)
        if not batch:
            idle_since = idle_since or loop.time()
            if loop.time() - idle_since > 1:
                return
            await asyncio.sleep(0.05)
            continue
        idle_since = None
        for received in batch:
            print(received.message_id, received.delivery_count, flush=True)
            await bus.complete(received)


async def main(url: str, lock_s: float, mode: str) -> None:
    async with AsyncConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True}) as pool:
        bus = LocalBus(pool, QUEUES, sized_properties(lock=lock_s, max_deliveries=5))
        if mode == "drain":
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            await asyncio.gather(*(_drain(bus) for _ in range(4)))
        else:
            [received] = await bus.receive(Q)  # sent before this process started
            print(received.message_id, received.delivery_count, flush=True)
            await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3]))
