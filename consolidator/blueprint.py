"""Azure Functions: the consolidate queue trigger; a completed run is reported to its orchestration.

A consolidation may take longer than one invocation may (host.json's functionTimeout). At that
timeout the host restarts the worker process, which kills every invocation it runs, and the message
comes back only up to its MaxDeliveryCount. So an invocation consolidates for at most
CONSOLIDATION_BUDGET, then stops (each batch is its own transaction: nothing half-done stays) and,
when the run's consolidation advanced meanwhile, hands the rest to a new consolidate message, which
resumes where this one stopped; without progress the delivery fails, so the queue's MaxDeliveryCount
(then the run's stall watch) bounds a consolidation that cannot advance.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

from consolidator.handler import handle_consolidate
from fanin.durable import RUN_FINISHED, RaiseOutcome, raise_run_event
from shared import observability
from shared.bootstrap import Container
from shared.bus.inbound import handle_inbound, record_delivery_failure
from shared.bus.port import publish
from shared.functions_messages import inbound, message_fields, traceparent
from shared.functions_runtime import runtime
from shared.messages import Consolidate, PoisonMessageError, decode
from shared.settings import get_settings

log = logging.getLogger(__name__)

bp = df.Blueprint()
_settings = get_settings()
# host.json's functionTimeout (10 min) less the time to stop and hand over (tests hold them together).
CONSOLIDATION_BUDGET = timedelta(minutes=8)


async def consolidated_rows(container: Container, body: bytes) -> int | None:
    """How many raw rows the message's run has consolidated so far (None for a body that is not one)."""
    try:
        run_id = decode(body, Consolidate).run_id
    except PoisonMessageError:
        return None
    async with container.pool.connection() as conn:
        cur = await conn.execute("SELECT consolidation_processed FROM run_metadata WHERE run_id = %s", (run_id,))
        row = await cur.fetchone()
    return int(row[0]) if row else None


async def hand_over(container: Container, body: bytes) -> None:
    """Send the consolidation on in a new message (a new id: duplicate detection keeps the first's)."""
    message = decode(body, Consolidate)
    resend = int(container.clock.now().timestamp())
    log.info("consolidation ran for its budget (%s): it continues in a new message", CONSOLIDATION_BUDGET)
    await publish(container.bus, message.model_copy(update={"resend": resend}))


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
        message = inbound(msg, _settings.queue_consolidate)
        before = await consolidated_rows(container, message.body)
        budget = asyncio.timeout(CONSOLIDATION_BUDGET.total_seconds())
        try:
            async with budget:
                result = await handle_inbound(container, message, handle_consolidate)
        except TimeoutError as exc:
            if not budget.expired():
                raise  # a timeout of the consolidation's own (the feed's, say)
            after = await consolidated_rows(container, message.body)
            if before is None or after is None or after <= before:
                stuck = TimeoutError(f"the consolidation made no progress in {CONSOLIDATION_BUDGET}")
                await record_delivery_failure(container.pool, message, stuck)
                raise stuck from exc
            await hand_over(container, message.body)
            return
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
