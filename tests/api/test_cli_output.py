"""The CLI prints what the feed, the database and operators wrote as it is: brackets in an error
("[Errno 111] ...") or a reason ("see [/x]") are text, never Rich markup to style, drop or fail on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from opus import cli
from tests.api.test_operations import add_run


def test_run_status_prints_reasons_and_errors_with_brackets_as_given(
    db: Any, cli_env: None, sync_db: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    reason = "[red]2 of 2[/red] failed, see [/x]"
    run_id = add_run(sync_db, status="failed", status_reason=reason, completed_at=datetime.now(UTC))
    sync_db.execute(
        "UPDATE partition_progress SET error = '[Errno 111] Connection refused' WHERE run_id = %s AND error <> ''",
        (run_id,),
    )
    assert cli.main(["run-status", run_id]) == 0
    out = capsys.readouterr().out
    assert reason in out
    assert "[Errno 111] Connection refused" in out
