"""Azure Functions: the work-items queue trigger (one feed page per message)."""

from __future__ import annotations

from functools import partial

import azure.durable_functions as df
import azure.functions as func

from shared import observability
from shared.bus.inbound import handle_inbound
from shared.functions_messages import inbound, message_fields, traceparent
from shared.functions_runtime import runtime
from shared.settings import get_settings
from worker.handler import handle_work_item

bp = df.Blueprint()
_settings = get_settings()


@bp.function_name("worker_work_items")
@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=_settings.queue_work_items, connection=_settings.servicebus_connection_setting
)
async def worker_work_items(msg: func.ServiceBusMessage, context: func.Context) -> None:
    container = await runtime.get()
    with observability.invocation("worker_work_items", traceparent=traceparent(context), **message_fields(msg)):
        message = inbound(msg, _settings.queue_work_items)
        # BUS_MAX_DELIVERY_COUNT is the work-items queue's MaxDeliveryCount (shared/bus/servicebus_config.json).
        last = message.delivery_count >= _settings.bus_max_delivery_count
        await handle_inbound(container, message, partial(handle_work_item, last_delivery=last))
