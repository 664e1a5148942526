"""Operations over HTTP: runs (filters incl. stalled), run detail with partitions and fan-in state,
triggers through the pipeline's services, dead letters, watermarks, error records; and analytics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from feedsim.embed import ThreadedSimulator, start_in_thread
from feedsim.simulator import InventorySpec
from shared.settings import Settings
from tests.api.catalogue import insert, stone
from tests.api.conftest import Keys, served_client
from tests.conftest import make_settings

NOW = datetime.now(UTC)


def add_run(conn: psycopg.Connection[Any], partitions: tuple[str, ...] = ("completed", "failed"), **values: Any) -> str:
    run: dict[str, Any] = {
        "feed": "nivoda-natural",
        "run_type": "full",
        "status": "ingesting",
        "status_reason": None,
        "trace_id": "trace",
        "updated_from": datetime(2000, 1, 1, tzinfo=UTC),
        "updated_to": NOW,
        "expected_partitions": 2,
        "estimated_records": 100,
        "started_at": NOW - timedelta(minutes=10),
        "last_progress_at": NOW,
        "completed_at": None,
        "watermark_advanced": False,
        **values,
    }
    columns = ", ".join(run)
    row = conn.execute(
        f"INSERT INTO run_metadata ({columns}) VALUES ({', '.join(['%s'] * len(run))}) RETURNING run_id::text",
        list(run.values()),
    ).fetchone()
    assert row is not None
    run_id: str = row[0]
    for position, status in enumerate(partitions):
        conn.execute(
            """INSERT INTO partition_progress (run_id, partition_id, position, min_price, max_price,
                   estimated_records, status, next_offset, records_seen, error, completed_at)
               VALUES (%s, %s, %s, %s, %s, 50, %s, %s, %s, %s, %s)""",
            (
                run_id,
                f"p{position}",
                position,
                Decimal(position * 1000),
                Decimal(position * 1000 + 999),
                status,
                40,
                40,
                "page 2 failed: timeout" if status == "failed" else None,
                NOW if status == "completed" else None,
            ),
        )
    return run_id


@pytest.fixture
def runs(db: Any, sync_db: psycopg.Connection[Any]) -> dict[str, str]:
    stalled = add_run(sync_db, last_progress_at=NOW - timedelta(hours=2), partitions=("completed", "failed"))
    done = add_run(
        sync_db,
        feed="nivoda-labgrown",
        run_type="incremental",
        status="completed",
        completed_at=NOW,
        started_at=NOW - timedelta(minutes=5),
        watermark_advanced=True,
        partitions=("completed", "completed"),
    )
    failed = add_run(
        sync_db,
        status="failed",
        status_reason="stalled: no progress for 31 min",
        completed_at=NOW,
        started_at=NOW - timedelta(days=1),
    )
    skipped = add_run(
        sync_db, feed="nivoda-labgrown", status="skipped", completed_at=NOW, started_at=NOW - timedelta(days=2)
    )
    return {"stalled": stalled, "done": done, "failed": failed, "skipped": skipped}


def _read(keys: Keys) -> dict[str, str]:
    return {"X-API-Key": keys.read}


def _admin(keys: Keys) -> dict[str, str]:
    return {"X-API-Key": keys.admin}


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {run["run_id"] for run in response.json()["data"]}


def test_run_list_and_filters(runs: dict[str, str], http: httpx.Client, keys: Keys) -> None:
    everything = http.get("/api/v2/runs", headers=_read(keys))
    assert _ids(everything) == set(runs.values())
    by_id = {run["run_id"]: run for run in everything.json()["data"]}
    stalled = by_id[runs["stalled"]]
    assert (stalled["status"], stalled["state"]) == ("ingesting", "stalled")
    assert (stalled["completed_partitions"], stalled["failed_partitions"], stalled["records_fetched"]) == (1, 1, 80)
    assert by_id[runs["done"]]["state"] == "completed"
    assert _ids(http.get("/api/v2/runs", params={"status": "stalled"}, headers=_read(keys))) == {
        runs["stalled"],
        runs["failed"],
    }
    assert _ids(http.get("/api/v2/runs", params={"status": "active"}, headers=_read(keys))) == {runs["stalled"]}
    assert _ids(http.get("/api/v2/runs", params={"feed": "nivoda-labgrown"}, headers=_read(keys))) == {
        runs["done"],
        runs["skipped"],
    }
    assert _ids(http.get("/api/v2/runs", params={"type": "incremental"}, headers=_read(keys))) == {runs["done"]}
    assert _ids(http.get("/api/v2/runs", params={"limit": 1, "offset": 1}, headers=_read(keys))) == {runs["stalled"]}
    bad = http.get("/api/v2/runs", params={"status": "asleep"}, headers=_read(keys))
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["parameter"] == "status"


def test_run_detail_has_partitions_and_fan_in_state(runs: dict[str, str], http: httpx.Client, keys: Keys) -> None:
    response = http.get(f"/api/v2/runs/{runs['stalled']}", headers=_read(keys))
    assert response.status_code == 200, response.text
    run = response.json()["data"]
    assert [(p["partition_id"], p["status"], p["next_offset"]) for p in run["partitions"]] == [
        ("p0", "completed", 40),
        ("p1", "failed", 40),
    ]
    assert run["partitions"][1]["error"] == "page 2 failed: timeout"
    assert run["partitions"][1]["max_price"] == "1999.00"
    assert run["fan_in"]["next_action"] == "skip"
    assert (run["fan_in"]["completed"], run["fan_in"]["failed"], run["fan_in"]["open"]) == (1, 1, 0)
    assert http.get(f"/api/v2/runs/{uuid.uuid4()}", headers=_read(keys)).status_code == 404
    assert http.get("/api/v2/runs/nope", headers=_read(keys)).status_code == 422


def test_a_run_says_how_many_of_the_stones_it_fetched_had_changed(
    runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    """Only changed payloads are queued for consolidation: a run over unchanged stones fetches many
    and consolidates none, and its summary says so (records_changed, summed over its partitions)."""
    sync_db.execute(
        "UPDATE partition_progress SET records_changed = 15 WHERE run_id = %s AND partition_id = 'p0'",
        (runs["done"],),
    )
    detail = http.get(f"/api/v2/runs/{runs['done']}", headers=_read(keys)).json()["data"]
    assert (detail["records_fetched"], detail["records_changed"]) == (80, 15)
    assert [p["records_changed"] for p in detail["partitions"]] == [15, 0]
    listed = {run["run_id"]: run for run in http.get("/api/v2/runs", headers=_read(keys)).json()["data"]}
    assert (listed[runs["done"]]["records_changed"], listed[runs["stalled"]]["records_changed"]) == (15, 0)
    schema = http.get("/api/v2/openapi.json").json()["components"]["schemas"]["RunSummary"]
    assert "consolidation" in schema["properties"]["records_changed"]["description"]


def test_a_run_gives_the_feed_clock_reading_it_was_planned_with(
    runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    """The scheduler stores the feed clock's lag in the run's heatmap; the run says it, and whether it
    widened the window (an incremental run from a watermark, a lag of at least the Date resolution)."""
    readings = {
        # the window reached back
        "done": ("incremental", {"lag_s": 603.4, "beyond_safety_buffer": True, "safety_buffer_s": 600.0}),
        "failed": ("full", {"lag_s": 603.4, "beyond_safety_buffer": True}),  # a full window is not affected
        "skipped": ("incremental", {"lag_s": 1.3, "beyond_safety_buffer": False}),  # within the Date resolution
    }
    for name, (run_type, reading) in readings.items():
        sync_db.execute(
            """UPDATE run_metadata SET heatmap = jsonb_build_object('total', 0, 'feed_clock', %s::jsonb),
                   run_type = %s, watermark_before = %s WHERE run_id = %s""",
            (json.dumps(reading), run_type, NOW - timedelta(hours=1), runs[name]),
        )
    expected = {
        runs["done"]: {"lag_s": 603.4, "beyond_safety_buffer": True, "safety_buffer_s": 600.0, "added_to_window": True},
        # Runs planned before the buffer was recorded say null.
        runs["failed"]: {
            "lag_s": 603.4,
            "beyond_safety_buffer": True,
            "safety_buffer_s": None,
            "added_to_window": False,
        },
        runs["skipped"]: {
            "lag_s": 1.3,
            "beyond_safety_buffer": False,
            "safety_buffer_s": None,
            "added_to_window": False,
        },
        runs["stalled"]: None,  # no reading: an older run, or a feed without a Date header
    }
    listed = http.get("/api/v2/runs", headers=_read(keys)).json()["data"]
    assert {run["run_id"]: run["feed_clock"] for run in listed} == expected
    for run_id, clock in expected.items():
        assert http.get(f"/api/v2/runs/{run_id}", headers=_read(keys)).json()["data"]["feed_clock"] == clock
    schemas = http.get("/api/v2/openapi.json").json()["components"]["schemas"]
    assert "feed_clock" in schemas["RunSummary"]["properties"]
    assert set(schemas["FeedClock"]["required"]) == {
        "lag_s",
        "beyond_safety_buffer",
        "safety_buffer_s",
        "added_to_window",
    }


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({}, None),  # keys missing: not a reading
        (None, None),  # a JSON null
        ({"lag_s": None, "beyond_safety_buffer": True}, None),
        ({"lag_s": "603", "beyond_safety_buffer": True}, None),
        ({"lag_s": 603.4}, None),
        ("603.4", None),
        ([603.4, True], None),
        ({"lag_s": 603.4, "beyond_safety_buffer": True, "safety_buffer_s": -600}, None),
        ({"lag_s": 603.4, "beyond_safety_buffer": True, "safety_buffer_s": "600"}, None),
        (
            {"lag_s": -45.5, "beyond_safety_buffer": False},
            {"lag_s": -45.5, "beyond_safety_buffer": False, "safety_buffer_s": None, "added_to_window": False},
        ),
        (
            {"lag_s": 1e300, "beyond_safety_buffer": True},
            {"lag_s": 1e300, "beyond_safety_buffer": True, "safety_buffer_s": None, "added_to_window": True},
        ),
        (
            {"lag_s": -1e300, "beyond_safety_buffer": False},
            {"lag_s": -1e300, "beyond_safety_buffer": False, "safety_buffer_s": None, "added_to_window": False},
        ),
        (
            {"lag_s": 9e12, "beyond_safety_buffer": True, "note": "extra"},
            {"lag_s": 9e12, "beyond_safety_buffer": True, "safety_buffer_s": None, "added_to_window": True},
        ),
    ],
)
def test_an_odd_stored_feed_clock_reading_never_fails_the_runs_api(
    stored: Any, expected: Any, runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    """A reading that is not one (keys missing, wrong types) is reported as unmeasured; a lag beyond
    what a timedelta holds still says it widened an incremental window from a watermark."""
    sync_db.execute(
        """UPDATE run_metadata SET heatmap = jsonb_build_object('total', 0, 'feed_clock', %s::jsonb),
               run_type = 'incremental', watermark_before = %s WHERE run_id = %s""",
        (json.dumps(stored), NOW - timedelta(hours=1), runs["done"]),
    )
    listed = http.get("/api/v2/runs", headers=_read(keys))
    assert listed.status_code == 200, listed.text
    assert {run["run_id"]: run["feed_clock"] for run in listed.json()["data"]}[runs["done"]] == expected
    detail = http.get(f"/api/v2/runs/{runs['done']}", headers=_read(keys))
    assert detail.status_code == 200, detail.text
    assert detail.json()["data"]["feed_clock"] == expected


def _messages(conn: psycopg.Connection[Any], queue: str) -> list[dict[str, Any]]:
    return [row[0] for row in conn.execute("SELECT body FROM bus_messages WHERE queue = %s", (queue,)).fetchall()]


def test_triggers_call_the_pipeline_services(
    runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    assert http.post(f"/api/v2/runs/{runs['stalled']}/retry", headers=_read(keys)).status_code == 403
    retried = http.post(f"/api/v2/runs/{runs['stalled']}/retry", json={"partition_id": "p1"}, headers=_admin(keys))
    assert retried.status_code == 202, retried.text
    assert retried.json()["data"]["retried"] == ["p1"]
    work = _messages(sync_db, "work-items")
    assert [(m["partition_id"], m["offset"]) for m in work] == [("p1", 40)]
    again = http.post(f"/api/v2/runs/{runs['stalled']}/retry", headers=_admin(keys))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    cancelled = http.post(f"/api/v2/runs/{runs['stalled']}/cancel", json={"reason": "test"}, headers=_admin(keys))
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["data"]["state"], cancelled.json()["data"]["status_reason"]) == ("cancelled", "test")

    assert http.post(f"/api/v2/runs/{runs['done']}/consolidate", headers=_admin(keys)).status_code == 409
    forced = http.post(f"/api/v2/runs/{runs['skipped']}/consolidate", headers=_admin(keys))
    assert forced.status_code == 202, forced.text
    assert forced.json()["data"]["forced"] is True
    assert [m["run_id"] for m in _messages(sync_db, "consolidate")] == [runs["skipped"]]
    assert http.post(f"/api/v2/runs/{uuid.uuid4()}/cancel", headers=_admin(keys)).status_code == 404


def test_starting_a_run_for_a_busy_feed_is_409(runs: dict[str, str], http: httpx.Client, keys: Keys) -> None:
    busy = http.post("/api/v2/runs", json={"feed": "nivoda-natural"}, headers=_admin(keys))
    assert busy.status_code == 409
    assert "active run" in busy.json()["error"]["message"]
    unknown = http.post("/api/v2/runs", json={"feed": "nivoda-moon"}, headers=_admin(keys))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["parameter"] == "feed"


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedSimulator]:
    sim = start_in_thread(InventorySpec(seed=3, stones=600))
    yield sim
    sim.stop()


def test_start_run_plans_partitions_and_sends_work(
    db: Any, simulator: ThreadedSimulator, database_url: str, tmp_path: Any, sync_db: psycopg.Connection[Any]
) -> None:
    settings: Settings = make_settings(
        database_url,
        tmp_path,
        nivoda_endpoint=simulator.endpoint,
        nivoda_rate_limit_scope="process",
        nivoda_rate_limit_per_s=10_000,
        min_records_per_worker=50,
    )
    with served_client(settings, database_url, name="ops", scope="admin") as (client, headers):
        response = client.post("/api/v2/runs", json={"feed": "nivoda-natural", "run_type": "full"}, headers=headers)
    assert response.status_code == 202, response.text
    run = response.json()["data"]
    assert (run["feed"], run["run_type"], run["state"], run["requested_by"]) == (
        "nivoda-natural",
        "full",
        "ingesting",
        "api:ops",
    )
    assert run["expected_partitions"] >= 1
    assert len(_messages(sync_db, "work-items")) == run["expected_partitions"]


def test_dead_letters_list_and_replay_once(
    db: Any, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    row = sync_db.execute(
        """INSERT INTO dead_letters (source, queue, message_id, body, reason, delivery_count)
           VALUES ('local', 'consolidate', 'm-1', %s, 'MaxDeliveryCountExceeded', 5) RETURNING id""",
        (json.dumps({"feed": "nivoda-natural", "run_id": str(uuid.uuid4()), "trace_id": "t"}),),
    ).fetchone()
    assert row is not None
    letters = http.get("/api/v2/dead-letters", headers=_read(keys)).json()["data"]
    assert [(d["id"], d["reason"], d["replayed_at"]) for d in letters] == [(row[0], "MaxDeliveryCountExceeded", None)]
    assert http.post(f"/api/v2/dead-letters/{row[0]}/replay", headers=_read(keys)).status_code == 403
    replayed = http.post(f"/api/v2/dead-letters/{row[0]}/replay", headers=_admin(keys))
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["data"]["replay_message_id"] == f"m-1:replay-{row[0]}"
    assert len(_messages(sync_db, "consolidate")) == 1
    assert http.post(f"/api/v2/dead-letters/{row[0]}/replay", headers=_admin(keys)).status_code == 409
    assert http.get("/api/v2/dead-letters", headers=_read(keys)).json()["data"] == []
    assert len(http.get("/api/v2/dead-letters?include_replayed=true", headers=_read(keys)).json()["data"]) == 1
    assert http.post("/api/v2/dead-letters/999999/replay", headers=_admin(keys)).status_code == 404


def _page_letter(sync_db: psycopg.Connection[Any], run_id: str, *, attempt: int) -> int:
    """A work item of partition p1 (offset 40) dead-lettered for its time-to-live, as after `opus run`
    was stopped for more than an hour."""
    body = {
        "type": "WORK_ITEM",
        "feed": "nivoda-natural",
        "run_id": run_id,
        "run_type": "full",
        "trace_id": "trace",
        "partition_id": "p1",
        "min_price": "1000",
        "max_price": "1999",
        "estimated_records": 50,
        "offset": 40,
        "limit": 30,
        "attempt": attempt,
        "updated_from": "2000-01-01T00:00:00Z",
        "updated_to": NOW.isoformat(),
    }
    row = sync_db.execute(
        """INSERT INTO dead_letters (source, queue, message_id, body, reason, description, delivery_count)
           VALUES ('local', 'work-items', %s, %s, 'TTLExpiredException', 'The message expired', 0) RETURNING id""",
        (f"{run_id}:p1:40", json.dumps(body)),
    ).fetchone()
    assert row is not None
    letter: int = row[0]
    return letter


def test_replaying_a_page_the_worker_would_ignore_is_refused_naming_the_way_out(
    runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    """A page dead-lettered for its time-to-live belongs to a run that has usually stalled meanwhile
    (RUN_STALL_MINUTES is shorter than the hour): the worker ignores a page of a run that no longer
    ingests, or of an attempt a retry superseded. The replay said "replayed" and changed nothing;
    it is refused instead (the letter stays), naming what resumes the run."""
    run_id = runs["failed"]
    letter = _page_letter(sync_db, run_id, attempt=1)
    refused = http.post(f"/api/v2/dead-letters/{letter}/replay", headers=_admin(keys))
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert f"a page of run {run_id}, which is failed (stalled: no progress" in message
    assert f"opus retry {run_id}" in message
    assert _messages(sync_db, "work-items") == []
    assert [d["id"] for d in http.get("/api/v2/dead-letters", headers=_read(keys)).json()["data"]] == [letter]

    # Retried since: the run ingests again under attempt 2, whose own pages are on the queue.
    sync_db.execute(
        "UPDATE run_metadata SET status = 'cancelled', completed_at = now() WHERE run_id = %s", (runs["stalled"],)
    )
    sync_db.execute("UPDATE run_metadata SET status = 'ingesting', completed_at = NULL WHERE run_id = %s", (run_id,))
    sync_db.execute("UPDATE partition_progress SET attempts = 2 WHERE run_id = %s", (run_id,))
    superseded = http.post(f"/api/v2/dead-letters/{letter}/replay", headers=_admin(keys))
    assert superseded.status_code == 409, superseded.text
    assert "attempt 1" in superseded.json()["error"]["message"]

    current = _page_letter(sync_db, run_id, attempt=2)
    replayed = http.post(f"/api/v2/dead-letters/{current}/replay", headers=_admin(keys))
    assert replayed.status_code == 202, replayed.text
    [sent] = _messages(sync_db, "work-items")
    assert (sent["run_id"], sent["attempt"]) == (run_id, 2)


def test_a_message_replayed_again_and_again_keeps_an_id_service_bus_takes(
    db: Any, http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    """A replay that dead-letters again is replayed under the original's id plus one suffix: appending
    a suffix per replay grew the id past Service Bus's 128 characters, and the send failed."""
    original = "work:" + "p" * 110
    body = json.dumps({"feed": "nivoda-natural", "run_id": str(uuid.uuid4()), "trace_id": "t"})
    message_id = f"{original}:replay-7"
    for _ in range(3):
        row = sync_db.execute(
            """INSERT INTO dead_letters (source, queue, message_id, body, reason, delivery_count)
               VALUES ('local', 'consolidate', %s, %s, 'MaxDeliveryCountExceeded', 5) RETURNING id""",
            (message_id, body),
        ).fetchone()
        assert row is not None
        replayed = http.post(f"/api/v2/dead-letters/{row[0]}/replay", headers=_admin(keys))
        assert replayed.status_code == 202, replayed.text
        message_id = replayed.json()["data"]["replay_message_id"]
        suffix = f":replay-{row[0]}"
        assert message_id.endswith(suffix)
        assert message_id.count(":replay-") == 1
        assert len(message_id) <= 128
        assert original.startswith(message_id.removesuffix(suffix))
    assert len(_messages(sync_db, "consolidate")) == 3


def test_watermarks_and_error_records(
    runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]
) -> None:
    sync_db.execute(
        "INSERT INTO watermarks (feed, last_updated_at, last_run_id) VALUES ('nivoda-labgrown', %s, %s)",
        (NOW, runs["done"]),
    )
    marks = {w["feed"]: w for w in http.get("/api/v2/watermarks", headers=_read(keys)).json()["data"]}
    assert marks["nivoda-labgrown"]["last_run_id"] == runs["done"]
    assert marks["nivoda-natural"]["last_updated_at"] is None
    sync_db.execute(
        """INSERT INTO error_records (source, code, message, run_id, feed, supplier_stone_id)
           VALUES ('consolidator', 'missing_image', 'no image', %s, 'nivoda-natural', 's-1'),
                  ('worker', 'page_failed', 'timeout', %s, 'nivoda-natural', NULL)""",
        (runs["stalled"], runs["stalled"]),
    )
    errors = http.get("/api/v2/errors", params={"source": "consolidator"}, headers=_read(keys)).json()["data"]
    assert [(e["code"], e["supplier_stone_id"]) for e in errors] == [("missing_image", "s-1")]
    assert len(http.get("/api/v2/errors", params={"run_id": runs["stalled"]}, headers=_read(keys)).json()["data"]) == 2


def test_analytics(runs: dict[str, str], http: httpx.Client, keys: Keys, sync_db: psycopg.Connection[Any]) -> None:
    insert(
        sync_db,
        [
            stone(shape="ROUND", carats=Decimal("1.20"), price_per_carat=Decimal("150.00")),
            stone(shape="ROUND", availability="sold", price_per_carat=Decimal("4500.00")),
            stone(shape="OVAL", lab_grown=True, carats=Decimal("0.40"), price_per_carat=Decimal("40000.00")),
            stone(shape="PEAR", status="deleted"),
        ],
    )
    inventory = http.get("/api/v2/analytics/inventory", headers=_read(keys))
    assert inventory.status_code == 200, inventory.text
    body = inventory.json()
    assert body["total"] == 3
    assert body["by_availability"] == {"available": 2, "on_hold": 0, "sold": 1, "unavailable": 0}
    assert body["by_shape"][0] == {"shape": "ROUND", "total": 2, "available": 1}
    assert body["by_origin"] == {"natural": {"total": 2, "available": 1}, "lab_grown": {"total": 1, "available": 1}}
    assert (
        http.get(
            "/api/v2/analytics/inventory", headers={**_read(keys), "If-None-Match": inventory.headers["etag"]}
        ).status_code
        == 304
    )
    labgrown = http.get("/api/v2/analytics/inventory", params={"feed": "nivoda-labgrown"}, headers=_read(keys))
    assert labgrown.json()["total"] == 1

    heatmap = http.get("/api/v2/analytics/price-per-carat", headers=_read(keys)).json()
    counts = {b["min_price_per_carat"]: b["count"] for b in heatmap["buckets"] if b["count"]}
    assert counts == {"100": 1, "4000": 1, "30000": 1}
    assert heatmap["total"] == 3
    assert heatmap["buckets"][-1]["max_price_per_carat"] is None
    band = [b["min_carats"] for b in heatmap["carat_bands"]].index("1")
    assert heatmap["cells"][1][band] == 1
    available = http.get("/api/v2/analytics/price-per-carat?availability=available", headers=_read(keys)).json()
    assert available["total"] == 2

    series = http.get("/api/v2/analytics/runs", params={"days": 7}, headers=_read(keys)).json()["data"]
    assert {r["run_id"] for r in series} == set(runs.values())
    stalled = next(r for r in series if r["run_id"] == runs["stalled"])
    assert stalled["records_fetched"] == 80
    assert stalled["throughput_per_s"] > 0
    progress = http.get("/api/v2/analytics/consolidation", headers=_read(keys)).json()["data"]
    assert {p["feed"]: p["live_diamonds"] for p in progress} == {"nivoda-labgrown": 1, "nivoda-natural": 2}
