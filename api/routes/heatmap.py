"""POST /api/v2/heatmap/preview: the density scan and partitions a new run would get. Scope `admin`.

Nothing is recorded: the scan runs the scheduler's own pieces (run window, run query, density scan,
partition planner) with the settings a run would use, optionally overridden per request, and
answers in the shape a run stores in `run_metadata.heatmap` (GET /api/v2/runs/{id} -> `heatmap`),
plus the window it scanned. It is admin-only because every count is a call to the supplier, whose
request rate is limited for the whole account; `max_count_calls` bounds what one preview spends.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, require_admin
from api.deps import get_container
from api.routes.common import responses
from scheduler.service import ScanLimits, heatmap_summary, next_window, scan_and_partition
from shared.bootstrap import Container
from shared.errors import ConflictError

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
    try:
        window = await next_window(container, request.feed, request.run_type)
    except ValueError as exc:  # an empty window: the watermark is in the future
        raise ConflictError(str(exc)) from None
    limits = ScanLimits.from_settings(container.settings, window.run_type)
    limits = replace(
        limits,
        max_workers=request.max_workers or limits.max_workers,
        min_records_per_worker=request.min_records_per_worker or limits.min_records_per_worker,
        max_records=limits.max_records if request.max_records is None else request.max_records,
        max_calls=request.max_count_calls or limits.max_calls,
    )
    density, partitions = await scan_and_partition(container, request.feed, window, limits)
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
