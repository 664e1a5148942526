"""The composition root: builds every dependency a service needs from the settings.

function_app.py, the local host, the CLI and the tests all get their wiring here; services receive
the pieces explicitly and never reach for globals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from shared.clock import Clock, SystemClock
from shared.db.pool import Pool, open_pool
from shared.settings import Settings


@dataclass
class Container:
    settings: Settings
    pool: Pool
    clock: Clock


@asynccontextmanager
async def open_container(
    settings: Settings,
    database_url: str,
    *,
    name: str = "opus",
    clock: Clock | None = None,
) -> AsyncIterator[Container]:
    async with AsyncExitStack() as stack:
        pool = await open_pool(database_url, settings, name=name)
        stack.push_async_callback(pool.close)
        yield Container(settings=settings, pool=pool, clock=clock or SystemClock())
