"""Typed failures of the Nivoda client; callers decide on the class, operators read the message."""

from __future__ import annotations


class FeedError(Exception):
    """Base of every failure the feed client raises."""


class FeedTransientError(FeedError):
    """A transient cause (timeout, connection, 429, 5xx, CDN 403, server-side GraphQL error) outlived
    the client's retries; trying again later may succeed."""

    def __init__(self, message: str, *, cause: str, attempts: int) -> None:
        super().__init__(message)
        self.cause = cause
        self.attempts = attempts


class FeedAuthError(FeedError):
    """The credentials were refused, or a freshly issued token was rejected; retrying will not help."""


class FeedQueryError(FeedError):
    """The server rejected the request itself (GraphQL syntax, validation, bad input) or answered
    with something that is not the expected shape; fatal for this request."""

    def __init__(self, message: str, *, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []
