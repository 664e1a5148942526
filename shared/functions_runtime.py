"""The Functions worker process's side of the composition root: ONE container per process.

Every trigger and the API of the process share it (one connection pool, one Service Bus client, one
feed client with its rate limiter). The worker runs no code before the first invocation, so the
container is opened on first use, once, under a lock, and kept for the life of the process. The
fan-in is the Durable one: runs started here get their orchestration before any work item is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Protocol

from fanin.durable import DurableFanIn
from fanin.service import policy_from
from shared import observability
from shared.bootstrap import Container, open_container
from shared.db.database import ready_database
from shared.settings import Settings, get_settings


class ContainerOpener(Protocol):
    def __call__(self, settings: Settings) -> AbstractAsyncContextManager[Container]: ...


@asynccontextmanager
async def open_functions_container(settings: Settings) -> AsyncIterator[Container]:
    """Database checked and migrated (under the migration runner's advisory lock), Durable fan-in."""
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(ready_database(settings))
        yield await stack.enter_async_context(
            open_container(settings, database.url, name="functions", fanin=DurableFanIn(policy_from(settings)))
        )


class ProcessContainer:
    """Also the API's container provider (same `get()` / `aclose()` as api.deps.ContainerProvider)."""

    def __init__(self, opener: ContainerOpener = open_functions_container) -> None:
        self._opener = opener
        self._container: Container | None = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Container:
        if self._container is not None:
            return self._container
        async with self._lock:
            if self._container is None:
                settings = get_settings()
                observability.configure(settings)
                stack = AsyncExitStack()
                self._container = await stack.enter_async_context(self._opener(settings))
                self._stack = stack
        return self._container

    def install(self, container: Container) -> None:
        """Use an already open container (tests drive the trigger bodies with their own)."""
        self._container = container

    async def aclose(self) -> None:
        stack, self._stack, self._container = self._stack, None, None
        if stack is not None:
            await stack.aclose()


runtime = ProcessContainer()
