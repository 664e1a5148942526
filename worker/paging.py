"""How a partition pages through the feed without skipping stones when the feed drifts.

The run's query has a fixed `updated.to` in the past, so the set it matches can only shrink while
the run pages through it (a stone that changes gets a newer updatedAt and leaves the window; new
stones are created after the window). With offset paging over a stable order (createdAt ASC), a
stone leaving AHEAD of the cursor shifts every later stone back by one: plain offset paging would
silently skip the stone that slides across the page boundary.

So pages overlap by one stone: each page is requested at the offset of the previous page's last
stone (the anchor), and must start with it. If it does not, stones ahead of the cursor left, and
the worker repositions on the last stone it has already seen (see `locate_resume_point`) before
going on. A page that holds nothing after the anchor (or nothing at all) ends the partition: a
short page is not the end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# Drift recovery looks back this many windows within one message before paging again from the start.
MAX_STEP_BACKS = 20


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


def step_back_offset(offset: int, limit: int) -> int:
    """Where to look for already-seen stones when the anchor moved: the window ending at `offset`."""
    return max(0, offset - (limit - 1))


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


def offset_cap(estimated_records: int, factor: Decimal, limit: int) -> int:
    """Safety cap on a partition's offset: the count and the pages can disagree (a runaway partition)."""
    return int(estimated_records * factor) + 2 * limit


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
    window_offset = offset
    for _ in range(MAX_STEP_BACKS):
        window_offset = step_back_offset(window_offset, limit)
        window_ids = [id_of(item) for item in await fetch(window_offset)]
        seen = await already_seen([sid for sid in window_ids if sid is not None])
        found = locate_resume_point(window_offset, window_ids, seen)
        if found is not None:
            position, anchor = found
            # Routine when stones leave the feed during a run; the partition's completion counts them.
            log.info("drift: repositioned from offset %d to %d", offset, position)
            return Page(PageStep(StepKind.DRIFT, position, anchor), [])
        if window_offset == 0:
            break
    log.warning("drift: no seen stone found near offset %d; paging again from %d", offset, window_offset)
    return Page(PageStep(StepKind.DRIFT, window_offset, None), [])
