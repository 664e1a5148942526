"""The composition root: builds every dependency a service needs from the settings.

function_app.py, the local host, the CLI and the tests all get their wiring here; services receive
the pieces explicitly and never reach for globals.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from fanin.port import FanInStarter, LocalFanIn
from shared.bus.local import LocalBus
from shared.bus.port import MessageBus, QueueNames
from shared.bus.queue_config import QueueConfigError, local_queue_properties
from shared.clock import Clock, SystemClock
from shared.db.database import database_target
from shared.db.pool import Pool, open_pool
from shared.db.token_bucket import PostgresTokenBucket
from shared.feed.client import NivodaClient
from shared.feed.ratelimit import RateLimiter, TokenBucket
from shared.settings import Settings, SettingsError, get_settings

RATE_LIMIT_KEY = "nivoda"


@dataclass
class Container:
    settings: Settings
    pool: Pool
    clock: Clock
    bus: MessageBus
    feed: NivodaClient
    fanin: FanInStarter = field(default_factory=LocalFanIn)

    @property
    def queues(self) -> QueueNames:
        return self.bus.queues


def feed_endpoint(settings: Settings) -> str:
    """NIVODA_ENDPOINT, or the local simulator's address when it is unset."""
    if settings.nivoda_endpoint is not None:
        return str(settings.nivoda_endpoint)
    return f"http://{settings.feedsim_host}:{settings.feedsim_port}/api/diamonds"


def rate_limiter(settings: Settings, pool: Pool) -> RateLimiter:
    if settings.nivoda_rate_limit_scope == "global":
        return PostgresTokenBucket(pool, key=RATE_LIMIT_KEY, rate_per_s=settings.nivoda_rate_limit_per_s)
    return TokenBucket(settings.nivoda_rate_limit_per_s)


def local_bus(settings: Settings, pool: Pool) -> LocalBus:
    queues = QueueNames.from_settings(settings)
    try:
        properties = local_queue_properties(settings, queues)
    except QueueConfigError as exc:
        raise SettingsError(f"the local bus's queues: {exc}") from None
    return LocalBus(pool, queues, properties)


def servicebus_bus(settings: Settings) -> MessageBus:
    """The Service Bus adapter, connected with the app setting that SERVICEBUS_CONNECTION_SETTING names."""
    from shared.bus.servicebus import ServiceBusBus  # the SDK loads only where it is used

    name = settings.servicebus_connection_setting
    connection = os.environ.get(name, "").strip()
    if not connection:
        raise SettingsError(
            f"BUS_BACKEND=servicebus needs the app setting {name} (named by SERVICEBUS_CONNECTION_SETTING); "
            "expected a Service Bus connection string"
        )
    return ServiceBusBus.from_connection_string(connection, QueueNames.from_settings(settings))


async def _bus(settings: Settings, pool: Pool, stack: AsyncExitStack) -> MessageBus:
    bus: MessageBus = servicebus_bus(settings) if settings.bus_backend == "servicebus" else local_bus(settings, pool)
    stack.push_async_callback(bus.close)
    return bus


@asynccontextmanager
async def open_container(
    settings: Settings,
    database_url: str,
    *,
    name: str = "opus",
    clock: Clock | None = None,
    feed_url: str | None = None,
    fanin: FanInStarter | None = None,
) -> AsyncIterator[Container]:
    async with AsyncExitStack() as stack:
        pool = await open_pool(database_url, settings, name=name)
        stack.push_async_callback(pool.close)
        bus = await _bus(settings, pool, stack)
        feed = NivodaClient.from_settings(
            settings, rate_limiter(settings, pool), endpoint=feed_url or feed_endpoint(settings)
        )
        stack.push_async_callback(feed.aclose)
        yield Container(
            settings=settings,
            pool=pool,
            clock=clock or SystemClock(),
            bus=bus,
            feed=feed,
            fanin=fanin or LocalFanIn(),
        )


ContainerOpener = Callable[[Settings], AbstractAsyncContextManager[Container]]


@asynccontextmanager
async def open_configured(settings: Settings) -> AsyncIterator[Container]:
    """The container of a process that only has its settings (DATABASE_URL set, nothing started)."""
    async with open_container(settings, database_target(settings).url, name="api") as container:
        yield container


class LazyContainer:
    """One container per process, opened on first use (once, under a lock) and kept.

    Under the Functions host nothing runs before the first invocation, so triggers and the API
    open their shared container lazily; the local host hands in the one it opened instead."""

    def __init__(self, opener: ContainerOpener = open_configured, container: Container | None = None) -> None:
        self._opener = opener
        self._container = container
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Container:
        if self._container is not None:
            return self._container
        async with self._lock:
            if self._container is None:
                stack = AsyncExitStack()
                self._container = await stack.enter_async_context(self._opener(get_settings()))
                self._stack = stack
        return self._container

    def install(self, container: Container) -> None:
        """Use an already open container (tests drive the trigger bodies with their own)."""
        self._container = container

    async def aclose(self) -> None:
        stack, self._stack, self._container = self._stack, None, None
        if stack is not None:
            await stack.aclose()
