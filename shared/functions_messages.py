"""From the Functions SDK's objects to the runtime-neutral ones (the only shared module that knows them)."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared.bus.inbound import Inbound


def inbound(msg: func.ServiceBusMessage, queue: str) -> Inbound:
    return Inbound(
        queue=queue,
        message_id=msg.message_id or "",
        body=msg.get_body(),
        delivery_count=msg.delivery_count or 0,
        enqueued_at=msg.enqueued_time_utc,
        application_properties=dict(msg.application_properties or {}),
        dead_letter_reason=msg.dead_letter_reason,
        dead_letter_description=msg.dead_letter_error_description,
    )


def message_fields(msg: func.ServiceBusMessage) -> dict[str, Any]:
    """What correlates the invocation's logs and span: the run (application property) and its trace."""
    properties = msg.application_properties or {}
    return {
        "run_id": properties.get("run_id"),
        "trace_id": msg.correlation_id,
        "message_id": msg.message_id,
        "delivery_count": msg.delivery_count,
    }


def traceparent(context: func.Context | None) -> str | None:
    trace_context = getattr(context, "trace_context", None)
    value = getattr(trace_context, "trace_parent", None)
    return value if isinstance(value, str) and value else None
