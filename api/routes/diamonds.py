"""GET /api/v2/diamonds (search) and /api/v2/diamonds/{id}: the live catalogue, scope `read`.

Responses carry a weak ETag built from the catalogue version (dataset_versions, bumped by every
consolidation and repricing); a matching If-None-Match answers 304 without running the search.
Pages and stones are kept by catalogue version (API_PAGE_CACHE_MB per process), gzipped once, so a
request repeated before the catalogue changes is answered without the database: never stale, as
the ETag.
The stones' JSON is produced by PostgreSQL and joined here, not re-parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.auth import Principal, require_read
from api.catalogue.cursor import decode_cursor, encode_cursor
from api.catalogue.fields import DiamondFull, DiamondSlim
from api.catalogue.params import SearchRequest, openapi_parameters, parse_search
from api.catalogue.query import SORT_KEYS
from api.catalogue.store import get_diamond, search
from api.compression import accepts_gzip, gzipped
from api.deps import get_container
from api.errors import CACHE_CONTROL, NotModified
from api.lru import Lru
from api.routes.common import ERROR_RESPONSES, refuse_unknown_query
from api.versions import request_version
from shared.bootstrap import Container
from shared.errors import NotFoundError

router = APIRouter(prefix="/api/v2/diamonds", tags=["catalogue"])
API_REPRESENTATION = "2"


class Pagination(BaseModel):
    limit: int
    page: int | None = Field(description="the page number when paging by page, else null")
    has_more: bool
    next_cursor: str | None = Field(description="pass as `cursor` to get the next page (keyset)")
    total: int | None = Field(
        description="matching stones: exact when total_estimated is false, else an estimate (null with count=false)"
    )
    total_estimated: bool = Field(
        description="true when total is the database's estimate (too many matches to count quickly), "
        "never below the stones already seen"
    )


class SearchPage(BaseModel):
    data: list[DiamondFull | DiamondSlim]  # type: ignore[valid-type]
    pagination: Pagination


class DiamondEnvelope(BaseModel):
    data: DiamondFull  # type: ignore[valid-type]


@dataclass(frozen=True)
class Page:
    """A response body, and the same gzipped (None when too small to compress)."""

    body: bytes
    gzipped: bytes | None

    @classmethod
    def of(cls, body: bytes) -> Page:
        return cls(body, gzipped(body))

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


# Search pages and stones by catalogue version: never stale, as the ETag.
PageKey = tuple[str, SearchRequest | UUID]
PageCache = Lru[PageKey, Page]


def page_weight(key: PageKey, page: Page) -> int:
    """The bytes a kept page holds: its bodies and, roughly, its key. A search's key is the client's
    to make long (a list of a thousand labs, a padded cursor) while its page can be empty."""
    return page.size + len(repr(key))


def etag_for(version: str) -> str:
    return f'W/"{API_REPRESENTATION}-{version}"'


def _opaque(tag: str) -> str:
    return tag.strip().removeprefix("W/")


def check_not_modified(request: Request, etag: str) -> None:
    """304 when If-None-Match names the current ETag, compared weakly as RFC 9110 §13.1.2 has it
    (`W/"x"` and `"x"` match), or is `*`."""
    header = request.headers.get("if-none-match")
    if header and (header.strip() == "*" or _opaque(etag) in {_opaque(tag) for tag in header.split(",")}):
        raise NotModified(etag)


def _respond(request: Request, page: Page, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if page.gzipped is not None and accepts_gzip(request):
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(page.gzipped, media_type="application/json", headers=headers)
    return Response(page.body, media_type="application/json", headers=headers)


async def _versioned(
    request: Request, container: Container, key: SearchRequest | UUID, body: Callable[[str], Awaitable[bytes]]
) -> Response:
    """The response for `key` at the current catalogue version: 304 when the client holds it, else
    the kept page, else `body(version)`, kept for the next request."""
    version = await request_version(container.pool, request)
    etag = etag_for(version)
    check_not_modified(request, etag)
    pages: PageCache = request.app.state.pages
    page = pages.get((version, key))
    if page is None:
        page = Page.of(await body(version))
        pages.put((version, key), page)
    return _respond(request, page, etag)


@router.get(
    "",
    summary="Search the live catalogue",
    response_model=None,
    responses={200: {"model": SearchPage, "headers": {"ETag": {"schema": {"type": "string"}}}}, **ERROR_RESPONSES},
    openapi_extra={"parameters": openapi_parameters(list(SORT_KEYS))},
)
async def search_diamonds(
    request: Request,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> Response:
    """Filters combine with AND; values inside one list parameter with OR. Only live stones
    (not deleted) are searched, and only `available` ones unless `availability` says otherwise.
    Sorting puts stones without a value last and breaks ties by id. Page with `cursor`
    (`next_cursor` of the previous page) at any depth, or with `page` for the first pages.

    A cursor continues after the last stone's sort value and id. While the catalogue is unchanged
    a walk returns every match exactly once. When it changes (the ETag changes) the walk goes on
    over the current catalogue: a stone added, or moved by its new value, behind the cursor is
    not returned; one moved ahead of it may be returned again; stones that did not change are
    still returned exactly once."""
    query = parse_search(request.query_params.multi_items(), SORT_KEYS)
    # Checked before If-None-Match is: a bad cursor is a 422, not a 304.
    after = decode_cursor(query, query.cursor) if query.cursor else None

    async def body(version: str) -> bytes:
        async with container.pool.connection() as conn:
            cap = container.settings.api_search_count_limit
            result = await search(conn, query, after, cap, request.app.state.counts, version)
        pagination = {
            "limit": query.limit,
            "page": query.page,
            "has_more": result.next_position is not None,
            "next_cursor": encode_cursor(query, result.next_position) if result.next_position else None,
            "total": result.total,
            "total_estimated": result.estimated,
        }
        return b'{"data":[' + ",".join(result.docs).encode() + b'],"pagination":' + orjson.dumps(pagination) + b"}"

    return await _versioned(request, container, query, body)


@router.get(
    "/{diamond_id}",
    dependencies=[Depends(refuse_unknown_query)],
    summary="One live stone",
    response_model=None,
    responses={200: {"model": DiamondEnvelope}, **ERROR_RESPONSES},
)
async def get_one(
    diamond_id: UUID,
    request: Request,
    _: Principal = Depends(require_read),
    container: Container = Depends(get_container),
) -> Response:
    async def body(_: str) -> bytes:
        async with container.pool.connection() as conn:
            doc = await get_diamond(conn, diamond_id)
        if doc is None:
            raise NotFoundError(f"no live diamond {diamond_id}")
        return b'{"data":' + doc.encode() + b"}"

    return await _versioned(request, container, diamond_id, body)
