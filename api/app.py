"""The ASGI app: served by uvicorn locally and by the Functions ASGI bridge in Azure (same object)."""

from __future__ import annotations

from fastapi import FastAPI

from api.deps import ContainerProvider
from api.errors import install_error_handlers
from api.routes import health
from shared.bootstrap import Container

API_VERSION = "2.0.0"


def create_app(container: Container | None = None) -> FastAPI:
    """Build the app; with no container it opens one from the settings on first request (Azure)."""
    app = FastAPI(
        title="Diamond Opus API",
        version=API_VERSION,
        openapi_url="/api/v2/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.provider = ContainerProvider(container)
    install_error_handlers(app)
    app.include_router(health.router)
    return app
