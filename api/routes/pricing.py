"""/api/v2/pricing: rules (list, create, replace, deactivate, preview) and repricing jobs. Scope `admin`.

Saving a change records a new rule version and, unless `reprice=false`, starts a background job
that reprices the live catalogue to it (progress at /api/v2/pricing/jobs/{id}); no change is taken
while a job is pending or running. The latest change's completed job can be reverted, which
restores the previous rules and reprices back; a failed job can be resumed while its rules are current.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from api import pricing
from api.auth import Principal, require_admin
from api.background import Background
from api.deps import get_container
from api.errors import ParameterError
from api.routes.common import ADMIN_RESPONSES, responses
from consolidator.preview import PreviewReport
from consolidator.repricing import RepricingJob, list_jobs, load_job, resumable_job, run_job
from shared.bootstrap import Container
from shared.grades import CLARITIES, COLORS, CUT_GRADES, SHAPES

router = APIRouter(prefix="/api/v2/pricing", tags=["pricing"])

FeedName = Literal["nivoda-natural", "nivoda-labgrown"]
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
JobId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Reprice = Annotated[bool, Query(description="start a repricing job for the change (default true)")]
Money = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", description="decimal string, 2 places")]


def _grades(values: tuple[str, ...], what: str) -> Any:
    return Field(
        None,
        min_length=1,
        max_length=len(values),
        description=f"{what}; any (null) when absent. Common spellings are normalised (EX -> EXCELLENT)",
        json_schema_extra={"items": {"type": "string", "enum": list(values)}},
    )


class RuleIn(BaseModel):
    """A pricing rule. Criteria left null match any stone; give exactly one of markup_multiplier
    (retail = cost x multiplier) and margin_modifier (percentage points over the stone type's base
    margin). Active rules are tried by ascending priority; priorities are unique per feed."""

    model_config = ConfigDict(extra="forbid")

    # StrictInt: a JSON `false` is not priority 0.
    priority: StrictInt = Field(ge=0, le=2**31 - 1)
    description: str | None = Field(None, max_length=500, pattern=r"^[^\x00]*$")
    feed: FeedName | None = None
    stone_type: Literal["natural", "lab", "fancy"] | None = None
    shapes: list[str] | None = _grades(SHAPES, "shapes")
    colors: list[str] | None = _grades(COLORS, "colours")
    clarities: list[str] | None = _grades(CLARITIES, "clarities")
    cuts: list[str] | None = _grades(CUT_GRADES, "cut grades")
    carat_min: Decimal | None = Field(None, ge=0, max_digits=6, decimal_places=2)
    carat_max: Decimal | None = Field(None, ge=0, max_digits=6, decimal_places=2)
    cost_min: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    cost_max: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    markup_multiplier: Decimal | None = Field(None, gt=0, max_digits=8, decimal_places=4)
    margin_modifier: Decimal | None = Field(None, gt=-1000, lt=1000, max_digits=6, decimal_places=2)
    rating: StrictInt | None = Field(None, ge=1, le=10)


class RuleOut(BaseModel):
    id: int
    priority: int
    description: str | None
    feed: str | None
    stone_type: str | None
    shapes: list[str] | None
    colors: list[str] | None
    clarities: list[str] | None
    cuts: list[str] | None
    carat_min: Decimal | None
    carat_max: Decimal | None
    cost_min: Decimal | None
    cost_max: Decimal | None
    markup_multiplier: Decimal | None
    margin_modifier: Decimal | None
    rating: int | None
    active: bool
    created_at: datetime
    updated_at: datetime


class JobOut(BaseModel):
    id: int
    status: str
    from_version: int | None
    to_version: int
    reason: str
    total: int
    processed: int
    changed: int
    price_delta: Money
    progress: float = Field(description="processed / total, 0 to 1")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    reverted_at: datetime | None
    last_progress_at: datetime | None


class RuleList(BaseModel):
    data: list[RuleOut]
    version: int | None = Field(description="the current rule version")


class RuleChanged(BaseModel):
    data: RuleOut
    version: int = Field(description="the rule version this change created")
    repricing_job: JobOut | None


class JobList(BaseModel):
    data: list[JobOut]


class JobEnvelope(BaseModel):
    data: JobOut


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "update", "deactivate"]
    rule_id: StrictInt | None = Field(None, ge=1, le=2**63 - 1, description="the rule to update or deactivate")
    rule: RuleIn | None = Field(None, description="the new rule (create) or its replacement (update)")


class PriceChangeOut(BaseModel):
    supplier_stone_id: str
    feed: str
    current_price: Money
    candidate_price: Money
    delta: Money
    pricing_rule_id: int | None


class PreviewOut(BaseModel):
    stones: int = Field(description="live stones priced")
    changed: int = Field(description="stones whose retail price would change")
    increased: int
    decreased: int
    total_delta: Money
    total_current: Money
    total_candidate: Money
    examples: list[PriceChangeOut] = Field(description="the largest changes")


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def job_out(job: RepricingJob) -> JobOut:
    return JobOut(
        **{name: getattr(job, name) for name in JobOut.model_fields if name not in ("price_delta", "progress")},
        price_delta=_money(job.price_delta),
        progress=min(1.0, job.processed / job.total) if job.total else (1.0 if job.status == "completed" else 0.0),
    )


def preview_out(report: PreviewReport) -> PreviewOut:
    return PreviewOut(
        stones=report.stones,
        changed=report.changed,
        increased=report.increased,
        decreased=report.decreased,
        total_delta=_money(report.total_delta),
        total_current=_money(report.total_current),
        total_candidate=_money(report.total_candidate),
        examples=[
            PriceChangeOut(
                supplier_stone_id=c.supplier_stone_id,
                feed=c.feed,
                current_price=_money(c.current_price),
                candidate_price=_money(c.candidate_price),
                delta=_money(c.delta),
                pricing_rule_id=c.pricing_rule_id,
            )
            for c in report.examples
        ],
    )


def _background(request: Request) -> Background:
    background: Background = request.app.state.background
    return background


async def _changed(request: Request, container: Container, applied: pricing.Applied) -> RuleChanged:
    job = None
    if applied.job_id is not None:
        _background(request).spawn(run_job(container.pool, applied.job_id), f"repricing-{applied.job_id}")
        async with container.pool.connection() as conn:
            job = job_out(await load_job(conn, applied.job_id))
    return RuleChanged(data=RuleOut(**applied.rule), version=applied.version, repricing_job=job)


@router.get("/rules", response_model=RuleList, responses=responses(401, 403, 422))
async def get_rules(
    include_inactive: Annotated[bool, Query(description="also list deactivated rules")] = False,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> RuleList:
    async with container.pool.connection() as conn:
        rows = await pricing.list_rules(conn, include_inactive=include_inactive)
        version = await conn.execute("SELECT max(version) FROM pricing_rule_versions")
        current = await version.fetchone()
    return RuleList(data=[RuleOut(**row) for row in rows], version=current[0] if current else None)


@router.post("/rules", status_code=201, response_model=RuleChanged, responses=ADMIN_RESPONSES)
async def create_rule(
    request: Request,
    rule: RuleIn,
    reprice: Reprice = True,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> RuleChanged:
    change = pricing.Change("create", values=rule.model_dump())
    return await _changed(request, container, await pricing.apply_change(container.pool, change, reprice=reprice))


@router.put("/rules/{rule_id}", response_model=RuleChanged, responses=ADMIN_RESPONSES)
async def replace_rule(
    request: Request,
    rule_id: RuleId,
    rule: RuleIn,
    reprice: Reprice = True,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> RuleChanged:
    """Replace every field of an active rule (a field left out becomes null)."""
    change = pricing.Change("update", rule_id=rule_id, values=rule.model_dump())
    return await _changed(request, container, await pricing.apply_change(container.pool, change, reprice=reprice))


@router.delete("/rules/{rule_id}", response_model=RuleChanged, responses=ADMIN_RESPONSES)
async def deactivate_rule(
    request: Request,
    rule_id: RuleId,
    reprice: Reprice = True,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> RuleChanged:
    """Deactivate a rule (rules are kept for the record and for reverts)."""
    change = pricing.Change("deactivate", rule_id=rule_id)
    return await _changed(request, container, await pricing.apply_change(container.pool, change, reprice=reprice))


@router.post("/preview", response_model=PreviewOut, responses=ADMIN_RESPONSES)
async def preview_rule_change(
    body: Annotated[PreviewIn, Body()],
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> PreviewOut:
    """How many live stones the change would reprice and by how much in total (nothing is saved)."""
    # Each action takes exactly its fields: one sent for another action (an update's rule_id with
    # "create") would otherwise be ignored, previewing a change the caller did not mean.
    for name, value, needed in (
        ("rule_id", body.rule_id, body.action in ("update", "deactivate")),
        ("rule", body.rule, body.action in ("create", "update")),
    ):
        if needed and value is None:
            raise ParameterError(name, f"{body.action} needs {name}", "body")
        if not needed and value is not None:
            raise ParameterError(name, f"{body.action} takes no {name}", "body")
    values = body.rule.model_dump() if body.rule else None
    change = pricing.Change(body.action, rule_id=body.rule_id, values=values)
    return preview_out(await pricing.preview_change(container.pool, change))


@router.get("/jobs", response_model=JobList, responses=responses(401, 403, 422))
async def get_jobs(
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> JobList:
    async with container.pool.connection() as conn:
        return JobList(data=[job_out(job) for job in await list_jobs(conn, limit)])


@router.get("/jobs/{job_id}", response_model=JobEnvelope, responses=responses(401, 403, 404, 422))
async def get_job(
    job_id: JobId, _: Principal = Depends(require_admin), container: Container = Depends(get_container)
) -> JobEnvelope:
    async with container.pool.connection() as conn:
        return JobEnvelope(data=job_out(await load_job(conn, job_id)))


@router.post("/jobs/{job_id}/revert", status_code=202, response_model=JobEnvelope, responses=ADMIN_RESPONSES)
async def revert(
    request: Request,
    job_id: JobId,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> JobEnvelope:
    """Restore the rules the job applied over and reprice the catalogue back (a new job). Only the
    latest change can be reverted: once the rules changed after the job, 409."""
    new_job = await pricing.revert_job(container.pool, job_id)
    _background(request).spawn(run_job(container.pool, new_job), f"repricing-{new_job}")
    async with container.pool.connection() as conn:
        return JobEnvelope(data=job_out(await load_job(conn, new_job)))


@router.post("/jobs/{job_id}/resume", status_code=202, response_model=JobEnvelope, responses=ADMIN_RESPONSES)
async def resume(
    request: Request,
    job_id: JobId,
    _: Principal = Depends(require_admin),
    container: Container = Depends(get_container),
) -> JobEnvelope:
    """Continue a pending or running job from its last committed batch (e.g. after a restart;
    harmless while its runner is alive: one runner per job), or a failed one while the rules are
    still those it applies."""
    async with container.pool.connection() as conn:
        job = await resumable_job(conn, job_id)
    _background(request).spawn(run_job(container.pool, job_id), f"repricing-{job_id}")
    return JobEnvelope(data=job_out(job))
