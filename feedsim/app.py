"""The simulator's ASGI app: Nivoda's endpoint plus a control surface for tests and benchmarks.

- `POST /api/diamonds`          the GraphQL endpoint
- `GET  /_sim/inventory`        ground truth: every stone still in the feed
- `GET  /_sim/stats`            requests by operation, faults injected, rejections, CPU, RSS
- `POST /_sim/stats/reset`      zero the counters
- `GET|POST /_sim/config`       read or change knobs (partial JSON object of SimConfig fields)
- `POST /_sim/churn`            apply {"events": N} churn events now; returns what changed
- `POST /_sim/edit`             remove or reprice named stones now: {"remove": [id], "reprice": {id: cents}}
- `POST /_sim/tokens/revoke`    forget every issued token (the server then calls them invalid)
- `POST /_sim/tokens/expire`    expire every issued token now (the server then calls them expired)
- `GET  /_sim/health`

Every response carries a `Date` from the simulator's own clock (`clock_offset_ms` included), as a
real server's does from its clock; whoever serves the app must not add one of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedsim.simulator import Simulator

MAX_CHURN_EVENTS = 1_000_000


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def _body_object(request: Request) -> dict[str, Any] | Response:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return _json({"error": "body is not JSON"}, 400)
    if not isinstance(body, dict):
        return _json({"error": "expected a JSON object"}, 400)
    return body


class DateFromClock:
    """Sets every HTTP response's `Date` header from `http_date` (replacing any other)."""

    def __init__(self, app: ASGIApp, http_date: Callable[[], str]) -> None:
        self.app = app
        self.http_date = http_date

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"date"]
                headers.append((b"date", self.http_date().encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_dated)


def create_app(simulator: Simulator) -> Starlette:
    async def graphql(request: Request) -> Response:
        reply = await simulator.handle_graphql(await request.body())
        media = "application/json" if reply.body[:1] in (b"{", b"[") else "text/html"
        return Response(reply.body, status_code=reply.status, headers=reply.headers, media_type=media)

    async def inventory(_: Request) -> Response:
        return StreamingResponse(simulator.inventory_json(), media_type="application/json")

    async def stats(_: Request) -> Response:
        return _json(simulator.stats_snapshot())

    async def reset_stats(_: Request) -> Response:
        simulator.reset_stats()
        return _json(simulator.stats_snapshot())

    async def get_config(_: Request) -> Response:
        return _json(simulator.config.model_dump())

    async def set_config(request: Request) -> Response:
        body = await _body_object(request)
        if isinstance(body, Response):
            return body
        try:
            config = simulator.update_config(body)
        except ValidationError as exc:
            problems = [{"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            return _json({"error": "invalid config", "problems": problems}, 400)
        return _json(config.model_dump())

    async def churn(request: Request) -> Response:
        body = await _body_object(request)
        if isinstance(body, Response):
            return body
        events = body.get("events")
        if not isinstance(events, int) or isinstance(events, bool) or not 0 <= events <= MAX_CHURN_EVENTS:
            return _json({"error": f"'events' must be an integer 0-{MAX_CHURN_EVENTS}"}, 400)
        return _json(simulator.apply_churn(events))

    async def edit(request: Request) -> Response:
        body = await _body_object(request)
        if isinstance(body, Response):
            return body
        remove, reprice = body.get("remove", []), body.get("reprice", {})
        valid = (
            set(body) <= {"remove", "reprice"}
            and isinstance(remove, list)
            and all(isinstance(sid, str) for sid in remove)
            and isinstance(reprice, dict)
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in reprice.values())
        )
        if not valid:
            return _json({"error": "expected {'remove': [diamond id, ...], 'reprice': {diamond id: cents > 0}}"}, 400)
        return _json(simulator.edit(remove=remove, reprice=reprice))

    async def revoke_tokens(_: Request) -> Response:
        return _json({"revoked": simulator.tokens.revoke_all()})

    async def expire_tokens(_: Request) -> Response:
        return _json({"expired": simulator.tokens.expire_all()})

    async def health(_: Request) -> Response:
        return _json({"status": "ok", "stones": simulator.inventory.live_count})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        churn_task = asyncio.create_task(simulator.churn_forever())
        try:
            yield
        finally:
            churn_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await churn_task

    return Starlette(
        routes=[
            Route("/api/diamonds", graphql, methods=["POST"]),
            Route("/_sim/inventory", inventory, methods=["GET"]),
            Route("/_sim/stats", stats, methods=["GET"]),
            Route("/_sim/stats/reset", reset_stats, methods=["POST"]),
            Route("/_sim/config", get_config, methods=["GET"]),
            Route("/_sim/config", set_config, methods=["POST"]),
            Route("/_sim/churn", churn, methods=["POST"]),
            Route("/_sim/edit", edit, methods=["POST"]),
            Route("/_sim/tokens/revoke", revoke_tokens, methods=["POST"]),
            Route("/_sim/tokens/expire", expire_tokens, methods=["POST"]),
            Route("/_sim/health", health, methods=["GET"]),
        ],
        middleware=[Middleware(DateFromClock, http_date=simulator.http_date)],
        lifespan=lifespan,
    )
