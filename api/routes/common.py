"""Pieces shared by the routers: the error envelope and its OpenAPI declaration, and the refusal of
query parameters an operation does not take."""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Any, Final, Union, get_args, get_origin
from weakref import finalize

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from api.errors import ParameterError


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
    400: _error("the request cannot be carried out as asked (the message says why)"),
    401: _error("missing, invalid, expired or revoked credentials"),
    403: _error("the credentials lack the scope this operation needs"),
    404: _error("not found"),
    409: _error("conflicts with the current state"),
    413: _error("the request body is over 1 MiB"),
    422: _error("a parameter or the body is invalid; details name it"),
    429: {
        **_error("too many failed authentications from this source; Retry-After says when to try again"),
        "headers": {
            "Retry-After": {
                "description": "whole seconds until the source may try to authenticate again",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
    502: _error("the supplier feed failed (retry later)"),
    503: _error("the database is unavailable"),
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses an operation declares; 503 always: every operation needs the database, and
    429 with 401: an operation that authenticates is throttled after failed authentications."""
    throttled = {429} if 401 in codes else set()
    return {code: _ALL[code] for code in sorted({*codes, *throttled, 503})}


ERROR_RESPONSES: Final = responses(304, 401, 403, 404, 422)
ADMIN_RESPONSES: Final = responses(401, 403, 404, 409, 413, 422)


def takes_several(annotation: Any) -> bool:
    """`list[str]`, a tuple or a set, alone or in a union such as `list[str] | None`."""
    arms = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(get_origin(arm) in (list, tuple, set, frozenset) for arm in arms)


def _query_parameters(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    for parameter in dependant.query_params:
        yield parameter.alias, takes_several(parameter.field_info.annotation)
    for dependency in dependant.dependencies:
        yield from _query_parameters(dependency)


# By id (routes are unhashable); an entry leaves with its route, so a later route given the same id
# (tests build many apps) never finds another's names.
_DECLARED: dict[int, dict[str, bool]] = {}


def declared_query_parameters(route: APIRoute) -> dict[str, bool]:
    """The query parameters a route takes, its dependencies' included, each with whether it takes
    several values (computed once per route)."""
    names = _DECLARED.get(id(route))
    if names is None:
        names = _DECLARED[id(route)] = dict(_query_parameters(route.dependant))
        finalize(route, _DECLARED.pop, id(route), None)
    return names


async def refuse_unknown_query(request: Request) -> None:
    """A dependency: a query parameter the operation does not take is a 422. Ignoring it would
    answer a typo (`?stauts=failed`) as if no filter had been asked for. So is a single-valued one
    given twice: FastAPI would take the last silently (`?status=failed&status=completed`)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_query_parameters(route)
    unknown = sorted(set(request.query_params) - set(declared))
    if unknown:
        takes = f"takes {', '.join(sorted(declared))}" if declared else "takes no query parameters"
        raise ParameterError(unknown[0], f"unknown parameter; this operation {takes}")
    repeated = sorted(name for name in declared if not declared[name] and len(request.query_params.getlist(name)) > 1)
    if repeated:
        raise ParameterError(repeated[0], "given more than once")
