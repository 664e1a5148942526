"""Each queue of the local bus behaves as shared/bus/servicebus_config.json declares it, as the emulator
and Azure queues do: its own lock duration, max delivery count and duplicate-detection window, and
messages that expire after the queue's default time-to-live (counted from a scheduled message's
scheduled time) and are dead-lettered with Service Bus's reason. Time moves by moving the rows."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from shared.bootstrap import local_bus
from shared.bus import queue_config
from shared.bus.local import LocalBus
from shared.bus.port import OutgoingMessage
from shared.bus.queue_config import EMULATOR_CONFIG, QueueConfigError, load_queue_properties, local_queue_properties
from shared.db.pool import Pool
from shared.settings import SettingsError, load_settings
from tests.bus.support import QUEUES, age, shipped_bus

ITEMS, DONE, CONSOLIDATE = QUEUES.all()
ROOT = Path(__file__).resolve().parents[2]
TTL_REASON = ("TTLExpiredException", "The message expired and was dead lettered.")


def to(queue: str, message_id: str, **extra: Any) -> OutgoingMessage:
    return OutgoingMessage(queue, message_id, {"n": message_id}, **extra)


def shipped_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(EMULATOR_CONFIG.read_text())
    return document


def queue_entry(document: dict[str, Any], name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = document["UserConfig"]["Namespaces"][0]["Queues"]
    [entry] = [q for q in entries if q["Name"] == name]
    return entry


def write_config(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    document = shipped_document()
    change(document)
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(document))
    return path


async def dead_letters(pool: Pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT queue, message_id, reason, description, delivery_count, source FROM dead_letters ORDER BY id"
        )
        return await cur.fetchall()


# --- per-queue lock, deliveries, duplicate detection ------------------------------------------------


async def test_each_queue_dead_letters_after_its_own_max_delivery_count(db: Pool) -> None:
    bus = shipped_bus(db)
    await bus.send([to(ITEMS, "page"), to(CONSOLIDATE, "merge")])
    deliveries: dict[str, int] = {}
    for queue in (ITEMS, CONSOLIDATE):
        while received := await bus.receive(queue):
            deliveries[queue] = received[0].delivery_count
            await bus.abandon(received[0])
    assert deliveries == {ITEMS: 5, CONSOLIDATE: 3}
    assert await bus.dead_letter_due() == 2
    assert [(q, m, reason, count) for q, m, reason, _, count, _ in await dead_letters(db)] == [
        (ITEMS, "page", "MaxDeliveryCountExceeded", 5),
        (CONSOLIDATE, "merge", "MaxDeliveryCountExceeded", 3),
    ]


async def test_each_queue_locks_and_renews_for_its_own_duration(db: Pool) -> None:
    bus = shipped_bus(db)
    await bus.send([to(queue, f"on-{queue}") for queue in QUEUES.all()])
    held = {queue: (await bus.receive(queue))[0] for queue in QUEUES.all()}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT queue, locked_until - now() FROM bus_messages")
        remaining = dict(await cur.fetchall())
    expected = {ITEMS: timedelta(minutes=2), DONE: timedelta(minutes=1), CONSOLIDATE: timedelta(minutes=5)}
    for queue, lock in expected.items():
        assert lock - timedelta(seconds=30) < remaining[queue] <= lock, queue
    # 61 s later only work-done's lock has expired; 2 minutes later work-items' too, not consolidate's.
    await age(db, timedelta(seconds=61))
    assert [m.delivery_count for m in await bus.receive(DONE)] == [2]
    assert await bus.receive(ITEMS) == []
    await age(db, timedelta(seconds=60))
    assert [m.delivery_count for m in await bus.receive(ITEMS)] == [2]
    assert await bus.receive(CONSOLIDATE) == []
    # A renewal extends consolidate's lock by its own 5 minutes.
    renewed = await bus.renew_lock(held[CONSOLIDATE])
    async with db.connection() as conn:
        cur = await conn.execute("SELECT %s - now()", (renewed,))
        row = await cur.fetchone()
    assert row is not None
    assert timedelta(minutes=4, seconds=30) < row[0] <= timedelta(minutes=5)


async def test_each_queue_detects_duplicates_within_its_own_window(db: Pool, tmp_path: Path) -> None:
    def windows(document: dict[str, Any]) -> None:
        queue_entry(document, DONE)["Properties"]["DuplicateDetectionHistoryTimeWindow"] = "PT1M"
        queue_entry(document, CONSOLIDATE)["Properties"]["RequiresDuplicateDetection"] = False

    bus = LocalBus(db, QUEUES, load_queue_properties(QUEUES, write_config(tmp_path, windows)))
    for _ in range(2):
        await bus.send([to(queue, "same") for queue in QUEUES.all()])
    assert await bus.depth() == {ITEMS: 1, DONE: 1, CONSOLIDATE: 2}
    await age(db, timedelta(minutes=2))  # past work-done's 1 minute, within work-items' 5
    await bus.send([to(queue, "same") for queue in QUEUES.all()])
    assert await bus.depth() == {ITEMS: 1, DONE: 2, CONSOLIDATE: 3}


# --- time-to-live -----------------------------------------------------------------------------------


async def test_an_expired_message_is_never_received_and_is_dead_lettered_with_the_ttl_reason(db: Pool) -> None:
    bus = shipped_bus(db)
    await bus.send([to(ITEMS, "stale")])
    await age(db, timedelta(minutes=61))  # the queue's DefaultMessageTimeToLive is 1 hour
    await bus.send([to(ITEMS, "fresh")])
    [received] = await bus.receive(ITEMS, 10)
    assert received.message_id == "fresh"
    assert received.expires_at is not None
    assert received.expires_at - received.enqueued_at == timedelta(hours=1)
    assert await dead_letters(db) == [(ITEMS, "stale", *TTL_REASON, 0, "local")]
    async with db.connection() as conn:
        cur = await conn.execute("SELECT kind, message FROM alerts")
        assert await cur.fetchall() == [("dead_letter", f"message stale ({TTL_REASON[0]}): {TTL_REASON[1]}")]
    # A message that expires while a consumer holds it may still be settled, as on Service Bus.
    async with db.connection() as conn:
        await conn.execute("UPDATE bus_messages SET expires_at = now() - interval '1 second'")
    await bus.complete(received)
    assert await bus.depth() == {ITEMS: 0, DONE: 0, CONSOLIDATE: 0}


async def test_a_scheduled_message_lives_its_time_to_live_from_its_scheduled_time(db: Pool) -> None:
    bus = shipped_bus(db)
    scheduled_at = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    await bus.send([to(CONSOLIDATE, "later", scheduled_at=scheduled_at)])
    async with db.connection() as conn:
        cur = await conn.execute("SELECT expires_at FROM bus_messages")
        assert await cur.fetchall() == [(scheduled_at + timedelta(hours=1),)]
    # 80 minutes after sending: an hour from the send has passed, not from the scheduled time.
    await age(db, timedelta(minutes=80))
    [received] = await bus.receive(CONSOLIDATE)
    await bus.abandon(received, delay=timedelta(minutes=15))
    # 100 minutes after sending, 70 after its scheduled time: expired.
    await age(db, timedelta(minutes=20))
    assert await bus.receive(CONSOLIDATE) == []
    assert await dead_letters(db) == [(CONSOLIDATE, "later", *TTL_REASON, 1, "local")]


async def test_expired_messages_leave_idle_queues_and_are_dropped_where_the_queue_says_so(
    db: Pool, tmp_path: Path
) -> None:
    def drop_on_expiry(document: dict[str, Any]) -> None:
        queue_entry(document, DONE)["Properties"]["DeadLetteringOnMessageExpiration"] = False

    bus = LocalBus(db, QUEUES, load_queue_properties(QUEUES, write_config(tmp_path, drop_on_expiry)))
    await bus.send([to(DONE, "dropped"), to(CONSOLIDATE, "kept")])
    await age(db, timedelta(hours=2))
    assert await bus.receive(DONE) == []
    assert await bus.dead_letter_due() == 1  # nobody receives from consolidate: the sweep moves it
    assert await bus.depth() == {ITEMS: 0, DONE: 0, CONSOLIDATE: 0}
    assert await dead_letters(db) == [(CONSOLIDATE, "kept", *TTL_REASON, 0, "local")]


# --- the configuration ------------------------------------------------------------------------------


def test_the_shipped_configuration_gives_each_queue_its_properties() -> None:
    properties = load_queue_properties(QUEUES)
    assert {q: (p.lock_duration, p.max_delivery_count) for q, p in properties.items()} == {
        ITEMS: (timedelta(minutes=2), 5),
        DONE: (timedelta(minutes=1), 5),
        CONSOLIDATE: (timedelta(minutes=5), 3),
    }
    for p in properties.values():
        assert (p.time_to_live, p.dead_letter_on_expiration, p.duplicate_window) == (
            timedelta(hours=1),
            True,
            timedelta(minutes=5),
        )
    # The Azure worker reads BUS_MAX_DELIVERY_COUNT as the work-items queue's MaxDeliveryCount.
    assert load_settings().bus_max_delivery_count == properties[ITEMS].max_delivery_count


def test_the_configuration_ships_inside_the_package_as_the_emulators_file() -> None:
    """An installed `opus` has no deploy/ folder: the bus reads a file of its package, which package
    data ("*.json") puts into the wheel, and the emulator mounts that same file. A real file, not a
    link: a checkout without symbolic links would hold the link's target path as its text."""
    packaged = Path(queue_config.__file__).parent / "servicebus_config.json"
    assert packaged.is_file()
    assert not packaged.is_symlink()
    assert packaged == EMULATOR_CONFIG
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    assert "- ../shared/bus/servicebus_config.json:/ServiceBus_Emulator/ConfigFiles/Config.json:ro" in compose
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(packaged.name, pattern) for pattern in package_data["*"])


def test_bus_settings_that_are_set_override_every_queue_and_unset_ones_none() -> None:
    shipped = load_queue_properties(QUEUES)
    assert local_queue_properties(load_settings(), QUEUES) == shipped
    overridden = local_queue_properties(
        load_settings(bus_lock_duration_s=30, bus_max_delivery_count=7, bus_duplicate_window_s=0), QUEUES
    )
    for queue, p in overridden.items():
        assert (p.lock_duration, p.max_delivery_count, p.duplicate_window) == (timedelta(seconds=30), 7, timedelta(0))
        assert p.time_to_live == shipped[queue].time_to_live


def _set(queue: str, key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        queue_entry(document, queue)["Properties"][key] = value

    return change


def _drop(queue: str, key: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        del queue_entry(document, queue)["Properties"][key]

    return change


def _rename(queue: str, name: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        queue_entry(document, queue)["Name"] = name

    return change


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (_set(ITEMS, "LockDuration", "120"), ["queue 'work-items'", "LockDuration", "not an ISO 8601 duration"]),
        (_set(DONE, "LockDuration", "PT10M"), ["queue 'work-done'", "LockDuration", "less than or equal to"]),
        (_set(CONSOLIDATE, "MaxDeliveryCount", 0), ["queue 'consolidate'", "MaxDeliveryCount", "greater than"]),
        (_set(CONSOLIDATE, "MaxDeliveryCount", "3"), ["queue 'consolidate'", "MaxDeliveryCount", "valid integer"]),
        (_set(ITEMS, "DefaultMessageTimeToLive", "PT0S"), ["queue 'work-items'", "DefaultMessageTimeToLive"]),
        (_set(DONE, "DeadLetteringOnMessageExpiration", "yes"), ["DeadLetteringOnMessageExpiration", "boolean"]),
        (_drop(ITEMS, "DuplicateDetectionHistoryTimeWindow"), ["DuplicateDetectionHistoryTimeWindow", "required"]),
        (_rename(ITEMS, "work-item"), ["declares no queue 'work-items' (QUEUE_WORK_ITEMS)"]),
        (_rename(DONE, CONSOLIDATE), ["queue 'consolidate' is declared twice"]),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_file_queue_and_property(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], fragments: list[str]
) -> None:
    path = write_config(tmp_path, change)
    with pytest.raises(QueueConfigError) as err:
        load_queue_properties(QUEUES, path)
    for fragment in [str(path), *fragments]:
        assert fragment in str(err.value)


def test_a_queue_the_app_does_not_use_or_a_malformed_file_is_refused(tmp_path: Path) -> None:
    def stray(document: dict[str, Any]) -> None:
        document["UserConfig"]["Namespaces"][0]["Queues"].append({"Name": "stray", "Properties": {}})

    with pytest.raises(QueueConfigError, match=r"queue\(s\) \['stray'\] are none of the app's queues"):
        load_queue_properties(QUEUES, write_config(tmp_path, stray))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(QueueConfigError, match=r"broken\.json: not valid JSON"):
        load_queue_properties(QUEUES, broken)


def test_a_queue_name_setting_the_emulator_does_not_declare_stops_the_local_bus(db: Pool) -> None:
    with pytest.raises(SettingsError, match=r"declares no queue 'jobs' \(QUEUE_WORK_ITEMS\)"):
        local_bus(load_settings(queue_work_items="jobs"), db)


def test_a_duplicate_window_override_is_off_or_at_least_service_bus_s_shortest() -> None:
    assert load_settings(bus_duplicate_window_s=20).bus_duplicate_window_s == 20
    assert load_settings(bus_duplicate_window_s=0).bus_duplicate_window_s == 0
    with pytest.raises(SettingsError, match="shortest duplicate-detection window is 20 s"):
        load_settings(bus_duplicate_window_s=19)
