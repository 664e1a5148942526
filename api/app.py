"""The ASGI app: served by uvicorn locally and by the Functions ASGI bridge in Azure (same object)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.background import Background
from api.body_limit import BodyLimit
from api.compression import GZIP_LEVEL, GZIP_MINIMUM_SIZE, GZipNegotiation
from api.errors import install_error_handlers
from api.head import HeadAsGet
from api.lru import Lru
from api.openapi import install_openapi
from api.routes import analytics, diamonds, health, heatmap, operations, pricing
from api.routes.common import refuse_unknown_query
from api.routes.dashboard import install_dashboard
from api.routes.docs import install_docs
from shared.bootstrap import Container, LazyContainer
from shared.settings import get_settings

API_VERSION = "2.0.0"
DESCRIPTION = """
Diamond Opus: the live diamond catalogue, its ingestion runs, pricing rules and analytics.

**Authentication.** Send `X-API-Key: <key>` (create one with `opus api-key create --name N --scope
read|admin`), or sign the request with HMAC: headers `X-Client-Id`, `X-Timestamp` (unix seconds) and
`X-Signature` = hex HMAC-SHA256 with the client's secret (HMAC_SECRETS) over
`METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nhex(SHA256(BODY))`, where PATH_WITH_QUERY is the path and
query string exactly as sent (percent-encoded and ordered as on the wire). A timestamp more than HMAC_TOLERANCE_S
(300 s) from the server clock, or a signature already used, is refused. HMAC clients named
`"<id>:read"` in HMAC_SECRETS get scope `read`; all others get `read` and `admin`.

**Scopes.** `read`: the catalogue, analytics, and reading runs, dead letters, error records and
watermarks. `admin` (which implies `read`): every action (start, retry, force or cancel a run, replay a
dead letter, preview a heatmap) and pricing rules and jobs. `/api/health` is public.

**Errors.** Every error is `{"error": {"code", "message", "details"}}`; invalid parameters answer
422 with the parameter named in `details`, as do a query parameter the operation does not take and
a single-valued one given twice.

**Bodies** are at most 1 MiB (413 `payload_too_large`).

**Money** is a decimal string with two places; timestamps are ISO-8601 in UTC.
"""
# The page cache is bounded by API_PAGE_CACHE_MB; the entry bound only caps the bookkeeping.
PAGE_CACHE_ENTRIES = 100_000


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Served on its own (uvicorn --factory api.app:create_app), the app closes the container it
    # opened, pool first, while the loop still runs; left to the loop's shutdown, the two nested
    # generators holding it were closed at the same time and the pool never closed cleanly.
    yield
    await app.state.provider.aclose()


def create_app(container: Container | None = None) -> FastAPI:
    """Build the app; with no container it opens one from the settings on first request (Azure)."""
    app = FastAPI(
        title="Diamond Opus API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url="/api/v2/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.provider = LazyContainer(container=container)
    page_cache_bytes = (container.settings if container else get_settings()).api_page_cache_mb * 1024 * 1024
    app.state.background = Background()
    # Results keyed by catalogue version: analytics bodies, search counts per filter set, search pages.
    app.state.analytics_cache = Lru(256)
    app.state.counts = Lru(4096)
    app.state.pages = Lru(PAGE_CACHE_ENTRIES, max_weight=page_cache_bytes, weigh=diamonds.page_weight)
    install_error_handlers(app)
    app.add_middleware(GZipNegotiation, minimum_size=GZIP_MINIMUM_SIZE, compresslevel=GZIP_LEVEL)
    # Outermost: a HEAD carries the headers of the GET as served, gzip included.
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyLimit)
    # The catalogue search parses and checks its own query (api/catalogue/params.py); a probe's
    # health check is not held to it.
    checked = [Depends(refuse_unknown_query)]
    app.include_router(health.router)
    app.include_router(diamonds.router)
    app.include_router(pricing.router, dependencies=checked)
    app.include_router(analytics.router, dependencies=checked)
    app.include_router(operations.router, dependencies=checked)
    app.include_router(heatmap.router, dependencies=checked)
    install_openapi(app)
    install_docs(app)
    install_dashboard(app)
    return app
