"""Failed-authentication throttling: a source that keeps failing to authenticate is refused with 429
`too_many_failed_authentications` (and `Retry-After`) before its credentials are looked at.

Budget. API_AUTH_FAILURE_LIMIT failures per API_AUTH_FAILURE_WINDOW_S (default 20 a minute; 0 turns
the throttle off), kept as a token bucket (GCRA: one number per source, the moment its budget is
whole again): a burst of the whole budget, then one more attempt each window/limit seconds, and the
whole budget back after a window without failures. Only 401s of `authenticate` count; a refused
(429) request is not an attempt and does not count, and a success neither counts nor resets the
budget (a valid key of its own would otherwise let an attacker keep guessing others'). While a source
is throttled even a correct credential from it is refused: letting it through would tell the guesser
which guess was right.

Source: the address of the connection, or with API_TRUSTED_PROXY_HOPS = N > 0 (proxies that each
append the address they received from to X-Forwarded-For: Azure Functions' front end is one, Front
Door in front of it a second) the N-th entry from the right: the address the outermost trusted proxy
saw; entries left of it are whatever the client sent and are ignored (Werkzeug ProxyFix's convention).
With fewer entries than N, the left-most is taken: every entry then came from one of our proxies.
This holds only if the API cannot be reached around its proxies (Front Door: access restrictions to
its service tag and X-Azure-FDID). An IPv6 source is its /64, which one subscriber holds whole. The
throttle is never keyed by the claimed key or client id: failing in a client's name must not lock
that client out. With no source at all (the Functions bridge sends no peer address, so
API_TRUSTED_PROXY_HOPS = 0 there) nothing is throttled and a warning is logged once: one bucket for
every caller would let anyone lock everyone out.

State: per process, in memory. Several replicas each count on their own, so a source gets up to
replicas x the budget; shared state in PostgreSQL would cost a write per failed request (the attack
itself turned into database load) and, worse, a read on every request to learn whether its source is
throttled, slowing the successful ones. Per-replica budgets still cut guessing to a trickle.

Bound: at most MAX_SOURCES sources (about 200 bytes each). Beyond it the source whose last failure is
the oldest is forgotten and starts afresh: flushing a throttled source takes as many fresh sources as
the bound, each with a whole budget of its own already. A source whose budget is whole again is
forgotten when next seen.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from fastapi import Request

from api.errors import AuthError, TooManyFailedAuthenticationsError
from shared.bootstrap import Container
from shared.clock import Clock
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_SOURCES: Final = 10_000
_IPV6_PREFIX: Final = 64
_MAX_SOURCE_LENGTH: Final = 64  # an unparsable entry of a trusted proxy is kept, but not at any length

T = TypeVar("T")


def normalise(address: str) -> str:
    """An address as the throttle keys it: without a port (Azure's X-Forwarded-For entries carry
    one), an IPv6 address as its /64, an IPv4-mapped one as IPv4; anything unparsable as given."""
    host = address.strip()
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:_MAX_SOURCE_LENGTH]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_PREFIX), strict=False))
    return str(ip)


def request_source(peer: str | None, forwarded_for: Sequence[str], trusted_hops: int) -> str | None:
    """Whose failures a request counts against (the rule is in the module docstring)."""
    if trusted_hops:
        entries = [entry.strip() for header in forwarded_for for entry in header.split(",") if entry.strip()]
        if entries:
            return normalise(entries[-min(trusted_hops, len(entries))])
    return normalise(peer) if peer else None


class FailedAuthThrottle:
    """Per-source budgets of failed authentications, at most `max_sources` of them."""

    def __init__(self, *, limit: int, window_s: float, clock: Clock, max_sources: int) -> None:
        if limit < 1 or window_s <= 0 or max_sources < 1:
            raise ValueError("limit, window_s and max_sources must be positive")
        self._interval = window_s / limit
        self._tolerance = window_s - self._interval
        self._clock = clock
        self._max_sources = max_sources
        # Source -> the moment its budget is whole again, least recently failed first.
        self._whole_at: OrderedDict[str, float] = OrderedDict()
        self.warned_no_source = False

    def __len__(self) -> int:
        return len(self._whole_at)

    def retry_after(self, source: str) -> int | None:
        """Whole seconds until `source` may try again, or None if it may now."""
        whole_at = self._whole_at.get(source)
        if whole_at is None:
            return None
        now = self._clock.now().timestamp()
        if whole_at <= now:
            del self._whole_at[source]
            return None
        wait = whole_at - now - self._tolerance
        return math.ceil(wait) if wait > 0 else None

    def record_failure(self, source: str) -> None:
        now = self._clock.now().timestamp()
        self._whole_at[source] = max(self._whole_at.get(source, now), now) + self._interval
        self._whole_at.move_to_end(source)
        while len(self._whole_at) > self._max_sources:
            self._whole_at.popitem(last=False)


def throttle_from_settings(settings: Settings, clock: Clock) -> FailedAuthThrottle | None:
    if settings.api_auth_failure_limit == 0:
        return None
    return FailedAuthThrottle(
        limit=settings.api_auth_failure_limit,
        window_s=settings.api_auth_failure_window_s,
        clock=clock,
        max_sources=MAX_SOURCES,
    )


def _app_throttle(request: Request, container: Container) -> FailedAuthThrottle | None:
    """The app's one throttle (one app per process), made on first use from the container."""
    state = request.app.state
    if not hasattr(state, "auth_throttle"):
        state.auth_throttle = throttle_from_settings(container.settings, container.clock)
    throttle: FailedAuthThrottle | None = state.auth_throttle
    return throttle


async def throttled(request: Request, container: Container, authenticate: Callable[[], Awaitable[T]]) -> T:
    """Run `authenticate` unless the request's source is throttled; count its AuthError against it."""
    throttle = _app_throttle(request, container)
    if throttle is None:
        return await authenticate()
    peer = request.client.host if request.client else None
    source = request_source(peer, request.headers.getlist("x-forwarded-for"), container.settings.api_trusted_proxy_hops)
    if source is None:
        if not throttle.warned_no_source:
            throttle.warned_no_source = True
            log.warning("no client address to throttle failed authentications by; set API_TRUSTED_PROXY_HOPS")
        return await authenticate()
    wait = throttle.retry_after(source)
    if wait is not None:
        raise TooManyFailedAuthenticationsError(wait)
    try:
        return await authenticate()
    except AuthError:
        throttle.record_failure(source)
        raise
