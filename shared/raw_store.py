"""Raw feed rows: an idempotent, set-based upsert keyed by (feed, supplier_stone_id).

Arrays travel as binary parameters (`%b`): in text format psycopg escapes every character of the
JSON payloads with a regular expression, which cost more CPU than everything else on a page.

An item whose payload hash is unchanged leaves its row untouched and does not become pending;
every item is recorded as seen by the run (the set a full run's soft delete trusts). An item that
cannot be stored as the feed sent it (a number no double holds, see `shared.feed.numbers`) is
refused and recorded, not stored altered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

import orjson

from shared.feed.numbers import unrepresentable_in
from shared.runs import Conn

# Nivoda's ids are UUIDs. A longer "id" is a feed error, and one beyond ~2.7 KB would not even fit
# the primary key's index: the whole page's upsert would fail, again on every redelivery.
MAX_ID_LENGTH: Final = 200
_NUL: Final = "\x00"


@dataclass(frozen=True)
class RawItem:
    supplier_stone_id: str
    offer_id: str
    payload_json: str
    payload_hash: bytes


@dataclass(frozen=True)
class RawReject:
    """An item of a page that is not stored as given: `code` and `reason` for its error record."""

    code: Literal["malformed_item", "duplicate_item", "unrepresentable_number"]
    reason: str
    supplier_stone_id: str | None = None


def _clip(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:57]}..."


def _show(value: object) -> str:
    return _clip(repr(value))


def _identify(item: object) -> tuple[str | None, str]:
    """The item's stone id (`diamond.id`), or None and why it has none."""
    if not isinstance(item, Mapping):
        return None, f"feed item is not an object: {_show(item)}"
    diamond = item.get("diamond")
    label = f"feed item {_show(item.get('id'))}"
    if not isinstance(diamond, Mapping):
        return None, f"{label} has no diamond object: diamond = {_show(diamond)}"
    value = diamond.get("id")
    if value is None:
        return None, f"{label}: diamond.id is missing or null"
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        return None, f"{label}: diamond.id is not an id: {_show(value)}"
    text = str(value).strip()  # as the mapper reads it, so raw rows and diamonds share keys
    if len(text) > MAX_ID_LENGTH:
        return None, f"{label}: diamond.id is {len(text)} characters long (at most {MAX_ID_LENGTH}): {_show(text)}"
    if _NUL in text:
        return None, f"{label}: diamond.id holds a NUL character, which PostgreSQL text cannot: {_show(text)}"
    return text, ""


def _unstorable(sid: str, item: object, exc: orjson.JSONEncodeError) -> RawReject:
    """Why an item with a stone id cannot be stored as JSON; see `shared.feed.numbers` for the rule."""
    found = unrepresentable_in(item)
    if not found:  # text orjson refuses to write (a lone surrogate Python's parser let through)
        return RawReject("malformed_item", f"diamond {sid} cannot be stored as JSON: {exc}", sid)
    shown = ", ".join(f"{_clip(path)} = {_clip(number.text)}" for path, number in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return RawReject(
        "unrepresentable_number",
        f"diamond {sid}: {shown}{more}: a number no double can hold; the item is refused whole",
        sid,
    )


def stone_id(item: object) -> str | None:
    return _identify(item)[0]


def to_raw_items(items: Sequence[object]) -> tuple[list[RawItem], list[RawReject]]:
    """Split a page into keyed raw items (de-duplicated, last copy wins) and what was rejected."""
    keyed: dict[str, RawItem] = {}
    rejects: list[RawReject] = []
    for item in items:
        sid, reason = _identify(item)
        if sid is None or not isinstance(item, Mapping):
            rejects.append(RawReject("malformed_item", reason))
            continue
        offer = item.get("id")
        # The offer id is judged by the mapper (from the payload); this column only has to hold it.
        offer_id = str(offer).replace(_NUL, "\ufffd") if offer is not None else sid
        try:
            encoded = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:
            rejects.append(_unstorable(sid, item, exc))
            continue
        if sid in keyed:
            rejects.append(
                RawReject(
                    "duplicate_item", f"diamond {sid} appears more than once in the page; the last copy is kept", sid
                )
            )
        keyed[sid] = RawItem(
            supplier_stone_id=sid,
            offer_id=offer_id,
            payload_json=encoded.decode(),
            payload_hash=hashlib.sha256(encoded).digest(),
        )
    return list(keyed.values()), rejects


# One statement: upsert the page, queue what changed for consolidation, record what was seen.
_UPSERT = """
WITH page AS (
    SELECT * FROM unnest(%(sids)b::text[], %(offers)b::text[], %(payloads)b::text[], %(hashes)b::bytea[])
        AS t(sid, offer, payload, hash)
), changed AS (
    INSERT INTO raw_diamonds_nivoda AS r (feed, supplier_stone_id, offer_id, payload, payload_hash, run_id)
    SELECT %(feed)s, sid, offer, payload, hash, %(run)s FROM page
    ON CONFLICT (feed, supplier_stone_id) DO UPDATE
        SET offer_id = EXCLUDED.offer_id, payload = EXCLUDED.payload, payload_hash = EXCLUDED.payload_hash,
            run_id = EXCLUDED.run_id, updated_at = now()
        WHERE r.payload_hash IS DISTINCT FROM EXCLUDED.payload_hash
    RETURNING supplier_stone_id
), pending AS (
    INSERT INTO raw_pending (feed, supplier_stone_id, run_id)
    SELECT %(feed)s, supplier_stone_id, %(run)s FROM changed
    ON CONFLICT (feed, supplier_stone_id) DO UPDATE SET run_id = EXCLUDED.run_id, enqueued_at = now()
), seen AS (
    INSERT INTO run_seen_stones (run_id, supplier_stone_id)
    SELECT %(run)s, sid FROM page
    ON CONFLICT DO NOTHING
    RETURNING supplier_stone_id
)
SELECT (SELECT count(*) FROM changed), ARRAY(SELECT supplier_stone_id FROM seen)
"""


@dataclass(frozen=True)
class Upserted:
    changed: int  # items whose payload changed, now pending consolidation
    first_seen: frozenset[str]  # stones the run had not seen before this page


async def upsert_raw(conn: Conn, *, feed: str, run_id: UUID, items: Sequence[RawItem]) -> Upserted:
    """Upsert a page's items (caller's transaction); return what changed and what the run saw first."""
    if not items:
        return Upserted(0, frozenset())
    cur = await conn.execute(
        _UPSERT,
        {
            "feed": feed,
            "run": run_id,
            "sids": [i.supplier_stone_id for i in items],
            "offers": [i.offer_id for i in items],
            "payloads": [i.payload_json for i in items],
            "hashes": [i.payload_hash for i in items],
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Upserted(int(row[0]), frozenset(row[1]))


async def seen_ids(conn: Conn, run_id: UUID, candidates: Sequence[str]) -> set[str]:
    cur = await conn.execute(
        "SELECT supplier_stone_id FROM run_seen_stones WHERE run_id = %s AND supplier_stone_id = ANY(%s)",
        (run_id, list(candidates)),
    )
    return {row[0] for row in await cur.fetchall()}


async def forget_seen(conn: Conn, run_ids: Sequence[UUID]) -> int:
    """Drop the seen-sets of finished runs (only a full run's own soft delete reads its set)."""
    cur = await conn.execute("DELETE FROM run_seen_stones WHERE run_id = ANY(%s)", (list(run_ids),))
    return cur.rowcount
