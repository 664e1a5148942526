"""What the bus tests share: queue names and a bus with test-sized timings."""

from __future__ import annotations

from datetime import timedelta

from shared.bus.local import LocalBus
from shared.bus.port import OutgoingMessage, QueueNames
from shared.db.pool import Pool

QUEUES = QueueNames("work-items", "work-done", "consolidate")
Q = QUEUES.work_items


def make_bus(pool: Pool, *, lock: float = 30, max_deliveries: int = 3, window: float = 600) -> LocalBus:
    return LocalBus(
        pool,
        QUEUES,
        lock_duration=timedelta(seconds=lock),
        max_delivery_count=max_deliveries,
        duplicate_window=timedelta(seconds=window),
    )


def message(message_id: str, **extra: object) -> OutgoingMessage:
    return OutgoingMessage(Q, message_id, {"n": message_id}, **extra)  # type: ignore[arg-type]
