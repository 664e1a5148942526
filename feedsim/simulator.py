"""The simulator's state and request handling, independent of the HTTP framework.

A request first meets the fault injector (rate limit, then at most one random fault: a hang past
the client's timeout, a 5xx, the CDN's 403), then the configured latency, then GraphQL handling.
Faults and rejections are counted in `stats`, so tests and benchmarks can compare what the client
saw with what the server did.

Churn keeps Nivoda's time semantics (see the package docstring): every change stamps updatedAt
with the current time, so the set of stones matching a query whose `updated.to` lies in the past
never grows over time; it only shrinks as stones change or disappear.
"""

from __future__ import annotations

import asyncio
import math
import random
import resource
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any, Final

import numpy as np
import orjson
from graphql import ExecutionResult, execute
from pydantic import BaseModel, ConfigDict, Field

from feedsim import gql, ids, vocab
from feedsim.churn import ChurnEngine
from feedsim.filters import QueryInputError, parse_query
from feedsim.inventory import Inventory
from feedsim.matching import MatchCache
from feedsim.payload import build_items
from feedsim.tokens import TokenStore

MAX_LIMIT: Final = 50
DEFAULT_LIMIT: Final = 50
CHURN_TICK_S: Final = 0.25
_CPU_SAMPLES: Final = 20_000
_INVENTORY_CHUNK: Final = 5_000
_GROUND_TRUTH_COLUMNS: Final = (
    "labgrown",
    "price_cents",
    "availability",
    "created_ms",
    "updated_ms",
    "ct100",
    "shape",
    "cut",
    "has_image",
    "has_v360",
)


class SimConfig(BaseModel):
    """Knobs that can change while the simulator runs (CLI flags, POST /_sim/config)."""

    # Infinity passes ge=0 but is no latency (nor a rate) anyone can wait for.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    latency_ms: float = Field(0.0, ge=0, description="added to every response")
    jitter_ms: float = Field(0.0, ge=0, description="uniform random extra latency, 0..jitter")
    rate_limit: float = Field(0.0, ge=0, description="requests/s per 1 s window; excess gets 429 (0 = off)")
    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered 5xx")
    timeout_rate: float = Field(0.0, ge=0, le=1, description="share of requests that hang for hang_s")
    graphql_error_rate: float = Field(0.0, ge=0, le=1, description="share answered 200 with GraphQL errors")
    cdn_block_rate: float = Field(0.0, ge=0, le=1, description="share answered 403 by the 'CDN'")
    throttle_rate: float = Field(0.0, ge=0, le=1, description="share answered 429 with Retry-After: 1 (throttling)")
    token_ttl_s: float = Field(6 * 3600.0, gt=0, description="life of tokens issued from now on")
    churn_per_s: float = Field(0.0, ge=0, description="churn events applied per second")
    hang_s: float = Field(120.0, gt=0, description="how long a 'timeout' request hangs")
    clock_offset_ms: int = Field(0, description="the feed's clock minus true time; changes are stamped by it")
    username: str = "sim-user"
    password: str = "sim-password"


@dataclass(frozen=True)
class InventorySpec:
    seed: int = 42
    stones: int = 50_000
    anchor_ms: int | None = None  # None = now


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SimStats:
    http_requests: int = 0
    requests: Counter[str] = field(default_factory=Counter)  # by GraphQL operation (root field)
    faults: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    items_served: int = 0
    search_cpu_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_CPU_SAMPLES))


def _json(payload: Any) -> bytes:
    return orjson.dumps(payload)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def rss_bytes() -> int:
    """Resident set size of this process now (Linux), else the peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Simulator:
    def __init__(self, spec: InventorySpec, config: SimConfig | None = None) -> None:
        self.spec = spec
        self.config = config or SimConfig()
        anchor = spec.anchor_ms if spec.anchor_ms is not None else self.clock_ms()
        self.inventory = Inventory.generate(spec.seed, spec.stones, anchor)
        self.cache = MatchCache(self.inventory)
        self.churn = ChurnEngine(self.inventory, self.cache, spec.seed)
        self.tokens = TokenStore()
        self.documents = gql.DocumentCache()
        self.stats = SimStats()
        self._faults = random.Random(spec.seed ^ 0x5EED)
        self._window_second = 0
        self._window_count = 0

    def clock_ms(self) -> int:
        """The feed's own clock, which stamps updatedAt (it may run ahead of or behind ours)."""
        return _now_ms() + self.config.clock_offset_ms

    def http_date(self) -> str:
        """The feed's own clock as an HTTP `Date` header value (whole seconds), as its server sends it."""
        return formatdate(self.clock_ms() / 1000, usegmt=True)

    # --- control surface -------------------------------------------------------------------

    def update_config(self, patch: dict[str, Any]) -> SimConfig:
        """Apply a partial update; raises pydantic.ValidationError on unknown keys or bad values."""
        self.config = SimConfig.model_validate({**self.config.model_dump(), **patch})
        return self.config

    def apply_churn(self, events: int) -> dict[str, Any]:
        applied = self.churn.apply(events, self.clock_ms())
        return {
            "applied": len(applied),
            "by_kind": dict(Counter(event.kind for event in applied)),
            "events": [self.churn.describe(event) for event in applied],
        }

    def edit(self, *, remove: Sequence[str] = (), reprice: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Change named stones now, as churn does: remove them, or reprice them (cents; this stamps
        updatedAt). Tests stage exact changes with it; ids of no live stone are returned as unknown."""
        inventory = self.inventory
        reprice = reprice or {}
        alive = inventory.column("alive")
        live = sorted(row for row in ids.rows_of(inventory.seed, "diamond", [*remove, *reprice]) if alive[row])
        row_of = dict(zip(ids.ids_of(inventory.seed, "diamond", live), live, strict=True))
        stamp = inventory.stamp(self.clock_ms())
        for sid in remove:
            if sid in row_of:
                inventory.remove(row_of[sid])
        for sid, cents in reprice.items():
            if sid in row_of:
                inventory.reprice(row_of[sid], cents, stamp)
        self.cache.rows_changed(np.array(live, dtype=np.int64))
        return {
            "removed": sum(sid in row_of for sid in remove),
            "repriced": sum(sid in row_of for sid in reprice),
            "unknown": [sid for sid in (*remove, *reprice) if sid not in row_of],
        }

    def reset_stats(self) -> None:
        self.stats = SimStats()

    def stats_snapshot(self) -> dict[str, Any]:
        samples = list(self.stats.search_cpu_ms)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "http_requests": self.stats.http_requests,
            "requests": dict(self.stats.requests),
            "faults": dict(self.stats.faults),
            "rejections": dict(self.stats.rejections),
            "items_served": self.stats.items_served,
            "churn": dict(self.churn.counts),
            "cache": self.cache.snapshot(),
            "inventory": {"rows": self.inventory.size, "stones": self.inventory.live_count},
            "cpu": {
                "process_s": usage.ru_utime + usage.ru_stime,
                "search_samples": len(samples),
                "search_ms_p50": _percentile(samples, 0.5),
                "search_ms_p95": _percentile(samples, 0.95),
            },
            "rss_bytes": rss_bytes(),
            "max_rss_bytes": usage.ru_maxrss * 1024,
        }

    def inventory_json(self) -> Iterator[bytes]:
        """Ground truth: every stone still in the feed, as one JSON object streamed in chunks.

        The columns are copied now (on the event loop), so the stream is one consistent snapshot
        even if churn changes the inventory while it is being sent.
        """
        inventory = self.inventory
        alive = np.flatnonzero(inventory.column("alive"))
        snapshot = {name: inventory.column(name)[alive] for name in _GROUND_TRUTH_COLUMNS}
        return self._stream_ground_truth(alive, snapshot)

    def _stream_ground_truth(self, rows: np.ndarray, snapshot: dict[str, np.ndarray]) -> Iterator[bytes]:
        seed = self.inventory.seed
        yield b'{"count":%d,"stones":[' % len(rows)
        for start in range(0, len(rows), _INVENTORY_CHUNK):
            part = slice(start, start + _INVENTORY_CHUNK)
            columns = {name: values[part].tolist() for name, values in snapshot.items()}
            diamond_ids = ids.ids_of(seed, "diamond", rows[part])
            offer_ids = ids.ids_of(seed, "offer", rows[part])
            chunk = [
                {
                    "supplier_stone_id": diamond_ids[i],
                    "offer_id": offer_ids[i],
                    "labgrown": columns["labgrown"][i],
                    "price_cents": columns["price_cents"][i],
                    "availability": vocab.AVAILABILITIES[columns["availability"][i]],
                    "created_at": _iso(columns["created_ms"][i]),
                    "updated_at": _iso(columns["updated_ms"][i]),
                    "carats": columns["ct100"][i] / 100,
                    "shape": vocab.SHAPES[columns["shape"][i]],
                    "cut": None if columns["cut"][i] == vocab.NO_CUT else vocab.CUT_GRADES[columns["cut"][i]],
                    "has_image": columns["has_image"][i],
                    "has_v360": columns["has_v360"][i],
                }
                for i in range(len(diamond_ids))
            ]
            yield (b"," if start else b"") + _json(chunk)[1:-1]
        yield b"]}"

    async def churn_forever(self) -> None:
        carry, last = 0.0, time.monotonic()
        while True:
            await asyncio.sleep(CHURN_TICK_S)
            now = time.monotonic()
            rate = self.config.churn_per_s
            carry = carry + rate * (now - last) if rate > 0 else 0.0
            last = now
            due = int(carry)
            if due:
                carry -= due
                self.churn.apply(due, self.clock_ms())

    # --- the GraphQL endpoint ----------------------------------------------------------------

    def _rate_limited(self) -> float | None:
        """Seconds until the current 1 s window ends if this request exceeds the limit, else None."""
        limit = self.config.rate_limit
        if limit <= 0:
            return None
        now = time.monotonic()
        second = int(now)
        if second != self._window_second:
            self._window_second, self._window_count = second, 0
        self._window_count += 1
        return (second + 1 - now) if self._window_count > limit else None

    def _draw_fault(self) -> str | None:
        config = self.config
        draw = self._faults.random()
        for name, rate in (
            ("timeout", config.timeout_rate),
            ("server_error", config.error_rate),
            ("cdn_403", config.cdn_block_rate),
            ("graphql_error", config.graphql_error_rate),
            ("throttled", config.throttle_rate),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    async def handle_graphql(self, body: bytes) -> Reply:
        self.stats.http_requests += 1
        wait = self._rate_limited()
        if wait is not None:
            self.stats.faults["rate_limited"] += 1
            return Reply(
                429,
                _json({"errors": [gql.error("Too many requests", "TOO_MANY_REQUESTS")]}),
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        fault = self._draw_fault()
        config = self.config
        delay_ms = config.latency_ms + (self._faults.random() * config.jitter_ms if config.jitter_ms else 0.0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if fault == "timeout":
            self.stats.faults["timeout"] += 1
            await asyncio.sleep(config.hang_s)
            return Reply(504, b"upstream timed out")
        if fault == "server_error":
            self.stats.faults["server_error"] += 1
            status = self._faults.choice((500, 502, 503))
            return Reply(status, _json({"errors": [gql.error("Internal server error", "INTERNAL_SERVER_ERROR")]}))
        if fault == "throttled":
            self.stats.faults["throttled"] += 1
            return Reply(
                429, _json({"errors": [gql.error("Too many requests", "TOO_MANY_REQUESTS")]}), {"Retry-After": "1"}
            )
        if fault == "cdn_403":
            self.stats.faults["cdn_403"] += 1
            return Reply(403, b"<html><body><h1>403 Forbidden</h1>Request blocked.</body></html>")
        started = time.thread_time()
        reply, operations = self._graphql(body, inject_error=fault == "graphql_error")
        if "diamonds_by_query" in operations:
            self.stats.search_cpu_ms.append((time.thread_time() - started) * 1000)
        return reply

    def _graphql(self, body: bytes, *, inject_error: bool) -> tuple[Reply, tuple[str, ...]]:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.stats.rejections["parse"] += 1
            return Reply(400, _json({"errors": [gql.error("body is not JSON", "BAD_REQUEST")]})), ()
        query = request.get("query") if isinstance(request, dict) else None
        raw_variables = request.get("variables") if isinstance(request, dict) else None
        operation_name = request.get("operationName") if isinstance(request, dict) else None
        if not isinstance(query, str) or not isinstance(raw_variables, dict | None):
            self.stats.rejections["parse"] += 1
            message = "expected a JSON object with a 'query' string and optional 'variables' object"
            return Reply(400, _json({"errors": [gql.error(message, "BAD_REQUEST")]})), ()
        try:
            prepared = self.documents.get(query, operation_name if isinstance(operation_name, str) else None)
            variables = prepared.coerce_variables(raw_variables)
        except gql.RequestError as exc:
            self.stats.rejections[exc.kind] += 1
            return Reply(400, _json({"errors": exc.errors})), ()
        if inject_error:
            self.stats.faults["graphql_error"] += 1
            return Reply(
                200, _json({"errors": [gql.error("Internal server error", "INTERNAL_SERVER_ERROR")], "data": None})
            ), ()
        if prepared.introspection:
            self.stats.requests["introspection"] += 1
            result = execute(gql.schema(), prepared.document, variable_values=variables.values)
            assert isinstance(result, ExecutionResult)  # introspection resolves synchronously
            return Reply(200, _json(result.formatted)), ()
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        operations: list[str] = []
        for selection in prepared.root:
            if selection.name == "authenticate":
                data[selection.key] = self._authenticate(selection, variables, errors)
                operations.append("authenticate")
            elif selection.name == "as":
                data[selection.key] = self._as(selection, variables, errors, operations)
            else:
                data[selection.key] = selection.typename
        payload: dict[str, Any] = {"errors": errors, "data": data} if errors else {"data": data}
        return Reply(200, _json(payload)), tuple(operations)

    def _authenticate(
        self, selection: gql.Selection, variables: gql.Variables, errors: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for child in selection.children or ():
            if child.name != "username_and_password":
                out[child.key] = child.typename
                continue
            self.stats.requests["authenticate"] += 1
            args = child.arguments(variables)
            if args.get("username") != self.config.username or args.get("password") != self.config.password:
                self.stats.rejections["bad_credentials"] += 1
                errors.append(
                    gql.error(
                        "Authentication failed: invalid username or password",
                        "UNAUTHENTICATED",
                        [selection.key, child.key],
                    )
                )
                out[child.key] = None
                continue
            token = self.tokens.issue(self.config.token_ttl_s)
            out[child.key] = gql.project({"token": token}, child)
        return out

    def _as(
        self,
        selection: gql.Selection,
        variables: gql.Variables,
        errors: list[dict[str, Any]],
        operations: list[str],
    ) -> dict[str, Any] | None:
        state = self.tokens.check(selection.arguments(variables)["token"])
        if state != "ok":
            self.stats.rejections[f"{state}_token"] += 1
            message = "Unauthorized: token expired" if state == "expired" else "Unauthorized: invalid token"
            errors.append(gql.error(message, "UNAUTHENTICATED", [selection.key]))
            return None
        out: dict[str, Any] = {}
        for child in selection.children or ():
            if child.field is None:
                out[child.key] = child.typename
                continue
            operations.append(child.name)
            self.stats.requests[child.name] += 1
            try:
                out[child.key] = self._resolve(child, variables)
            except QueryInputError as exc:
                self.stats.rejections["bad_input"] += 1
                errors.append(gql.error(str(exc), "BAD_USER_INPUT", [selection.key, child.key]))
                out[child.key] = None
        return out

    def _resolve(self, selection: gql.Selection, variables: gql.Variables) -> Any:
        args = selection.arguments(variables)
        flt = parse_query(args.get("query"), self.inventory.seed)
        if selection.name == "diamonds_by_query_count":
            return self.cache.count(flt)
        offset = args.get("offset")
        offset = 0 if offset is None else offset
        limit = args.get("limit")
        limit = DEFAULT_LIMIT if limit is None else limit
        if offset < 0:
            raise QueryInputError(f"offset must be >= 0, got {offset}")
        if not 0 <= limit <= MAX_LIMIT:
            raise QueryInputError(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
        order = args.get("order") or {"type": "createdAt", "direction": "ASC"}
        rows = self.cache.matching(flt, (order["type"], order["direction"]))[offset : offset + limit]
        items = build_items(self.inventory, rows)
        self.stats.items_served += len(items)
        # total_count describes the returned window only, as Nivoda's does.
        return gql.project({"total_count": len(items), "items": items}, selection)
