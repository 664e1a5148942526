"""Small utilities shared by tests (no fixtures here)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], T | None], timeout: float, interval: float = 0.1, what: str = "") -> T:
    """Poll until predicate returns a truthy value; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def scalars(conn: psycopg.Connection[Any], query: str, *params: object) -> tuple[Any, ...]:
    """The single row a query must return (fails the test when it returns none)."""
    row = conn.execute(query, params or None).fetchone()
    assert row is not None, f"no row for {query}"
    return tuple(row)
