"""The PostgreSQL bus keeps Service Bus semantics: peek-lock, lock expiry, delivery count and
dead-lettering, duplicate detection within a window, scheduled enqueue, competing consumers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from localhost.consumer import settle
from shared.bus.local import BusListener, MessageLockLostError
from shared.bus.port import MAX_MESSAGE_BYTES, MAX_MESSAGE_ID_LENGTH, MessageTooLargeError, OutgoingMessage
from shared.db.pool import Pool
from tests.bus.support import Q, make_bus, message


async def test_a_received_message_is_invisible_until_completed(db: Pool) -> None:
    bus = make_bus(db)
    await bus.send([message("a")])
    [first] = await bus.receive(Q)
    assert first.delivery_count == 1
    assert await bus.receive(Q) == []
    await bus.complete(first)
    assert (await bus.depth())[Q] == 0
    with pytest.raises(MessageLockLostError):
        await bus.complete(first)


async def test_an_expired_lock_makes_the_message_deliverable_again(db: Pool) -> None:
    bus = make_bus(db, lock=1)
    await bus.send([message("a")])
    [first] = await bus.receive(Q)
    await asyncio.sleep(1.2)
    [second] = await bus.receive(Q)
    assert second.message_id == "a"
    assert second.delivery_count == 2
    with pytest.raises(MessageLockLostError):
        await bus.complete(first)  # the old lock is gone
    await bus.complete(second)


async def test_renewing_the_lock_keeps_the_message(db: Pool) -> None:
    bus = make_bus(db, lock=1)
    await bus.send([message("a")])
    [first] = await bus.receive(Q)
    await asyncio.sleep(0.6)
    await bus.renew_lock(first)
    await asyncio.sleep(0.6)
    assert await bus.receive(Q) == []
    await bus.complete(first)


async def test_abandon_redelivers_and_the_last_delivery_dead_letters(db: Pool) -> None:
    bus = make_bus(db, max_deliveries=2)
    await bus.send([message("a")])
    [first] = await bus.receive(Q)
    await bus.abandon(first)
    [second] = await bus.receive(Q)
    assert second.delivery_count == 2
    await bus.abandon(second)
    assert await bus.receive(Q) == []
    assert await bus.dead_letter_due() == 1
    async with db.connection() as conn:
        cur = await conn.execute("SELECT message_id, reason, delivery_count, source FROM dead_letters")
        assert await cur.fetchall() == [("a", "MaxDeliveryCountExceeded", 2, "local")]


async def test_explicit_dead_letter_keeps_the_reason(db: Pool) -> None:
    bus = make_bus(db)
    await bus.send([message("a")])
    [received] = await bus.receive(Q)
    await bus.dead_letter(received, reason="PoisonMessage", description="body is not JSON")
    async with db.connection() as conn:
        cur = await conn.execute("SELECT reason, description, body FROM dead_letters")
        assert await cur.fetchall() == [("PoisonMessage", "body is not JSON", {"n": "a"})]
        cur = await conn.execute("SELECT kind, title, message FROM alerts")
        assert await cur.fetchall() == [
            ("dead_letter", "Dead letter on work-items", "message a (PoisonMessage): body is not JSON")
        ]


async def test_duplicates_within_the_window_are_dropped_even_after_consumption(db: Pool) -> None:
    bus = make_bus(db)
    await bus.send([message("a"), message("a"), message("b")])
    received = await bus.receive(Q, 10)
    assert sorted(m.message_id for m in received) == ["a", "b"]
    for m in received:
        await bus.complete(m)
    await bus.send([message("a")])
    assert await bus.receive(Q) == []


async def test_after_the_window_the_same_id_is_accepted_again(db: Pool) -> None:
    bus = make_bus(db, window=1)
    await bus.send([message("a")])
    [first] = await bus.receive(Q)
    await bus.complete(first)
    await asyncio.sleep(1.1)
    await bus.send([message("a")])
    assert [m.message_id for m in await bus.receive(Q)] == ["a"]
    assert await bus.purge_expired_ids() == 0  # the id was renewed by the second send


async def test_scheduled_messages_wait_for_their_time(db: Pool) -> None:
    bus = make_bus(db)
    await bus.send([message("later", scheduled_at=datetime.now(UTC) + timedelta(seconds=1))])
    assert await bus.receive(Q) == []
    await asyncio.sleep(1.1)
    assert [m.message_id for m in await bus.receive(Q)] == ["later"]


async def test_competing_consumers_never_share_a_message(db: Pool) -> None:
    bus = make_bus(db)
    await bus.send([message(f"m{i}") for i in range(200)])
    seen: list[str] = []

    async def consumer() -> None:
        while batch := await bus.receive(Q, 7):
            for m in batch:
                seen.append(m.message_id)
                await bus.complete(m)

    await asyncio.gather(*(consumer() for _ in range(6)))
    assert sorted(seen) == sorted(f"m{i}" for i in range(200))


async def test_the_listener_wakes_a_waiting_receiver(db: Pool, database_url: str) -> None:
    bus = make_bus(db)
    listener = BusListener(database_url)
    await listener.start()
    try:
        await asyncio.sleep(0.3)  # LISTEN is established
        waiting = asyncio.create_task(listener.wait(Q, 10))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        await bus.send([message("wake")])
        await asyncio.wait_for(waiting, 5)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await listener.stop()


async def test_a_handler_failing_on_the_last_delivery_dead_letters_with_its_error(db: Pool) -> None:
    bus = make_bus(db, max_deliveries=2)
    await bus.send([message("a")])

    async def failing(_: object) -> None:
        raise RuntimeError("the feed answered 503")

    [first] = await bus.receive(Q)
    assert await settle(bus, first, failing) == "abandoned"
    async with db.connection() as conn:
        await conn.execute("UPDATE bus_messages SET visible_at = now()")  # skip the retry backoff
    [last] = await bus.receive(Q)
    assert await settle(bus, last, failing) == "dead-lettered"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT reason, description, delivery_count FROM dead_letters")
        assert await cur.fetchall() == [
            ("MaxDeliveryCountExceeded", "delivery 2 of 2 failed: the feed answered 503", 2)
        ]
    assert (await bus.depth())[Q] == 0


async def test_nul_characters_arrive_as_replacement_characters(db: Pool) -> None:
    # Service Bus carries U+0000; PostgreSQL text and jsonb refuse it, which failed the whole send.
    bus = make_bus(db)
    body = {"error": "feed said \x00", "k\x00": [{"deep": "a\x00b"}], "escaped": "\\u0000 is text"}
    await bus.send(
        [OutgoingMessage(Q, "id\x00", body, correlation_id="trace\x00", application_properties={"p": "v\x00"})]
    )
    [received] = await bus.receive(Q)
    assert received.message_id == "id\ufffd"
    assert received.body == {
        "error": "feed said \ufffd",
        "k\ufffd": [{"deep": "a\ufffdb"}],
        "escaped": "\\u0000 is text",
    }
    assert received.application_properties == {"p": "v\ufffd"}
    assert received.correlation_id == "trace\ufffd"
    await bus.dead_letter(received, reason="Poison\x00", description="handler said \x00")
    async with db.connection() as conn:
        cur = await conn.execute("SELECT message_id, reason, description FROM dead_letters")
        assert await cur.fetchall() == [("id\ufffd", "Poison\ufffd", "handler said \ufffd")]


async def test_a_message_larger_than_service_bus_accepts_is_refused_and_nothing_is_sent(db: Pool) -> None:
    bus = make_bus(db)
    fits = OutgoingMessage(Q, "fits", {"error": "x" * 200_000})
    too_large = OutgoingMessage(Q, "too-large", {"error": "x" * (MAX_MESSAGE_BYTES + 1)})
    with pytest.raises(MessageTooLargeError, match="too-large"):
        await bus.send([fits, too_large])
    assert (await bus.depth())[Q] == 0
    await bus.send([fits])
    assert [m.message_id for m in await bus.receive(Q)] == ["fits"]


async def test_abandon_after_the_lock_expired_is_refused_as_on_service_bus(db: Pool) -> None:
    bus = make_bus(db, lock=1)
    await bus.send([message("a"), message("b")])
    first_a, first_b = await bus.receive(Q, 2)
    await asyncio.sleep(1.2)
    [second_a] = await bus.receive(Q)  # a went to another consumer; b's lock expired unclaimed
    with pytest.raises(MessageLockLostError):
        await bus.abandon(first_a, delay=timedelta(minutes=5))
    with pytest.raises(MessageLockLostError):
        await bus.abandon(first_b, delay=timedelta(minutes=5))
    # Neither stale abandon touched the messages: a stays locked, b is deliverable now, not in 5 minutes.
    [second_b] = await bus.receive(Q, 2)
    assert (second_a.message_id, second_b.message_id, second_b.delivery_count) == ("a", "b", 2)
    await bus.complete(second_a)


async def test_a_message_id_longer_than_service_bus_accepts_is_refused(db: Pool) -> None:
    bus = make_bus(db)
    longest, too_long = "i" * MAX_MESSAGE_ID_LENGTH, "i" * (MAX_MESSAGE_ID_LENGTH + 1)
    with pytest.raises(ValueError, match="message_id cannot be longer than 128 characters"):
        await bus.send([message(longest), message(too_long)])
    assert (await bus.depth())[Q] == 0
    await bus.send([message(longest)])
    assert [m.message_id for m in await bus.receive(Q)] == [longest]
