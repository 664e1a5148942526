"""The Azure Service Bus adapter of the bus port (sending; the Functions triggers receive).

- message ids are the messages' stable ids, so the queues' duplicate detection drops re-sends;
- `scheduled_at` becomes the broker's scheduled enqueue time;
- messages go out in size-limited batches, and a message that does not fit closes the current batch
  (which is sent) and opens the next one: nothing is left behind in a batch that is never sent
  (the original's defect);
- one ServiceBusClient per process (the container is process-wide), one sender per queue, each
  sender used by one send at a time (SDK handlers are not coroutine-safe);
- `close()` closes the senders, then the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID

import orjson
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageSizeExceededError

from shared.bus.port import MessageTooLargeError, OutgoingMessage, QueueNames

CONTENT_TYPE = "application/json"


def to_sdk_message(message: OutgoingMessage) -> ServiceBusMessage:
    properties: dict[str | bytes, int | float | bytes | bool | str | UUID] = {}
    for key, value in message.application_properties.items():
        properties[key] = value
    return ServiceBusMessage(
        orjson.dumps(dict(message.body)),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=CONTENT_TYPE,
        subject=message.application_properties.get("type"),
        application_properties=properties,
        scheduled_enqueue_time_utc=message.scheduled_at,
    )


def first_copies(messages: Sequence[OutgoingMessage]) -> dict[str, list[OutgoingMessage]]:
    """Messages grouped by queue in send order, a repeated (queue, id) kept once (as the broker would)."""
    by_queue: dict[str, list[OutgoingMessage]] = {}
    seen: set[tuple[str, str]] = set()
    for message in messages:
        key = (message.queue, message.message_id)
        if key not in seen:
            seen.add(key)
            by_queue.setdefault(message.queue, []).append(message)
    return by_queue


def _fits(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True


def _too_large(message: ServiceBusMessage, batch: ServiceBusMessageBatch) -> MessageTooLargeError:
    return MessageTooLargeError(
        f"message {message.message_id} is larger than a batch may be ({batch.max_size_in_bytes} bytes)"
    )


async def send_batched(sender: ServiceBusSender, messages: Sequence[ServiceBusMessage]) -> int:
    """Send in as few batches as fit; return the number of batches sent."""
    sent = 0
    batch = await sender.create_message_batch()
    for message in messages:
        if _fits(batch, message):
            continue
        if len(batch) == 0:
            raise _too_large(message, batch)
        # The batch is full: send it, and the message that did not fit opens the next one.
        await sender.send_messages(batch)
        sent += 1
        batch = await sender.create_message_batch()
        if not _fits(batch, message):
            raise _too_large(message, batch)
    if len(batch) > 0:
        await sender.send_messages(batch)
        sent += 1
    return sent


class ServiceBusBus:
    """Implements MessageBus on the azure-servicebus SDK (async)."""

    def __init__(self, client: ServiceBusClient, queues: QueueNames) -> None:
        self.client = client
        self.queues = queues
        self._senders: dict[str, ServiceBusSender] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_connection_string(cls, connection_string: str, queues: QueueNames) -> ServiceBusBus:
        # The SDK accepts the emulator's `UseDevelopmentEmulator=true` strings as they are.
        return cls(ServiceBusClient.from_connection_string(connection_string), queues)

    def _sender(self, queue: str) -> ServiceBusSender:
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._senders[queue] = self.client.get_queue_sender(queue_name=queue)
        return sender

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        for queue, batch in first_copies(messages).items():
            async with self._locks.setdefault(queue, asyncio.Lock()):
                await send_batched(self._sender(queue), [to_sdk_message(m) for m in batch])

    async def close(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        try:
            for sender in senders:
                await sender.close()
        finally:
            await self.client.close()
