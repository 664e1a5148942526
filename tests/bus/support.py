"""What the bus tests share: queue names, buses with the shipped or test-sized queue properties, and
moving messages through time (the bus reads PostgreSQL's clock, so tests move the rows instead)."""

from __future__ import annotations

from datetime import timedelta

from shared.bus.local import LocalBus
from shared.bus.port import OutgoingMessage, QueueNames
from shared.bus.queue_config import QueueProperties, load_queue_properties, with_overrides
from shared.db.pool import Pool

QUEUES = QueueNames("work-items", "work-done", "consolidate")
Q = QUEUES.work_items


def sized_properties(*, lock: float = 30, max_deliveries: int = 3, window: float = 600) -> dict[str, QueueProperties]:
    """The shipped Config.json's queues with test-sized timings, the same for every queue."""
    return with_overrides(
        load_queue_properties(QUEUES),
        lock_duration=timedelta(seconds=lock),
        max_delivery_count=max_deliveries,
        duplicate_window=timedelta(seconds=window),
    )


def make_bus(pool: Pool, *, lock: float = 30, max_deliveries: int = 3, window: float = 600) -> LocalBus:
    return LocalBus(pool, QUEUES, sized_properties(lock=lock, max_deliveries=max_deliveries, window=window))


def shipped_bus(pool: Pool) -> LocalBus:
    """The bus as `opus` builds it: every queue's properties as shared/bus/servicebus_config.json declares them."""
    return LocalBus(pool, QUEUES, load_queue_properties(QUEUES))


async def age(pool: Pool, by: timedelta) -> None:
    """Move every message `by` into the past: as if that much time had passed since it was sent."""
    async with pool.connection() as conn:
        await conn.execute(
            """UPDATE bus_messages SET enqueued_at = enqueued_at - %(by)s, visible_at = visible_at - %(by)s,
                   expires_at = expires_at - %(by)s, locked_until = locked_until - %(by)s""",
            {"by": by},
        )
        await conn.execute("UPDATE bus_message_ids SET expires_at = expires_at - %s", (by,))


def message(message_id: str, **extra: object) -> OutgoingMessage:
    return OutgoingMessage(Q, message_id, {"n": message_id}, **extra)  # type: ignore[arg-type]
