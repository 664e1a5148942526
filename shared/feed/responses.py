"""Decide what one HTTP exchange with Nivoda means: data, a transient failure, a rejected token,
or a fatal error. Pure functions, so every branch is unit-tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import orjson

from shared.feed import numbers
from shared.feed.errors import FeedAuthError, FeedQueryError

ErrorKind = Literal["auth", "query", "server"]

_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN"})
_AUTH_WORDS = (
    "unauthorized",
    "unauthenticated",
    "invalid token",
    "token expired",
    "expired token",
    "authentication required",
    "authentication failed",
    "invalid username or password",
)
_QUERY_CODES = frozenset({"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT", "BAD_REQUEST"})
_QUERY_WORDS = (
    "syntax error",
    "cannot query field",
    "unknown argument",
    "unknown type",
    "got invalid value",
    "is not defined by type",
    "must have a selection",
    "must not have a selection",
    "was not provided",
    "validation",
)
_SNIPPET = 300


class TransientFailure(Exception):
    """A failure worth retrying after a backoff; `cause` names it in the client's stats."""

    def __init__(self, cause: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause
        self.detail = detail
        self.retry_after = retry_after


class TokenRejected(Exception):
    """The server refused the token (invalid or expired): re-authenticate once and retry."""


def classify_errors(errors: Sequence[object]) -> ErrorKind:
    """Auth problems win over query problems, which win over server-side failures (retryable)."""
    kinds: set[ErrorKind] = set()
    for error in map(_as_error, errors):
        extensions = error.get("extensions")
        code = str(extensions.get("code", "")).upper() if isinstance(extensions, Mapping) else ""
        message = str(error.get("message", "")).lower()
        if code in _AUTH_CODES or any(word in message for word in _AUTH_WORDS):
            kinds.add("auth")
        elif code in _QUERY_CODES or any(word in message for word in _QUERY_WORDS):
            kinds.add("query")
        else:
            kinds.add("server")
    if "auth" in kinds:
        return "auth"
    return "query" if "query" in kinds else "server"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _as_error(error: object) -> Mapping[str, Any]:
    """A GraphQL error as the spec shapes it; a bare string or other value becomes its message."""
    return error if isinstance(error, Mapping) else {"message": error}


def _one_line(text: str) -> str:
    # Feed text goes into log lines and stored reasons: one line each, whatever the server sent.
    return " ".join(text.split())


def _snippet(body: bytes, at: int = 0) -> str:
    """Up to _SNIPPET characters of the body from `at`, on one line."""
    return _one_line(body[at : at + _SNIPPET].decode("utf-8", "replace"))


def _summary(errors: Sequence[object]) -> str:
    return _one_line("; ".join(str(_as_error(error).get("message", error)) for error in errors[:3]))[:_SNIPPET]


def _errors_of(body: bytes) -> list[Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    return errors if isinstance(errors, list) and errors else None


def _raise_for_errors(operation: str, errors: list[Any]) -> None:
    kind = classify_errors(errors)
    summary = _summary(errors)
    if kind == "auth":
        if operation == "authenticate":
            raise FeedAuthError(f"Nivoda refused the credentials: {summary}")
        raise TokenRejected(summary)
    if kind == "query":
        raise FeedQueryError(
            f"Nivoda rejected the {operation} request: {summary}", errors=[dict(_as_error(e)) for e in errors]
        )
    raise TransientFailure("graphql_error", summary)


def _reread(body: bytes, exc: orjson.JSONDecodeError) -> Any:
    """A 200 body orjson refuses. JSON holding numbers no double holds (1e400) is what the server
    meant to send, so asking again returns the same: it is read with those numbers marked, for the
    items holding them to be refused one by one (`shared.feed.numbers`). A body cut short or not
    JSON at all (a proxy's HTML page) is transient, quoting where it fails."""
    try:
        return numbers.loads(body)
    except (ValueError, RecursionError):
        where = max(0, exc.pos - _SNIPPET // 2)
        detail = f"{exc.msg} at character {exc.pos}: {_snippet(body, where)}"
        raise TransientFailure("bad_response", f"invalid JSON in a 200 response ({detail})") from None


def interpret(operation: str, status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Return the `data` object of a successful response, or raise what the exchange means."""
    snippet = _snippet(body)
    if status == 429:
        raise TransientFailure("rate_limited", "HTTP 429", retry_after=parse_retry_after(headers.get("retry-after")))
    if status == 403:
        raise TransientFailure("cdn_403", f"HTTP 403 (CDN/WAF block): {snippet}")
    if status == 408:
        raise TransientFailure("timeout", "HTTP 408")
    if status >= 500:
        raise TransientFailure(
            "server_error",
            f"HTTP {status}: {snippet}",
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    if status == 401:
        if operation == "authenticate":
            raise FeedAuthError(f"Nivoda refused the credentials (HTTP 401): {snippet}")
        raise TokenRejected(f"HTTP 401: {snippet}")
    if status != 200:
        errors = _errors_of(body)
        if errors:
            _raise_for_errors(operation, errors)
        raise FeedQueryError(f"Nivoda answered HTTP {status} to {operation}: {snippet}")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        parsed = _reread(body, exc)
    if not isinstance(parsed, dict):
        raise FeedQueryError(f"unexpected {operation} response (not a JSON object): {snippet}")
    errors = parsed.get("errors")
    if errors:
        _raise_for_errors(operation, errors if isinstance(errors, list) else [{"message": str(errors)}])
    data = parsed.get("data")
    if not isinstance(data, dict):
        raise FeedQueryError(f"unexpected {operation} response (no data): {snippet}")
    return data
