"""Dead letters from either runtime: list them with their reasons, replay them onto their queue.

Rows come from the local bus (max deliveries exceeded, or TTLExpiredException: the message outlived
its queue's time-to-live), from handlers that met a poison message, and from the Azure dead-letter
sub-queue triggers. A replay sends the body again under a new message id (the original id may still
sit in the duplicate-detection window) and is recorded, so a dead letter is replayed at most once.
A page the worker would ignore (its run no longer ingests, or a retry superseded its attempt: the
usual fate of pages that outlived their time-to-live) is refused with what resumes the run instead.
A letter that should not be replayed is dismissed with an operator's note instead. Either resolves
it, once: a letter is outstanding until replayed or dismissed, and never both (both take the row
lock, so a replay and a dismissal racing cannot both win).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from psycopg.rows import class_row
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.bootstrap import Container
from shared.bus.port import MAX_MESSAGE_ID_LENGTH, OutgoingMessage
from shared.db.pool import Pool
from shared.errors import ConflictError, InvalidRequestError, NotFoundError
from shared.messages import WorkItem
from shared.runs import Conn, load_run_and_partition, page_superseded


class DeadLetter(BaseModel):
    """A dead letter as stored; also the API's representation of one."""

    model_config = ConfigDict(frozen=True)

    id: int
    source: str
    queue: str
    message_id: str
    body: Any
    application_properties: dict[str, Any]
    reason: str
    description: str | None
    delivery_count: int
    enqueued_at: datetime | None
    dead_lettered_at: datetime
    replayed_at: datetime | None
    replay_message_id: str | None
    dismissed_at: datetime | None
    dismissal_note: str | None


_COLUMNS = """id, source, queue, message_id, body, application_properties, reason, description, delivery_count,
    enqueued_at, dead_lettered_at, replayed_at, replay_message_id, dismissed_at, dismissal_note"""

# The database checks the same bound (migration 0017).
MAX_NOTE_LENGTH: Final = 500


async def list_dead_letters(
    pool: Pool, *, queue: str | None = None, include_resolved: bool = False, limit: int = 100, offset: int = 0
) -> list[DeadLetter]:
    """Newest first: the outstanding letters (neither replayed nor dismissed), or all of them."""
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(DeadLetter))
        await cur.execute(
            f"""SELECT {_COLUMNS} FROM dead_letters
                WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
                  AND (%(all)s OR (replayed_at IS NULL AND dismissed_at IS NULL))
                ORDER BY dead_lettered_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s""",
            {"queue": queue, "all": include_resolved, "limit": limit, "offset": offset},
        )
        return await cur.fetchall()


_REPLAY_SUFFIXES = re.compile(r"(:replay-\d+)+$")


def replay_message_id(message_id: str, dead_letter_id: int) -> str:
    """The id a replay is sent under: new (duplicate detection would drop the original's id), unique
    (by the dead letter's id) and within Service Bus's limit however often a message is replayed: an
    earlier replay's suffix is replaced, not appended to."""
    suffix = f":replay-{dead_letter_id}"
    return _REPLAY_SUFFIXES.sub("", message_id)[: MAX_MESSAGE_ID_LENGTH - len(suffix)] + suffix


async def _ignored_page(conn: Conn, container: Container, letter: DeadLetter) -> str | None:
    """Why the worker would ignore the letter's page (so a replay would change nothing), or None: not a
    page, a body it cannot read (replaying that stays the operator's call), or a page it would fetch."""
    if letter.queue != container.queues.work_items:
        return None
    try:
        item = WorkItem.model_validate(letter.body)
        run, partition = await load_run_and_partition(conn, item.run_id, item.partition_id)
    except (ValidationError, NotFoundError):
        return None
    if not page_superseded(run, partition, item.attempt):
        return None
    page = f"dead letter {letter.id} is a page of run {run.run_id}"
    if run.status == "ingesting":
        return (
            f"{page}, attempt {item.attempt} of {partition.partition_id}, which a retry superseded (attempt "
            f"{partition.attempts} fetches it): the worker would ignore it"
        )
    why = f" ({run.status_reason})" if run.status_reason else ""
    way_out = (
        f"; resume the run with `opus retry {run.run_id}` (POST /api/v2/runs/{run.run_id}/retry)"
        if run.status in ("failed", "skipped")
        else ""
    )
    return f"{page}, which is {run.status}{why}: the worker would ignore it{way_out}"


def resolution(letter: DeadLetter) -> str | None:
    """How the letter was resolved ("replayed at ... as ...", "dismissed at ... with the note ..."), or
    None while it is outstanding."""
    if letter.replayed_at is not None:
        return f"replayed at {letter.replayed_at.isoformat()} as {letter.replay_message_id}"
    if letter.dismissed_at is not None:
        return f"dismissed at {letter.dismissed_at.isoformat()} with the note {letter.dismissal_note!r}"
    return None


async def _outstanding(conn: Conn, dead_letter_id: int) -> DeadLetter:
    """The letter, locked until the transaction ends; refused unless outstanding."""
    cur = conn.cursor(row_factory=class_row(DeadLetter))
    await cur.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = %s FOR UPDATE", (dead_letter_id,))
    letter = await cur.fetchone()
    if letter is None:
        raise NotFoundError(f"dead letter {dead_letter_id} does not exist")
    resolved = resolution(letter)
    if resolved is not None:
        raise ConflictError(f"dead letter {dead_letter_id} was already {resolved}")
    return letter


def dismissal_note(note: str) -> str:
    """The note as stored (surrounding whitespace trimmed), or why it cannot be."""
    text = note.strip()
    if not text:
        raise InvalidRequestError("a note is required: say why the dead letter is dismissed")
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidRequestError(f"the note has {len(text)} characters; at most {MAX_NOTE_LENGTH}")
    if "\x00" in text:
        raise InvalidRequestError("the note contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: from a command line whose bytes were not UTF-8 (Python keeps them so).
        raise InvalidRequestError("the note is not valid UTF-8 text") from None
    return text


async def dismiss(pool: Pool, dead_letter_id: int, note: str) -> DeadLetter:
    """Resolve an outstanding dead letter without replaying it, recording when and the note; the
    letter stays (as evidence) until retention prunes it. Returns the dismissed letter."""
    text = dismissal_note(note)
    async with pool.connection() as conn, conn.transaction():
        await _outstanding(conn, dead_letter_id)
        cur = conn.cursor(row_factory=class_row(DeadLetter))
        await cur.execute(
            f"""UPDATE dead_letters SET dismissed_at = now(), dismissal_note = %s WHERE id = %s
                RETURNING {_COLUMNS}""",
            (text, dead_letter_id),
        )
        dismissed = await cur.fetchone()
    assert dismissed is not None  # locked above
    return dismissed


async def replay(container: Container, dead_letter_id: int) -> str:
    """Send an outstanding dead letter's body back to its queue; return the new message id."""
    async with container.pool.connection() as conn, conn.transaction():
        letter = await _outstanding(conn, dead_letter_id)
        if letter.queue not in container.queues.all():
            raise InvalidRequestError(f"dead letter {dead_letter_id} belongs to unknown queue {letter.queue!r}")
        if not isinstance(letter.body, dict):
            raise InvalidRequestError(f"dead letter {dead_letter_id} has no JSON object body; it cannot be replayed")
        ignored = await _ignored_page(conn, container, letter)
        if ignored is not None:
            raise ConflictError(ignored)
        new_id = replay_message_id(letter.message_id, dead_letter_id)
        await conn.execute(
            "UPDATE dead_letters SET replayed_at = now(), replay_message_id = %s WHERE id = %s",
            (new_id, dead_letter_id),
        )
        # Sent inside the transaction: if sending fails, the dead letter stays unreplayed.
        await container.bus.send(
            [OutgoingMessage(letter.queue, new_id, letter.body, application_properties={"replay_of": str(letter.id)})]
        )
    return new_id
