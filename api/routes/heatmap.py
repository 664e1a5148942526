"""POST /api/v2/heatmap/preview: the density scan and partitions a new run would get. Scope `admin`.

Nothing is recorded: the scan runs the scheduler's own pieces (run window, run query, density scan,
partition planner) with the settings a run would use, optionally overridden per request, and
answers in the shape a run stores in `run_metadata.heatmap` (GET /api/v2/runs/{id} -> `heatmap`),
plus the window it scanned. It is admin-only because every count is a call to the supplier, whose
request rate is limited for the whole account; `max_count_calls` bounds what one preview spends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, require_admin
from api.deps import get_container
from api.routes.common import responses
from scheduler.heatmap import scan_density
from scheduler.partitioning import plan_partitions
from scheduler.planning import plan_window
from scheduler.service import heatmap_summary, partition_query, run_query
from shared.bootstrap import Container
from shared.errors import ConflictError
from shared.runs import load_watermark

router = APIRouter(prefix="/api/v2/heatmap", tags=["operations"])

FeedName = Literal["nivoda-natural", "nivoda-labgrown"]


class ScanRequest(BaseModel):
    """Fields left out take the values a scheduled run would use (the settings)."""

    # Strict: `false` is not a number of partitions.
    model_config = ConfigDict(extra="forbid", strict=True)

    feed: FeedName
    run_type: Literal["full", "incremental"] | None = Field(
        None, description="full or incremental; chosen from the watermark when absent, as for a run"
    )
    max_workers: int | None = Field(None, ge=1, le=1000, description="partitions to plan for")
    min_records_per_worker: int | None = Field(None, ge=1, le=10_000_000)
    max_records: int | None = Field(None, ge=0, le=100_000_000, description="cap on the run's stones (0 = none)")
    max_count_calls: int | None = Field(None, ge=5, le=1000, description="count-call budget of the scan")


class Chunk(BaseModel):
    min: Decimal = Field(description="price per carat, inclusive")
    max: Decimal | None = Field(description="price per carat, inclusive; null = open-ended")
    count: int


class PlannedPartition(BaseModel):
    id: str
    min: Decimal
    max: Decimal | None
    estimated: int


class Scan(BaseModel):
    feed: str
    run_type: Literal["full", "incremental"]
    updated_from: datetime
    updated_to: datetime
    count_calls: int
    duration_s: float
    total: int = Field(description="stones in the run's window")
    chunks: list[Chunk]
    partitions: list[PlannedPartition]


class ScanEnvelope(BaseModel):
    data: Scan


async def preview_scan(container: Container, request: ScanRequest) -> dict[str, Any]:
    settings = container.settings
    async with container.pool.connection() as conn:
        watermark = await load_watermark(conn, request.feed)
    try:
        window = plan_window(
            requested=request.run_type,
            watermark=watermark,
            now=container.clock.now(),
            full_run_start=settings.full_run_start_date,
            safety_buffer=timedelta(minutes=settings.incremental_safety_buffer_minutes),
        )
    except ValueError as exc:  # an empty window: the watermark is in the future
        raise ConflictError(str(exc)) from None
    query = run_query(request.feed, window)

    async def count(low: Decimal, high: Decimal | None) -> int:
        return await container.feed.count(partition_query(query, low, high))

    default_workers = settings.max_workers_full if window.run_type == "full" else settings.max_workers_incremental
    max_workers = request.max_workers or default_workers
    min_records = request.min_records_per_worker or settings.min_records_per_worker
    max_records = settings.max_records_per_run if request.max_records is None else request.max_records
    density = await scan_density(
        count,
        min_price=settings.heatmap_min_price_per_carat,
        max_price=settings.heatmap_max_price_per_carat,
        max_calls=request.max_count_calls or settings.heatmap_max_count_calls,
        concurrency=settings.heatmap_concurrency,
        min_records_per_partition=min_records,
        target_partitions=max_workers,
        max_records=max_records,
    )
    partitions = plan_partitions(
        density, max_workers=max_workers, min_records_per_worker=min_records, max_records=max_records
    )
    return {
        "feed": request.feed,
        "run_type": window.run_type,
        "updated_from": window.updated_from,
        "updated_to": window.updated_to,
        **heatmap_summary(density, partitions),
    }


@router.post("/preview", response_model=ScanEnvelope, responses=responses(401, 403, 409, 422, 502))
async def post_preview(
    body: Annotated[ScanRequest, Body()],
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> ScanEnvelope:
    """Scan the feed's density and plan partitions as a new run would, without starting one."""
    return ScanEnvelope.model_validate({"data": await preview_scan(container, body)})
