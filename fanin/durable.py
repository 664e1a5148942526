"""The Durable Functions side of the fan-in: starting a run's orchestration and raising its events.

A Durable client exists only inside an invocation that has a `durableClient` binding, while the
container (and the FanInStarter in it) lives for the whole worker process. Each entry point that may
start a run (timer, API, work-done, the chain activity) binds its client for the duration of the
invocation with `durable_client(...)`; `DurableFanIn` uses the client of the current invocation and
refuses to run without one (a run whose fan-in silently did not start would wait forever).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from fanin.lifecycle import LifecyclePolicy
from shared.bootstrap import Container
from shared.handling import Body, poison_on_missing
from shared.messages import WorkDone, decode
from shared.runs import RunRecord, load_run

log = logging.getLogger(__name__)

ORCHESTRATOR = "fanin_orchestrator"
PARTITION_DONE = "PartitionDone"
RUN_FINISHED = "RunFinished"
# Instances in these states are still waiting for events: never start them again.
ACTIVE_RUNTIME_STATUSES = ("Pending", "Running", "ContinuedAsNew", "Suspended")


class DurableClient(Protocol):
    """The part of azure.durable_functions.DurableOrchestrationClient the fan-in uses."""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input: Any = None
    ) -> str: ...

    async def raise_event(self, instance_id: str, event_name: str, event_data: Any = None) -> None: ...

    async def get_status(self, instance_id: str) -> Any: ...


_client: contextvars.ContextVar[DurableClient | None] = contextvars.ContextVar("opus_durable_client", default=None)


@contextmanager
def durable_client(client: DurableClient) -> Iterator[None]:
    """Make the invocation's Durable client available to the fan-in for the block."""
    token = _client.set(client)
    try:
        yield
    finally:
        _client.reset(token)


def current_client() -> DurableClient:
    client = _client.get()
    if client is None:
        raise RuntimeError(
            "no Durable client in this invocation: the function that starts runs needs a durableClient binding"
        )
    return client


@dataclass(frozen=True)
class FanInStart:
    """The orchestration's input: which run, and the lifecycle policy it decides with (fixed per run)."""

    run_id: str
    feed: str
    trace_id: str
    expected_partitions: int
    auto_consolidation_threshold: str
    stall_after_s: float
    auto_consolidation_delay_s: float

    @classmethod
    def for_run(cls, run: RunRecord, policy: LifecyclePolicy) -> FanInStart:
        return cls(
            run_id=str(run.run_id),
            feed=run.feed,
            trace_id=run.trace_id,
            expected_partitions=run.expected_partitions,
            auto_consolidation_threshold=str(policy.auto_consolidation_threshold),
            stall_after_s=policy.stall_after.total_seconds(),
            auto_consolidation_delay_s=policy.auto_consolidation_delay.total_seconds(),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FanInStart:
        return cls(**data)


class RaiseOutcome(StrEnum):
    DELIVERED = "delivered"
    NO_INSTANCE = "no_instance"  # HTTP 404 from the extension
    GONE = "gone"  # HTTP 410: the instance completed, failed or was terminated


def _raise_outcome(exc: Exception) -> RaiseOutcome | None:
    # The SDK turns the extension's 404/410 into plain Exceptions with these messages.
    text = str(exc)
    if text.startswith("No instance with ID"):
        return RaiseOutcome.NO_INSTANCE
    if "is gone" in text:
        return RaiseOutcome.GONE
    return None


async def raise_run_event(client: DurableClient, run_id: UUID, event: str, data: dict[str, Any]) -> RaiseOutcome:
    """Raise an event on the run's orchestration; 404 and 410 are outcomes, other failures raise."""
    try:
        await client.raise_event(str(run_id), event, data)
    except Exception as exc:
        outcome = _raise_outcome(exc)
        if outcome is None:
            raise
        return outcome
    return RaiseOutcome.DELIVERED


async def instance_is_active(client: DurableClient, instance_id: str) -> bool:
    status = await client.get_status(instance_id)
    runtime = getattr(status, "runtime_status", None)
    name = getattr(runtime, "value", runtime)
    return name in ACTIVE_RUNTIME_STATUSES


class DurableFanIn:
    """FanInStarter: one orchestration per run (instance id = run id), started before any work item."""

    def __init__(self, policy: LifecyclePolicy) -> None:
        self._policy = policy

    async def start(self, run: RunRecord) -> None:
        client = current_client()
        instance_id = str(run.run_id)
        if await instance_is_active(client, instance_id):
            # A retry of an ingesting run: its orchestration is still waiting and will see the new attempts.
            log.info("fan-in orchestration %s is already running", instance_id)
            return
        start = FanInStart.for_run(run, self._policy)
        try:
            await client.start_new(ORCHESTRATOR, instance_id=instance_id, client_input=start.to_json())
        except Exception:
            # host.json allows replacing only non-running instances; a concurrent start is fine.
            if await instance_is_active(client, instance_id):
                return
            raise
        log.info("fan-in orchestration started for %d partitions", run.expected_partitions)


async def report_work_done(container: Container, body: Body) -> RaiseOutcome:
    """The work-done trigger's body: raise PartitionDone on the run's orchestration.

    An orchestration that does not exist (404) or has ended (410) while the run is still ingesting
    (it failed, or was purged) is started again first: it reads the partitions from the database,
    so nothing reported before is lost. For a run that has moved on, the report changes nothing.
    """
    done = decode(body, WorkDone)
    client = current_client()
    outcome = await raise_run_event(client, done.run_id, PARTITION_DONE, done.to_body())
    if outcome is RaiseOutcome.DELIVERED:
        return outcome
    with poison_on_missing():
        async with container.pool.connection() as conn:
            run = await load_run(conn, done.run_id)
    if run.status != "ingesting":
        log.info("work done for a %s run: its orchestration is %s, nothing to do", run.status, outcome)
        return outcome
    log.warning("run %s is ingesting but its orchestration is %s: starting it again", run.run_id, outcome)
    await container.fanin.start(run)
    outcome = await raise_run_event(client, done.run_id, PARTITION_DONE, done.to_body())
    if outcome is not RaiseOutcome.DELIVERED:
        raise RuntimeError(f"the orchestration of run {run.run_id} is {outcome} right after its start")
    return outcome
