"""The Functions worker process's side of the composition root: ONE container per process.

Every trigger and the API of the process share it (one connection pool, one Service Bus client, one
feed client with its rate limiter). The worker runs no code before the first invocation, so the
container is opened on first use, once, under a lock, and kept for the life of the process. The
fan-in is the Durable one: runs started here get their orchestration before any work item is sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fanin.durable import DurableFanIn
from fanin.service import policy_from
from shared import observability
from shared.bootstrap import Container, LazyContainer, open_container
from shared.db.database import ready_database
from shared.settings import Settings


@asynccontextmanager
async def open_functions_container(settings: Settings) -> AsyncIterator[Container]:
    """Database checked and migrated (under the migration runner's advisory lock), Durable fan-in."""
    observability.configure(settings)
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(ready_database(settings))
        yield await stack.enter_async_context(
            open_container(settings, database.url, name="functions", fanin=DurableFanIn(policy_from(settings)))
        )


runtime = LazyContainer(open_functions_container)
