"""Azure Functions: the timer that plans runs (the feeds of FEEDS, one after the other)."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from fanin.durable import durable_client
from fanin.orchestrator import start_chain
from shared import observability
from shared.functions_runtime import runtime
from shared.settings import get_settings

log = logging.getLogger(__name__)

bp = df.Blueprint()
_settings = get_settings()


@bp.function_name("scheduler_timer")
@bp.timer_trigger(arg_name="timer", schedule=_settings.schedule_cron, run_on_startup=False, use_monitor=True)
@bp.durable_client_input(client_name="client")
async def scheduler_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Start the first feed of the chain; each run's orchestration starts the next one when it ends."""
    container = await runtime.get()
    with observability.invocation("scheduler_timer"), durable_client(client):
        if timer.past_due:
            log.warning("the schedule is running late")
        started = await start_chain(container, container.settings.feeds, requested_by="schedule")
        if started is not None:
            log.info("scheduled run %s of %s started", started.run.run_id, started.run.feed)
