"""What every message handler shares, in both runtimes: poison versus transient failures.

A handler raises PoisonMessageError for a message that can never succeed (it is recorded as a dead
letter with the reason, and not retried); any other exception is transient (the bus redelivers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.errors import NotFoundError
from shared.messages import PoisonMessageError

Body = bytes | str | dict[str, Any]


@contextmanager
def poison_on_missing() -> Iterator[None]:
    """A message about a run or partition that does not exist will never succeed."""
    try:
        yield
    except NotFoundError as exc:
        raise PoisonMessageError(str(exc)) from None
