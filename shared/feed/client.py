"""Async GraphQL client for Nivoda's diamond feed.

One POST endpoint; `authenticate` returns a token that every other operation passes as
`as(token: ...)`. The token is cached for its assumed lifetime and refreshed a little early, one
refresh at a time whose outcome, token or failure, every caller waiting for it shares; a token the
server calls invalid or expired is replaced once and the call repeated. Transient failures
(timeouts, connection errors, 429, 5xx, the CDN's 403, server-side GraphQL errors) are retried with
exponential backoff and jitter, waiting at least what Retry-After asks; fatal ones (refused
credentials, rejected queries) are raised at once. Every HTTP request, retries included, first
takes a slot from the shared rate limiter. Every response's `Date` header measures the feed's clock
against ours (`clock_reading`; see `shared.feed.clock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from shared.feed import documents
from shared.feed.clock import ClockReading, clock_lag
from shared.feed.errors import FeedAuthError, FeedQueryError, FeedTransientError
from shared.feed.query import CREATED_AT_ASC, DiamondQuery, Order
from shared.feed.ratelimit import RateLimiter
from shared.feed.responses import TokenRejected, TransientFailure, interpret
from shared.feed.transport import feed_http_client
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_PAGE_SIZE: Final = 50
TOKEN_REFRESH_MARGIN_S: Final = 300.0


@dataclass
class ClientStats:
    """What the client did, for logs, run summaries and tests."""

    requests: Counter[str] = field(default_factory=Counter)  # HTTP requests by operation
    retries: Counter[str] = field(default_factory=Counter)  # retries by cause
    authentications: int = 0
    reauths: int = 0  # re-authentications forced by a rejected token

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "retries": dict(self.retries),
            "authentications": self.authentications,
            "reauths": self.reauths,
        }


def _retrieve_outcome(task: asyncio.Task[str]) -> None:
    if not task.cancelled():
        task.exception()


class NivodaClient:
    def __init__(
        self,
        endpoint: str,
        username: str,
        password: str,
        *,
        rate_limiter: RateLimiter,
        http: httpx.AsyncClient | None = None,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 45.0,
        max_retries: int = 5,
        token_lifetime_s: int = 6 * 3600,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 20.0,
        backoff_jitter_s: float = 0.3,
        max_retry_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.endpoint = endpoint
        self._username = username
        self._password = password
        self._limiter = rate_limiter
        self._timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)
        # Whole-exchange deadline: httpx's read timeout applies per chunk, not to the response.
        self._deadline_s = connect_timeout_s + request_timeout_s
        self._owns_http = http is None
        self._http = http or feed_http_client(self._timeout)
        self._max_retries = max_retries
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._backoff_jitter_s = backoff_jitter_s
        self._max_retry_after_s = max_retry_after_s
        self._token_lifetime_s = float(token_lifetime_s)
        self._refresh_margin_s = min(TOKEN_REFRESH_MARGIN_S, token_lifetime_s / 2)
        self._clock = clock
        self._wall_clock = wall_clock
        self.clock_reading: ClockReading | None = None  # the latest response's, if it had a valid Date
        self._token: str | None = None
        self._refresh_at = 0.0
        self._refresh: asyncio.Task[str] | None = None
        self.stats = ClientStats()

    @classmethod
    def from_settings(
        cls, settings: Settings, rate_limiter: RateLimiter, *, endpoint: str | None = None
    ) -> NivodaClient:
        """Build from NIVODA_* settings; `endpoint` overrides NIVODA_ENDPOINT (e.g. a started simulator)."""
        url = endpoint or (str(settings.nivoda_endpoint) if settings.nivoda_endpoint else None)
        if url is None:
            raise ValueError("NIVODA_ENDPOINT is not set and no endpoint was given (start the simulator first)")
        return cls(
            url,
            settings.nivoda_username,
            settings.nivoda_password.get_secret_value(),
            rate_limiter=rate_limiter,
            connect_timeout_s=settings.nivoda_connect_timeout_s,
            request_timeout_s=settings.nivoda_request_timeout_s,
            max_retries=settings.nivoda_max_retries,
            token_lifetime_s=settings.nivoda_token_lifetime_s,
        )

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> NivodaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- operations ------------------------------------------------------------------------

    async def count(self, query: DiamondQuery) -> int:
        """Stones matching `query` (Nivoda's `diamonds_by_query_count`, the only reliable total)."""
        result = await self._authed("diamonds_by_query_count", documents.COUNT, {"query": query.to_variables()})
        count = result.get("diamonds_by_query_count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise FeedQueryError(f"diamonds_by_query_count returned {count!r}, expected a non-negative integer")
        return count

    async def search(
        self, query: DiamondQuery, *, offset: int, limit: int, order: Order = CREATED_AT_ASC
    ) -> list[dict[str, Any]]:
        """One page of raw items, exactly as returned (a number no double holds is an
        `shared.feed.numbers.Unrepresentable`). `limit` is capped at Nivoda's maximum of 50."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        variables = {
            "query": query.to_variables(),
            "offset": offset,
            "limit": min(limit, MAX_PAGE_SIZE),
            "order": order.to_variables(),
        }
        result = await self._authed("diamonds_by_query", documents.SEARCH, variables)
        page = result.get("diamonds_by_query")
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise FeedQueryError(f"diamonds_by_query returned no item list: {str(page)[:200]}")
        return items

    async def by_ids(self, ids: Sequence[str], *, labgrown: bool | None = None) -> list[dict[str, Any]]:
        """The items of these stones (`diamond.id` values) that still exist, in any availability.

        No availability or media filter is added: the question is "does it exist, in what state".
        Ids are sent 50 per request; each id matches at most one item.
        """
        unique = list(dict.fromkeys(ids))
        items: list[dict[str, Any]] = []
        for start in range(0, len(unique), MAX_PAGE_SIZE):
            chunk = tuple(unique[start : start + MAX_PAGE_SIZE])
            query = DiamondQuery(ids=chunk, labgrown=labgrown)
            items.extend(await self.search(query, offset=0, limit=MAX_PAGE_SIZE))
        return items

    async def recent_clock_reading(self, probe: DiamondQuery, *, max_age_s: float) -> ClockReading | None:
        """A reading of the feed's clock taken within `max_age_s`, making the cheapest real request
        for one if there is none: the authentication that a client holding no valid token must make
        before its next call anyway, else a count of `probe` (pass one that matches next to nothing).
        None only when the feed sends no valid `Date` header."""
        if not self._recent(max_age_s) and self._valid_token() is None:
            await self._current_token()
        if not self._recent(max_age_s):
            await self.count(probe)
        return self.clock_reading if self._recent(max_age_s) else None

    def _recent(self, max_age_s: float) -> bool:
        return self.clock_reading is not None and self._clock() - self.clock_reading.measured_at <= max_age_s

    # --- authentication ----------------------------------------------------------------------

    def _valid_token(self) -> str | None:
        return self._token if self._clock() < self._refresh_at else None

    async def _current_token(self) -> str:
        if (token := self._valid_token()) is not None:
            return token
        # One refresh in flight, and its outcome is everyone's: a failed refresh fails all who waited
        # for it at once. (Waiters that each retried in turn, behind a lock, held their messages for
        # minutes while the feed failed: N callers, N times the client's whole retry schedule.)
        if self._refresh is None:
            self._refresh = asyncio.create_task(self._refresh_token(), name="nivoda-authenticate")
            # A waiter cancelled before the refresh ends stops listening to it (shield drops its
            # callback): with every waiter gone, a failure would be "never retrieved" for the log.
            self._refresh.add_done_callback(_retrieve_outcome)
        # Shielded: a caller cancelled while waiting does not cancel the refresh the others await.
        return await asyncio.shield(self._refresh)

    async def _refresh_token(self) -> str:
        try:
            issued_at = self._clock()
            token = await self._authenticate()
            self._token = token
            self._refresh_at = issued_at + self._token_lifetime_s - self._refresh_margin_s
            return token
        finally:
            self._refresh = None

    async def _authenticate(self) -> str:
        data = await self._with_retries(
            "authenticate", documents.AUTHENTICATE, {"username": self._username, "password": self._password}
        )
        self.stats.authentications += 1
        auth = data.get("authenticate") or {}
        token = (auth.get("username_and_password") or {}).get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise FeedAuthError(f"Nivoda authentication for {self._username!r} returned no token")
        return token

    def _forget(self, token: str) -> None:
        # Only the caller holding the current token clears it; later callers already have a new one.
        if self._token == token:
            self._token = None

    async def _authed(self, operation: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        token = await self._current_token()
        try:
            data = await self._with_retries(operation, document, {**variables, "token": token})
        except TokenRejected:
            self._forget(token)
            self.stats.reauths += 1
            log.info("nivoda token rejected; re-authenticating once", extra={"operation": operation})
            token = await self._current_token()
            try:
                data = await self._with_retries(operation, document, {**variables, "token": token})
            except TokenRejected as exc:
                self._forget(token)
                raise FeedAuthError(f"Nivoda rejected a freshly issued token for {operation}: {exc}") from None
        scoped = data.get("as")
        if not isinstance(scoped, dict):
            raise FeedQueryError(f"{operation} response has no 'as' object")
        return scoped

    # --- transport ---------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, but never shorter than the server's Retry-After."""
        exponential: float = self._backoff_initial_s * 2.0 ** (state.attempt_number - 1)
        backoff = min(self._backoff_max_s, exponential) + random.uniform(0, self._backoff_jitter_s)
        failure = state.outcome.exception() if state.outcome else None
        retry_after = failure.retry_after if isinstance(failure, TransientFailure) else None
        if retry_after is None:
            return backoff
        return max(backoff, min(retry_after, self._max_retry_after_s))

    def _before_sleep(self, operation: str) -> Callable[[RetryCallState], None]:
        def record(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            cause = failure.cause if isinstance(failure, TransientFailure) else "unknown"
            self.stats.retries[cause] += 1
            log.warning(
                "nivoda %s attempt %d failed (%s); retrying in %.2fs",
                operation,
                state.attempt_number,
                failure,
                state.upcoming_sleep,
            )

        return record

    async def _with_retries(self, operation: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(TransientFailure),
            before_sleep=self._before_sleep(operation),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send(operation, document, variables)
        except TransientFailure as exc:
            attempts = self._max_retries + 1
            raise FeedTransientError(
                f"Nivoda {operation} failed after {attempts} attempt(s); last cause {exc}",
                cause=exc.cause,
                attempts=attempts,
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _send(self, operation: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        await self._limiter.acquire()
        self.stats.requests[operation] += 1
        body = orjson.dumps({"query": document, "variables": variables})
        try:
            async with asyncio.timeout(self._deadline_s):
                response = await self._http.post(
                    self.endpoint,
                    content=body,
                    headers={"content-type": "application/json", "accept": "application/json"},
                    timeout=self._timeout,
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise TransientFailure("timeout", f"no response within the timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientFailure("connection", f"{type(exc).__name__}: {exc}") from None
        self._read_clock(response.headers.get("date"))
        return interpret(operation, response.status_code, response.headers, response.content)

    def _read_clock(self, date_header: str | None) -> None:
        # Any response counts, a 429 or a 5xx included: its Date is the feed's clock all the same.
        lag = clock_lag(date_header, self._wall_clock())
        if lag is not None:
            self.clock_reading = ClockReading(lag, self._clock())
