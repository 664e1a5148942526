"""A PostgreSQL-backed bus with Azure Service Bus semantics, for the local runtime.

Each queue has its own properties (`QueueProperties`, read from the emulator's Config.json):
- peek-lock: a receive locks a message for the queue's lock duration; complete deletes it, abandon
  releases it, and an expired lock makes it deliverable again;
- delivery count: incremented at every receive; once it reaches the queue's max delivery count and
  the message is abandoned or its lock expires, it moves to `dead_letters` with the reason
  MaxDeliveryCountExceeded;
- time-to-live: a message expires at its enqueue (or scheduled) time plus the queue's default
  time-to-live; an expired message is never delivered and, where the queue dead-letters on expiry,
  moves to `dead_letters` with the reason TTLExpiredException (else it is dropped). A message
  already locked may still be settled, as on Service Bus;
- limits: a message larger than Service Bus accepts (MessageTooLargeError) or with a message id over
  128 characters (ValueError, as the SDK raises) is refused, and nothing is sent;
- duplicate detection: a message id sent within the queue's window is dropped, even if the first
  copy was already consumed;
- scheduled enqueue: `scheduled_at` keeps a message invisible until then;
- competing consumers: receives use FOR UPDATE SKIP LOCKED;
- U+0000, which Service Bus carries but PostgreSQL text and jsonb cannot, arrives as U+FFFD;
- low idle cost: senders NOTIFY, receivers LISTEN (with a poll as a safety net).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from shared.bus.pgtext import json_text, without_nul
from shared.bus.port import MAX_MESSAGE_BYTES, MAX_MESSAGE_ID_LENGTH, MessageTooLargeError, OutgoingMessage, QueueNames
from shared.bus.queue_config import QueueProperties
from shared.db.pool import Pool

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "opus_bus"
# Service Bus's reason and description for a message dead-lettered on expiry.
TTL_EXPIRED_REASON = "TTLExpiredException"
TTL_EXPIRED_DESCRIPTION = "The message expired and was dead lettered."


@dataclass(frozen=True)
class ReceivedMessage:
    id: int
    queue: str
    message_id: str
    body: dict[str, Any]
    application_properties: dict[str, Any]
    correlation_id: str | None
    delivery_count: int
    enqueued_at: datetime
    expires_at: datetime | None
    lock_token: UUID
    locked_until: datetime


class MessageLockLostError(RuntimeError):
    """The lock expired (or the message was settled) before this settle call."""


# One statement (so one round trip, atomically): drop ids seen within their queue's duplicate window,
# insert the rest, and wake receivers with the number of messages each queue got. A message's
# lifetime starts when it is enqueued: a scheduled one's at its scheduled time, as on Service Bus.
_SEND = """
WITH incoming AS (
    SELECT * FROM unnest(%(queues)b::text[], %(ids)b::text[], %(bodies)b::text[]::jsonb[],
                         %(props)b::text[]::jsonb[], %(correlations)b::text[], %(visible)b::timestamptz[],
                         %(windows)s::interval[], %(ttls)s::interval[])
        AS t(queue, message_id, body, props, correlation_id, visible_at, dedup_window, ttl)
), fresh AS (
    INSERT INTO bus_message_ids (queue, message_id, expires_at)
    SELECT queue, message_id, now() + dedup_window FROM incoming WHERE dedup_window > interval '0'
    ON CONFLICT (queue, message_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE bus_message_ids.expires_at <= now()
    RETURNING queue, message_id
), inserted AS (
    INSERT INTO bus_messages (queue, message_id, body, application_properties, correlation_id, visible_at,
                              expires_at)
    SELECT i.queue, i.message_id, i.body, i.props, i.correlation_id, coalesce(i.visible_at, now()),
           greatest(i.visible_at, now()) + i.ttl
    FROM incoming i
    WHERE i.dedup_window <= interval '0'
       OR EXISTS (SELECT 1 FROM fresh f WHERE f.queue = i.queue AND f.message_id = i.message_id)
    RETURNING queue
)
SELECT pg_notify(%(channel)s, queue || ':' || count(*)) FROM inserted GROUP BY queue
"""


def _alert_on(letters: str) -> str:
    """Every dead letter raises an alert in the same statement (as the Azure dead-letter triggers do)."""
    return f"""
INSERT INTO alerts (kind, severity, title, message)
SELECT 'dead_letter', 'warning', 'Dead letter on ' || queue,
       'message ' || message_id || ' (' || reason || '): ' || coalesce(description, 'no description')
FROM {letters}
"""


_ALERT_LETTERS = _alert_on("letters")


def _dead_lettering(moved: str, due: str, order: str, reason: str, description: str, kept: str = "true") -> str:
    """CTEs that take up to 100 of a queue's messages that are `due` off it (`moved`), store those for
    which `kept` holds as dead letters (`<moved>_letters`) with Service Bus's reason, and alert on each.
    Set-based, so no timers: receives and the sweep run them."""
    return f"""
{moved} AS (
    DELETE FROM bus_messages
    WHERE id IN (
        SELECT id FROM bus_messages WHERE queue = %(queue)s AND {due}
        ORDER BY {order} LIMIT 100 FOR UPDATE SKIP LOCKED
    )
    RETURNING *
), {moved}_letters AS (
    INSERT INTO dead_letters (source, queue, message_id, body, application_properties, reason, description,
                              delivery_count, enqueued_at)
    SELECT 'local', queue, message_id, body, application_properties, '{reason}', '{description}',
           delivery_count, enqueued_at
    FROM {moved} WHERE {kept}
    RETURNING queue, message_id, reason, description
), {moved}_alerts AS ({_alert_on(f"{moved}_letters")})
"""


# Expired messages that no consumer holds leave the queue: dead-lettered where the queue says so,
# else dropped. A receive runs this before handing anything out.
_EXPIRED_CTES = _dead_lettering(
    "expired",
    "expires_at <= now() AND (locked_until IS NULL OR locked_until <= now())",
    "expires_at",
    TTL_EXPIRED_REASON,
    TTL_EXPIRED_DESCRIPTION,
    kept="%(dead_letter_expired)s",
)

_EXPIRE = f"WITH {_EXPIRED_CTES} SELECT count(*) FROM expired"

# Messages whose last permitted delivery ended (lock expired) go to the dead-letter store.
_EXPIRE_EXHAUSTED = (
    "WITH "
    + _dead_lettering(
        "exhausted",
        "visible_at <= now() AND delivery_count >= %(max)s",
        "id",
        "MaxDeliveryCountExceeded",
        "the lock expired or the message was abandoned on its last permitted delivery",
    )
    + "SELECT count(*) FROM exhausted"
)

_RECEIVE = f"""
WITH {_EXPIRED_CTES}
UPDATE bus_messages m
SET lock_token = gen_random_uuid(),
    locked_until = now() + %(lock)s,
    visible_at = now() + %(lock)s,
    delivery_count = m.delivery_count + 1
FROM (
    SELECT id FROM bus_messages
    WHERE queue = %(queue)s AND visible_at <= now() AND delivery_count < %(max)s
      AND (expires_at IS NULL OR expires_at > now())
    ORDER BY visible_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) candidate
WHERE m.id = candidate.id
RETURNING m.id, m.queue, m.message_id, m.body, m.application_properties, m.correlation_id,
          m.delivery_count, m.enqueued_at, m.expires_at, m.lock_token, m.locked_until
"""

_DEAD_LETTER = (
    """
WITH settled AS (
    DELETE FROM bus_messages WHERE id = %(id)s AND lock_token = %(token)s AND locked_until > now()
    RETURNING *
), letters AS (
    INSERT INTO dead_letters (source, queue, message_id, body, application_properties, reason, description,
                              delivery_count, enqueued_at)
    SELECT %(source)s, queue, message_id, body, application_properties, %(reason)s, %(description)s,
           delivery_count, enqueued_at
    FROM settled
    RETURNING queue, message_id, reason, description
)
"""
    + _ALERT_LETTERS
)


def _check_limits(message: OutgoingMessage, body: str, properties: str) -> None:
    """Refuse what Service Bus would (its size also counts a few hundred bytes of AMQP headers)."""
    if len(message.message_id) > MAX_MESSAGE_ID_LENGTH:
        # The azure-servicebus SDK's own check, word for word.
        raise ValueError(f"message_id cannot be longer than {MAX_MESSAGE_ID_LENGTH} characters.")
    size = sum(len(text.encode()) for text in (body, properties, message.message_id, message.correlation_id or ""))
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(
            f"message {message.message_id} ({message.queue}) is {size} bytes; Service Bus accepts {MAX_MESSAGE_BYTES}"
        )


class LocalBus:
    """Send and receive on the PostgreSQL bus tables."""

    def __init__(self, pool: Pool, queues: QueueNames, properties: Mapping[str, QueueProperties]) -> None:
        missing = [queue for queue in queues.all() if queue not in properties]
        if missing:
            raise ValueError(f"no properties for queue(s) {missing}")
        self.pool = pool
        self.queues = queues
        self.properties = dict(properties)

    def properties_of(self, queue: str) -> QueueProperties:
        try:
            return self.properties[queue]
        except KeyError:
            raise ValueError(f"unknown queue {queue!r}; the bus has {sorted(self.properties)}") from None

    # --- sending -----------------------------------------------------------------------------
    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        # One statement can't touch the same id row twice; the first copy wins, as on Service Bus.
        unique: dict[tuple[str, str], OutgoingMessage] = {}
        for message in messages:
            unique.setdefault((message.queue, message.message_id), message)
        batch = list(unique.values())
        properties = [self.properties_of(m.queue) for m in batch]
        bodies = [json_text(dict(m.body)) for m in batch]
        props = [json_text(dict(m.application_properties)) for m in batch]
        for m, body, prop in zip(batch, bodies, props, strict=True):
            _check_limits(m, body, prop)
        async with self.pool.connection() as conn:
            await conn.execute(
                _SEND,
                {
                    "channel": NOTIFY_CHANNEL,
                    "queues": [m.queue for m in batch],
                    "ids": [without_nul(m.message_id) for m in batch],
                    # Binary text arrays of pre-encoded JSON: psycopg's text format escapes every
                    # character with a regular expression.
                    "bodies": bodies,
                    "props": props,
                    "correlations": [m.correlation_id and without_nul(m.correlation_id) for m in batch],
                    "visible": [m.scheduled_at for m in batch],
                    "windows": [p.duplicate_window for p in properties],
                    "ttls": [p.time_to_live for p in properties],
                },
            )

    async def close(self) -> None:
        """The pool belongs to the container; nothing to release here."""

    # --- receiving ----------------------------------------------------------------------------
    async def receive(self, queue: str, max_messages: int = 1) -> list[ReceivedMessage]:
        """Lock and hand out up to `max_messages`; expired ones leave the queue first, never handed out."""
        properties = self.properties_of(queue)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                _RECEIVE,
                {
                    "queue": queue,
                    "lock": properties.lock_duration,
                    "max": properties.max_delivery_count,
                    "limit": max_messages,
                    "dead_letter_expired": properties.dead_letter_on_expiration,
                },
            )
            rows = await cur.fetchall()
        return [ReceivedMessage(**row) for row in sorted(rows, key=lambda r: r["id"])]

    async def complete(self, message: ReceivedMessage) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM bus_messages WHERE id = %s AND lock_token = %s AND locked_until > now()",
                (message.id, message.lock_token),
            )
            if cur.rowcount != 1:
                raise MessageLockLostError(f"lock lost on message {message.message_id} ({message.queue})")

    async def abandon(self, message: ReceivedMessage, *, delay: timedelta = timedelta(0)) -> None:
        """Release the lock; the message is redelivered after `delay` (or dead-lettered if exhausted)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE bus_messages SET lock_token = NULL, locked_until = NULL, visible_at = now() + %s
                   WHERE id = %s AND lock_token = %s AND locked_until > now()""",
                (delay, message.id, message.lock_token),
            )
            if cur.rowcount != 1:
                raise MessageLockLostError(f"lock lost on message {message.message_id} ({message.queue})")

    async def dead_letter(
        self, message: ReceivedMessage, *, reason: str, description: str | None = None, source: str = "local"
    ) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _DEAD_LETTER,
                {
                    "id": message.id,
                    "token": message.lock_token,
                    "source": source,
                    "reason": without_nul(reason),
                    "description": description and without_nul(description),
                },
            )
            if cur.rowcount != 1:
                raise MessageLockLostError(f"lock lost on message {message.message_id} ({message.queue})")

    async def renew_lock(self, message: ReceivedMessage) -> datetime:
        lock = self.properties_of(message.queue).lock_duration
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE bus_messages SET locked_until = now() + %(lock)s, visible_at = now() + %(lock)s
                   WHERE id = %(id)s AND lock_token = %(token)s AND locked_until > now()
                   RETURNING locked_until""",
                {"lock": lock, "id": message.id, "token": message.lock_token},
            )
            row = await cur.fetchone()
        if row is None:
            raise MessageLockLostError(f"lock lost on message {message.message_id} ({message.queue})")
        renewed: datetime = row[0]
        return renewed

    # --- housekeeping and inspection -----------------------------------------------------------
    async def dead_letter_due(self) -> int:
        """Move messages whose last permitted delivery ended, or that expired, to the dead-letter store
        (expired ones are dropped where the queue does not dead-letter on expiry); return how many left.

        Receives never hand them out, so this can run on a timer: it only keeps queues nobody
        receives from as tidy as the busy ones."""
        moved = 0
        async with self.pool.connection() as conn:
            for queue in self.queues.all():
                properties = self.properties_of(queue)
                for statement in (_EXPIRE_EXHAUSTED, _EXPIRE):
                    cur = await conn.execute(
                        statement,
                        {
                            "queue": queue,
                            "max": properties.max_delivery_count,
                            "dead_letter_expired": properties.dead_letter_on_expiration,
                        },
                    )
                    row = await cur.fetchone()
                    moved += row[0] if row else 0
        return moved

    async def purge_expired_ids(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM bus_message_ids WHERE expires_at <= now()")
            return cur.rowcount

    async def depth(self) -> Mapping[str, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT queue, count(*) FROM bus_messages GROUP BY queue")
            counts = dict.fromkeys(self.queues.all(), 0)
            counts.update({row[0]: row[1] for row in await cur.fetchall()})
            return counts


class _Wakeups:
    """Wake-up credits for one queue: announced messages no receiver has taken yet. A notification
    that finds no waiter is kept for the next; a receive that takes messages uses theirs up."""

    def __init__(self) -> None:
        self.credits = 0
        self.condition = asyncio.Condition()


class BusListener:
    """One LISTEN connection per process. Each notification wakes as many waiting receivers as
    messages were sent (not all of them: a herd of empty receives costs more than the work)."""

    MAX_CREDITS = 10_000

    def __init__(self, url: str) -> None:
        self._url = url
        self._wakeups: dict[str, _Wakeups] = {}
        self._task: asyncio.Task[None] | None = None

    def _for(self, queue: str) -> _Wakeups:
        return self._wakeups.setdefault(queue, _Wakeups())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="bus-listener")

    async def _wake(self, payload: str) -> None:
        queue, _, count = payload.rpartition(":")
        wakeups = self._for(queue)
        n = int(count) if count.isdigit() else 1
        async with wakeups.condition:
            wakeups.credits = min(self.MAX_CREDITS, wakeups.credits + n)
            wakeups.condition.notify(n)

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    async for notify in conn.notifies():
                        await self._wake(notify.payload)
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                # Receivers keep polling meanwhile; reconnect after a pause.
                log.warning("bus listener lost its connection: %s", exc)
                await asyncio.sleep(1)

    async def wait(self, queue: str, seconds: float) -> None:
        """Return when a message may be waiting on the queue, or after `seconds` (the poll that
        catches what a missed notification would leave behind)."""
        wakeups = self._for(queue)
        async with wakeups.condition:
            if wakeups.credits == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeups.condition.wait(), seconds)
            wakeups.credits = max(0, wakeups.credits - 1)

    def taken(self, queue: str, count: int) -> None:
        """A receive took `count` messages. Their credits go, or idle receivers would each spend
        one on an empty receive later. Safe: whoever takes messages receives again before waiting."""
        wakeups = self._for(queue)
        wakeups.credits = max(0, wakeups.credits - count)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
