"""The operators' dashboard: static files served by the app itself (no CDN, no build step), and
GET /api/v2/whoami, which the dashboard's sign-in uses to check a key and learn its scopes.

The page uses relative asset URLs, so the same files work at every mount point: `/` (uvicorn under
`opus run`) and `/api/dashboard/`, which is where Azure's HTTP function can serve it while the
Functions host's routePrefix is `api` (a request to `/` never reaches the function then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from api.auth import Principal, require_read
from api.keys import SCOPES, Scope
from api.routes.common import refuse_unknown_query, responses

STATIC: Final = Path(__file__).resolve().parent.parent / "static" / "dashboard"
MOUNT_POINTS: Final = ("/", "/api/dashboard/")

router = APIRouter(prefix="/api/v2", tags=["health"], dependencies=[Depends(refuse_unknown_query)])


class Caller(BaseModel):
    client: str
    scopes: list[Scope]
    method: Literal["api_key", "hmac"]


class CallerEnvelope(BaseModel):
    data: Caller


@router.get("/whoami", response_model=CallerEnvelope, responses=responses(401, 403))
async def whoami(principal: Principal = Depends(require_read)) -> CallerEnvelope:
    """The authenticated caller and its scopes."""
    scopes = [scope for scope in SCOPES if scope in principal.scopes]
    return CallerEnvelope(data=Caller(client=principal.client, scopes=scopes, method=principal.method))


def install_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    index = STATIC / "index.html"
    for mount in MOUNT_POINTS:

        async def page() -> FileResponse:
            # Revalidated each time, so a new release's page (and its asset list) is picked up.
            return FileResponse(index, headers={"Cache-Control": "no-cache"})

        app.add_api_route(mount, page, methods=["GET"], include_in_schema=False)
        app.mount(f"{mount}assets", StaticFiles(directory=STATIC / "assets"), name=f"dashboard-assets{mount}")
