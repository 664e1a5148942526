"""How a request reaches the container: injected by the local host, or opened lazily in Azure."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from fastapi import Request

from shared.bootstrap import Container, open_container
from shared.db.database import database_target
from shared.settings import get_settings


class ContainerProvider:
    """Holds the app's dependencies. Under the Functions ASGI bridge nothing runs before the first
    request, so the container is opened on first use (once, under a lock) and kept for the process."""

    def __init__(self, container: Container | None = None) -> None:
        self._container = container
        self._lock = asyncio.Lock()
        self._stack: AsyncExitStack | None = None

    async def get(self) -> Container:
        if self._container is not None:
            return self._container
        async with self._lock:
            if self._container is None:
                settings = get_settings()
                stack = AsyncExitStack()
                self._container = await stack.enter_async_context(
                    open_container(settings, database_target(settings).url, name="api")
                )
                self._stack = stack
        return self._container

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._container = None


async def get_container(request: Request) -> Container:
    provider: ContainerProvider = request.app.state.provider
    return await provider.get()
