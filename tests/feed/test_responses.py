"""What one HTTP exchange with Nivoda means (pure classification, no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from shared.feed.errors import FeedAuthError, FeedQueryError
from shared.feed.numbers import Unrepresentable
from shared.feed.responses import TokenRejected, TransientFailure, classify_errors, interpret, parse_retry_after


def _errors(*pairs: tuple[str, str | None]) -> list[dict[str, object]]:
    return [{"message": m, **({"extensions": {"code": c}} if c else {})} for m, c in pairs]


@pytest.mark.parametrize(
    ("errors", "kind"),
    [
        (_errors(("Unauthorized: token expired", "UNAUTHENTICATED")), "auth"),
        (_errors(("invalid token", None)), "auth"),
        (_errors(('Cannot query field "nope" on type "Offer".', "GRAPHQL_VALIDATION_FAILED")), "query"),
        (_errors(("Syntax Error: Expected Name, found <EOF>.", None)), "query"),
        (_errors(("limit must be between 0 and 50, got 51", "BAD_USER_INPUT")), "query"),
        (_errors(("Internal server error", "INTERNAL_SERVER_ERROR")), "server"),
        (_errors(("something odd happened", None)), "server"),
        (_errors(("Internal server error", None), ("token expired", None)), "auth"),
    ],
)
def test_classify_errors(errors, kind: str) -> None:
    assert classify_errors(errors) == kind


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _body(payload: object) -> bytes:
    return orjson.dumps(payload)


@pytest.mark.parametrize(
    ("status", "headers", "cause", "retry_after"),
    [
        (429, {"retry-after": "3"}, "rate_limited", 3.0),
        (403, {}, "cdn_403", None),
        (500, {}, "server_error", None),
        (503, {"retry-after": "7"}, "server_error", 7.0),
        (408, {}, "timeout", None),
    ],
)
def test_transient_statuses(status: int, headers: dict[str, str], cause: str, retry_after: float | None) -> None:
    with pytest.raises(TransientFailure) as failure:
        interpret("diamonds_by_query", status, headers, b"<html>busy</html>")
    assert failure.value.cause == cause
    assert failure.value.retry_after == retry_after


def test_graphql_errors_in_a_200_are_never_dropped() -> None:
    body = _body({"errors": [{"message": "Internal server error"}], "data": None})
    with pytest.raises(TransientFailure) as failure:
        interpret("diamonds_by_query", 200, {}, body)
    assert failure.value.cause == "graphql_error"
    partial = _body({"errors": [{"message": "boom", "extensions": {"code": "BAD_USER_INPUT"}}], "data": {"as": {}}})
    with pytest.raises(FeedQueryError, match="boom"):
        interpret("diamonds_by_query", 200, {}, partial)


def test_auth_errors_depend_on_the_operation() -> None:
    body = _body({"errors": _errors(("Authentication failed: invalid username or password", "UNAUTHENTICATED"))})
    with pytest.raises(FeedAuthError, match="refused the credentials"):
        interpret("authenticate", 200, {}, body)
    with pytest.raises(TokenRejected):
        interpret("diamonds_by_query_count", 200, {}, _body({"errors": _errors(("token expired", None))}))
    with pytest.raises(TokenRejected):
        interpret("diamonds_by_query_count", 401, {}, b"")


def test_fatal_responses() -> None:
    validation = _body({"errors": _errors(("Cannot query field", "GRAPHQL_VALIDATION_FAILED"))})
    with pytest.raises(FeedQueryError, match="Cannot query field"):
        interpret("diamonds_by_query", 400, {}, validation)
    with pytest.raises(FeedQueryError, match="HTTP 404"):
        interpret("diamonds_by_query", 404, {}, b"not found")
    with pytest.raises(FeedQueryError, match="no data"):
        interpret("diamonds_by_query", 200, {}, _body({"data": None}))
    with pytest.raises(TransientFailure, match="invalid JSON"):
        interpret("diamonds_by_query", 200, {}, b'{"data": {"as"')


def test_success_returns_data() -> None:
    assert interpret("x", 200, {}, _body({"data": {"as": {"diamonds_by_query_count": 3}}})) == {
        "as": {"diamonds_by_query_count": 3}
    }


def test_errors_that_are_not_objects_are_classified_by_their_text() -> None:
    with pytest.raises(TokenRejected):
        interpret("diamonds_by_query", 200, {}, _body({"errors": ["token expired"]}))
    with pytest.raises(TransientFailure, match="boom; 7"):
        interpret("diamonds_by_query", 200, {}, _body({"errors": ["boom", 7, None]}))
    with pytest.raises(FeedQueryError, match="Syntax Error") as failure:
        interpret("diamonds_by_query", 400, {}, _body({"errors": ["Syntax Error: Unexpected <EOF>"]}))
    assert failure.value.errors == [{"message": "Syntax Error: Unexpected <EOF>"}]


@pytest.mark.parametrize("status", [200, 404, 502])
def test_a_server_page_becomes_one_line(status: int) -> None:
    html = b"<html>\r\n<head><title>Oops</title></head>\n<body>\n\t<h1>Bad Gateway</h1>\n</body>\n</html>\n"
    with pytest.raises((TransientFailure, FeedQueryError)) as failure:
        interpret("diamonds_by_query", status, {}, html)
    assert "\n" not in str(failure.value)
    assert "\r" not in str(failure.value)
    assert "<html> <head><title>Oops</title></head> <body> <h1>Bad Gateway</h1>" in str(failure.value)


_PAGE = b'{"data": {"as": {"diamonds_by_query": {"total_count": 2, "items": [%s]}}}}'
# Numbers orjson reads in its own way (a big integer as a rounded float, -0, an underflow to 0.0).
_GOOD = (
    b'{"id": "o2", "price": 150050, "diamond": {"id": "d2", "certificate": {"carats": 1.01, "depth": -0.0,'
    b' "big": 18446744073709551616, "low": -9223372036854775809, "tiny": 1e-400, "zero": -0}}}'
)


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1" + "0" * 400 + ".5", "9" * 5000, "NaN", "-Infinity"])
def test_a_number_no_double_holds_is_marked_and_the_rest_read_as_orjson_reads_it(literal: str) -> None:
    bad = b'{"id": "o1", "price": %s, "diamond": {"id": "d1"}}' % literal.encode()
    data = interpret("diamonds_by_query", 200, {}, _PAGE % (bad + b", " + _GOOD))
    first, second = data["as"]["diamonds_by_query"]["items"]
    assert isinstance(first["price"], Unrepresentable)
    assert first["price"].text == literal
    assert first["diamond"] == {"id": "d1"}
    # Same values of the same types as from a clean page: the stone's stored payload does not change.
    assert orjson.dumps(second) == orjson.dumps(orjson.loads(_GOOD))


def test_a_body_cut_short_stays_transient_whatever_numbers_it_holds() -> None:
    body = _PAGE % b'{"id": "o1", "price": 1e400}'
    with pytest.raises(TransientFailure, match=r"invalid JSON in a 200 response \(.*at character"):
        interpret("diamonds_by_query", 200, {}, body[:-5])


def test_json_nested_deeper_than_either_parser_goes_is_transient_not_a_crash() -> None:
    body = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(TransientFailure, match=r"invalid JSON in a 200 response \(depth limit exceeded"):
        interpret("diamonds_by_query", 200, {}, body)
