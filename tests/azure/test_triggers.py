"""Each trigger body with real azure.functions objects, the real database and the simulator."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTriggerMessage
from azure.functions.timer import TimerRequest

from fanin import orchestrator
from fanin.durable import PARTITION_DONE, current_client
from feedsim.embed import ThreadedSimulator
from shared.db.pool import Pool
from shared.feed.errors import FeedTransientError
from shared.functions_runtime import runtime
from shared.runs import load_run
from tests.azure.conftest import FakeContext, FunctionsHarness, functions_message
from tests.azure.durable import VirtualClock
from tests.azure.indexing import indexed, user_function
from tests.pipeline.conftest import sim_control

pytestmark = pytest.mark.xdist_group("pipeline")


def sb_message(
    body: bytes, *, message_id: str = "m-1", delivery_count: int = 1, **extra: Any
) -> func.ServiceBusMessage:
    return ServiceBusTriggerMessage(
        body=body,
        message_id=message_id,
        delivery_count=delivery_count,
        enqueued_time_utc=datetime.now(UTC),
        application_properties=extra.pop("application_properties", {}),
        user_properties={},
        **extra,
    )


async def dead_letters(pool: Pool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            """SELECT source, queue, message_id, body, reason, description, delivery_count
               FROM dead_letters ORDER BY id"""
        )
        columns = [c.name for c in cur.description or ()]
        return [dict(zip(columns, row, strict=True)) for row in await cur.fetchall()]


async def test_a_poison_work_item_is_recorded_and_completes(db: Pool, harness: FunctionsHarness) -> None:
    await harness.deliver("work-items", sb_message(b"{not json", message_id="bad-1", delivery_count=1))
    rows = await dead_letters(db)
    assert len(rows) == 1
    row = rows[0]
    assert (row["source"], row["queue"], row["message_id"], row["reason"]) == (
        "poison",
        "work-items",
        "bad-1",
        "PoisonMessage",
    )
    assert row["body"] == {"raw": "{not json"}
    assert "not JSON" in row["description"]


async def test_work_done_for_a_missing_run_is_poison(db: Pool, harness: FunctionsHarness) -> None:
    body = {
        "type": "WORK_DONE",
        "feed": "nivoda-natural",
        "run_id": str(uuid.uuid4()),
        "trace_id": "t",
        "partition_id": "p",
        "worker_id": "w",
        "status": "success",
        "records_processed": 1,
    }
    await harness.deliver("work-done", sb_message(json.dumps(body).encode(), message_id="wd-1"))
    rows = await dead_letters(db)
    assert [(r["source"], r["queue"]) for r in rows] == [("poison", "work-done")]
    assert "does not exist" in rows[0]["description"]


async def test_a_transient_failure_raises_for_redelivery_and_the_redelivery_completes_the_page(
    db: Pool, harness: FunctionsHarness
) -> None:
    await harness.tick()
    first = harness.servicebus.take()
    assert {s.queue for s in first} == {"work-items"}
    item = first[0]
    harness.servicebus.failing = True
    with pytest.raises(ConnectionError):
        await harness.deliver("work-items", functions_message(item, delivery_count=1))
    harness.servicebus.failing = False
    await harness.deliver("work-items", functions_message(item, delivery_count=2))
    follow_up = harness.servicebus.take()
    assert len(follow_up) == 1, "the redelivery sent the follow-up the failed send lost"
    run_id = json.loads(item.body)["run_id"]
    partition_id = json.loads(item.body)["partition_id"]
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT pages FROM partition_progress WHERE run_id = %s AND partition_id = %s", (run_id, partition_id)
        )
        assert await cur.fetchone() == (1,), "the page was stored once"
    assert await dead_letters(db) == []


async def test_a_feed_outage_is_redelivered_and_only_the_last_delivery_fails_the_partition(
    db: Pool, harness: FunctionsHarness, azure_simulator: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.tick()
    item = harness.servicebus.take()[0]
    body = json.loads(item.body)
    monkeypatch.setattr(harness.container.feed, "_max_retries", 0)
    await sim_control(azure_simulator, "config", {"error_rate": 1.0})
    try:
        with pytest.raises(FeedTransientError):
            await harness.deliver("work-items", functions_message(item, delivery_count=1))
        status = "SELECT status FROM partition_progress WHERE run_id = %s AND partition_id = %s"
        async with db.connection() as conn:
            cur = await conn.execute(status, (body["run_id"], body["partition_id"]))
            assert await cur.fetchone() == ("running",), (
                "a delivery that is not the last leaves the page to Service Bus"
            )
        last = harness.container.settings.bus_max_delivery_count
        await harness.deliver("work-items", functions_message(item, delivery_count=last))
    finally:
        await sim_control(azure_simulator, "config", {"error_rate": 0.0})
    async with db.connection() as conn:
        cur = await conn.execute(status, (body["run_id"], body["partition_id"]))
        assert await cur.fetchone() == ("failed",)


async def test_the_timer_starts_the_orchestration_before_the_first_work_item(harness: FunctionsHarness) -> None:
    await harness.tick()
    sent = harness.servicebus.take()
    run_id = json.loads(sent[0].body)["run_id"]
    assert run_id in harness.engine.instances, "the orchestration exists once work items are out"
    async with harness.container.pool.connection() as conn:
        run = await load_run(conn, uuid.UUID(run_id))
    assert run.status == "ingesting"
    assert len(sent) == run.expected_partitions


# The scheduler's tick recovers runs, and so does the watchdog, which does not wait hours for the next tick.
RECOVERING_TIMERS = ["scheduler_timer", "fanin_watchdog"]


async def fire(harness: FunctionsHarness, timer: str) -> None:
    await (harness.tick() if timer == "scheduler_timer" else harness.watchdog())


@pytest.mark.parametrize("timer", RECOVERING_TIMERS)
async def test_the_timers_launch_a_run_a_dead_process_left_planned(harness: FunctionsHarness, timer: str) -> None:
    await harness.tick()
    first = harness.servicebus.take()
    run_id = json.loads(first[0].body)["run_id"]
    # As if the process had died after recording the run, before its orchestration and work items.
    del harness.engine.instances[run_id]
    async with harness.container.pool.connection() as conn:
        await conn.execute("UPDATE run_metadata SET status = 'planned', updated_at = now() - interval '3 minutes'")
    await fire(harness, timer)
    again = harness.servicebus.take()
    assert run_id in harness.engine.instances
    assert {s.message.message_id for s in again} == {s.message.message_id for s in first}
    async with harness.container.pool.connection() as conn:
        run = await load_run(conn, uuid.UUID(run_id))
        cur = await conn.execute("SELECT count(*) FROM run_metadata")
        assert await cur.fetchone() == (1,), "the abandoned run was launched, not a second one started"
    assert run.status == "ingesting"


async def test_work_done_restarts_a_lost_orchestration_of_an_ingesting_run(harness: FunctionsHarness) -> None:
    await harness.tick()
    sent = harness.servicebus.take()
    run_id = json.loads(sent[0].body)["run_id"]
    del harness.engine.instances[run_id]  # purged, or never started by an old version
    done = {
        "type": "WORK_DONE",
        "feed": "nivoda-natural",
        "run_id": run_id,
        "trace_id": json.loads(sent[0].body)["trace_id"],
        "partition_id": json.loads(sent[0].body)["partition_id"],
        "worker_id": "w",
        "status": "success",
        "records_processed": 3,
    }
    await harness.deliver("work-done", sb_message(json.dumps(done).encode(), message_id="wd-2"))
    instance = harness.engine.instances[run_id]
    raised = [e for e in instance.inbox if e.get("Name") == PARTITION_DONE]
    assert len(raised) == 1
    assert json.loads(raised[0]["Input"])["partition_id"] == done["partition_id"]


async def test_a_dead_lettered_message_is_recorded_from_the_sub_queue(db: Pool, harness: FunctionsHarness) -> None:
    body = {"type": "CONSOLIDATE", "feed": "nivoda-natural", "run_id": str(uuid.uuid4()), "trace_id": "t"}
    message = sb_message(
        json.dumps(body).encode(),
        message_id="consolidate:x:normal",
        delivery_count=3,
        dead_letter_reason="MaxDeliveryCountExceeded",
        dead_letter_error_description="Message could not be consumed after 3 delivery attempts.",
        application_properties={"type": "CONSOLIDATE"},
    )
    assert indexed()["deadletters_consolidate"]
    await user_function("deadletters_consolidate")(msg=message)
    rows = await dead_letters(db)
    assert rows == [
        {
            "source": "servicebus",
            "queue": "consolidate",
            "message_id": "consolidate:x:normal",
            "body": body,
            "reason": "MaxDeliveryCountExceeded",
            "description": "Message could not be consumed after 3 delivery attempts.",
            "delivery_count": 3,
        }
    ]
    async with db.connection() as conn:
        cur = await conn.execute("SELECT kind FROM alerts")
        assert await cur.fetchall() == [("dead_letter",)]


async def test_the_api_runs_through_the_asgi_function_with_the_request_s_durable_client(
    harness: FunctionsHarness,
) -> None:
    import function_app

    api = function_app.app.middleware._app
    seen: list[str] = []
    if not any(getattr(r, "path", "") == "/api/_test/durable" for r in api.routes):

        @api.get("/api/_test/durable")  # type: ignore[untyped-decorator]
        async def probe() -> dict[str, str]:
            client = current_client()
            seen.append(type(client).__name__)
            return {"hub": client._orchestration_bindings.task_hub_name}  # type: ignore[attr-defined]

    http = user_function("http_app_func")
    health = await http(
        req=func.HttpRequest("GET", "http://localhost/api/health", body=b""),
        context=FakeContext("http_app_func"),
        client=harness.client_binding,
    )
    assert health.status_code == 200
    assert json.loads(health.get_body())["database"] == "ok"
    probe_response = await http(
        req=func.HttpRequest("GET", "http://localhost/api/_test/durable", body=b""),
        context=FakeContext("http_app_func"),
        client=harness.client_binding,
    )
    assert probe_response.status_code == 200
    assert json.loads(probe_response.get_body()) == {"hub": "OpusTests"}
    assert runtime is not None


NUL_ESCAPE = '{"type": "WORK_ITEM", "partition_id": "p\\u0000"}'


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        (NUL_ESCAPE.encode(), {"raw": NUL_ESCAPE}),
        (b"\x00\x01\xff", {"raw": "\ufffd\x01\ufffd"}),
    ],
    ids=["json-nul-escape", "binary-nul-byte"],
)
async def test_a_body_postgresql_cannot_hold_as_it_is_is_still_recorded(
    db: Pool, harness: FunctionsHarness, body: bytes, stored: dict[str, str]
) -> None:
    """PostgreSQL's text and jsonb refuse U+0000: recording such a message failed, so the poison path
    raised (redelivery) and the dead-letter sub-queue's trigger failed on every delivery, for good."""
    await harness.deliver("work-items", sb_message(body, message_id="nul-1"))
    dead_lettered = sb_message(
        body,
        message_id="nul\x00-2",
        delivery_count=5,
        dead_letter_reason="MaxDeliveryCountExceeded",
        dead_letter_error_description="after 5\x00 attempts",
        application_properties={"run_id": "r\x00"},
    )
    await user_function("deadletters_work_items")(msg=dead_lettered)
    rows = await dead_letters(db)
    assert [(r["source"], r["message_id"], r["body"]) for r in rows] == [
        ("poison", "nul-1", stored),
        ("servicebus", "nul\ufffd-2", stored),
    ]
    assert rows[1]["description"] == "after 5\ufffd attempts"
    async with db.connection() as conn:
        cur = await conn.execute("SELECT application_properties FROM dead_letters WHERE source = 'servicebus'")
        assert await cur.fetchone() == ({"run_id": "r\ufffd"},)


@pytest.mark.parametrize("timer", RECOVERING_TIMERS)
async def test_the_timers_restart_the_orchestration_of_a_run_whose_fan_in_gave_up(
    db: Pool, harness: FunctionsHarness, monkeypatch: pytest.MonkeyPatch, timer: str
) -> None:
    """Every partition reported while the database refused the decision: the orchestration failed after
    its activity retries, and with no report left to come, the run stayed ingesting (its feed blocked)."""
    clock = VirtualClock(datetime.now(UTC))
    harness.engine.now = clock

    async def refused(container: Any, payload: dict[str, Any]) -> bool:
        raise ConnectionError("the database is failing over")

    applied = orchestrator.apply_run_decision
    monkeypatch.setattr(orchestrator, "apply_run_decision", refused)
    await harness.tick()
    run_id = json.loads(harness.servicebus.outbox[0].body)["run_id"]
    for _ in range(5):
        await harness.drain()
        clock.advance(timedelta(minutes=2))  # the activity's retry timers
    instance = harness.engine.instances[run_id]
    assert instance.runtime_status == "Failed", "the orchestration ran out of activity retries"
    monkeypatch.setattr(orchestrator, "apply_run_decision", applied)  # the database is back
    await fire(harness, timer)
    await harness.drain()
    async with db.connection() as conn:
        run = await load_run(conn, uuid.UUID(run_id))
    assert run.status == "completed"
    assert harness.engine.instances[run_id].output["status"] == "completed"


async def test_requests_the_bridge_could_not_take_are_answered_like_uvicorn_answers_them(
    harness: FunctionsHarness,
) -> None:
    """The bridge decoded the path as strict UTF-8 and parsed the URL's port, and the invocation failed
    (a 500 from the host) on `/api/%FF` or a port out of range; uvicorn replaces what does not decode."""
    http = user_function("http_app_func")
    responses = [
        await http(
            req=func.HttpRequest(method, url, body=b"", headers={"x-probe": "1"}),
            context=FakeContext("http_app_func"),
            client=harness.client_binding,
        )
        for method, url in (
            ("GET", "http://localhost/api/v2/diamonds/%FF%FE?q=%FF"),
            ("HEAD", "http://localhost/api/health/%C3"),
            ("GET", "http://localhost/api/%ff"),
            ("GET", "http://localhost:99999/api/health"),
            ("GET", "http://[::1]:port/api/health"),
        )
    ]
    # A query parameter the operation does not take is named before credentials are asked for.
    assert [r.status_code for r in responses] == [422, 404, 404, 200, 200]
    assert json.loads(responses[0].get_body())["error"]["details"][0]["parameter"] == "q"


async def test_a_message_failing_on_every_delivery_is_dead_lettered_with_its_failure(
    db: Pool, harness: FunctionsHarness
) -> None:
    """Service Bus dead-letters it with 'could not be consumed after 5 delivery attempts'; the letter
    also says what the deliveries raised (the local bus's letters already did)."""
    await harness.tick()
    item = harness.servicebus.take()[0]
    harness.servicebus.failing = True  # the page is stored, its follow-up can never be sent
    for count in range(1, 6):
        with pytest.raises(ConnectionError):
            await harness.deliver("work-items", functions_message(item, delivery_count=count))
    sent = functions_message(item, delivery_count=5)
    dead_lettered = sb_message(
        sent.get_body(),
        message_id=sent.message_id,
        delivery_count=5,
        dead_letter_reason="MaxDeliveryCountExceeded",
        dead_letter_error_description="Message could not be consumed after 5 delivery attempts.",
        application_properties=dict(sent.application_properties),
    )
    await user_function("deadletters_work_items")(msg=dead_lettered)
    rows = await dead_letters(db)
    assert [(r["source"], r["message_id"], r["reason"]) for r in rows] == [
        ("servicebus", sent.message_id, "MaxDeliveryCountExceeded")
    ]
    assert rows[0]["description"] == (
        "Message could not be consumed after 5 delivery attempts.; "
        "delivery 5 failed: ConnectionError: Service Bus is unreachable"
    )
    async with db.connection() as conn:
        cur = await conn.execute("SELECT source, code, run_id::text FROM error_records")
        failures = await cur.fetchall()
    assert failures == [("bus", "delivery_failed", json.loads(item.body)["run_id"])] * 5


async def test_a_failure_to_record_the_failed_delivery_leaves_the_delivery_s_own_error(
    harness: FunctionsHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(conn: Any, records: Any) -> None:
        raise OSError("the database is gone too")

    monkeypatch.setattr("shared.bus.inbound.record_errors", refused)
    await harness.tick()
    item = harness.servicebus.take()[0]
    harness.servicebus.failing = True
    with pytest.raises(ConnectionError, match="Service Bus is unreachable"):
        await harness.deliver("work-items", functions_message(item, delivery_count=1))


async def test_a_consolidation_outlasting_its_budget_hands_over_to_a_new_message_before_the_timeout(
    db: Pool, harness: FunctionsHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At functionTimeout the host restarts the worker process, killing every invocation on it; the
    consolidate message then came back at most 3 times, then was dead-lettered and requested again only
    by the stall watch. Now an invocation that made progress stops within its budget and hands over."""
    import consolidator.blueprint as consolidator_blueprint
    import consolidator.service as consolidator_service

    real = consolidator_service.finalise
    calls = 0

    async def slow_the_first_time(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # every raw row is consolidated by now; then the invocation runs out of time
            await asyncio.sleep(30)
            raise AssertionError("the budget did not stop the consolidation")
        return await real(*args, **kwargs)

    monkeypatch.setattr(consolidator_service, "finalise", slow_the_first_time)
    monkeypatch.setattr(consolidator_blueprint, "CONSOLIDATION_BUDGET", timedelta(seconds=5))
    await harness.tick()
    await harness.drain()
    consolidations = [message_id for queue, message_id in harness.delivered if queue == "consolidate"]
    first = consolidations[0]
    assert consolidations[1].startswith(f"{first}:r"), consolidations
    async with db.connection() as conn:
        cur = await conn.execute("SELECT feed, status FROM run_metadata ORDER BY started_at")
        assert await cur.fetchall() == [("nivoda-natural", "completed"), ("nivoda-labgrown", "completed")]
    assert await dead_letters(db) == []


async def test_a_consolidation_that_made_no_progress_in_its_budget_fails_the_delivery(
    db: Pool, harness: FunctionsHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handing over without progress would go round for good; the delivery fails instead, and the
    queue's MaxDeliveryCount (then the stall watch) bounds it as before."""
    import consolidator.blueprint as consolidator_blueprint

    async def stuck(container: Any, body: Any) -> Any:
        await asyncio.sleep(30)
        raise AssertionError("the budget did not stop the consolidation")

    monkeypatch.setattr(consolidator_blueprint, "handle_consolidate", stuck)
    monkeypatch.setattr(consolidator_blueprint, "CONSOLIDATION_BUDGET", timedelta(seconds=0.05))
    await harness.tick()
    with pytest.raises(TimeoutError):
        await harness.drain()
    assert [s.queue for s in harness.servicebus.outbox] == [], "nothing handed over"


BAD_BODIES = {
    "not-json": (b"{not json", "not JSON"),
    "not-an-object": (b"[1, 2]", "valid dictionary"),
    "unknown-type": (b'{"type": "REFUND", "run_id": "x"}', "does not match any of the expected tags"),
    "missing-fields": (b'{"type": "CONSOLIDATE"}', "Field required"),
    "wrong-types": (
        b'{"type": "CONSOLIDATE", "feed": 7, "run_id": "not-a-uuid", "trace_id": ""}',
        "valid UUID",
    ),
    "huge": (b'{"type": "CONSOLIDATE", "pad": "' + b"x" * 2_000_000 + b'"}', "Extra inputs are not permitted"),
}


@pytest.mark.parametrize("queue", ["work-items", "work-done", "consolidate"])
@pytest.mark.parametrize("kind", list(BAD_BODIES))
async def test_bad_input_on_each_queue_is_a_dead_letter_with_its_reason(
    db: Pool, harness: FunctionsHarness, queue: str, kind: str
) -> None:
    body, reason = BAD_BODIES[kind]
    await harness.deliver(queue, sb_message(body, message_id=f"bad-{kind}"))
    rows = await dead_letters(db)
    assert [(r["source"], r["queue"], r["message_id"], r["reason"]) for r in rows] == [
        ("poison", queue, f"bad-{kind}", "PoisonMessage")
    ]
    assert reason in rows[0]["description"]
    assert harness.servicebus.outbox == []


async def test_the_retention_timer_prunes_old_records(db: Pool, harness: FunctionsHarness) -> None:
    async with db.connection() as conn:
        for days in (200, 1):
            await conn.execute(
                """INSERT INTO error_records (source, code, message, occurred_at)
                   VALUES ('worker', 'malformed_item', %s, now() - make_interval(days => %s))""",
                (f"{days} days old", days),
            )
    assert indexed()["retention_prune"]
    await user_function("retention_prune")(timer=TimerRequest(past_due=False))
    async with db.connection() as conn:
        cur = await conn.execute("SELECT message FROM error_records")
        assert [row[0] for row in await cur.fetchall()] == ["1 days old"]
