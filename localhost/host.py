"""The local runtime: one process that runs the whole system on embedded defaults (`opus run`).

It starts (when not configured otherwise) the embedded PostgreSQL and the feed simulator, then runs
the same services the Functions app runs: the scheduler on its cron, competing consumers for the
three queues, the fan-in sweep (stalls, due auto-consolidations), alert delivery, and the API.
A restart resumes whatever was in flight: messages whose lock expired are redelivered, and the
next page of every open partition is re-sent from its recorded state (duplicates are dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
import orjson
import uvicorn

from api.app import create_app
from api.keys import ensure_local_admin_key
from consolidator.handler import handle_consolidate
from consolidator.repricing import resume_stalled_jobs
from fanin.handler import handle_work_done
from fanin.service import sweep
from feedsim.embed import SimulatorProcess, start_process
from feedsim.simulator import InventorySpec, SimConfig
from localhost.consumer import consume
from scheduler.chain import run_chain
from scheduler.service import send_pending_pages
from shared.alerts import deliver_pending
from shared.bootstrap import Container, open_container
from shared.bus.local import BusListener, LocalBus, ReceivedMessage
from shared.cron import CronExpression
from shared.db.database import DatabaseTarget, ready_database
from shared.retention import prune
from shared.runs import load_run
from shared.settings import Settings
from worker.handler import handle_work_item

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 30.0
ALERTS_EVERY_S = 10.0
HOUSEKEEPING_EVERY_S = 300.0
RETENTION_EVERY_S = 3600.0
DEAD_LETTER_EVERY_S = 5.0
ADMIN_KEY_FILE = "admin.key"
WORK_DONE_CONSUMERS = 2
# Connections beyond one per consumer: lock renewals, the periodic tasks, the API, the scheduler.
POOL_HEADROOM = 5


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the host decides when everything stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Host:
    """The running pieces, for the banner and for tests that drive a host in-process."""

    settings: Settings
    database: DatabaseTarget
    container: Container
    api_url: str
    simulator: SimulatorProcess | None = None
    admin_key: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _every(seconds: float, stop: asyncio.Event, action: Callable[[], Awaitable[object]], name: str) -> None:
    while not stop.is_set():
        try:
            await action()
        except Exception:
            log.exception("periodic task %s failed", name)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()


async def _resume_in_flight(container: Container) -> None:
    """Re-send the next page of every open partition of ingesting runs (duplicates are dropped)."""
    async with container.pool.connection() as conn:
        cur = await conn.execute("SELECT run_id FROM run_metadata WHERE status = 'ingesting'")
        run_ids = [row[0] for row in await cur.fetchall()]
    for run_id in run_ids:
        async with container.pool.connection() as conn:
            run = await load_run(conn, run_id)
        sent = await send_pending_pages(container, run)
        # Pages still queued or locked from before keep their message ids, so the bus drops these
        # copies; the ones whose message was lost are sent again.
        log.info("resumed run %s: next page of %d open partition(s) requested again", run_id, sent)


async def _never_completed(container: Container) -> bool:
    async with container.pool.connection() as conn:
        cur = await conn.execute("SELECT NOT EXISTS (SELECT 1 FROM run_metadata WHERE status = 'completed')")
        row = await cur.fetchone()
    return bool(row and row[0])


async def _scheduler(container: Container, stop: asyncio.Event) -> None:
    settings = container.settings
    cron = CronExpression.parse(settings.schedule_cron)
    if settings.run_on_startup and await _never_completed(container):
        log.info("no run has completed yet: starting the feeds now")
        await run_chain(container, settings.feeds, requested_by="startup")
    while not stop.is_set():
        due = cron.next_after(container.clock.now())
        wait_s = max(0.0, (due - container.clock.now()).total_seconds())
        log.info("next scheduled run at %s", due.isoformat())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await stop.wait()
        if not stop.is_set():
            await run_chain(container, settings.feeds, requested_by="schedule")


def _handler(
    container: Container, handle: Callable[[Container, bytes], Awaitable[object]]
) -> Callable[[ReceivedMessage], Awaitable[object]]:
    async def on_message(message: ReceivedMessage) -> object:
        return await handle(container, orjson.dumps(message.body))

    return on_message


def _work_item_handler(container: Container, bus: LocalBus) -> Callable[[ReceivedMessage], Awaitable[object]]:
    async def on_message(message: ReceivedMessage) -> object:
        last = message.delivery_count >= bus.properties_of(message.queue).max_delivery_count
        return await handle_work_item(container, orjson.dumps(message.body), last_delivery=last)

    return on_message


def _start_simulator(settings: Settings) -> SimulatorProcess:
    spec = InventorySpec(seed=settings.feedsim_seed, stones=settings.feedsim_stones)
    config = SimConfig(
        latency_ms=settings.feedsim_latency_ms,
        churn_per_s=settings.feedsim_churn_per_s,
        username=settings.nivoda_username,
        password=settings.nivoda_password.get_secret_value(),
    )
    log.info("starting the feed simulator (%d stones, seed %d)", spec.stones, spec.seed)
    return start_process(spec, config, host=settings.feedsim_host, port=settings.feedsim_port)


def host_pool_size(settings: Settings) -> int:
    """DB_POOL_MAX_SIZE, raised to fit the consumers the host starts: each holds a connection at times,
    and a pool they can exhaust makes lock renewals and the rest wait behind them."""
    consumers = settings.worker_concurrency + WORK_DONE_CONSUMERS + settings.consolidator_concurrency
    return max(settings.db_pool_max_size, consumers + POOL_HEADROOM)


@asynccontextmanager
async def running_host(settings: Settings, stop: asyncio.Event) -> AsyncIterator[Host]:
    """Everything up and running until the block exits; then an orderly shutdown."""
    if (pool_size := host_pool_size(settings)) != settings.db_pool_max_size:
        log.info(
            "database pool: %d connections for the host's consumers (DB_POOL_MAX_SIZE %d)",
            pool_size,
            settings.db_pool_max_size,
        )
        settings = settings.model_copy(update={"db_pool_max_size": pool_size})
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(ready_database(settings, host=True))
        simulator = None
        feed_url = None
        if settings.nivoda_endpoint is None:
            simulator = _start_simulator(settings)
            stack.callback(simulator.stop)
            feed_url = simulator.endpoint
        container = await stack.enter_async_context(
            open_container(settings, database.url, name="host", feed_url=feed_url)
        )
        bus = container.bus
        assert isinstance(bus, LocalBus), "the local host runs on the local bus"
        listener = BusListener(database.url)
        await listener.start()
        stack.push_async_callback(listener.stop)

        server = _ApiServer(
            uvicorn.Config(
                create_app(container),
                host=settings.api_host,
                port=settings.api_port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        api_task = asyncio.create_task(server.serve(), name="api")
        while not server.started:
            if api_task.done():
                await api_task
                raise RuntimeError(f"could not serve on {settings.api_host}:{settings.api_port}")
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        admin_key = await ensure_local_admin_key(container.pool, settings.opus_data_dir / ADMIN_KEY_FILE)
        host = Host(settings, database, container, f"http://{settings.api_host}:{port}", simulator, admin_key)

        await _resume_in_flight(container)
        queues = container.queues
        consumers = [
            *(
                consume(bus, listener, queues.work_items, _work_item_handler(container, bus), stop=stop)
                for _ in range(settings.worker_concurrency)
            ),
            *(
                consume(bus, listener, queues.work_done, _handler(container, handle_work_done), stop=stop)
                for _ in range(WORK_DONE_CONSUMERS)
            ),
            *(
                consume(bus, listener, queues.consolidate, _handler(container, handle_consolidate), stop=stop)
                for _ in range(settings.consolidator_concurrency)
            ),
        ]
        http = httpx.AsyncClient()
        stack.push_async_callback(http.aclose)
        webhook = str(settings.alert_webhook_url) if settings.alert_webhook_url else None
        background = [
            *consumers,
            _every(SWEEP_EVERY_S, stop, lambda: sweep(container), "sweep"),
            _every(SWEEP_EVERY_S, stop, lambda: resume_stalled_jobs(container.pool), "repricing jobs"),
            _every(ALERTS_EVERY_S, stop, lambda: deliver_pending(container.pool, webhook, http), "alerts"),
            _every(DEAD_LETTER_EVERY_S, stop, bus.dead_letter_due, "dead-letter sweep"),
            _every(HOUSEKEEPING_EVERY_S, stop, bus.purge_expired_ids, "housekeeping"),
            _every(
                RETENTION_EVERY_S,
                stop,
                lambda: prune(container.pool, settings.retention_days, container.clock.now()),
                "retention",
            ),
        ]
        host.tasks = [asyncio.create_task(c) for c in background]
        scheduler = asyncio.create_task(_scheduler(container, stop), name="scheduler")
        try:
            yield host
        finally:
            stop.set()
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
            await asyncio.gather(*host.tasks, return_exceptions=True)
            server.should_exit = True
            await api_task


async def run_host(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """`opus run`: run until SIGINT/SIGTERM (or `stop`), then shut everything down in order."""
    stop = stop or asyncio.Event()
    _install_stop_signals(stop)
    async with running_host(settings, stop) as host:
        print(_banner(host), file=sys.stderr, flush=True)
        await stop.wait()
        print("stopping ...", file=sys.stderr, flush=True)


def _banner(host: Host) -> str:
    lines = [
        "",
        "Diamond Opus is running",
        f"  API and dashboard  {host.api_url}/",
        f"  health             {host.api_url}/api/health",
        f"  database           {host.database.display_url}",
    ]
    if host.simulator is not None:
        lines.append(f"  feed simulator     {host.simulator.endpoint}")
    if host.admin_key is not None:
        key_file = host.settings.opus_data_dir / ADMIN_KEY_FILE
        lines.append(f"  admin API key      {host.admin_key}  (X-API-Key; kept in {key_file})")
    lines += [f"  schedule           {host.settings.schedule_cron} (feeds: {', '.join(host.settings.feeds)})", ""]
    return "\n".join(lines)
