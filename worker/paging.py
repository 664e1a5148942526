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


def interpret_page(offset: int, anchor_id: str | None, ids: Sequence[str]) -> PageStep:
    """Decide what a fetched page means, given where it was requested and the expected anchor."""
    if anchor_id is None:
        if not ids:
            return PageStep(StepKind.FINISH, offset, None)
        return PageStep(StepKind.ADVANCE, offset + len(ids) - 1, ids[-1], tuple(ids))
    if anchor_id in ids:
        # Normally at index 0; later only if stones were inserted ahead (never expected, but harmless).
        after = tuple(ids[ids.index(anchor_id) + 1 :])
        if not after:
            return PageStep(StepKind.FINISH, offset, anchor_id)
        return PageStep(StepKind.ADVANCE, offset + len(ids) - 1, ids[-1], after)
    return PageStep(StepKind.DRIFT, offset, anchor_id)


def step_back_offset(offset: int, limit: int) -> int:
    """Where to look for already-seen stones when the anchor moved: the window ending at `offset`."""
    return max(0, offset - (limit - 1))


def locate_resume_point(window_offset: int, ids: Sequence[str], seen: Collection[str]) -> tuple[int, str] | None:
    """The position and id of the LAST already-seen stone in a window, or None if it has none.

    Everything after it in the current order is unseen (the order is stable and nothing enters the
    window), so paging resumes with it as the anchor.
    """
    for index in range(len(ids) - 1, -1, -1):
        if ids[index] in seen:
            return window_offset + index, ids[index]
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
    ids = [sid for sid in map(id_of, items) if sid is not None]
    step = interpret_page(offset, anchor_id, ids)
    if step.kind is not StepKind.DRIFT:
        return Page(step, items)
    window_offset = offset
    for _ in range(MAX_STEP_BACKS):
        window_offset = step_back_offset(window_offset, limit)
        window_ids = [sid for sid in map(id_of, await fetch(window_offset)) if sid is not None]
        found = locate_resume_point(window_offset, window_ids, await already_seen(window_ids))
        if found is not None:
            position, anchor = found
            # Routine when stones leave the feed during a run; the partition's completion counts them.
            log.info("drift: repositioned from offset %d to %d", offset, position)
            return Page(PageStep(StepKind.DRIFT, position, anchor), [])
        if window_offset == 0:
            break
    log.warning("drift: no seen stone found near offset %d; paging again from %d", offset, window_offset)
    return Page(PageStep(StepKind.DRIFT, window_offset, None), [])
