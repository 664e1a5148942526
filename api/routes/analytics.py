"""/api/v2/analytics: figures for the dashboard. Scope `read`.

Inventory and the heatmap carry the catalogue ETag (and answer 304 to it) and are cached per
catalogue version; runs and consolidation progress are live.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from api import analytics
from api.auth import Principal, require_read
from api.deps import get_container
from api.errors import CACHE_CONTROL
from api.lru import Lru
from api.routes.common import responses
from api.routes.diamonds import check_not_modified, etag_for
from api.versions import catalogue_version
from shared.bootstrap import Container

router = APIRouter(prefix="/api/v2/analytics", tags=["analytics"])

FeedName = Literal["nivoda-natural", "nivoda-labgrown"]
FeedFilter = Annotated[FeedName | None, Query(description="one feed; all feeds when absent")]
Availability = Literal["available", "on_hold", "sold", "unavailable"]


class Counts(BaseModel):
    total: int
    available: int


class ShapeCounts(Counts):
    shape: str


class Inventory(BaseModel):
    feed: str | None
    total: int = Field(description="live stones")
    by_availability: dict[Availability, int]
    by_shape: list[ShapeCounts]
    by_origin: dict[Literal["natural", "lab_grown"], Counts]


class Bucket(BaseModel):
    min_price_per_carat: Decimal
    max_price_per_carat: Decimal | None


class CountedBucket(Bucket):
    count: int


class CaratBand(BaseModel):
    min_carats: Decimal
    max_carats: Decimal | None


class Heatmap(BaseModel):
    buckets: list[CountedBucket] = Field(description="stones per price-per-carat bucket")
    carat_bands: list[CaratBand]
    cells: list[list[int]] = Field(description="cells[bucket][carat band] = stones")
    total: int


class RunPoint(BaseModel):
    run_id: UUID
    feed: str
    run_type: str
    status: str
    status_reason: str | None
    forced: bool
    started_at: datetime
    ingestion_completed_at: datetime | None
    consolidation_started_at: datetime | None
    consolidation_completed_at: datetime | None
    completed_at: datetime | None
    estimated_records: int
    expected_partitions: int
    records_fetched: int
    consolidation_processed: int
    diamonds_inserted: int
    diamonds_updated: int
    diamonds_unchanged: int
    diamonds_deleted: int
    duration_s: float | None
    consolidation_duration_s: float | None
    throughput_per_s: float | None = Field(description="records fetched per second of run time")


class RunSeries(BaseModel):
    data: list[RunPoint]


class LastConsolidation(BaseModel):
    run_id: UUID
    status: str
    processed: int
    errors: int
    started_at: datetime | None
    completed_at: datetime | None
    progress: float | None


class FeedConsolidation(BaseModel):
    feed: str
    pending: int = Field(description="raw rows waiting for consolidation")
    raw_total: int
    live_diamonds: int
    last_consolidation: LastConsolidation | None


class Consolidation(BaseModel):
    data: list[FeedConsolidation]


def _cache(request: Request) -> Lru[tuple[Any, ...], bytes]:
    cache: Lru[tuple[Any, ...], bytes] = request.app.state.analytics_cache
    return cache


async def _versioned(
    request: Request, container: Container, key: tuple[Any, ...], compute: Any, model: type[BaseModel]
) -> Response:
    async with container.pool.connection() as conn:
        version = await catalogue_version(conn, request)
        etag = etag_for(version)
        check_not_modified(request, etag)
        body = _cache(request).get((*key, version))
        if body is None:
            body = model.model_validate(await compute(conn)).model_dump_json().encode()
            _cache(request).put((*key, version), body)
    return Response(body, media_type="application/json", headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})


@router.get("/inventory", response_model=Inventory, responses=responses(304, 401, 403, 422))
async def get_inventory(
    request: Request,
    feed: FeedFilter = None,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> Response:
    """Live stones by availability, by shape and by origin (natural / lab-grown)."""
    return await _versioned(
        request, container, ("inventory", feed), lambda conn: analytics.inventory(conn, feed), Inventory
    )


@router.get("/price-per-carat", response_model=Heatmap, responses=responses(304, 401, 403, 422))
async def get_heatmap(
    request: Request,
    feed: FeedFilter = None,
    lab_grown: Annotated[bool | None, Query(description="only lab-grown (true) or natural (false)")] = None,
    availability: Annotated[Availability | None, Query(description="one availability; all when absent")] = None,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> Response:
    """The price-per-carat histogram and its carat-band heatmap over live stones."""
    query = analytics.HeatmapQuery(feed, lab_grown, availability)
    return await _versioned(
        request, container, ("heatmap", query), lambda conn: analytics.price_per_carat_heatmap(conn, query), Heatmap
    )


@router.get("/runs", response_model=RunSeries, responses=responses(401, 403, 422))
async def get_runs_over_time(
    feed: FeedFilter = None,
    days: Annotated[int, Query(ge=1, le=366, description="runs started in the last N days")] = 30,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> Response:
    """Runs with their durations and throughput, newest first."""
    async with container.pool.connection() as conn:
        rows = await analytics.runs_over_time(conn, feed, days, limit)
    body = RunSeries.model_validate({"data": rows}).model_dump_json().encode()
    return Response(body, media_type="application/json")


@router.get("/consolidation", response_model=Consolidation, responses=responses(401, 403))
async def get_consolidation(
    _: Principal = Depends(require_read), container: Container = Depends(get_container)
) -> Response:
    """Per feed: raw rows waiting, live stones, and the latest consolidation's progress."""
    async with container.pool.connection() as conn:
        rows = await analytics.consolidation_progress(conn)
    body = Consolidation.model_validate({"data": rows}).model_dump_json().encode()
    return Response(body, media_type="application/json")
