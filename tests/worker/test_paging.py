"""Overlapping pages never skip a stone that stays in the feed while others leave ahead of the
cursor, and a page is never mistaken for the end just because it is short."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.settings import SettingsError
from tests.conftest import make_settings
from worker.paging import StepKind, fetch_step, interpret_page, locate_resume_point, offset_cap

LIMIT = 50


def test_first_page_advances_to_its_last_stone() -> None:
    step = interpret_page(0, None, ["a", "b", "c"])
    assert step.kind is StepKind.ADVANCE
    assert (step.next_offset, step.anchor_id, step.new_ids) == (2, "c", ("a", "b", "c"))


def test_a_short_page_is_not_the_end() -> None:
    assert interpret_page(100, "x", ["x", "y"]).kind is StepKind.ADVANCE


def test_only_the_anchor_or_nothing_ends_the_partition() -> None:
    assert interpret_page(100, "x", ["x"]).kind is StepKind.FINISH
    assert interpret_page(0, None, []).kind is StepKind.FINISH


def test_a_missing_anchor_is_drift() -> None:
    assert interpret_page(100, "x", ["y", "z"]).kind is StepKind.DRIFT
    assert interpret_page(100, "x", []).kind is StepKind.DRIFT


def test_resume_point_is_the_last_seen_stone() -> None:
    assert locate_resume_point(10, ["a", "b", "c", "d"], {"a", "c"}) == (12, "c")
    assert locate_resume_point(10, ["a", "b"], set()) is None


def test_items_without_an_id_keep_their_place_in_the_order() -> None:
    # The next page starts at the last keyed stone's real position, not at its rank among keyed ones.
    step = interpret_page(100, "x", ["x", None, "y", None, "z", None])
    assert (step.kind, step.next_offset, step.anchor_id, step.new_ids) == (StepKind.ADVANCE, 104, "z", ("y", "z"))
    assert locate_resume_point(10, ["a", None, "b", None], {"b"}) == (12, "b")


def test_a_stone_repeated_in_a_page_is_new_once() -> None:
    assert interpret_page(0, None, ["a", "b", "a", "c"]).new_ids == ("a", "b", "c")


def test_a_page_with_no_stone_to_anchor_on_moves_past_itself() -> None:
    # Requesting the same offset again would repeat the message's id (dropped as a duplicate).
    one = interpret_page(7, None, ["a"])
    assert (one.kind, one.next_offset, one.anchor_id, one.new_ids) == (StepKind.ADVANCE, 8, None, ("a",))
    unkeyed = interpret_page(7, "x", ["x", None, None])
    assert (unkeyed.kind, unkeyed.next_offset, unkeyed.anchor_id, unkeyed.new_ids) == (StepKind.ADVANCE, 10, None, ())
    blank = interpret_page(0, None, [None] * 50)
    assert (blank.kind, blank.next_offset, blank.anchor_id) == (StepKind.ADVANCE, 50, None)


def test_the_offset_cap_leaves_room_above_the_estimate() -> None:
    from decimal import Decimal

    assert offset_cap(1000, Decimal("1.5"), 50) == 1600


class ShrinkingFeed:
    """A stable-ordered listing from which a random adversary removes stones between requests."""

    def __init__(self, size: int, removals: list[int], seed: int) -> None:
        self.stones = [f"s{i:05d}" for i in range(size)]
        self.removals = list(removals)
        self.random = random.Random(seed)
        self.removed: set[str] = set()
        self.requests = 0

    async def fetch(self, offset: int) -> list[str]:
        self.requests += 1
        if self.removals:
            for _ in range(self.removals.pop(0)):
                if self.stones:
                    gone = self.stones.pop(self.random.randrange(len(self.stones)))
                    self.removed.add(gone)
        return self.stones[offset : offset + LIMIT]


async def page_through(feed: ShrinkingFeed) -> set[str]:
    seen: set[str] = set()
    offset, anchor = 0, None

    async def already_seen(ids: list[str]) -> set[str]:
        return seen & set(ids)

    while True:
        assert feed.requests < 10_000, "paging did not terminate"
        page = await fetch_step(feed.fetch, lambda s: s, already_seen, offset=offset, anchor_id=anchor, limit=LIMIT)
        seen.update(page.items)  # the worker stores every item of a page
        if page.step.kind is StepKind.FINISH:
            return seen
        offset, anchor = page.step.next_offset, page.step.anchor_id


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 700),
    removals=st.lists(st.integers(0, 60), max_size=40),
    seed=st.integers(0, 2**32),
)
async def test_every_stone_that_stays_is_seen_despite_removals_ahead(size: int, removals: list[int], seed: int) -> None:
    feed = ShrinkingFeed(size, removals, seed)
    seen = await page_through(feed)
    stayed = set(feed.stones)
    assert stayed <= seen, f"missed {sorted(stayed - seen)[:5]}"


async def test_without_drift_the_overlap_costs_one_request_per_page_and_one_to_finish() -> None:
    feed = ShrinkingFeed(1000, [], 0)
    seen = await page_through(feed)
    assert len(seen) == 1000
    assert feed.requests == -(-999 // (LIMIT - 1)) + 1


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 3000),
    removals=st.lists(st.integers(0, 1500), max_size=6),
    seed=st.integers(0, 2**32),
)
async def test_mass_departures_skip_no_stone_that_stays(size: int, removals: list[int], seed: int) -> None:
    # More stones than the old look-back (20 windows) covered leave between two pages.
    feed = ShrinkingFeed(size, [0] * 10 + removals, seed)
    seen = await page_through(feed)
    stayed = set(feed.stones)
    assert stayed <= seen, f"missed {sorted(stayed - seen)[:5]}"


async def test_drift_recovery_finds_the_last_seen_stone_in_a_few_requests() -> None:
    stones = [f"s{i:05d}" for i in range(3000)]
    seen = set(stones[:1500])
    del stones[100:1300]  # 1,200 seen stones left; the cursor was at 1,499 (the anchor)
    requests = 0

    async def fetch(offset: int) -> list[str]:
        nonlocal requests
        requests += 1
        return stones[offset : offset + LIMIT]

    async def already_seen(ids: list[str]) -> set[str]:
        return seen & set(ids)

    page = await fetch_step(fetch, lambda s: s, already_seen, offset=1499, anchor_id="s01499", limit=LIMIT)
    assert (page.step.kind, page.step.next_offset, page.step.anchor_id) == (StepKind.DRIFT, 299, "s01499")
    assert requests <= 12


def test_pages_of_one_stone_cannot_anchor_so_settings_refuse_them(tmp_path: Path) -> None:
    # A one-stone page cannot hold the anchor and a new stone: every page went on unanchored, so a
    # stone leaving behind the cursor silently pushed the next one past it.
    assert interpret_page(7, None, ["a"]).anchor_id is None
    assert interpret_page(7, "a", ["a"]).kind is StepKind.FINISH
    with pytest.raises(SettingsError, match="WORKER_PAGE_SIZE=1"):
        make_settings("postgresql://unused/db", tmp_path, worker_page_size=1)
    assert make_settings("postgresql://unused/db", tmp_path, worker_page_size=2).worker_page_size == 2
