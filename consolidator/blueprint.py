"""Azure Functions: the consolidate queue trigger; a completed run is reported to its orchestration."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from consolidator.handler import handle_consolidate
from fanin.durable import RUN_FINISHED, RaiseOutcome, raise_run_event
from shared import observability
from shared.bus.inbound import handle_inbound
from shared.functions_messages import inbound, message_fields, traceparent
from shared.functions_runtime import runtime
from shared.messages import Consolidate, decode
from shared.settings import get_settings

log = logging.getLogger(__name__)

bp = df.Blueprint()
_settings = get_settings()


@bp.function_name("consolidator_consolidate")
@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=_settings.queue_consolidate, connection=_settings.servicebus_connection_setting
)
@bp.durable_client_input(client_name="client")
async def consolidator_consolidate(
    msg: func.ServiceBusMessage, client: df.DurableOrchestrationClient, context: func.Context
) -> None:
    container = await runtime.get()
    fields = message_fields(msg)
    with observability.invocation("consolidator_consolidate", traceparent=traceparent(context), **fields):
        result = await handle_inbound(container, inbound(msg, _settings.queue_consolidate), handle_consolidate)
        if result is None or result.outcome != "completed":
            return
        # The orchestration also polls, so a failure to tell it only delays the next feed of the chain.
        run_id = decode(msg.get_body(), Consolidate).run_id
        try:
            outcome = await raise_run_event(client, run_id, RUN_FINISHED, {"outcome": result.outcome})
        except Exception as exc:
            log.warning("could not report the finished run to its orchestration: %s", exc)
            return
        if outcome is not RaiseOutcome.DELIVERED:
            log.info("run finished; its orchestration is %s", outcome)
