"""Log records carry the run's fields; nothing is exported without a connection string."""

from __future__ import annotations

import logging

import pytest

from shared import observability
from shared.settings import load_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    factory, level = logging.getLogRecordFactory(), logging.getLogger().level
    yield
    logging.setLogRecordFactory(factory)
    logging.getLogger().setLevel(level)
    observability._state.update(configured=False, exporting=False)


def test_records_inside_an_invocation_carry_run_and_trace_ids(caplog: pytest.LogCaptureFixture) -> None:
    assert observability.configure(load_settings(applicationinsights_connection_string="")) is False
    assert not observability.exporting()
    with caplog.at_level(logging.INFO), observability.invocation("t", run_id="r-1", trace_id="ab" * 16):
        logging.getLogger("opus.test").info("page %d stored", 3)
    record = caplog.records[-1]
    assert record.run_id == "r-1"  # type: ignore[attr-defined]
    assert record.trace_id == "ab" * 16  # type: ignore[attr-defined]
    assert record.getMessage() == f"page 3 stored | run_id=r-1 trace_id={'ab' * 16}"
