"""The Service Bus adapter above the SDK boundary: ids, schedule, batches that lose nothing, close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.bus.port import MessageTooLargeError, OutgoingMessage, QueueNames
from shared.bus.servicebus import ServiceBusBus
from tests.azure.conftest import CONNECTION, FakeServiceBusClient

QUEUES = QueueNames("work-items", "work-done", "consolidate")


def message(i: int, *, queue: str = "work-items", size: int = 200, at: datetime | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        queue=queue,
        message_id=f"run:p{i}:0",
        body={"n": i, "pad": "x" * size},
        scheduled_at=at,
        correlation_id="trace-1",
        application_properties={"type": "WORK_ITEM", "run_id": "run"},
    )


async def test_a_full_batch_is_sent_and_the_overflowing_message_opens_the_next() -> None:
    fake = FakeServiceBusClient(batch_bytes=1_500)
    bus = ServiceBusBus(fake, QUEUES)  # type: ignore[arg-type]
    await bus.send([message(i) for i in range(20)])
    assert [s.message.message_id for s in fake.outbox] == [f"run:p{i}:0" for i in range(20)]
    assert len(fake.batches) > 2, "the batch limit was exercised"
    assert sum(n for _, n in fake.batches) == 20


async def test_ids_schedule_correlation_and_properties_reach_the_sdk_message() -> None:
    fake = FakeServiceBusClient()
    bus = ServiceBusBus(fake, QUEUES)  # type: ignore[arg-type]
    at = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=5)
    await bus.send([message(1, at=at), message(2, queue="consolidate"), message(1, at=at)])
    by_queue = {s.queue: s.message for s in fake.outbox}
    assert len(fake.outbox) == 2, "a repeated id in one send goes once"
    sent = by_queue["work-items"]
    assert sent.message_id == "run:p1:0"
    assert sent.scheduled_enqueue_time_utc == at
    assert sent.correlation_id == "trace-1"
    assert sent.content_type == "application/json"
    assert sent.application_properties == {"type": "WORK_ITEM", "run_id": "run"}
    assert sent.subject == "WORK_ITEM"
    assert by_queue["consolidate"].scheduled_enqueue_time_utc is None


async def test_a_message_larger_than_a_batch_fails_loudly() -> None:
    fake = FakeServiceBusClient(batch_bytes=1_000)
    bus = ServiceBusBus(fake, QUEUES)  # type: ignore[arg-type]
    with pytest.raises(MessageTooLargeError, match=r"run:p7:0"):
        await bus.send([message(7, size=5_000)])
    with pytest.raises(MessageTooLargeError):
        await bus.send([message(1), message(8, size=5_000)])
    assert [s.message.message_id for s in fake.outbox] == ["run:p1:0"], "what fitted before it was sent"


async def test_one_sender_per_queue_and_close_closes_senders_then_the_client(
    fake_servicebus: FakeServiceBusClient,
) -> None:
    bus = ServiceBusBus.from_connection_string(CONNECTION, QUEUES)
    for _ in range(3):
        await bus.send([message(1), message(2, queue="work-done")])
    assert fake_servicebus.created == 1
    assert sorted(s.queue for s in fake_servicebus.senders) == ["work-done", "work-items"]
    await bus.close()
    assert all(s.closed for s in fake_servicebus.senders)
    assert fake_servicebus.closed
