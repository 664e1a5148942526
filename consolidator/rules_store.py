"""Pricing rule versions in PostgreSQL.

Every change to `pricing_rules` or `pricing_base_margins` must be followed, in the same transaction,
by `record_version` — it snapshots the active rules as a new `pricing_rule_versions` row. A
consolidation pins one version for its whole run (`pinned_ruleset`), so a mid-run edit cannot split
a run's pricing (the run's stones are brought to the newest version when it completes).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from consolidator.pricing import PricingRule, RuleSet, rules_snapshot, ruleset_from_snapshot
from shared.runs import Conn

_RULE_COLUMNS = """id, priority, feed, stone_type, shapes, colors, clarities, cuts, carat_min, carat_max,
    cost_min, cost_max, markup_multiplier, margin_modifier, rating, active, description"""


async def current_rules(conn: Conn) -> RuleSet:
    """The active rules and base margins as the tables hold them now (version 0 = not yet recorded)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_RULE_COLUMNS} FROM pricing_rules WHERE active ORDER BY priority, id")
    rules = tuple(
        PricingRule(
            **{
                **row,
                **{k: tuple(row[k]) if row[k] is not None else None for k in ("shapes", "colors", "clarities", "cuts")},
            }
        )
        for row in await cur.fetchall()
    )
    cur2 = await conn.execute("SELECT stone_type, margin_pct FROM pricing_base_margins")
    margins = {row[0]: row[1] for row in await cur2.fetchall()}
    return RuleSet(0, rules, margins)


async def record_version(conn: Conn, reason: str) -> RuleSet:
    """Snapshot the current rules as a new version (call in the transaction that changed them)."""
    snapshot = rules_snapshot(await current_rules(conn))
    cur = await conn.execute(
        "INSERT INTO pricing_rule_versions (snapshot, reason) VALUES (%s, %s) RETURNING version",
        (Jsonb(snapshot), reason),
    )
    row = await cur.fetchone()
    assert row is not None
    return ruleset_from_snapshot(row[0], snapshot)


_NEWEST = "SELECT version, snapshot FROM pricing_rule_versions ORDER BY version DESC LIMIT 1"


async def latest_ruleset(conn: Conn) -> RuleSet:
    """The newest recorded version; the first call on a fresh database records version 1.

    That first record is taken under the lock rule changes take: recorded from the rules before a
    first change that is committing meanwhile, it would be newer than the change's own version and
    every consolidation would pin the old rules until the next change."""
    row = await (await conn.execute(_NEWEST)).fetchone()
    if row is None:
        async with conn.transaction():
            await conn.execute("LOCK TABLE pricing_rules IN SHARE ROW EXCLUSIVE MODE")
            row = await (await conn.execute(_NEWEST)).fetchone()
            if row is None:
                return await record_version(conn, "initial rules")
    return ruleset_from_snapshot(row[0], row[1])


async def newest_version(conn: Conn) -> int | None:
    """The newest recorded version number (None before the first is recorded)."""
    cur = await conn.execute("SELECT max(version) FROM pricing_rule_versions")
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


async def held_latest_ruleset(conn: Conn) -> RuleSet:
    """The newest version, with rule changes (which lock pricing_rules in SHARE ROW EXCLUSIVE mode)
    held off until the caller's transaction ends."""
    await conn.execute("LOCK TABLE pricing_rules IN SHARE MODE")
    return await latest_ruleset(conn)


async def ruleset_version(conn: Conn, version: int) -> RuleSet:
    cur = await conn.execute("SELECT snapshot FROM pricing_rule_versions WHERE version = %s", (version,))
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"pricing rule version {version} does not exist")
    snapshot: dict[str, Any] = row[0]
    return ruleset_from_snapshot(version, snapshot)


async def pinned_ruleset(conn: Conn, run_id: UUID) -> RuleSet:
    """The version a run prices with: pinned at its first consolidation attempt, reused on retries."""
    async with conn.transaction():
        cur = await conn.execute("SELECT pricing_version FROM run_metadata WHERE run_id = %s FOR UPDATE", (run_id,))
        row = await cur.fetchone()
        if row is None:
            raise LookupError(f"run {run_id} does not exist")
        if row[0] is not None:
            return await ruleset_version(conn, row[0])
        rules = await latest_ruleset(conn)
        await conn.execute("UPDATE run_metadata SET pricing_version = %s WHERE run_id = %s", (rules.version, run_id))
        return rules
