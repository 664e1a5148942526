"""A message as a Service Bus trigger delivers it, and what every trigger does with it.

Trigger bodies are thin: they convert the Functions message into `Inbound`, call the same handler as
the local host, and map errors the way the local consumer settles them: a PoisonMessageError (and a
missing run) is recorded in `dead_letters` (source 'poison') and the message completes; any other
exception propagates, so the trigger fails, Service Bus redelivers, and after the queue's
MaxDeliveryCount the message reaches the dead-letter sub-queue, whose trigger records it (source
'servicebus'). Each failed delivery is an error record (source 'bus'), so that letter also says what
the last delivery raised (Service Bus only says how many failed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar
from uuid import UUID

import orjson
from psycopg.types.json import Jsonb

from shared.alerts import Alert, record_alert
from shared.bootstrap import Container
from shared.bus.pgtext import without_nul
from shared.db.pool import Pool
from shared.error_records import ErrorRecord, record_errors
from shared.logs import log_context
from shared.messages import PoisonMessageError

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[Container, bytes], Awaitable[T]]
DeadLetterSource = Literal["servicebus", "poison"]


@dataclass(frozen=True)
class Inbound:
    queue: str
    message_id: str
    body: bytes
    delivery_count: int
    enqueued_at: datetime | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


# PostgreSQL's text and jsonb cannot hold U+0000, and a message that could not be recorded would
# fail its dead-letter trigger on every delivery: NUL is kept as U+FFFD (JSON's escape as its text).
_JSON_NUL = b"\\u0000"


def _json_value(value: Any) -> Jsonb:
    return Jsonb(value, dumps=partial(orjson.dumps, default=str))


def stored_body(body: bytes) -> Any:
    """The body as JSON when it is JSON PostgreSQL can hold (so it can be replayed as it was), else
    wrapped as text."""
    if _JSON_NUL not in body:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return {"raw": without_nul(body.decode("utf-8", errors="replace"))}


def _stored_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    # Application properties are flat: strings, numbers, booleans, bytes, UUIDs, times.
    return {without_nul(str(k)): without_nul(v) if isinstance(v, str) else v for k, v in properties.items()}


async def record_dead_letter(
    pool: Pool, message: Inbound, *, source: DeadLetterSource, reason: str, description: str | None
) -> None:
    """Insert the message into dead_letters (listed and replayed by API, dashboard and CLI), with an alert."""
    message_id, reason = without_nul(message.message_id), without_nul(reason)
    description = without_nul(description) if description is not None else None
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO dead_letters (source, queue, message_id, body, application_properties, reason,
                                         description, delivery_count, enqueued_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                source,
                message.queue,
                message_id,
                _json_value(stored_body(message.body)),
                _json_value(_stored_properties(message.application_properties)),
                reason,
                description,
                message.delivery_count,
                message.enqueued_at,
            ),
        )
        await record_alert(
            conn,
            Alert(
                "dead_letter",
                "warning",
                f"Dead letter on {message.queue}",
                f"message {message_id} ({reason}): {description or 'no description'}",
            ),
        )


DELIVERY_FAILED = "delivery_failed"
RECORD_FAILURE_TIMEOUT_S = 5.0


def _run_id(message: Inbound) -> UUID | None:
    try:
        return UUID(str(message.application_properties.get("run_id")))
    except ValueError:
        return None


async def record_delivery_failure(pool: Pool, message: Inbound, exc: Exception) -> None:
    """Keep what a delivery raised (best effort: the delivery fails with `exc` whatever happens here)."""
    failure = ErrorRecord(
        "bus",
        DELIVERY_FAILED,
        without_nul(f"delivery {message.delivery_count} failed: {type(exc).__name__}: {exc}"),
        run_id=_run_id(message),
        context={"queue": message.queue, "message_id": without_nul(message.message_id)},
    )
    try:
        # Often the database itself is failing: do not hold the delivery for the pool's full timeout.
        async with pool.connection(timeout=RECORD_FAILURE_TIMEOUT_S) as conn:
            await record_errors(conn, [failure])
    except Exception as record_exc:
        log.warning("could not record the failed delivery: %s", record_exc)


async def last_delivery_failure(pool: Pool, message: Inbound) -> str | None:
    """What the message's last failed delivery raised, if it was recorded."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT message FROM error_records
               WHERE run_id IS NOT DISTINCT FROM %s AND source = 'bus' AND code = %s
                 AND context->>'queue' = %s AND context->>'message_id' = %s
               ORDER BY occurred_at DESC, id DESC LIMIT 1""",
            (_run_id(message), DELIVERY_FAILED, message.queue, without_nul(message.message_id)),
        )
        row = await cur.fetchone()
    return str(row[0]) if row else None


async def handle_inbound(container: Container, message: Inbound, handler: Handler[T]) -> T | None:
    """Run the handler; a poison message is recorded and completes (None), anything else is recorded
    as a failed delivery and propagates."""
    with log_context(message_id=message.message_id):
        try:
            return await handler(container, message.body)
        except PoisonMessageError as exc:
            log.error("poison message on %s: %s", message.queue, exc)
            await record_dead_letter(
                container.pool, message, source="poison", reason="PoisonMessage", description=str(exc)
            )
            return None
        except Exception as exc:
            await record_delivery_failure(container.pool, message, exc)
            raise
