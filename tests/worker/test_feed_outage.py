"""A feed outage that outlasts the client's retries: the page is delivered again by the bus, and only
its last permitted delivery fails the partition (the original parked it for a human at once)."""

from __future__ import annotations

import httpx
import pytest

from shared.db.pool import Pool
from shared.feed.errors import FeedTransientError
from shared.settings import Settings
from tests.worker.test_bad_payloads import ScriptedFeed, container, item, page, start_partition, state
from worker.service import Outcome, process_work_item


def outage_then(answers: list[httpx.Response], failing: int) -> ScriptedFeed:
    """A feed answering 503 to the first `failing` searches, then `answers` in turn."""
    replies = iter([httpx.Response(503, text="Service Unavailable")] * failing + answers)
    return ScriptedFeed(lambda _: next(replies))


async def test_a_transient_failure_before_the_last_delivery_leaves_the_page_to_be_delivered_again(
    db: Pool, settings: Settings
) -> None:
    feed = outage_then([page([item("a"), item("b")])], failing=3)  # the client tries 3 times
    async with container(settings, db, feed) as c:
        work = await start_partition(db)
        with pytest.raises(FeedTransientError):
            await process_work_item(c, work, last_delivery=False)
        during = await state(db)
        assert during["partition"][:4] == ("running", 0, 0, 0)
        assert during["raw"] == []
        assert during["errors"] == [], "nothing is recorded as failed while deliveries remain"
        result = await process_work_item(c, work, last_delivery=False)  # the bus's next delivery
    assert result.outcome is Outcome.PAGE
    after = await state(db)
    assert after["raw"] == ["a", "b"]
    assert after["partition"][0] == "running"
    assert after["partition"][2] == 1, "the page is stored once the feed is back"


async def test_the_last_delivery_fails_the_partition(db: Pool, settings: Settings) -> None:
    feed = outage_then([], failing=3)
    async with container(settings, db, feed) as c:
        result = await process_work_item(c, await start_partition(db), last_delivery=True)
    assert result.outcome is Outcome.FAILED
    after = await state(db)
    assert after["partition"][0] == "failed"
    assert [e[0] for e in after["errors"]] == ["feed_failed"]
