"""Pricing rule changes: validate, apply with a new rule version and a repricing job, preview, revert.

A change and everything that follows from it commit in ONE transaction: the rule rows, the new
`pricing_rule_versions` snapshot and (unless asked not to) the repricing job; if a job is already
pending or running the whole change is refused (with or without repricing), so nothing is
half-applied. Rule changes are serialised by a table lock, which also makes the "one active
priority per feed" check race-free.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from psycopg.rows import dict_row

from api.errors import ParameterError
from consolidator.preview import PreviewReport, preview
from consolidator.pricing import RULE_FIELDS, PricingInput, PricingRule, RuleError, RuleSet
from consolidator.repricing import check_idle, create_job, load_job
from consolidator.rules_store import current_rules, latest_ruleset, record_version, ruleset_version
from shared.db.pool import Pool
from shared.errors import ConflictError, NotFoundError
from shared.runs import Conn

Action = Literal["create", "update", "deactivate"]
PREVIEW_BATCH: Final = 5000
_EDITABLE: Final = tuple(name for name in RULE_FIELDS if name not in ("id", "active"))
_ROW_COLUMNS: Final = ", ".join(("id", *_EDITABLE, "active", "created_at", "updated_at"))


@dataclass(frozen=True)
class Change:
    action: Action
    rule_id: int | None = None
    values: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Applied:
    rule: dict[str, Any]
    version: int
    job_id: int | None


def rule_error(exc: RuleError) -> ParameterError:
    """The 422 for an engine refusal, naming the first rule field its message mentions."""
    message = str(exc)
    mentioned = [(found.start(), name) for name in _EDITABLE if (found := re.search(rf"\b{name}\b", message))]
    field = min(mentioned)[1] if mentioned else "body"
    # The engine's message often starts with the field, which the error names already.
    return ParameterError(field, message.removeprefix(f"{field}: "), location="body")


def build_rule(values: Mapping[str, Any], rule_id: int | None = None) -> PricingRule:
    """Validate a rule through the pricing engine's own checks; a failure names the field (422)."""
    try:
        fields: dict[str, Any] = {name: values.get(name) for name in _EDITABLE}
        return PricingRule(id=rule_id, **fields)
    except RuleError as exc:
        raise rule_error(exc) from None
    except TypeError as exc:  # a value of the wrong kind for the engine's checks
        raise ParameterError("body", str(exc), location="body") from None


async def list_rules(conn: Conn, *, include_inactive: bool) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    where = "" if include_inactive else "WHERE active"
    await cur.execute(f"SELECT {_ROW_COLUMNS} FROM pricing_rules {where} ORDER BY priority, id")
    return await cur.fetchall()


async def _rule_row(conn: Conn, rule_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_ROW_COLUMNS} FROM pricing_rules WHERE id = %s", (rule_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"no pricing rule {rule_id}")
    return row


async def _check_priority(conn: Conn, rule: PricingRule, rule_id: int | None) -> None:
    cur = await conn.execute(
        """SELECT id FROM pricing_rules
           WHERE active AND coalesce(feed, '') = coalesce(%s, '') AND priority = %s AND id IS DISTINCT FROM %s""",
        (rule.feed, rule.priority, rule_id),
    )
    taken = await cur.fetchone()
    if taken is not None:
        scope = f"feed {rule.feed}" if rule.feed else "all feeds"
        raise ParameterError(
            "priority", f"priority {rule.priority} is already used by active rule {taken[0]} ({scope})", "body"
        )


def _values(rule: PricingRule) -> list[Any]:
    return [list(v) if isinstance(v, tuple) else v for v in (getattr(rule, name) for name in _EDITABLE)]


async def _check_live(conn: Conn, change: Change) -> None:
    """An update or deactivation needs its rule to exist (404) and be active (409), checked before
    any new values are judged (422): for a preview as for a save."""
    if change.action == "create":
        return
    assert change.rule_id is not None
    row = await _rule_row(conn, change.rule_id)
    if not row["active"]:
        verdict = "is already inactive" if change.action == "deactivate" else "is inactive; create a new rule instead"
        raise ConflictError(f"pricing rule {change.rule_id} {verdict}")


async def _write(conn: Conn, change: Change) -> int:
    """Apply a change to the rule rows (inside the caller's transaction); return the rule id."""
    await _check_live(conn, change)
    if change.action == "deactivate":
        assert change.rule_id is not None
        await conn.execute(
            "UPDATE pricing_rules SET active = false, updated_at = now() WHERE id = %s", (change.rule_id,)
        )
        return change.rule_id
    rule = build_rule(change.values or {}, change.rule_id)
    await _check_priority(conn, rule, change.rule_id)
    if change.action == "create":
        marks = ", ".join(["%s"] * len(_EDITABLE))
        cur = await conn.execute(
            f"INSERT INTO pricing_rules ({', '.join(_EDITABLE)}) VALUES ({marks}) RETURNING id", _values(rule)
        )
        created = await cur.fetchone()
        assert created is not None
        return int(created[0])
    assert change.rule_id is not None
    assignments = ", ".join(f"{name} = %s" for name in _EDITABLE)
    await conn.execute(
        f"UPDATE pricing_rules SET {assignments}, updated_at = now() WHERE id = %s", [*_values(rule), change.rule_id]
    )
    return change.rule_id


def _describe(change: Change, rule_id: int) -> str:
    return {"create": "created", "update": "updated", "deactivate": "deactivated"}[change.action] + f" rule {rule_id}"


async def apply_change(pool: Pool, change: Change, *, reprice: bool) -> Applied:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("LOCK TABLE pricing_rules IN SHARE ROW EXCLUSIVE MODE")
        before = await latest_ruleset(conn)
        rule_id = await _write(conn, change)
        reason = _describe(change, rule_id)
        try:
            # The rule set as a whole: the rule's markup with the base margins must stay in bounds.
            after = await record_version(conn, reason)
        except RuleError as exc:
            raise rule_error(exc) from None
        job_id = None
        if reprice:
            job_id = await create_job(conn, from_version=before.version, to_version=after.version, reason=reason)
        else:
            # Refused too: the running job would go on writing the prices of rules no longer current.
            await check_idle(conn)
        rule = await _rule_row(conn, rule_id)
    return Applied(rule, after.version, job_id)


async def candidate_rules(conn: Conn, change: Change) -> RuleSet:
    """The rule set the change would produce, without saving anything."""
    current = await current_rules(conn)
    rules = list(current.rules)
    if change.action == "create":
        candidate = build_rule(change.values or {})
        await _check_priority(conn, candidate, None)
        rules.append(candidate)
    else:
        await _check_live(conn, change)
        rules = [rule for rule in rules if rule.id != change.rule_id]
        if change.action == "update":
            candidate = build_rule(change.values or {}, change.rule_id)
            await _check_priority(conn, candidate, change.rule_id)
            rules.append(candidate)
    try:
        return RuleSet(0, tuple(rules), current.base_margins)
    except RuleError as exc:
        raise rule_error(exc) from None


_CATALOGUE = """
SELECT supplier_stone_id, feed, shape, carats, color, clarity, cut, lab_grown, fancy_color, feed_price, retail_price
FROM diamonds WHERE status = 'active'
"""


def _preview_batch(rows: Sequence[tuple[Any, ...]], rules: RuleSet) -> PreviewReport:
    return preview(((PricingInput(*row[:10]), row[10]) for row in rows), rules)


async def preview_change(pool: Pool, change: Change) -> PreviewReport:
    """How the candidate would reprice the live catalogue, streamed in batches; pricing runs in a
    worker thread so the event loop keeps serving other requests."""
    async with pool.connection() as conn:
        rules = await candidate_rules(conn, change)
        report = PreviewReport.empty()
        async with conn.transaction(), conn.cursor(name="pricing_preview") as cur:
            await cur.execute(_CATALOGUE)
            while rows := await cur.fetchmany(PREVIEW_BATCH):
                report = report.merge(await asyncio.to_thread(_preview_batch, rows, rules))
    return report


async def revert_job(pool: Pool, job_id: int) -> int:
    """Restore the rules a completed job applied over and reprice to them; return the new job's id."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("LOCK TABLE pricing_rules IN SHARE ROW EXCLUSIVE MODE")
        job = await load_job(conn, job_id)
        if job.status != "completed":
            raise ConflictError(f"repricing job {job_id} is {job.status}; only a completed job can be reverted")
        later = await (
            await conn.execute(
                "SELECT id FROM repricing_jobs WHERE id > %s AND status <> 'failed' ORDER BY id LIMIT 1", (job_id,)
            )
        ).fetchone()
        if later is not None:
            raise ConflictError(f"repricing job {later[0]} came after job {job_id}; revert that one first")
        if job.from_version is None:
            raise ConflictError(f"repricing job {job_id} has no earlier rule version to go back to")
        before = await latest_ruleset(conn)
        if before.version != job.to_version:
            # Restoring the job's starting rules would silently undo the later changes (made without
            # repricing, or whose job failed) too.
            raise ConflictError(
                f"the rules changed after repricing job {job_id} (it applied version {job.to_version}, "
                f"version {before.version} is current); only the latest change can be reverted"
            )
        await _restore(conn, await ruleset_version(conn, job.from_version))
        reason = f"revert of repricing job {job_id}"
        after = await record_version(conn, reason)
        await conn.execute(
            "UPDATE repricing_jobs SET status = 'reverted', reverted_at = now() WHERE id = %s", (job_id,)
        )
        return await create_job(conn, from_version=before.version, to_version=after.version, reason=reason)


async def _restore(conn: Conn, rules: RuleSet) -> None:
    """Make the rule rows hold exactly `rules` (rules are never deleted, only deactivated)."""
    await conn.execute("UPDATE pricing_rules SET active = false, updated_at = now() WHERE active")
    assignments = ", ".join(f"{name} = %s" for name in _EDITABLE)
    for rule in rules.rules:
        if rule.id is None:
            marks = ", ".join(["%s"] * len(_EDITABLE))
            await conn.execute(f"INSERT INTO pricing_rules ({', '.join(_EDITABLE)}) VALUES ({marks})", _values(rule))
        else:
            await conn.execute(
                f"UPDATE pricing_rules SET {assignments}, active = true, updated_at = now() WHERE id = %s",
                [*_values(rule), rule.id],
            )
    for kind, margin in rules.base_margins.items():
        await conn.execute(
            "UPDATE pricing_base_margins SET margin_pct = %s WHERE stone_type = %s", (Decimal(margin), kind)
        )
