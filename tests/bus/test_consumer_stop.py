"""The local host's consumers when the host stops or a lock is lost under a handler: a handler still
waiting (on a failing feed's retries, say) gives its message back instead of holding the shutdown,
and a handler that lost its lock runs on, as in Azure, and its settlement is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from localhost.consumer import consume, settle
from shared.bus.local import BusListener, MessageLockLostError, ReceivedMessage
from shared.db.pool import Pool
from tests.bus.support import Q, make_bus, message


async def _row(db: Pool, message_id: str) -> tuple[int, bool]:
    """The message's delivery count and whether it is still locked."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT delivery_count, lock_token IS NOT NULL FROM bus_messages WHERE message_id = %s", (message_id,)
        )
        row = await cur.fetchone()
    assert row is not None, f"{message_id} left the queue"
    return int(row[0]), bool(row[1])


async def test_on_stop_a_waiting_handler_is_cancelled_and_its_message_given_back(
    db: Pool, database_url: str, tmp_path: Path
) -> None:
    bus = make_bus(db, lock=30)
    await bus.send([message("waits"), message("finishes")])
    started: dict[str, asyncio.Event] = {"waits": asyncio.Event(), "finishes": asyncio.Event()}
    release = asyncio.Event()
    outcomes: dict[str, str] = {}

    async def handler(received: ReceivedMessage) -> None:
        started[received.message_id].set()
        try:
            if received.message_id == "waits":
                await asyncio.Event().wait()  # a feed that keeps failing: retries without end
            await release.wait()  # "finishes" is mid-write when the stop comes, and completes
            outcomes[received.message_id] = "finished"
        except asyncio.CancelledError:
            outcomes[received.message_id] = "cancelled"
            raise

    stop = asyncio.Event()
    listener = BusListener(database_url)
    await listener.start()
    consumers = [asyncio.create_task(consume(bus, listener, Q, handler, stop=stop)) for _ in range(2)]
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started.values())), 15)
        stop.set()
        await asyncio.sleep(0)
        release.set()
        # A generous safety net, not a measurement: without the fix this never returns.
        await asyncio.wait_for(asyncio.gather(*consumers), 30)
    finally:
        stop.set()
        for consumer in consumers:
            consumer.cancel()
        await listener.stop()

    assert outcomes == {"waits": "cancelled", "finishes": "finished"}
    assert await _row(db, "waits") == (1, False), "given back unlocked, its one delivery counted"
    [again] = await bus.receive(Q)
    assert (again.message_id, again.delivery_count) == ("waits", 2), "delivered again at once to the next host"
    assert (await bus.depth())[Q] == 1, "the finished message was completed"


async def test_a_handler_that_loses_its_lock_runs_on_and_its_settlement_is_refused(db: Pool) -> None:
    """Its work is idempotent, and the lock may only have been renewed late (a busy machine):
    cancelling would throw its progress away, and in Azure a lost lock does not cancel a function."""
    bus = make_bus(db, lock=3)  # renewed every second
    await bus.send([message("taken")])
    [received] = await bus.receive(Q)
    handling, lost = asyncio.Event(), asyncio.Event()
    outcome: list[str] = []

    async def handler(_: ReceivedMessage) -> None:
        handling.set()
        try:
            await lost.wait()
            await asyncio.sleep(1.5)  # past a renewal that finds the lock gone
            outcome.append("wrote the page")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    settling = asyncio.create_task(settle(bus, received, handler))
    await asyncio.wait_for(handling.wait(), 10)
    async with db.connection() as conn:
        # The lock expired and another consumer received the message (a new lock token).
        await conn.execute("UPDATE bus_messages SET lock_token = gen_random_uuid(), delivery_count = 2")
    lost.set()
    with pytest.raises(MessageLockLostError):
        await asyncio.wait_for(settling, 15)
    assert outcome == ["wrote the page"], "the handler ran to its end"
    assert await _row(db, "taken") == (2, True), "the other delivery's lock is untouched"
