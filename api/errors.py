"""Every error leaves the API as {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any, Final

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from shared.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidRequestError,
    NotFoundError,
    OpusError,
    first_line,
)
from shared.feed.errors import FeedError

log = logging.getLogger(__name__)


class AuthError(OpusError):
    """401: no usable credentials."""

    code = "unauthorized"


class ForbiddenError(OpusError):
    """403: valid credentials without the scope the route needs."""

    code = "forbidden"


class TooManyFailedAuthenticationsError(OpusError):
    """429: the request's source failed to authenticate too often (api/auth_throttle.py)."""

    code = "too_many_failed_authentications"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications from this address; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ParameterError(OpusError):
    """422: a request parameter the route parses itself is malformed; names the parameter."""

    code = "validation_error"

    def __init__(self, parameter: str, message: str, location: str = "query") -> None:
        super().__init__(f"invalid value for {parameter}: {message}")
        self.details = [{"parameter": parameter, "in": location, "message": message}]


class NotModified(Exception):
    """Not an error: the client's cached copy (If-None-Match) is current."""

    def __init__(self, etag: str) -> None:
        super().__init__(etag)
        self.etag = etag


_STATUS_BY_ERROR: dict[type[OpusError], int] = {
    AuthError: 401,
    ForbiddenError: 403,
    TooManyFailedAuthenticationsError: 429,
    ParameterError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    InvalidRequestError: 400,
}


def database_unavailable(exc: Exception) -> bool:
    """No connection in time, a connection refused or lost, the server shutting down: the
    database, not the request, failed (SQLSTATE classes 08 and 57P, or none: the client's side)."""
    if isinstance(exc, DatabaseUnavailableError | PoolTimeout):
        return True
    return isinstance(exc, psycopg.OperationalError) and (exc.sqlstate or "08").startswith(("08", "57P"))


# Catalogue responses depend on the caller's key and change at every consolidation: caches may
# keep them but must revalidate (ETag) each time.
CACHE_CONTROL = "private, no-cache"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status)


def _validation_detail(item: dict[str, Any]) -> dict[str, Any]:
    loc = [str(part) for part in item.get("loc", ())]
    where = loc[0] if loc else "request"
    if item.get("type") == "json_invalid":
        # FastAPI locates a JSON syntax error at ("body", <character position>): not a field.
        reason = item.get("ctx", {}).get("error", "malformed")
        position = f" at character {loc[1]}" if len(loc) > 1 else ""
        return {"parameter": "body", "in": "body", "message": f"not valid JSON: {reason}{position}"}
    if loc == ["body"] and isinstance(item.get("input"), bytes | str):
        # A body that was not parsed as JSON at all: it came with another content type.
        message = "the body must be a JSON object sent with Content-Type: application/json"
        return {"parameter": "body", "in": "body", "message": message}
    name = ".".join(loc[1:]) if len(loc) > 1 else where
    return {"parameter": name, "in": where, "message": item.get("msg", "invalid value")}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [_validation_detail(item) for item in exc.errors()]


_METHODS: Final = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route fully matches for this path (routers nest, so each is asked), and
    HEAD wherever GET is (api/head.py)."""
    routes: list[BaseRoute] = request.app.routes
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return sorted([*allowed, "HEAD"] if "GET" in allowed else allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        names = ", ".join(sorted({d["parameter"] for d in details}))
        return error_response(422, "validation_error", f"invalid value for {names}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (not JSON, not UTF-8): a validation error of the body.
            detail = [{"parameter": "body", "in": "body", "message": str(exc.detail)}]
            return error_response(422, "validation_error", f"invalid value for body: {exc.detail}", detail)
        code = {
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
            413: "payload_too_large",  # api/body_limit.py
        }.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        if exc.status_code == 405:
            # Starlette names the methods of the first route whose path matched; the resource has all.
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    @app.exception_handler(OpusError)
    async def _opus(_: Request, exc: OpusError) -> JSONResponse:
        status = next((s for t, s in _STATUS_BY_ERROR.items() if isinstance(exc, t)), 400)
        response = error_response(status, exc.code, str(exc), getattr(exc, "details", None))
        if status == 401:
            response.headers["WWW-Authenticate"] = 'APIKey header="X-API-Key"'
        if isinstance(exc, TooManyFailedAuthenticationsError):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(FeedError)
    async def _feed(_: Request, exc: FeedError) -> JSONResponse:
        # The supplier failed, not this service or the caller: a gateway error, retryable later.
        log.warning("feed error: %s", exc)
        return error_response(502, "feed_unavailable", f"the supplier feed failed: {exc}")

    @app.exception_handler(NotModified)
    async def _not_modified(_: Request, exc: NotModified) -> Response:
        # RFC 9110 §15.4.5: a 304 carries the Vary its 200 would (every JSON body may be gzipped).
        headers = {"ETag": exc.etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept-Encoding"}
        return Response(status_code=304, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            return await _unexpected(request, exc)
        # The driver's message names the database's host, port and user: logged, not answered.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, first_line(exc))
        return error_response(503, DatabaseUnavailableError.code, "the database is unavailable; retry later")

    app.add_exception_handler(DatabaseUnavailableError, _database)
    app.add_exception_handler(psycopg.OperationalError, _database)
