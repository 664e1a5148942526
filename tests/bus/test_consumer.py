"""The local host's consumers, settling as the Functions host would, against a database that fails
under them: a busy pool, connections killed between the handler and the settle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import orjson
import psycopg
import pytest_asyncio

from localhost.consumer import consume, settle
from shared.bus.local import BusListener, LocalBus, ReceivedMessage
from shared.bus.port import OutgoingMessage
from shared.db.pool import Pool, open_pool
from shared.messages import WorkItem, decode
from tests.bus.support import QUEUES, Q, make_bus, message, sized_properties
from tests.conftest import make_settings


@pytest_asyncio.fixture(loop_scope="session")
async def small_pool(db: Pool, database_url: str, tmp_path: Path) -> AsyncIterator[Pool]:
    """A one-connection pool whose waits give up after 0.3 s, named so a test can kill its connections."""
    settings = make_settings(database_url, tmp_path, db_pool_min_size=1, db_pool_max_size=1)
    pool = await open_pool(database_url, settings, name="bus-small")
    pool.timeout = 0.3
    yield pool
    await pool.close()


def kill_idle_connections(database_url: str, application_name: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as admin:
        cur = admin.execute(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = %s AND state = 'idle'""",
            (application_name,),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


async def test_a_renewal_the_pool_cannot_serve_is_retried_and_the_message_completes(small_pool: Pool) -> None:
    # Lock 3 s, renewals every 1 s. The handler holds the pool's only connection past the first
    # renewal (which times out), then works without it past the lock's first expiry.
    bus = make_bus(small_pool, lock=3)
    await bus.send([message("slow")])
    [received] = await bus.receive(Q)

    async def slow(_: ReceivedMessage) -> None:
        async with small_pool.connection() as conn:
            await conn.execute("SELECT pg_sleep(1.5)")
        await asyncio.sleep(2.5)

    assert await settle(bus, received, slow) == "completed"
    assert (await bus.depth())[Q] == 0


async def test_a_consumer_outlives_a_settle_that_fails_and_the_message_comes_back(
    small_pool: Pool, database_url: str
) -> None:
    bus = make_bus(small_pool, lock=2)
    await bus.send([message("m0"), message("m1"), message("m2")])
    handled: list[tuple[str, int]] = []
    all_handled = asyncio.Event()

    async def handler(received: ReceivedMessage) -> None:
        handled.append((received.message_id, received.delivery_count))
        if len(handled) == 4:
            all_handled.set()
        if len(handled) == 1:
            # The complete that follows finds its connection gone (a database restart).
            assert kill_idle_connections(database_url, "diamond-opus:bus-small") == 1

    stop = asyncio.Event()
    listener = BusListener(database_url)
    await listener.start()
    consumer = asyncio.create_task(consume(bus, listener, Q, handler, stop=stop))
    waiting = asyncio.create_task(all_handled.wait())
    try:
        await asyncio.wait({waiting, consumer}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        stop.set()
        await asyncio.wait_for(consumer, 5)
        await listener.stop()
    # m0's complete failed: it was delivered again once its lock expired, and m1, m2 were not stranded.
    assert sorted(handled) == [("m0", 1), ("m0", 2), ("m1", 1), ("m2", 1)]
    assert (await bus.depth())[Q] == 0


async def test_a_handler_that_outlives_the_function_timeout_fails_and_its_message_is_redelivered(db: Pool) -> None:
    bus = make_bus(db, max_deliveries=2)
    await bus.send([message("hangs")])

    async def hangs(_: ReceivedMessage) -> None:
        await asyncio.Event().wait()

    [first] = await bus.receive(Q)
    outcome = await asyncio.wait_for(settle(bus, first, hangs, time_limit=timedelta(seconds=0.5)), 10)
    assert outcome == "abandoned"
    async with db.connection() as conn:
        await conn.execute("UPDATE bus_messages SET visible_at = now()")  # skip the retry backoff
    [last] = await bus.receive(Q)
    assert last.delivery_count == 2
    assert await settle(bus, last, hangs, time_limit=timedelta(seconds=0.5)) == "dead-lettered"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT reason, description FROM dead_letters")
        assert await cur.fetchall() == [
            ("MaxDeliveryCountExceeded", "delivery 2 of 2 failed: the handler ran longer than 0.5 s")
        ]


class CountingBus(LocalBus):
    """Counts receives that came back empty."""

    empty_receives = 0

    async def receive(self, queue: str, max_messages: int = 1) -> list[ReceivedMessage]:
        received = await super().receive(queue, max_messages)
        self.empty_receives += not received
        return received


async def test_messages_a_consumer_takes_use_up_their_wake_ups(db: Pool, database_url: str) -> None:
    # Every sent message announces itself; the announcements of messages a busy consumer took
    # used to stay, and each one later cost an idle consumer an empty receive (one per message).
    bus = CountingBus(db, QUEUES, sized_properties())
    listener = BusListener(database_url)
    await listener.start()
    handled: list[str] = []
    all_handled = asyncio.Event()

    async def handler(received: ReceivedMessage) -> None:
        handled.append(received.message_id)
        if len(handled) == 100:
            all_handled.set()

    stop = asyncio.Event()
    consumers = [asyncio.create_task(consume(bus, listener, Q, handler, stop=stop)) for _ in range(2)]
    try:
        await asyncio.sleep(0.5)  # both consumers idle, LISTEN established
        for i in range(10):
            await bus.send([message(f"m{i}-{j}") for j in range(10)])
        await asyncio.wait_for(all_handled.wait(), 20)
        await asyncio.sleep(0.5)  # what idle consumers do with wake-ups left over
    finally:
        stop.set()
        await asyncio.gather(*consumers)
        await listener.stop()
    assert sorted(handled) == sorted(f"m{i}-{j}" for i in range(10) for j in range(10))
    # One empty receive per consumer at start, one per wake-up whose messages another took first.
    assert bus.empty_receives <= 2 + 10


async def test_a_poison_message_is_dead_lettered_as_the_azure_triggers_record_it(db: Pool) -> None:
    bus = make_bus(db)
    await bus.send([OutgoingMessage(Q, "poison-1", {"type": "NOT_A_MESSAGE"})])

    async def handler(received: ReceivedMessage) -> None:
        decode(orjson.dumps(received.body), WorkItem)

    [received] = await bus.receive(Q)
    assert await settle(bus, received, handler) == "dead-lettered"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT source, reason, description, delivery_count FROM dead_letters")
        [(source, reason, description, deliveries)] = await cur.fetchall()
    # Source 'poison' as in Azure (shared.bus.inbound), not 'local', which means max deliveries.
    assert (source, reason, deliveries) == ("poison", "PoisonMessage", 1)
    assert description.startswith("invalid message: ")
    assert (await bus.depth())[Q] == 0
