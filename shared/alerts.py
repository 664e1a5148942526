"""Alerts: recorded in the deciding transaction (an outbox), then delivered to a webhook and the log.

The webhook body suits Slack and Teams incoming webhooks (both render a top-level "text").
Delivery is retried on the next pass until it succeeds; an alert is never lost because a webhook
was down when the decision was taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import httpx
from psycopg.types.json import Jsonb

from shared.db.pool import Pool
from shared.runs import Conn

log = logging.getLogger(__name__)

AlertKind = Literal[
    "run_skipped",
    "run_failed",
    "run_stalled",
    "run_partial",
    "run_cancelled",
    "mapping_errors",
    "dead_letter",
    "consolidation_failed",
    "repricing_failed",
]
Severity = Literal["info", "warning", "critical"]
_EMOJI = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    severity: Severity
    title: str
    message: str
    run_id: UUID | None = None
    feed: str | None = None
    details: dict[str, Any] | None = None


async def record_alert(conn: Conn, alert: Alert) -> None:
    """Write the alert in the caller's transaction; it is delivered after commit."""
    await conn.execute(
        """INSERT INTO alerts (kind, severity, run_id, feed, title, message, details)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (
            alert.kind,
            alert.severity,
            alert.run_id,
            alert.feed,
            alert.title,
            alert.message,
            Jsonb(alert.details or {}),
        ),
    )
    level = logging.ERROR if alert.severity == "critical" else logging.WARNING
    log.log(level, "alert %s: %s — %s", alert.kind, alert.title, alert.message, extra={"run_id": alert.run_id})


def webhook_body(row: dict[str, Any]) -> dict[str, Any]:
    emoji = _EMOJI.get(row["severity"], "")
    context = " · ".join(str(part) for part in (row.get("feed"), row.get("run_id")) if part)
    text = f"{emoji} *{row['title']}*\n{row['message']}" + (f"\n_{context}_" if context else "")
    return {
        "text": text,
        "kind": row["kind"],
        "severity": row["severity"],
        "run_id": str(row["run_id"]) if row.get("run_id") else None,
        "feed": row.get("feed"),
        "details": row.get("details") or {},
        "created_at": row["created_at"].isoformat(),
    }


async def deliver_pending(pool: Pool, webhook_url: str | None, http: httpx.AsyncClient, *, limit: int = 50) -> int:
    """Send undelivered alerts to the webhook (or just mark them delivered when none is configured)."""
    delivered = 0
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            """SELECT id, kind, severity, run_id, feed, title, message, details, created_at
               FROM alerts WHERE delivered_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
            (limit,),
        )
        columns = [c.name for c in cur.description or ()]
        rows = [dict(zip(columns, row, strict=True)) for row in await cur.fetchall()]
        for row in rows:
            error: str | None = None
            if webhook_url:
                try:
                    response = await http.post(webhook_url, json=webhook_body(row), timeout=10)
                    if response.status_code >= 300:
                        error = f"webhook answered HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    error = f"webhook unreachable: {exc}"
            if error is None:
                delivered += 1
                await conn.execute(
                    "UPDATE alerts SET delivered_at = now(), delivery_error = NULL WHERE id = %s",
                    (row["id"],),
                )
            else:
                log.warning("alert %s not delivered: %s", row["id"], error)
                await conn.execute(
                    """UPDATE alerts SET delivery_attempts = delivery_attempts + 1, delivery_error = %s
                       WHERE id = %s""",
                    (error, row["id"]),
                )
    return delivered
