"""Structured logs carry run_id, trace_id and partition_id from the context, per task."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from shared.logs import JsonFormatter, KeyValueFormatter, _ContextFilter, log_context


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(_ContextFilter())
    logger = logging.getLogger(f"test.{id(stream)}")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


async def test_each_task_logs_its_own_context_as_json() -> None:
    logger, stream = capture(JsonFormatter())

    async def page(run: str, partition: str) -> None:
        with log_context(run_id=run, trace_id=f"trace-{run}", partition_id=partition):
            await asyncio.sleep(0)
            logger.info("page stored", extra={"stones": 50})

    await asyncio.gather(page("r1", "partition-0"), page("r2", "partition-7"))
    records = sorted((json.loads(line) for line in stream.getvalue().splitlines()), key=lambda r: r["run_id"])
    assert [(r["run_id"], r["trace_id"], r["partition_id"], r["stones"]) for r in records] == [
        ("r1", "trace-r1", "partition-0", 50),
        ("r2", "trace-r2", "partition-7", 50),
    ]
    assert records[0]["msg"] == "page stored"


def test_key_value_lines_and_context_nesting() -> None:
    logger, stream = capture(KeyValueFormatter())
    with log_context(run_id="r1"), log_context(partition_id="partition-3", trace_id=None):
        logger.warning("drift: repositioned")
    logger.info("outside")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("drift: repositioned | run_id=r1 partition_id=partition-3")
    assert "run_id" not in second
