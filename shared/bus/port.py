"""The message-bus port: what services need from a bus, whatever runs it.

Adapters: `shared.bus.local` (PostgreSQL, Service Bus semantics) and `shared.bus.servicebus`
(Azure Service Bus SDK). Receiving is runtime-specific (Functions triggers in Azure, the local host's
consumers locally), so the port is about sending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.messages import Consolidate, Message, WorkDone, WorkItem
from shared.settings import Settings


@dataclass(frozen=True)
class QueueNames:
    work_items: str
    work_done: str
    consolidate: str

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueNames:
        return cls(settings.queue_work_items, settings.queue_work_done, settings.queue_consolidate)

    def for_message(self, message: Message) -> str:
        if isinstance(message, WorkItem):
            return self.work_items
        if isinstance(message, WorkDone):
            return self.work_done
        if isinstance(message, Consolidate):
            return self.consolidate
        raise TypeError(f"no queue for {type(message).__name__}")

    def all(self) -> tuple[str, str, str]:
        return (self.work_items, self.work_done, self.consolidate)


# Service Bus Standard refuses a message over 256 KB (Premium allows more). The broker enforces it in
# Azure; the local bus refuses the same, so a message that would fail in Azure fails locally too.
MAX_MESSAGE_BYTES = 256 * 1024
# Service Bus message ids are at most 128 characters (the azure-servicebus SDK refuses longer ones).
MAX_MESSAGE_ID_LENGTH = 128


class MessageTooLargeError(ValueError):
    """One message is larger than Service Bus accepts: it can never be sent."""


@dataclass(frozen=True)
class OutgoingMessage:
    queue: str
    message_id: str
    body: Mapping[str, Any]
    scheduled_at: datetime | None = None
    correlation_id: str | None = None
    application_properties: Mapping[str, str] = field(default_factory=dict)


def outgoing(message: Message, queues: QueueNames, *, scheduled_at: datetime | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        queue=queues.for_message(message),
        message_id=message.message_id,
        body=message.to_body(),
        scheduled_at=scheduled_at,
        correlation_id=message.trace_id,
        application_properties={"type": message.type, "run_id": str(message.run_id)},
    )


class MessageBus(Protocol):
    queues: QueueNames

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send all messages; ids already sent within the duplicate-detection window are dropped."""

    async def close(self) -> None: ...


async def publish(bus: MessageBus, *messages: Message, scheduled_at: datetime | None = None) -> None:
    """Route typed messages to their queues and send them."""
    await bus.send([outgoing(m, bus.queues, scheduled_at=scheduled_at) for m in messages])
