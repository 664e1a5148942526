"""The messages that travel on the bus, and how a raw body becomes one (or a clear poison reason).

Each message knows its message id: ids are stable so that the bus's duplicate detection drops
re-sends of the same logical message.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

FeedName = Literal["nivoda-natural", "nivoda-labgrown"]
RunType = Literal["full", "incremental"]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.model_dump(mode="json")
        return body


class WorkItem(_Message):
    """Fetch one page of one partition."""

    type: Literal["WORK_ITEM"] = "WORK_ITEM"
    feed: FeedName
    run_id: UUID
    run_type: RunType
    trace_id: str = Field(min_length=1)
    partition_id: str = Field(min_length=1)
    # Inclusive price-per-carat bounds in dollars; None = open-ended.
    min_price: Decimal = Field(ge=0)
    max_price: Decimal | None
    estimated_records: int = Field(ge=0)
    offset: int = Field(ge=0)
    limit: int = Field(ge=1, le=50)
    anchor_id: str | None = None
    attempt: int = Field(1, ge=1)
    # Drift recoveries so far: a reposition can land on an offset already used by an earlier page.
    drift: int = Field(0, ge=0)
    updated_from: AwareDatetime
    updated_to: AwareDatetime

    @property
    def message_id(self) -> str:
        # Stable `run:partition:offset`; a retry or a drift reposition may revisit an offset whose
        # id still sits in the duplicate-detection window, so those are told apart.
        suffix = (f":d{self.drift}" if self.drift else "") + (f":a{self.attempt}" if self.attempt > 1 else "")
        return f"{self.run_id}:{self.partition_id}:{self.offset}{suffix}"


class WorkDone(_Message):
    """A partition finished (success) or gave up (failed)."""

    type: Literal["WORK_DONE"] = "WORK_DONE"
    feed: FeedName
    run_id: UUID
    trace_id: str = Field(min_length=1)
    partition_id: str = Field(min_length=1)
    attempt: int = Field(1, ge=1)
    worker_id: str
    status: Literal["success", "failed"]
    records_processed: int = Field(ge=0)
    error: str | None = None

    @property
    def message_id(self) -> str:
        return f"work-done:{self.run_id}:{self.partition_id}:{self.attempt}"


class Consolidate(_Message):
    """Consolidate a run's raw rows into the catalogue."""

    type: Literal["CONSOLIDATE"] = "CONSOLIDATE"
    feed: FeedName
    run_id: UUID
    trace_id: str = Field(min_length=1)
    force: bool = False
    requested_by: str = "fanin"
    # Set (to the moment) when a stalled consolidation is requested again: the first request's id
    # may still sit in the duplicate-detection window, and the new one must not be dropped as a copy.
    resend: int = Field(0, ge=0)

    @property
    def message_id(self) -> str:
        suffix = f":r{self.resend}" if self.resend else ""
        return f"consolidate:{self.run_id}:{'force' if self.force else 'normal'}{suffix}"


AnyMessage = Annotated[WorkItem | WorkDone | Consolidate, Field(discriminator="type")]
_ANY = TypeAdapter(AnyMessage)


Message = WorkItem | WorkDone | Consolidate


class PoisonMessageError(ValueError):
    """A body that can never be processed: dead-letter it with this reason, do not retry."""


M = TypeVar("M", WorkItem, WorkDone, Consolidate)


def decode(body: bytes | str | dict[str, Any], expected: type[M]) -> M:
    """Parse a message body; raise PoisonMessageError with a specific reason when it is unusable."""
    try:
        data = orjson.loads(body) if isinstance(body, bytes | str) else body
    except orjson.JSONDecodeError as exc:
        raise PoisonMessageError(f"body is not JSON: {exc}") from None
    try:
        message: Message = _ANY.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:20]
        )
        raise PoisonMessageError(f"invalid message: {problems}") from None
    if not isinstance(message, expected):
        raise PoisonMessageError(f"expected a {expected.__name__} message, got {type(message).__name__}")
    return message


def encode(message: _Message) -> bytes:
    return orjson.dumps(message.to_body())


__all__ = [
    "AnyMessage",
    "Consolidate",
    "FeedName",
    "Message",
    "PoisonMessageError",
    "RunType",
    "WorkDone",
    "WorkItem",
    "decode",
    "encode",
]
