"""Azure Functions: the work-done trigger, the fan-in orchestration, its activities and its watchdog."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from fanin import orchestrator
from fanin.durable import ORCHESTRATOR, durable_client, report_work_done
from shared import observability
from shared.bus.inbound import handle_inbound
from shared.functions_messages import inbound, message_fields, traceparent
from shared.functions_runtime import runtime
from shared.settings import get_settings

bp = df.Blueprint()
_settings = get_settings()
# How soon a run whose orchestration stopped, or that a crash left planned, is picked up again: the
# scheduler's tick does it too, but only every few hours.
WATCHDOG_SCHEDULE = "0 */5 * * * *"


@bp.function_name("fanin_work_done")
@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name=_settings.queue_work_done, connection=_settings.servicebus_connection_setting
)
@bp.durable_client_input(client_name="client")
async def fanin_work_done(
    msg: func.ServiceBusMessage, client: df.DurableOrchestrationClient, context: func.Context
) -> None:
    container = await runtime.get()
    fields = message_fields(msg)
    with (
        observability.invocation("fanin_work_done", traceparent=traceparent(context), **fields),
        durable_client(client),
    ):
        await handle_inbound(container, inbound(msg, _settings.queue_work_done), report_work_done)


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def fanin_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    return (yield from orchestrator.orchestrate(context))


@bp.activity_trigger(input_name="run_id", activity=orchestrator.SNAPSHOT)
async def fanin_snapshot(run_id: str) -> dict[str, Any]:
    with observability.invocation(orchestrator.SNAPSHOT, run_id=run_id):
        return await orchestrator.snapshot_run(await runtime.get(), run_id)


@bp.activity_trigger(input_name="payload", activity=orchestrator.APPLY)
async def fanin_apply(payload: dict[str, Any]) -> bool:
    with observability.invocation(orchestrator.APPLY, run_id=payload.get("run_id")):
        return await orchestrator.apply_run_decision(await runtime.get(), payload)


@bp.activity_trigger(input_name="run_id", activity=orchestrator.RESEND)
async def fanin_resend_consolidation(run_id: str) -> bool:
    with observability.invocation(orchestrator.RESEND, run_id=run_id):
        return await orchestrator.resend_consolidation(await runtime.get(), run_id)


@bp.activity_trigger(input_name="run_id", activity=orchestrator.FINISH)
@bp.durable_client_input(client_name="client")
async def fanin_finish(run_id: str, client: df.DurableOrchestrationClient) -> dict[str, Any]:
    """The run ended: the next feed of the chain starts here (its orchestration needs this client)."""
    with observability.invocation(orchestrator.FINISH, run_id=run_id), durable_client(client):
        return await orchestrator.finish_run(await runtime.get(), run_id)


@bp.function_name("fanin_watchdog")
@bp.timer_trigger(arg_name="timer", schedule=WATCHDOG_SCHEDULE, run_on_startup=False, use_monitor=False)
@bp.durable_client_input(client_name="client")
async def fanin_watchdog(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Recover the active runs (see `orchestrator.recover_active_runs`)."""
    with observability.invocation("fanin_watchdog"), durable_client(client):
        await orchestrator.recover_active_runs(await runtime.get())
