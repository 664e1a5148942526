"""How a partition pages through the feed without skipping stones when the feed drifts.

The run's query has a fixed `updated.to` in the past, so the set it matches can only shrink while
the run pages through it (a stone that changes gets a newer updatedAt and leaves the window; new
stones are created after the window). With offset paging over a stable order (createdAt ASC), a
stone leaving AHEAD of the cursor shifts every later stone back by one: plain offset paging would
silently skip the stone that slides across the page boundary.

So pages overlap by one stone: each page is requested at the offset of the previous page's last
stone (the anchor), and must start with it. If it does not, stones ahead of the cursor left, and
the worker repositions on the last stone it has already seen (see `ResumeSearch`) before going on.
A page that holds nothing after the anchor (or nothing at all) ends the partition: a short page is
not the end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class StepKind(StrEnum):
    ADVANCE = "advance"  # new stones; continue at next_offset with a new anchor
    FINISH = "finish"  # nothing after the anchor: the partition is done
    DRIFT = "drift"  # the anchor is not where it was: reposition before continuing


@dataclass(frozen=True)
class PageStep:
    kind: StepKind
    next_offset: int
    anchor_id: str | None
    new_ids: tuple[str, ...] = ()


def interpret_page(offset: int, anchor_id: str | None, ids: Sequence[str | None]) -> PageStep:
    """Decide what a fetched page means, given where it was requested and the expected anchor.

    `ids` holds one entry per item, in page order; None for an item without a usable stone id (the
    worker records those), which still takes its place in the feed's order.
    """
    start = 0
    if anchor_id is not None:
        if anchor_id not in ids:
            return PageStep(StepKind.DRIFT, offset, anchor_id)
        # Normally at index 0; later only if stones were inserted ahead (never expected, but harmless).
        start = ids.index(anchor_id) + 1
    if start == len(ids):
        return PageStep(StepKind.FINISH, offset, anchor_id)
    keyed = [(index, sid) for index in range(start, len(ids)) if (sid := ids[index]) is not None]
    new_ids = tuple(dict.fromkeys(sid for _, sid in keyed))
    if keyed and keyed[-1][0] > 0:
        last, last_id = keyed[-1]
        return PageStep(StepKind.ADVANCE, offset + last, last_id, new_ids)
    # No stone to anchor the next page on beyond this offset (a one-stone page, or items without
    # ids after the anchor): go on past the page without an anchor. Requesting this offset again
    # would repeat this message's id, which the bus drops as a duplicate.
    return PageStep(StepKind.ADVANCE, offset + len(ids), None, new_ids)


def locate_resume_point(window_offset: int, ids: Sequence[str | None], seen: Collection[str]) -> tuple[int, str] | None:
    """The position and id of the LAST already-seen stone in a window, or None if it has none.

    Everything after it in the current order is unseen (the order is stable and nothing enters the
    window), so paging resumes with it as the anchor.
    """
    for index in range(len(ids) - 1, -1, -1):
        sid = ids[index]
        if sid is not None and sid in seen:
            return window_offset + index, sid
    return None


@dataclass(frozen=True)
class ResumeSearch:
    """Drift recovery's knowledge: the last seen stone found so far and where unseen stones begin.

    The stones this run has seen form a prefix of the partition's current order (the order is
    stable and nothing enters the window), so the end of that prefix is found by looking back from
    the drifted offset in doubling steps, then bisecting: a few requests however many stones left.
    Paging resumes on a seen stone (an anchor the next page checks again) or, when none is left
    before the offset, from 0; never from a guessed offset, which would skip the stones before it.
    """

    unseen_from: int  # every position at or after this one holds a stone not seen yet
    reach: int  # how far before `unseen_from` to look while no seen stone has been found
    seen_at: tuple[int, str] | None = None  # position and id of the last seen stone found

    @property
    def done(self) -> bool:
        last_seen = -1 if self.seen_at is None else self.seen_at[0]
        return self.unseen_from <= last_seen + 1

    def probe(self) -> int:
        """The offset of the next window to fetch (only while not done)."""
        if self.seen_at is None:
            return max(0, self.unseen_from - self.reach)
        return (self.seen_at[0] + self.unseen_from) // 2

    def learn(self, window_offset: int, ids: Sequence[str | None], seen: Collection[str], limit: int) -> ResumeSearch:
        found = locate_resume_point(window_offset, ids, seen)
        if found is None:
            return replace(self, unseen_from=window_offset, reach=self.reach * 2)
        # A full window ending on a seen stone leaves the end of the prefix further on.
        open_ended = found[0] == window_offset + len(ids) - 1 and len(ids) == limit
        return replace(self, seen_at=found, unseen_from=self.unseen_from if open_ended else found[0] + 1)


def offset_cap(estimated_records: int, factor: Decimal, limit: int) -> int:
    """Safety cap on a partition's offset: the count and the pages can disagree (a runaway partition)."""
    return int(estimated_records * factor) + 2 * limit


def estimate_at_cap(next_offset: int, recount: int, factor: Decimal, limit: int) -> int | None:
    """At the cap, the partition's fresh count as its new estimate while the cap that gives is still
    ahead (the partition grew since the scan); None when the pages outrun even the fresh count (a
    runaway), which is a failure: the partition cannot be vouched complete, nor paged for ever."""
    return recount if next_offset < offset_cap(recount, factor, limit) else None


@dataclass(frozen=True)
class Page(Generic[T]):
    step: PageStep
    items: list[T]


async def fetch_step(
    fetch: Callable[[int], Awaitable[list[T]]],
    id_of: Callable[[T], str | None],
    already_seen: Callable[[list[str]], Awaitable[set[str]]],
    *,
    offset: int,
    anchor_id: str | None,
    limit: int,
) -> Page[T]:
    """Fetch the page at `offset` and decide what it means; on drift, find where to resume.

    `fetch(offset)` returns the items of one page; `already_seen(ids)` says which ids this run has
    stored. A DRIFT step carries no items: it repositions on the last seen stone (or on the start).
    """
    items = await fetch(offset)
    step = interpret_page(offset, anchor_id, [id_of(item) for item in items])
    if step.kind is not StepKind.DRIFT:
        return Page(step, items)
    search = ResumeSearch(unseen_from=offset, reach=max(1, limit - 1))
    lookups = 0
    while not search.done:
        window_offset = search.probe()
        window_ids = [id_of(item) for item in await fetch(window_offset)]
        seen = await already_seen([sid for sid in window_ids if sid is not None])
        search = search.learn(window_offset, window_ids, seen, limit)
        lookups += 1
    position, anchor = search.seen_at or (0, None)
    # Routine when stones leave the feed during a run; the partition's completion counts them.
    log.info("drift: repositioned from offset %d to %d in %d look-ups", offset, position, lookups)
    return Page(PageStep(StepKind.DRIFT, position, anchor), [])
