"""Azure Functions: operations that belong to no stage: dead-letter sub-queues, alert delivery and
retention.

A message that Service Bus dead-letters (MaxDeliveryCountExceeded, TTL expiry, ...) is recorded in
`dead_letters` (source 'servicebus') with its reason and description, and what its last failed
delivery raised, where the API, the dashboard and the CLI list and replay it; then the trigger
completes it on the dead-letter sub-queue.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func
import httpx

from consolidator.repricing import resume_stalled_jobs
from shared import observability
from shared.alerts import deliver_pending
from shared.bus.inbound import last_delivery_failure, record_dead_letter
from shared.functions_messages import inbound, message_fields
from shared.functions_runtime import runtime
from shared.retention import prune
from shared.settings import get_settings

bp = df.Blueprint()
_settings = get_settings()
DEAD_LETTER_SUBQUEUE = "$deadletterqueue"
ALERTS_SCHEDULE = "0 * * * * *"  # every minute
RETENTION_SCHEDULE = "0 30 3 * * *"  # daily at 03:30 UTC
_http: dict[str, httpx.AsyncClient] = {}


def dead_letter_queue(queue: str) -> str:
    return f"{queue}/{DEAD_LETTER_SUBQUEUE}"


def _dead_letter_function(name: str, queue: str) -> None:
    @bp.function_name(name)
    @bp.service_bus_queue_trigger(
        arg_name="msg", queue_name=dead_letter_queue(queue), connection=_settings.servicebus_connection_setting
    )
    async def record(msg: func.ServiceBusMessage) -> None:
        container = await runtime.get()
        with observability.invocation(name, **message_fields(msg)):
            message = inbound(msg, queue)
            failure = await last_delivery_failure(container.pool, message)
            described = "; ".join(part for part in (message.dead_letter_description, failure) if part)
            await record_dead_letter(
                container.pool,
                message,
                source="servicebus",
                reason=message.dead_letter_reason or "unknown",
                description=described or None,
            )


_dead_letter_function("deadletters_work_items", _settings.queue_work_items)
_dead_letter_function("deadletters_work_done", _settings.queue_work_done)
_dead_letter_function("deadletters_consolidate", _settings.queue_consolidate)


@bp.function_name("alerts_deliver")
@bp.timer_trigger(arg_name="timer", schedule=ALERTS_SCHEDULE, run_on_startup=False, use_monitor=False)
async def alerts_deliver(timer: func.TimerRequest) -> None:
    """Deliver recorded alerts to ALERT_WEBHOOK_URL (the local host's alert loop), and finish
    repricing jobs whose API instance was recycled mid-job."""
    container = await runtime.get()
    http = _http.get("client")
    if http is None:
        http = _http["client"] = httpx.AsyncClient()
    webhook = str(container.settings.alert_webhook_url) if container.settings.alert_webhook_url else None
    with observability.invocation("alerts_deliver"):
        await deliver_pending(container.pool, webhook, http)
        await resume_stalled_jobs(container.pool)


@bp.function_name("retention_prune")
@bp.timer_trigger(arg_name="timer", schedule=RETENTION_SCHEDULE, run_on_startup=False, use_monitor=True)
async def retention_prune(timer: func.TimerRequest) -> None:
    """Delete operational records older than RETENTION_DAYS (see shared/retention.py)."""
    container = await runtime.get()
    with observability.invocation("retention_prune"):
        await prune(container.pool, container.settings.retention_days, container.clock.now())
