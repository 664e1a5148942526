"""Feeds run one after the other (concurrent runs of both variants trip Nivoda's WAF)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from fanin.lifecycle import ACTIVE_STATUSES
from scheduler.planning import RunType
from scheduler.service import start_run
from shared.bootstrap import Container
from shared.errors import ConflictError
from shared.runs import active_run, load_run

log = logging.getLogger(__name__)


def next_feed(feeds: Sequence[str], finished: str) -> str | None:
    """The feed that runs after `finished` in a chain, or None at the end."""
    position = list(feeds).index(finished)
    return feeds[position + 1] if position + 1 < len(feeds) else None


async def wait_for_run(container: Container, run_id: UUID, *, poll_s: float = 1.0) -> str:
    """Wait until the run leaves the active states; return its final status."""
    while True:
        async with container.pool.connection() as conn:
            run = await load_run(conn, run_id)
        if run.status not in ACTIVE_STATUSES:
            return run.status
        await asyncio.sleep(poll_s)


async def run_chain(
    container: Container,
    feeds: Sequence[str],
    *,
    run_type: RunType | None = None,
    requested_by: str = "schedule",
    wait: Callable[[Container, UUID], Awaitable[str]] = wait_for_run,
) -> list[tuple[str, UUID | None, str]]:
    """Run each feed in turn, waiting for each run to finish (with `wait`, which returns the run's
    final status); return (feed, run id, outcome)."""
    outcomes: list[tuple[str, UUID | None, str]] = []
    for feed in feeds:
        try:
            started = await start_run(container, feed=feed, run_type=run_type, requested_by=requested_by)
            run_id = started.run.run_id if started else None
        except ConflictError:
            async with container.pool.connection() as conn:
                current = await active_run(conn, feed)
            run_id = current.run_id if current else None
            log.info("feed %s already has an active run; waiting for it", feed)
        if run_id is None:
            outcomes.append((feed, None, "nothing to fetch"))
            continue
        outcomes.append((feed, run_id, await wait(container, run_id)))
    return outcomes
