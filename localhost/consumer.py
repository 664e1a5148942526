"""Competing consumers on the local bus, settling messages as the Functions host would.

Return = complete; PoisonMessageError = dead-letter with the reason; any other exception =
abandon (redelivered after a backoff), or on the last permitted delivery dead-letter with the error.
Long handlers keep their lock renewed; a handler still running after the host's functionTimeout
fails, as it would in Azure, instead of holding its message and its consumer for good. A handler
whose lock is lost runs on, as in Azure, and its settlement is refused: its work is idempotent
(a page's offset CAS, the consolidator's claims), and cancelling it would throw away the progress of
a handler that merely renewed late, on a busy machine. On stop, handlers get a short grace period
(as the Functions host signals its cancellation token, then shuts down); those still running after
it are cancelled and their messages given back, for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from shared.bus.local import BusListener, LocalBus, MessageLockLostError, ReceivedMessage
from shared.feed.errors import FeedError
from shared.logs import log_context
from shared.messages import PoisonMessageError

log = logging.getLogger(__name__)

MessageHandler = Callable[[ReceivedMessage], Awaitable[object]]
# Failures of the outside world whose message says it all: logged without a traceback.
EXPECTED_FAILURES = (TimeoutError, ConnectionError, FeedError)
IDLE_POLL_S = 2.0
# host.json's functionTimeout (and maxAutoLockRenewalDuration): how long Azure lets a handler run.
HANDLER_TIMEOUT = timedelta(minutes=10)
# How long a stopping host lets in-flight handlers finish (a page's writes take milliseconds) before
# it cancels them and abandons their messages: a handler riding out a failing feed's retries could
# otherwise hold the shutdown for minutes.
SHUTDOWN_GRACE_S = 3.0


class HandlerTimeoutError(TimeoutError):
    """The handler ran longer than the functionTimeout."""


async def _run(handler: MessageHandler, message: ReceivedMessage, time_limit: timedelta) -> None:
    try:
        async with asyncio.timeout(time_limit.total_seconds()) as deadline:
            await handler(message)
    except TimeoutError as exc:
        if deadline.expired():
            raise HandlerTimeoutError(f"the handler ran longer than {time_limit.total_seconds():g} s") from exc
        raise


def retry_delay(delivery_count: int) -> timedelta:
    """Backoff before a failed message is redelivered: 1 s, 2 s, 4 s ... capped at 30 s."""
    return timedelta(seconds=min(30, 2 ** max(0, delivery_count - 1)))


class ShutdownError(Exception):
    """The host stopped while the handler was still running."""


async def _renew_until_lost(bus: LocalBus, message: ReceivedMessage) -> None:
    """Keep the message locked; return when the lock is lost (the settlement will say so)."""
    lock_s = bus.properties_of(message.queue).lock_duration.total_seconds()
    interval = max(1.0, lock_s / 3)
    delay = interval
    while True:
        await asyncio.sleep(delay)
        try:
            await bus.renew_lock(message)
            delay = interval
        except MessageLockLostError:
            log.warning("lost the lock while handling %s", message.message_id)
            return
        except Exception as exc:
            # A busy pool or a dropped connection: the lock still holds for a while, try again soon.
            log.warning("could not renew the lock on %s: %s", message.message_id, exc)
            delay = 1.0


async def _handle(
    bus: LocalBus, message: ReceivedMessage, handler: MessageHandler, time_limit: timedelta, stop: asyncio.Event
) -> None:
    """Run the handler while its lock is renewed; cancel it if the host stops and the grace period
    passes (ShutdownError)."""
    work = asyncio.create_task(_run(handler, message, time_limit))
    renewer = asyncio.create_task(_renew_until_lost(bus, message))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            await asyncio.wait((work,), timeout=SHUTDOWN_GRACE_S)
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            raise ShutdownError(f"the host stopped while {message.message_id} was being handled")
        await work
    finally:
        for task in (work, renewer, stopping):
            task.cancel()
        await asyncio.gather(work, renewer, stopping, return_exceptions=True)


async def settle(
    bus: LocalBus,
    message: ReceivedMessage,
    handler: MessageHandler,
    *,
    time_limit: timedelta = HANDLER_TIMEOUT,
    stop: asyncio.Event | None = None,
) -> str:
    """Run the handler on one received message and settle it; return how it was settled."""
    stop = stop or asyncio.Event()
    with log_context(message_id=message.message_id):
        try:
            await _handle(bus, message, handler, time_limit, stop)
        except ShutdownError as exc:
            # As the SDK unlocks the messages of a closing processor: the delivery counts, nothing failed.
            log.warning("%s: giving it back", exc)
            await bus.abandon(message)
            return "abandoned"
        except PoisonMessageError as exc:
            log.error("dead-lettering poison message %s: %s", message.message_id, exc)
            await bus.dead_letter(message, reason="PoisonMessage", description=str(exc), source="poison")
            return "dead-lettered"
        except Exception as exc:
            log.warning(
                "handler failed on %s (delivery %d): %s",
                message.message_id,
                message.delivery_count,
                exc,
                exc_info=not isinstance(exc, EXPECTED_FAILURES),
            )
            max_deliveries = bus.properties_of(message.queue).max_delivery_count
            if message.delivery_count >= max_deliveries:
                # The bus would dead-letter it anyway; this way the letter says why.
                failure = f"delivery {message.delivery_count} of {max_deliveries} failed: {exc}"
                await bus.dead_letter(message, reason="MaxDeliveryCountExceeded", description=failure)
                return "dead-lettered"
            await bus.abandon(message, delay=retry_delay(message.delivery_count))
            return "abandoned"
        await bus.complete(message)
        return "completed"


async def consume(
    bus: LocalBus,
    listener: BusListener,
    queue: str,
    handler: MessageHandler,
    *,
    stop: asyncio.Event,
) -> None:
    """One consumer loop: receive, handle, settle, until `stop` is set (the current message is finished,
    or given back if its handler outlasts the grace period)."""
    while not stop.is_set():
        try:
            messages = await bus.receive(queue, 1)
        except Exception as exc:  # the database may be restarting; keep the loop alive
            log.warning("receive from %s failed: %s", queue, exc)
            await asyncio.sleep(1)
            continue
        if not messages:
            await listener.wait(queue, IDLE_POLL_S)
            continue
        listener.taken(queue, len(messages))
        for message in messages:
            try:
                await settle(bus, message, handler, stop=stop)
            except MessageLockLostError as exc:
                log.warning("%s", exc)
            except Exception as exc:
                # Settling failed (the database may be restarting): the message stays locked, is
                # delivered again when its lock expires, and this consumer carries on.
                log.warning("could not settle %s on %s: %s", message.message_id, queue, exc)
