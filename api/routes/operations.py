"""Operations: runs, partitions, triggers, dead letters, watermarks, error records.

Reading needs scope `read`; every action (start a run, retry, force consolidation, cancel, replay or
dismiss a dead letter) needs `admin` and calls the pipeline's own services (scheduler.service,
fanin.operations, shared.deadletters), so the API and the CLI behave identically.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from api import operations
from api.auth import Principal, require_admin, require_read
from api.deps import get_container
from api.routes.common import ADMIN_RESPONSES, responses
from fanin.operations import cancel_run, force_consolidation, retry_failed
from scheduler.service import start_run
from shared.bootstrap import Container
from shared.deadletters import MAX_NOTE_LENGTH, DeadLetter, dismiss, list_dead_letters, replay

router = APIRouter(prefix="/api/v2", tags=["operations"])

FeedName = Literal["nivoda-natural", "nivoda-labgrown"]
RunType = Literal["full", "incremental"]
RunState = Literal["planned", "ingesting", "consolidating", "completed", "skipped", "failed", "cancelled", "stalled"]
StatusFilter = Literal[
    "planned", "ingesting", "consolidating", "completed", "skipped", "failed", "cancelled", "stalled", "active"
]
RunId = Annotated[UUID, Path(description="the run's id")]
Limit = Annotated[int, Query(ge=1, le=operations.MAX_LIMIT)]
# PostgreSQL text cannot hold NUL characters: refuse them as bad input, not a database error.
TEXT = r"^[^\x00]*$"
Offset = Annotated[int, Query(ge=0, le=100_000)]
DeadLetterId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class FeedClock(BaseModel):
    lag_s: float = Field(
        description="our clock minus the feed's (from its HTTP Date header) when the run was planned, in seconds; "
        "positive = the feed's clock is behind ours"
    )
    beyond_safety_buffer: bool = Field(
        description="the lag exceeded the incremental safety buffer (the scheduler logged a warning): the buffer "
        "alone would let an incremental window miss stones"
    )
    safety_buffer_s: float | None = Field(
        description="the incremental safety buffer in force when the run was planned, in seconds (the "
        "INCREMENTAL_SAFETY_BUFFER_MINUTES setting); null for runs planned before it was recorded"
    )
    added_to_window: bool = Field(
        description="the lag widened this run's window: an incremental run from a watermark starts that much "
        "further before it (a full window, a feed clock ahead of ours or a lag within the Date header's "
        "resolution adds nothing)"
    )


class RunSummary(BaseModel):
    run_id: UUID
    feed: str
    run_type: str
    status: str = Field(description="the stored lifecycle status")
    state: RunState = Field(description="status, or 'stalled' for an ingesting run without progress")
    status_reason: str | None
    requested_by: str
    forced: bool
    trace_id: str
    updated_from: datetime
    updated_to: datetime
    watermark_before: datetime | None
    watermark_advanced: bool
    expected_partitions: int
    completed_partitions: int
    failed_partitions: int
    estimated_records: int
    records_fetched: int = Field(
        description="stones the run's pages returned and stored (its partitions' records_seen; a refused stone is "
        "counted by its error record instead)"
    )
    records_changed: int = Field(
        description="of those, stones whose payload differed from the one stored: only these are queued for "
        "consolidation; the rest are unchanged since they were last fetched (their partitions' records_changed)"
    )
    consolidation_processed: int = Field(description="queued stones the consolidation has processed")
    consolidation_errors: int
    diamonds_inserted: int
    diamonds_updated: int
    diamonds_unchanged: int
    diamonds_deleted: int
    diamonds_restored: int
    pricing_version: int | None
    started_at: datetime
    ingestion_completed_at: datetime | None
    consolidation_requested_at: datetime | None
    consolidation_started_at: datetime | None
    consolidation_completed_at: datetime | None
    completed_at: datetime | None
    last_progress_at: datetime
    feed_clock: FeedClock | None = Field(
        description="the feed's clock as measured when the run was planned; null when unmeasured (the feed sent "
        "no usable Date header, or the run predates the measurement)"
    )


class Partition(BaseModel):
    partition_id: str
    position: int
    min_price: Decimal = Field(description="price per carat, inclusive")
    max_price: Decimal | None = Field(description="price per carat, inclusive; null = open-ended")
    estimated_records: int
    status: Literal["pending", "running", "completed", "failed"]
    next_offset: int
    last_page_offset: int | None
    pages: int
    records_seen: int
    records_changed: int
    drift_recoveries: int
    attempts: int
    error: str | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


class FanIn(BaseModel):
    expected: int
    completed: int
    failed: int
    open: int
    last_progress_at: datetime
    stall_deadline: datetime | None
    next_action: str = Field(description="what the fan-in would decide now (wait, consolidate, skip, stall...)")
    reason: str


class RunDetail(RunSummary):
    partitions: list[Partition]
    heatmap: Any = Field(description="the density scan the run was partitioned from")
    fan_in: FanIn


class RunList(BaseModel):
    data: list[RunSummary]


class RunSummaryEnvelope(BaseModel):
    data: RunSummary


class RunEnvelope(BaseModel):
    data: RunDetail


class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feed: FeedName
    run_type: RunType | None = Field(None, description="full or incremental; chosen from the watermark when absent")


class Started(BaseModel):
    data: RunSummary | None = Field(description="the new run, or null when there was nothing to fetch")
    message: str


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition_id: str | None = Field(
        None, min_length=1, max_length=200, pattern=TEXT, description="one partition; all when absent"
    )


class Retried(BaseModel):
    run_id: UUID
    retried: list[str]


class RetriedEnvelope(BaseModel):
    data: Retried


class Cancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("cancelled by an operator", max_length=500, pattern=TEXT)


class DeadLetterList(BaseModel):
    data: list[DeadLetter]


class Replayed(BaseModel):
    id: int
    replay_message_id: str


class ReplayedEnvelope(BaseModel):
    data: Replayed


def _has_text(note: str) -> str:
    if not note.strip():
        raise PydanticCustomError("blank_note", "the note is blank: say why the dead letter is dismissed")
    return note


class Dismiss(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_NOTE_LENGTH,
            pattern=TEXT,
            description="why the letter is dismissed instead of replayed (surrounding whitespace is trimmed)",
        ),
        AfterValidator(_has_text),
    ]


class DeadLetterEnvelope(BaseModel):
    data: DeadLetter


class Watermark(BaseModel):
    feed: str
    last_updated_at: datetime | None = Field(description="the feed is fetched from here on; null before any run")
    last_run_id: UUID | None
    updated_at: datetime | None


class WatermarkList(BaseModel):
    data: list[Watermark]


class ErrorRecord(BaseModel):
    id: int
    source: str
    code: str
    message: str
    run_id: UUID | None
    partition_id: str | None
    feed: str | None
    supplier_stone_id: str | None
    context: dict[str, Any]
    occurred_at: datetime


class ErrorList(BaseModel):
    data: list[ErrorRecord]


async def _summary(container: Container, run_id: UUID) -> RunSummary:
    async with container.pool.connection() as conn:
        detail = await operations.run_detail(conn, container.settings, container.clock.now(), run_id)
    return RunSummary.model_validate(detail)


@router.get("/runs", response_model=RunList, responses=responses(401, 403, 422))
async def get_runs(
    feed: Annotated[FeedName | None, Query()] = None,
    run_type: Annotated[RunType | None, Query(alias="type")] = None,
    status: Annotated[StatusFilter | None, Query(description="a status, 'stalled' or 'active'")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> RunList:
    """Runs, newest first, with partition counts and records fetched."""
    where = operations.RunFilter(feed, run_type, status)
    async with container.pool.connection() as conn:
        rows = await operations.list_runs(conn, container.settings, where, limit, offset)
    return RunList.model_validate({"data": rows})


@router.get("/runs/{run_id}", response_model=RunEnvelope, responses=responses(401, 403, 404, 422))
async def get_run(
    run_id: RunId, _: Principal = Depends(require_read), container: Container = Depends(get_container)
) -> RunEnvelope:
    """One run with its partitions (offsets, estimates, status, errors) and its fan-in state."""
    async with container.pool.connection() as conn:
        detail = await operations.run_detail(conn, container.settings, container.clock.now(), run_id)
    return RunEnvelope.model_validate({"data": detail})


@router.post("/runs", status_code=202, response_model=Started, responses={**ADMIN_RESPONSES, **responses(502)})
async def post_run(
    body: Annotated[StartRun, Body()],
    principal: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> Started:
    """Plan and start a run of a feed (409 if the feed already has an active run)."""
    started = await start_run(container, feed=body.feed, run_type=body.run_type, requested_by=f"api:{principal.client}")
    if started is None:
        return Started(data=None, message="nothing to fetch: no stones in the run's window")
    run = await _summary(container, started.run.run_id)
    return Started(data=run, message=f"run started with {len(started.partitions)} partitions")


@router.post("/runs/{run_id}/retry", status_code=202, response_model=RetriedEnvelope, responses=ADMIN_RESPONSES)
async def post_retry(
    run_id: RunId,
    body: Annotated[Retry | None, Body()] = None,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> RetriedEnvelope:
    """Resume the failed partitions (or one of them) from their recorded offsets."""
    result = await retry_failed(container, run_id, body.partition_id if body else None)
    return RetriedEnvelope(data=Retried(run_id=result.run_id, retried=list(result.retried)))


@router.post(
    "/runs/{run_id}/consolidate", status_code=202, response_model=RunSummaryEnvelope, responses=ADMIN_RESPONSES
)
async def post_consolidate(
    run_id: RunId, principal: Principal = Depends(require_admin), container: Container = Depends(get_container)
) -> RunSummaryEnvelope:
    """Force consolidation of what the run fetched; the watermark does not advance."""
    await force_consolidation(container, run_id, requested_by=f"api:{principal.client}")
    return RunSummaryEnvelope(data=await _summary(container, run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunSummaryEnvelope, responses=ADMIN_RESPONSES)
async def post_cancel(
    run_id: RunId,
    body: Annotated[Cancel | None, Body()] = None,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> RunSummaryEnvelope:
    """Cancel a planned or ingesting run; its in-flight messages become no-ops."""
    await cancel_run(container, run_id, (body or Cancel()).reason)
    return RunSummaryEnvelope(data=await _summary(container, run_id))


@router.get("/dead-letters", response_model=DeadLetterList, responses=responses(401, 403, 422))
async def get_dead_letters(
    queue: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    # Named before dismissal existed; kept so that existing clients keep working.
    include_resolved: Annotated[
        bool,
        Query(
            alias="include_replayed",
            description="also list the resolved letters: replayed or dismissed (the name predates dismissal)",
        ),
    ] = False,
    limit: Limit = 100,
    offset: Offset = 0,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> DeadLetterList:
    """Messages that kept failing, newest first, with their reasons: the outstanding ones (neither
    replayed nor dismissed) unless include_replayed."""
    letters = await list_dead_letters(
        container.pool, queue=queue, include_resolved=include_resolved, limit=limit, offset=offset
    )
    return DeadLetterList(data=letters)


@router.post(
    "/dead-letters/{dead_letter_id}/replay",
    status_code=202,
    response_model=ReplayedEnvelope,
    responses={**ADMIN_RESPONSES, **responses(400)},
)
async def post_replay(
    dead_letter_id: DeadLetterId,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> ReplayedEnvelope:
    """Send a dead letter back to its queue under a new message id (once)."""
    new_id = await replay(container, dead_letter_id)
    return ReplayedEnvelope(data=Replayed(id=dead_letter_id, replay_message_id=new_id))


@router.post("/dead-letters/{dead_letter_id}/dismiss", response_model=DeadLetterEnvelope, responses=ADMIN_RESPONSES)
async def post_dismiss(
    dead_letter_id: DeadLetterId,
    body: Annotated[Dismiss, Body()],
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> DeadLetterEnvelope:
    """Resolve a dead letter without replaying it, with a note saying why (once; 409 if it was already
    replayed or dismissed). It leaves the outstanding list and stays, as evidence, until retention."""
    return DeadLetterEnvelope(data=await dismiss(container.pool, dead_letter_id, body.note))


@router.get("/watermarks", response_model=WatermarkList, responses=responses(401, 403))
async def get_watermarks(
    _: Principal = Depends(require_read), container: Container = Depends(get_container)
) -> WatermarkList:
    """Per feed, the point the next incremental run fetches from."""
    async with container.pool.connection() as conn:
        return WatermarkList.model_validate({"data": await operations.watermarks(conn)})


@router.get("/errors", response_model=ErrorList, responses=responses(401, 403, 422))
async def get_errors(
    source: Annotated[Literal["scheduler", "worker", "consolidator", "fanin", "api", "bus"] | None, Query()] = None,
    code: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    feed: Annotated[FeedName | None, Query()] = None,
    run_id: Annotated[UUID | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> ErrorList:
    """Recorded errors (unmappable items, failed pages...), newest first."""
    where = operations.ErrorFilter(source, code, feed, run_id)
    async with container.pool.connection() as conn:
        rows: list[dict[str, Any]] = await operations.error_records(conn, where, limit, offset)
    return ErrorList.model_validate({"data": rows})
