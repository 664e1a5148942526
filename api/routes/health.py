"""GET /api/health: public liveness and readiness."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

import psycopg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import get_container
from shared.bootstrap import Container
from shared.db.migrate import MigrationError, pending_migrations
from shared.errors import first_line

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class LastRun(BaseModel):
    run_id: str
    run_type: str
    status: str
    started_at: datetime
    completed_at: datetime | None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    migrations: Literal["current", "pending", "invalid", "unknown"]
    detail: str | None = None
    last_runs: dict[str, LastRun | None] = {}


_LAST_RUNS = """
SELECT f.feed, r.run_id::text, r.run_type, r.status, r.started_at, r.completed_at
FROM feeds f
LEFT JOIN LATERAL (
    SELECT * FROM run_metadata m WHERE m.feed = f.feed ORDER BY m.started_at DESC LIMIT 1
) r ON true
ORDER BY f.feed
"""


@router.get(
    "/api/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "database unreachable or schema not current"}},
    summary="Liveness and readiness (public)",
)
async def health(container: Container = Depends(get_container)) -> JSONResponse:
    try:
        async with container.pool.connection(timeout=5) as conn:
            await conn.execute("SELECT 1")
            try:
                pending = await pending_migrations(conn)
                migrations: Literal["current", "pending", "invalid"] = "pending" if pending else "current"
                detail = f"pending: {', '.join(pending)}" if pending else None
            except MigrationError as exc:
                migrations, detail = "invalid", str(exc)
            rows = await (await conn.execute(_LAST_RUNS)).fetchall() if migrations == "current" else []
    except (psycopg.Error, TimeoutError) as exc:
        log.warning("health check: database unavailable: %s", first_line(exc))
        body = Health(status="degraded", database="unavailable", migrations="unknown", detail=first_line(exc))
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    last_runs = {
        feed: LastRun(run_id=run_id, run_type=kind, status=status, started_at=started, completed_at=done)
        if run_id
        else None
        for feed, run_id, kind, status, started, done in rows
    }
    ok = migrations == "current"
    body = Health(
        status="ok" if ok else "degraded",
        database="ok",
        migrations=migrations,
        detail=detail,
        last_runs=last_runs,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)
