"""Fixtures that run the Functions entry points in-process, replacing Azure only at the SDK boundary.

- Service Bus: the real adapter (shared.bus.servicebus) with a fake `ServiceBusClient` whose senders
  build REAL SDK batches (`ServiceBusMessageBatch`, real AMQP size accounting) and record what each
  `send_messages` call carried. Justification: the adapter's whole job (ids, schedule, batching,
  overflow, one client, close) happens above that line; below it is the network.
- Durable: the real `DurableOrchestrationClient`, built by the real decorators from a binding JSON,
  talking HTTP to `DurableHttp` (tests/azure/durable.py), whose engine replays the orchestration
  through its indexed handler and runs the indexed activity functions.
- Functions objects: real `azure.functions.ServiceBusMessage`, `TimerRequest`, `HttpRequest`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import pytest_asyncio
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTriggerMessage
from azure.functions.timer import TimerRequest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch

from fanin.durable import ORCHESTRATOR, DurableFanIn
from fanin.orchestrator import APPLY, FINISH, RESEND, SNAPSHOT
from fanin.service import policy_from
from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from shared.bootstrap import Container, open_container
from shared.functions_runtime import runtime
from shared.settings import Settings
from tests.azure.durable import DurableEngine, DurableHttp
from tests.azure.indexing import user_function
from tests.pipeline.conftest import pipeline_settings

SIM_STONES = 3_000
SIM_SEED = 31
CONNECTION = "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"


@dataclass
class Sent:
    queue: str
    message: ServiceBusMessage

    @property
    def body(self) -> bytes:
        return b"".join(self.message.body)


@dataclass
class FakeSender:
    client: FakeServiceBusClient
    queue: str
    closed: bool = False

    async def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or self.client.batch_bytes)

    async def send_messages(self, batch: ServiceBusMessageBatch) -> None:
        if self.client.failing:
            raise ConnectionError("Service Bus is unreachable")
        messages = list(batch._messages)
        self.client.batches.append((self.queue, len(messages)))
        self.client.outbox.extend(Sent(self.queue, m) for m in messages)

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeServiceBusClient:
    """Stands where azure.servicebus.aio.ServiceBusClient stands; everything above it is real."""

    batch_bytes: int = 262_144
    outbox: list[Sent] = field(default_factory=list)
    batches: list[tuple[str, int]] = field(default_factory=list)
    senders: list[FakeSender] = field(default_factory=list)
    failing: bool = False
    closed: bool = False
    created: int = 0

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        sender = FakeSender(self, queue_name)
        self.senders.append(sender)
        return sender

    async def close(self) -> None:
        self.closed = True

    def take(self) -> list[Sent]:
        taken, self.outbox = self.outbox, []
        return taken


@pytest.fixture
def fake_servicebus(monkeypatch: pytest.MonkeyPatch) -> FakeServiceBusClient:
    fake = FakeServiceBusClient()

    def from_connection_string(connection_string: str, **_: Any) -> FakeServiceBusClient:
        assert connection_string == CONNECTION
        fake.created += 1
        return fake

    monkeypatch.setattr("shared.bus.servicebus.ServiceBusClient.from_connection_string", from_connection_string)
    monkeypatch.setenv("ServiceBusConnection", CONNECTION)
    return fake


@pytest.fixture(scope="module")
def azure_simulator() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=SIM_SEED, stones=SIM_STONES))
    yield sim
    sim.stop()


def azure_settings(database_url: str, data_dir: Path, endpoint: str, **overrides: Any) -> Settings:
    return pipeline_settings(
        database_url, data_dir, endpoint, bus_backend="servicebus", feeds="nivoda-natural,nivoda-labgrown", **overrides
    )


class FakeContext:
    """The invocation Context the worker injects (only what the app reads)."""

    def __init__(self, name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = name
        self.trace_context = type("TraceContext", (), {"trace_parent": None, "trace_state": None})()


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def functions_message(sent: Sent, *, delivery_count: int = 1) -> func.ServiceBusMessage:
    m = sent.message
    return ServiceBusTriggerMessage(
        body=sent.body,
        message_id=str(m.message_id),
        correlation_id=m.correlation_id,
        content_type=m.content_type,
        delivery_count=delivery_count,
        enqueued_time_utc=datetime.now(UTC),
        scheduled_enqueue_time_utc=m.scheduled_enqueue_time_utc,
        application_properties={_text(k): _text(v) for k, v in (m.application_properties or {}).items()},
        user_properties={},
    )


@dataclass
class FunctionsHarness:
    """The Functions host's part: deliver messages to triggers, run the Durable engine."""

    container: Container
    servicebus: FakeServiceBusClient
    engine: DurableEngine
    http: DurableHttp
    delivered: list[tuple[str, str]] = field(default_factory=list)

    @property
    def client_binding(self) -> str:
        return self.http.binding()

    async def deliver(self, queue: str, msg: func.ServiceBusMessage) -> None:
        settings = self.container.settings
        name = {
            settings.queue_work_items: "worker_work_items",
            settings.queue_work_done: "fanin_work_done",
            settings.queue_consolidate: "consolidator_consolidate",
        }[queue]
        kwargs: dict[str, Any] = {"msg": msg, "context": FakeContext(name)}
        if name != "worker_work_items":
            kwargs["client"] = self.client_binding
        self.delivered.append((queue, msg.message_id))
        await user_function(name)(**kwargs)

    async def tick(self) -> None:
        await user_function("scheduler_timer")(timer=TimerRequest(past_due=False), client=self.client_binding)

    async def watchdog(self) -> None:
        await user_function("fanin_watchdog")(timer=TimerRequest(past_due=False), client=self.client_binding)

    async def drain(self, max_messages: int = 100_000) -> None:
        """Deliver what was sent, in order, and let the orchestrations react, until nothing is left."""
        for _ in range(max_messages):
            sent = self.servicebus.take()
            if not sent:
                before = sum(len(i.history) for i in self.engine.instances.values())
                await self.engine.drain()
                if not self.servicebus.outbox and sum(len(i.history) for i in self.engine.instances.values()) == before:
                    return
                continue
            for item in sent:
                await self.deliver(item.queue, functions_message(item))
        raise AssertionError("the pipeline did not settle")


def _activities(binding: Any) -> dict[str, Any]:
    async def snapshot(run_id: str) -> Any:
        return await user_function(SNAPSHOT)(run_id=run_id)

    async def apply(payload: dict[str, Any]) -> Any:
        return await user_function(APPLY)(payload=payload)

    async def resend(run_id: str) -> Any:
        return await user_function(RESEND)(run_id=run_id)

    async def finish(run_id: str) -> Any:
        return await user_function(FINISH)(run_id=run_id, client=binding())

    return {SNAPSHOT: snapshot, APPLY: apply, RESEND: resend, FINISH: finish}


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    db: Any,
    database_url: str,
    tmp_path: Path,
    azure_simulator: ThreadedSimulator,
    fake_servicebus: FakeServiceBusClient,
) -> AsyncIterator[FunctionsHarness]:
    settings = azure_settings(database_url, tmp_path, azure_simulator.endpoint)
    http: DurableHttp
    engine = DurableEngine({ORCHESTRATOR: user_function(ORCHESTRATOR)}, _activities(lambda: http.binding()))
    http = DurableHttp(engine)
    await http.start()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(http.stop)
        container = await stack.enter_async_context(
            open_container(settings, database_url, name="functions-test", fanin=DurableFanIn(policy_from(settings)))
        )
        runtime.install(container)
        try:
            yield FunctionsHarness(container, fake_servicebus, engine, http)
        finally:
            await runtime.aclose()


def sent_bodies(sent: list[Sent]) -> list[dict[str, Any]]:
    return [json.loads(s.body) for s in sent]
