"""Response pieces shared by the routers: the error envelope and its OpenAPI declaration."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_ALL: Final[dict[int | str, dict[str, Any]]] = {
    304: {"description": "not modified (If-None-Match matched the current ETag)"},
    401: _error("missing, invalid, expired or revoked credentials"),
    403: _error("the credentials lack the scope this operation needs"),
    404: _error("not found"),
    409: _error("conflicts with the current state"),
    422: _error("a parameter or the body is invalid; details name it"),
    502: _error("the supplier feed failed (retry later)"),
    503: _error("the database is unavailable"),
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _ALL[code] for code in codes}


ERROR_RESPONSES: Final = responses(304, 401, 403, 404, 422)
ADMIN_RESPONSES: Final = responses(401, 403, 404, 409, 422)
