"""Operator commands: start and watch runs, inspect them, retry, cancel, consolidate, dead letters."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from api.operations import MAX_LIMIT
from fanin.lifecycle import TERMINAL_STATUSES
from fanin.operations import SETTLED
from shared.argtypes import int_range
from shared.bootstrap import Container, open_container
from shared.db.database import ready_database
from shared.errors import InvalidRequestError, OpusError
from shared.runs import Conn, RunRecord, load_partitions
from shared.settings import FEED_VARIANTS, Settings

if TYPE_CHECKING:
    from opus.cli import CommandRegistry
    from shared.deadletters import DeadLetter

# Wide enough for run ids and reasons when the output is not a terminal. No markup: what is printed
# comes from the feed, the database and operators ("[Errno 111] ...", a note "see [/x]"), and Rich
# would style it, drop it or fail on it.
console = Console(width=None if Console().is_terminal else 160, markup=False)


class HostNotRunningError(OpusError):
    code = "host_not_running"


@asynccontextmanager
async def cli_container(settings: Settings, *, needs_workers: bool) -> AsyncIterator[Container]:
    """The container for one command; refuses work that needs workers when nothing would do it."""
    async with ready_database(settings) as database:
        if needs_workers and not database.host_running:
            raise HostNotRunningError(
                "`opus run` is not running: start it first (it runs the workers that carry out this command)"
            )
        async with open_container(settings, database.url, name="cli") as container:
            yield container


def _run_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id (a UUID)") from None


# --- watching a run -----------------------------------------------------------------------------
_PROGRESS = """
SELECT r.status, r.status_reason, r.feed, r.run_type, r.expected_partitions, r.estimated_records,
       r.consolidation_processed, r.consolidation_errors,
       count(*) FILTER (WHERE p.status = 'completed') AS done,
       count(*) FILTER (WHERE p.status = 'failed') AS failed,
       coalesce(sum(p.records_seen), 0) AS stones,
       coalesce(sum(p.pages), 0) AS pages
FROM run_metadata r LEFT JOIN partition_progress p USING (run_id)
WHERE r.run_id = %s GROUP BY r.run_id
"""


async def _progress(container: Container, run_id: uuid.UUID) -> dict[str, Any]:
    async with container.pool.connection() as conn:
        cur = await conn.execute(_PROGRESS, (run_id,))
        columns = [c.name for c in cur.description or ()]
        row = await cur.fetchone()
    if row is None:
        raise InvalidRequestError(f"run {run_id} does not exist")
    return dict(zip(columns, row, strict=True))


def _progress_table(run_id: uuid.UUID, state: dict[str, Any], stones_per_s: float, pages_per_s: float) -> Table:
    table = Table(title=f"run {run_id} ({state['feed']}, {state['run_type']})", show_header=False)
    remaining = max(0, state["estimated_records"] - state["stones"])
    eta = f"{remaining / stones_per_s:.0f} s" if stones_per_s > 0 and state["status"] == "ingesting" else "-"
    rows = [
        ("status", f"{state['status']}" + (f" — {state['status_reason']}" if state["status_reason"] else "")),
        ("partitions", f"{state['done']} done, {state['failed']} failed, {state['expected_partitions']} in all"),
        ("stones", f"{state['stones']:,} of ~{state['estimated_records']:,}"),
        ("throughput", f"{stones_per_s:,.0f} stones/s, {pages_per_s:,.1f} requests/s"),
        ("ETA (fetching)", eta),
        ("consolidated", f"{state['consolidation_processed']:,} ({state['consolidation_errors']:,} unmappable)"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


async def watch(container: Container, run_id: uuid.UUID) -> str:
    """Show live progress until the run ends; return its final status."""
    last = await _progress(container, run_id)
    last_t = time.monotonic()
    speeds = (0.0, 0.0)
    with Live(_progress_table(run_id, last, *speeds), console=console, refresh_per_second=4) as live:
        while last["status"] not in TERMINAL_STATUSES:
            await asyncio.sleep(1)
            state = await _progress(container, run_id)
            now = time.monotonic()
            elapsed = max(now - last_t, 1e-6)
            speeds = ((state["stones"] - last["stones"]) / elapsed, (state["pages"] - last["pages"]) / elapsed)
            live.update(_progress_table(run_id, state, *speeds))
            last, last_t = state, now
    if not console.is_terminal:
        console.line()  # off a terminal, Live leaves its last frame without a line end
    status: str = last["status"]
    return status


# --- commands --------------------------------------------------------------------------------------
def cmd_start_run(args: argparse.Namespace, settings: Settings) -> int:
    from scheduler.chain import run_chain, wait_for_run
    from scheduler.service import start_run

    async def go() -> int:
        async with cli_container(settings, needs_workers=True) as container:
            if args.all:
                outcomes = await run_chain(
                    container,
                    settings.feeds,
                    run_type=args.type,
                    requested_by="cli",
                    wait=watch if args.wait else wait_for_run,
                )
                for feed, run_id, outcome in outcomes:
                    console.print(f"{feed}: {outcome}" + (f" (run {run_id})" if run_id else ""))
                # As with --wait, a script must be able to tell that a run did not complete.
                return 0 if all(run_id is None or outcome == "completed" for _, run_id, outcome in outcomes) else 1
            feed = args.feed or settings.feeds[0]
            started = await start_run(container, feed=feed, run_type=args.type, requested_by="cli")
            if started is None:
                console.print(f"{feed}: nothing to fetch; no run was created")
                return 0
            run = started.run
            console.print(
                f"started {run.run_type} run {run.run_id} of {feed}: {len(started.partitions)} partitions, "
                f"~{run.estimated_records:,} stones ({started.density.count_calls} count calls)"
            )
            if not args.wait:
                return 0
            status = await watch(container, run.run_id)
            console.print(f"run {run.run_id} {status}")
            return 0 if status == "completed" else 1

    return asyncio.run(go())


_RUNS = """
SELECT r.run_id, r.feed, r.run_type, r.status, r.started_at, r.completed_at, r.expected_partitions,
       count(*) FILTER (WHERE p.status = 'completed') AS done, count(*) FILTER (WHERE p.status = 'failed') AS failed,
       coalesce(sum(p.records_seen), 0) AS stones, r.watermark_advanced
FROM run_metadata r LEFT JOIN partition_progress p USING (run_id)
WHERE (%(feed)s::text IS NULL OR r.feed = %(feed)s) AND (%(status)s::text IS NULL OR r.status = %(status)s)
GROUP BY r.run_id ORDER BY r.started_at DESC LIMIT %(limit)s
"""


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> int:
        async with cli_container(settings, needs_workers=False) as container, container.pool.connection() as conn:
            cur = await conn.execute(_RUNS, {"feed": args.feed, "status": args.status, "limit": args.limit})
            rows = await cur.fetchall()
        table = Table("feed", "type", "status", "started", "partitions", "stones", "watermark")
        table.add_column("run", no_wrap=True, min_width=36)
        for run_id, feed, kind, status, started, _done_at, expected, done, failed, stones, advanced in rows:
            table.add_row(
                feed,
                kind,
                status,
                started.strftime("%Y-%m-%d %H:%M"),
                f"{done}/{expected}" + (f" ({failed} failed)" if failed else ""),
                f"{stones:,}",
                "advanced" if advanced else "-",
                str(run_id),
            )
        console.print(table if rows else "no runs")
        return 0

    return asyncio.run(go())


def cmd_run_status(args: argparse.Namespace, settings: Settings) -> int:
    from shared.runs import load_partitions

    async def go() -> int:
        async with cli_container(settings, needs_workers=False) as container:
            state = await _progress(container, args.run)
            async with container.pool.connection() as conn:
                partitions = await load_partitions(conn, args.run)
        console.print(_progress_table(args.run, state, 0.0, 0.0))
        table = Table("partition", "$/ct", "status", "offset", "estimate", "stones", "pages", "attempt", "error")
        for p in partitions:
            bounds = f"{p.min_price}–{p.max_price if p.max_price is not None else '∞'}"
            table.add_row(
                p.partition_id,
                bounds,
                p.status,
                str(p.next_offset),
                str(p.estimated_records),
                str(p.records_seen),
                str(p.pages),
                str(p.attempts),
                (p.error or "")[:60],
            )
        console.print(table)
        return 0

    return asyncio.run(go())


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    from fanin.operations import retry_failed

    async def go() -> int:
        async with cli_container(settings, needs_workers=True) as container:
            result = await retry_failed(container, args.run, args.partition)
        console.print(f"retrying {len(result.retried)} partition(s) of run {args.run}: {', '.join(result.retried)}")
        return 0

    return asyncio.run(go())


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from fanin.operations import cancel_run

    async def go() -> int:
        async with cli_container(settings, needs_workers=False) as container:
            await cancel_run(container, args.run, args.reason)
        console.print(f"run {args.run} cancelled")
        return 0

    return asyncio.run(go())


async def _not_consolidating_hint(conn: Conn, run: RunRecord) -> str:
    """What to do about a run that is not ready to consolidate (`--force` only where it applies)."""
    if run.status in SETTLED:
        return "nothing to consolidate"
    if run.status in ("planned", "ingesting"):
        fetching = await load_partitions(conn, run.run_id, statuses=("pending", "running"))
        if fetching:
            return f"{len(fetching)} partition(s) still fetching: wait for them, or cancel the run"
    return "use --force to consolidate what it fetched"


def cmd_consolidate(args: argparse.Namespace, settings: Settings) -> int:
    from consolidator.service import consolidate
    from fanin.operations import force_consolidation
    from fanin.service import evaluate_run
    from shared.messages import Consolidate
    from shared.runs import load_run

    async def go() -> int:
        async with cli_container(settings, needs_workers=False) as container:
            if args.force:
                await force_consolidation(container, args.run, requested_by="cli")
            else:
                await evaluate_run(container, args.run)
            async with container.pool.connection() as conn:
                run = await load_run(conn, args.run)
                if run.status != "consolidating":
                    hint = await _not_consolidating_hint(conn, run)
                    raise InvalidRequestError(
                        f"run {args.run} is {run.status} ({run.status_reason or 'no reason recorded'}); {hint}"
                    )
            message = Consolidate(
                feed=run.feed, run_id=run.run_id, trace_id=run.trace_id, force=run.forced, requested_by="cli"
            )
            result = await consolidate(container, message)
        merged = result.stats.merged
        console.print(
            f"run {args.run}: {result.outcome}; {result.stats.processed:,} raw rows, {merged.inserted:,} new, "
            f"{merged.updated:,} updated, {merged.unchanged:,} unchanged, {result.stats.errors:,} unmappable, "
            f"{result.deleted:,} deleted; watermark {'advanced' if result.watermark_advanced else 'unchanged'}"
        )
        return 0

    return asyncio.run(go())


def _dismissal_arguments_error(args: argparse.Namespace) -> str | None:
    """--dismiss and --note go together: a note alone would be dropped silently, a dismissal without one
    is refused anyway."""
    if args.note is not None and args.dismiss is None:
        return "argument --note: only with --dismiss ID"
    if args.dismiss is not None and args.note is None:
        return "argument --dismiss: needs --note TEXT (why the dead letter is dismissed)"
    return None


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from shared.deadletters import dismiss, list_dead_letters, replay, resolution

    problem = _dismissal_arguments_error(args)
    if problem is not None:
        args.usage_error(problem)

    async def go() -> int:
        async with cli_container(settings, needs_workers=args.replay is not None) as container:
            if args.replay is not None:
                new_id = await replay(container, args.replay)
                console.print(f"dead letter {args.replay} replayed as message {new_id}")
                return 0
            if args.dismiss is not None:
                dismissed = await dismiss(container.pool, args.dismiss, args.note)
                console.print(f"dead letter {dismissed.id} {resolution(dismissed)}")
                return 0
            letters = await list_dead_letters(container.pool, queue=args.queue, include_resolved=args.all)
            queues = container.queues.all()
        if not letters:
            return _no_dead_letters(args.queue, args.all, queues)
        table = Table("id", "queue", "message", "reason", "deliveries", "dead-lettered", "resolved")
        for letter in letters:
            reason = letter.reason + (f": {letter.description}" if letter.description else "")
            table.add_row(
                str(letter.id),
                letter.queue,
                letter.message_id,
                reason[:80],
                str(letter.delivery_count),
                letter.dead_lettered_at.strftime("%Y-%m-%d %H:%M:%S"),
                _resolved_cell(letter),
            )
        console.print(table)
        return 0

    return asyncio.run(go())


def _no_dead_letters(queue: str | None, resolved_too: bool, queues: tuple[str, ...]) -> int:
    what = "dead letters" if resolved_too else "outstanding dead letters"
    if queue is not None and queue not in queues:
        # Most likely a typo, which must not pass for "nothing to see".
        raise InvalidRequestError(f"no {what} on {queue!r}, which is not a queue of this app ({', '.join(queues)})")
    console.print(f"no {what}" + (f" on {queue}" if queue else ""))
    return 0


def _resolved_cell(letter: DeadLetter) -> str:
    if letter.replayed_at is not None:
        return f"replayed as {letter.replay_message_id}"
    if letter.dismissed_at is not None:
        return f"dismissed {letter.dismissed_at:%Y-%m-%d %H:%M:%S}: {letter.dismissal_note}"[:80]
    return "-"


def register(commands: CommandRegistry) -> None:
    start = commands.add("start-run", cmd_start_run, "plan a run and send its work (needs `opus run`)")
    which = start.add_mutually_exclusive_group()
    which.add_argument("--feed", choices=FEED_VARIANTS, help="the feed to run (default: the first of FEEDS)")
    which.add_argument("--all", action="store_true", help="run every feed of FEEDS in turn, waiting for each")
    start.add_argument("--type", choices=("full", "incremental"), help="default: incremental when a watermark exists")
    start.add_argument(
        "--wait", action="store_true", help="show live progress until the run (with --all, each run) ends"
    )

    runs = commands.add("runs", cmd_runs, "list recent runs")
    runs.add_argument("--feed", choices=FEED_VARIANTS)
    runs.add_argument(
        "--status", choices=("planned", "ingesting", "consolidating", "completed", "skipped", "failed", "cancelled")
    )
    runs.add_argument("--limit", type=int_range(1, MAX_LIMIT), default=20, help=f"at most this many (1-{MAX_LIMIT})")

    status = commands.add("run-status", cmd_run_status, "show a run and its partitions")
    status.add_argument("run", type=_run_id)

    retry = commands.add("retry", cmd_retry, "resume a run's failed partitions from their recorded offset")
    retry.add_argument("run", type=_run_id)
    retry.add_argument("--partition", help="only this partition (e.g. partition-3)")

    cancel = commands.add("cancel", cmd_cancel, "cancel a planned or ingesting run")
    cancel.add_argument("run", type=_run_id)
    cancel.add_argument("--reason", default="cancelled from the command line")

    consolidate = commands.add("consolidate", cmd_consolidate, "consolidate a run now, in this process")
    consolidate.add_argument("run", type=_run_id)
    consolidate.add_argument(
        "--force", action="store_true", help="consolidate even though partitions failed (the watermark stays)"
    )

    dead = commands.add("dead-letters", cmd_dead_letters, "list outstanding dead letters, or replay or dismiss one")
    dead.add_argument("--queue", help="only this queue")
    dead.add_argument("--all", action="store_true", help="include resolved dead letters (replayed or dismissed)")
    action = dead.add_mutually_exclusive_group()
    action.add_argument("--replay", type=int, metavar="ID", help="send dead letter ID back to its queue")
    action.add_argument(
        "--dismiss", type=int, metavar="ID", help="resolve dead letter ID without replaying it (needs --note)"
    )
    dead.add_argument("--note", metavar="TEXT", help="why the dead letter is dismissed (with --dismiss)")
    # --dismiss and --note depend on each other, which argparse cannot declare: checked by the command.
    dead.set_defaults(usage_error=dead.error)
