"""How a request reaches the container: the app's LazyContainer (injected by the local host, or
opened on first use under the Functions host)."""

from __future__ import annotations

from fastapi import Request

from shared.bootstrap import Container, LazyContainer


async def get_container(request: Request) -> Container:
    provider: LazyContainer = request.app.state.provider
    return await provider.get()
