"""An independent reading of DiamondQuery semantics over the simulator's ground truth rows.

Written from the contract (not from feedsim.filters) so the two can disagree if either is wrong.
Exact arithmetic: Fraction for prices and carats, ISO strings parsed to datetimes.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any

from shared.feed.query import DiamondQuery


def _fraction(value: Any) -> Fraction:
    return Fraction(str(value))


def _within(value: Fraction | datetime, bounds: dict[str, Any] | None, convert: Any) -> bool:
    if not bounds:
        return True
    low, high = bounds.get("from"), bounds.get("to")
    return (low is None or value >= convert(low)) and (high is None or value <= convert(high))


def matches(stone: dict[str, Any], query: DiamondQuery) -> bool:
    wire = query.to_variables()  # judge what the server is sent, e.g. millisecond timestamps
    carats = _fraction(stone["carats"])
    price = Fraction(stone["price_cents"], 100)
    checks = (
        _within(price / carats, wire.get("dollar_per_carat"), _fraction),
        _within(price, wire.get("dollar_value"), _fraction),
        _within(carats, wire.get("sizes"), _fraction),
        _within(datetime.fromisoformat(stone["updated_at"]), wire.get("updated"), datetime.fromisoformat),
        not wire.get("shapes") or stone["shape"] in wire["shapes"],
        wire.get("labgrown") is None or stone["labgrown"] == wire["labgrown"],
        not wire.get("availability") or stone["availability"] in wire["availability"],
        not wire.get("has_image") or stone["has_image"],
        not wire.get("has_v360") or stone["has_v360"],
        not wire.get("excludeFairPoorCuts") or stone["cut"] not in ("F", "P"),
        not wire.get("hide_memo") or stone["availability"] != "MEMO",
        not wire.get("ids") or stone["supplier_stone_id"] in wire["ids"],
    )
    return all(checks)


def matching_ids(inventory: list[dict[str, Any]], query: DiamondQuery) -> list[str]:
    """Ids of matching stones in createdAt order (the inventory is listed in that order)."""
    return [stone["supplier_stone_id"] for stone in inventory if matches(stone, query)]
