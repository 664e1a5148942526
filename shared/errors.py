"""Errors that entry points (CLI, HTTP, triggers) turn into one clear line or a 4xx body."""

from __future__ import annotations

import re


class OpusError(Exception):
    """An expected failure with a message fit for an operator; never shown with a traceback."""

    code = "error"


class NotFoundError(OpusError):
    code = "not_found"


class ConflictError(OpusError):
    code = "conflict"


class InvalidRequestError(OpusError):
    code = "invalid_request"


class DatabaseUnavailableError(OpusError):
    code = "database_unavailable"


_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


def redact_url(url: str) -> str:
    """Hide the password of a connection URL."""
    return _PASSWORD.sub(r"\1***@", url)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
