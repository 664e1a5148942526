"""Logs and traces of the Functions app, correlated by run id and trace id.

- Every record logged inside `log_context(...)` (shared.logs) carries the run's fields: as attributes
  (custom dimensions in Application Insights) and appended to the message text (what the Functions
  host shows, since the worker forwards only the message).
- With APPLICATIONINSIGHTS_CONNECTION_STRING set, OpenTelemetry exports logs and traces through
  azure-monitor-opentelemetry; each invocation that handles a run's message opens a span in the RUN'S
  trace (trace id = the run's trace_id), linked to the host's invocation span, so one query by
  operation id shows a whole run across every function and instance. Without it nothing is exported
  and no exporter is even imported.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.logs import current_context, log_context
from shared.settings import Settings

log = logging.getLogger(__name__)

TRACER_NAME = "diamond_opus"
_state: dict[str, bool] = {"configured": False, "exporting": False}


def _context_record_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        fields = current_context()
        if fields:
            for key, value in fields.items():
                setattr(record, key, value)
            suffix = " | " + " ".join(f"{key}={value}" for key, value in fields.items())
            # The message is %-formatted later when it has arguments: keep the suffix literal.
            record.msg = f"{record.msg}{suffix.replace('%', '%%') if record.args else suffix}"
        return record

    factory.opus_context = True  # type: ignore[attr-defined]
    return factory


def configure(settings: Settings) -> bool:
    """Configure logging (and export when a connection string is set) once per process; True if exporting."""
    if _state["configured"]:
        return _state["exporting"]
    base = logging.getLogRecordFactory()
    if not getattr(base, "opus_context", False):
        logging.setLogRecordFactory(_context_record_factory(base))
    logging.getLogger().setLevel(settings.log_level)
    for noisy in ("azure", "httpx", "httpcore", "psycopg.pool", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    connection = settings.applicationinsights_connection_string
    if connection is not None:
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(
            connection_string=connection.get_secret_value(),
            # The Functions host already reports requests; psycopg (v3) is not psycopg2.
            instrumentation_options={"django": {"enabled": False}, "flask": {"enabled": False}},
        )
        _state["exporting"] = True
        log.info("exporting logs and traces to Application Insights")
    _state["configured"] = True
    return _state["exporting"]


def exporting() -> bool:
    return _state["exporting"]


def _run_parent(trace_id: str | None) -> Any:
    """A remote parent in the run's trace, so every span of the run shares its trace id."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    try:
        trace_int = int(trace_id or "", 16)
    except ValueError:
        return None
    if not 0 < trace_int < 2**128:
        return None
    parent = SpanContext(
        trace_id=trace_int, span_id=secrets.randbits(64) or 1, is_remote=True, trace_flags=TraceFlags(1)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _host_context(traceparent: str | None) -> Any:
    """The host's invocation span (W3C traceparent) as an OpenTelemetry context, or None."""
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return None
    context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    return context if get_current_span(context).get_span_context().is_valid else None


@contextmanager
def invocation(name: str, *, traceparent: str | None = None, **fields: object) -> Iterator[None]:
    """Bind the fields for logging and, when exporting, run the block in a span of the run's trace."""
    with log_context(**fields):
        if not _state["exporting"]:
            yield
            return
        from opentelemetry import trace
        from opentelemetry.trace import Link, get_current_span

        host = _host_context(traceparent)
        parent = _run_parent(str(fields["trace_id"])) if fields.get("trace_id") else None
        links = [Link(get_current_span(host).get_span_context())] if parent is not None and host is not None else []
        attributes = {key: str(value) for key, value in fields.items() if value is not None}
        tracer = trace.get_tracer(TRACER_NAME)
        with tracer.start_as_current_span(
            name, context=parent if parent is not None else host, links=links, attributes=attributes
        ):
            yield
