"""Every setting the app reads, in one pydantic-settings model.

Values come from environment variables (Azure app settings in production, `local.settings.json`
under `func start`, the shell for `opus`). Each field's description states the accepted form so
that a bad value fails fast with a message that names the variable and says what would be valid.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

FEED_VARIANTS: tuple[str, ...] = ("nivoda-natural", "nivoda-labgrown")
# The simulator keys its inventory by the seed's 64 bits (feedsim/ids.py); numpy refuses negative seeds.
FEEDSIM_MAX_SEED = 2**63 - 1
# Service Bus refuses a shorter DuplicateDetectionHistoryTimeWindow (the bus config checks the same).
MIN_DUPLICATE_WINDOW_S = 20


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it and the accepted form."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        frozen=True,
        # No setting means infinity or not-a-number (ge/le bounds let infinity through).
        allow_inf_nan=False,
    )

    # --- runtime -------------------------------------------------------------------------
    opus_runtime: Literal["local", "azure"] = Field(
        "local", description="'local' (embedded PostgreSQL, local bus, simulator) or 'azure'"
    )
    opus_data_dir: Path = Field(Path(".opus"), description="a directory path for local state")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="one of DEBUG, INFO, WARNING, ERROR"
    )
    log_format: Literal["json", "text"] = Field("text", description="'json' or 'text' (key=value)")
    applicationinsights_connection_string: SecretStr | None = Field(
        None, description="an Application Insights connection string; unset disables export"
    )

    # --- database --------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        None, description="a postgresql:// URL; unset starts the embedded PostgreSQL"
    )
    opus_pgdata: Path | None = Field(
        None, description="data directory of the embedded PostgreSQL (default <OPUS_DATA_DIR>/pgdata)"
    )
    db_pool_min_size: int = Field(1, ge=0, le=100, description="an integer 0-100")
    db_pool_max_size: int = Field(10, ge=1, le=200, description="an integer 1-200")
    db_statement_timeout_ms: int = Field(120_000, ge=0, description="milliseconds, an integer >= 0 (0 disables)")

    # --- message bus ---------------------------------------------------------------------
    bus_backend: Literal["local", "servicebus"] = Field(
        "local", description="'local' (PostgreSQL-backed bus) or 'servicebus' (Azure Service Bus)"
    )
    servicebus_connection_setting: str = Field(
        "ServiceBusConnection",
        min_length=1,
        description="NAME of the app setting holding the Service Bus connection (used by triggers and SDK)",
    )
    queue_work_items: str = Field("work-items", min_length=1, description="a queue name")
    queue_work_done: str = Field("work-done", min_length=1, description="a queue name")
    queue_consolidate: str = Field("consolidate", min_length=1, description="a queue name")
    # The local bus takes each queue's properties from shared/bus/servicebus_config.json; these override
    # one of them for every queue when set.
    bus_lock_duration_s: int | None = Field(
        None, ge=5, le=300, description="seconds, an integer 5-300; unset: each queue's LockDuration (Config.json)"
    )
    bus_max_delivery_count: int = Field(
        5,
        ge=1,
        le=100,
        description="an integer 1-100: in Azure, the work-items queue's MaxDeliveryCount; "
        "locally, only when set, every queue's (unset: each queue's, Config.json)",
    )
    bus_duplicate_window_s: int | None = Field(
        None,
        ge=0,
        le=86_400,
        description="seconds, 0 (off) or an integer 20-86400; unset: each queue's duplicate detection (Config.json)",
    )

    # --- supplier feed (Nivoda) ------------------------------------------------------------
    nivoda_endpoint: AnyHttpUrl | None = Field(
        None, description="the Nivoda GraphQL URL; unset locally starts the built-in simulator"
    )
    nivoda_username: str = Field("sim-user", description="the Nivoda API user name")
    nivoda_password: SecretStr = Field(SecretStr("sim-password"), description="the Nivoda API password")
    nivoda_connect_timeout_s: float = Field(10.0, gt=0, le=120, description="seconds, a number in (0, 120]")
    nivoda_request_timeout_s: float = Field(45.0, gt=0, le=600, description="seconds, a number in (0, 600]")
    nivoda_max_retries: int = Field(5, ge=0, le=20, description="an integer 0-20")
    nivoda_rate_limit_per_s: float = Field(
        25.0, gt=0, le=10_000, description="requests per second for the whole account, a number > 0"
    )
    nivoda_rate_limit_scope: Literal["process", "global"] = Field(
        "global",
        description="'global' (shared PostgreSQL token bucket across processes) or 'process'",
    )
    nivoda_token_lifetime_s: int = Field(6 * 3600, ge=60, description="assumed token life, seconds >= 60")

    # --- local feed simulator --------------------------------------------------------------
    feedsim_host: str = Field("127.0.0.1", description="a host/interface to bind")
    feedsim_port: int = Field(7072, ge=0, le=65_535, description="a TCP port 0-65535 (0 = any free port)")
    feedsim_stones: int = Field(50_000, ge=0, le=1_000_000, description="an integer 0-1000000")
    feedsim_seed: int = Field(42, ge=0, le=FEEDSIM_MAX_SEED, description=f"an integer seed 0-{FEEDSIM_MAX_SEED}")
    feedsim_latency_ms: float = Field(0.0, ge=0, description="milliseconds, a number >= 0")
    feedsim_churn_per_s: float = Field(0.0, ge=0, description="stones changed per second, a number >= 0")

    # --- scheduling and run planning -----------------------------------------------------
    schedule_cron: str = Field("0 0 */6 * * *", description="an NCRONTAB expression with 6 fields (seconds first)")
    run_on_startup: bool = Field(
        True, description="true/false: the local host starts a run at start when no run has completed yet"
    )
    feeds: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(FEED_VARIANTS),
        description="comma-separated feed variants, run one after the other: " + ", ".join(FEED_VARIANTS),
    )
    full_run_start_date: datetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC), description="an ISO-8601 timestamp with time zone"
    )
    incremental_safety_buffer_minutes: int = Field(15, ge=0, le=1440, description="minutes, an integer 0-1440")

    # --- heatmap and partitioning ---------------------------------------------------------
    heatmap_min_price_per_carat: Decimal = Field(Decimal(0), ge=0, description="dollars per carat, >= 0")
    heatmap_max_price_per_carat: Decimal = Field(Decimal(100_000), gt=0, description="dollars per carat, > 0")
    heatmap_concurrency: int = Field(6, ge=1, le=50, description="concurrent count calls, an integer 1-50")
    heatmap_max_count_calls: int = Field(60, ge=5, le=1000, description="count-call budget, an integer 5-1000")
    max_workers_full: int = Field(30, ge=1, le=1000, description="partitions of a full run, an integer 1-1000")
    max_workers_incremental: int = Field(
        10, ge=1, le=1000, description="partitions of an incremental run, an integer 1-1000"
    )
    min_records_per_worker: int = Field(1000, ge=1, description="an integer >= 1")
    max_records_per_run: int = Field(0, ge=0, description="an integer >= 0 (0 = no cap)")

    # --- workers ----------------------------------------------------------------------------
    # At most 128: `opus run` gives every consumer a pool connection, and the pool (DB_POOL_MAX_SIZE) and
    # the embedded server stop at 200 connections.
    worker_concurrency: int = Field(8, ge=1, le=128, description="concurrent local workers, an integer 1-128")
    # Pages overlap by one stone (the anchor that detects drift), so a page needs room for two.
    worker_page_size: int = Field(50, ge=2, le=50, description="items per page, an integer 2-50")
    worker_offset_cap_factor: Decimal = Field(
        Decimal("1.5"), ge=1, description="safety cap on a partition's offset as a multiple of its estimate"
    )

    # --- run lifecycle --------------------------------------------------------------------
    auto_consolidation_threshold: Decimal = Field(
        Decimal("0.70"),
        ge=0,
        le=1,
        description="share of completed partitions (0-1) at or above which a partial run auto-consolidates",
    )
    auto_consolidation_delay_minutes: int = Field(5, ge=0, le=1440, description="minutes, an integer 0-1440")
    run_stall_minutes: int = Field(30, ge=1, le=10_080, description="minutes without progress, integer 1-10080")

    # --- consolidation ---------------------------------------------------------------------
    consolidator_batch_size: int = Field(2000, ge=1, le=100_000, description="rows per claim, 1-100000")
    consolidator_concurrency: int = Field(1, ge=1, le=32, description="local consolidators, an integer 1-32")
    mapping_error_alert_ratio: Decimal = Field(
        Decimal("0.02"), ge=0, le=1, description="share of unmappable items (0-1) that raises an alert"
    )

    retention_days: int = Field(
        90,
        ge=0,
        le=3650,
        description="days error records, finished runs, delivered alerts, replayed or dismissed dead letters and "
        "repricing snapshots are kept, 0-3650 (0: forever)",
    )

    # --- alerts and watermark mirror ---------------------------------------------------------
    alert_webhook_url: AnyHttpUrl | None = Field(
        None, description="an http(s):// incoming-webhook URL (Slack/Teams); unset logs alerts only"
    )
    azure_storage_connection_string: SecretStr | None = Field(
        None, description="an Azure Storage connection string; set to mirror watermarks to Blob"
    )
    watermark_container: str = Field("watermarks", min_length=3, description="a blob container name")

    # --- HTTP API --------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="a host/interface to bind")
    api_port: int = Field(7071, ge=0, le=65_535, description="a TCP port 0-65535")
    hmac_secrets: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, description='a JSON object {"client-id": "secret", ...}'
    )
    hmac_tolerance_s: int = Field(300, ge=1, le=3600, description="seconds, an integer 1-3600")
    api_auth_failure_limit: int = Field(
        20,
        ge=0,
        le=10_000,
        description="failed authentications one source (client address) may make per API_AUTH_FAILURE_WINDOW_S "
        "before its requests answer 429, counted per API process, an integer 0-10000 (0: no limit)",
    )
    api_auth_failure_window_s: int = Field(
        60, ge=1, le=86_400, description="seconds of API_AUTH_FAILURE_LIMIT's budget, an integer 1-86400"
    )
    api_trusted_proxy_hops: int = Field(
        0,
        ge=0,
        le=10,
        description="proxies in front of the API that append to X-Forwarded-For, whose N-th entry from the right "
        "is then the client (Azure Functions: 1, behind Front Door: 2), an integer 0-10 (0: ignore the header)",
    )
    api_search_count_limit: int = Field(
        10_000, ge=100, description="matches a search counts exactly (beyond, an estimate), an integer >= 100"
    )
    api_page_cache_mb: int = Field(
        64,
        ge=0,
        le=4096,
        description="memory for search pages kept per API process until the catalogue changes, MB 0-4096 (0: none)",
    )

    @field_validator(
        "applicationinsights_connection_string",
        "database_url",
        "opus_pgdata",
        "nivoda_endpoint",
        "alert_webhook_url",
        "azure_storage_connection_string",
        "bus_lock_duration_s",
        "bus_duplicate_window_s",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # Optional settings only: local.settings.json lists every key, blank meaning "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("bus_duplicate_window_s")
    @classmethod
    def _service_bus_window(cls, value: int | None) -> int | None:
        if value is not None and 0 < value < MIN_DUPLICATE_WINDOW_S:
            raise ValueError(
                f"Service Bus's shortest duplicate-detection window is {MIN_DUPLICATE_WINDOW_S} s (0 turns it off)"
            )
        return value

    @field_validator("feeds", mode="before")
    @classmethod
    def _parse_feeds(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("feeds")
    @classmethod
    def _known_feeds(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one feed is required")
        unknown = [feed for feed in value if feed not in FEED_VARIANTS]
        if unknown:
            raise ValueError(f"unknown feed(s) {', '.join(unknown)}")
        if len(set(value)) != len(value):
            raise ValueError("a feed is listed twice")
        return value

    @field_validator("hmac_secrets", mode="before")
    @classmethod
    def _parse_hmac(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg})") from None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in parsed.items()
            ):
                raise ValueError("must map client ids to non-empty secret strings")
            return parsed
        return value

    @field_validator("schedule_cron")
    @classmethod
    def _six_field_cron(cls, value: str) -> str:
        from shared.cron import CronExpression  # local import: cron is a leaf module

        CronExpression.parse(value)
        return value

    @field_validator("full_run_start_date")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2000-01-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if self.heatmap_min_price_per_carat >= self.heatmap_max_price_per_carat:
            raise ValueError("HEATMAP_MIN_PRICE_PER_CARAT must be below HEATMAP_MAX_PRICE_PER_CARAT")
        if self.opus_runtime == "azure":
            missing = [
                name
                for name, value in (
                    ("DATABASE_URL", self.database_url),
                    ("NIVODA_ENDPOINT", self.nivoda_endpoint),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"OPUS_RUNTIME=azure requires {', '.join(missing)}")
        return self

    # --- derived -----------------------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return (self.opus_pgdata or self.opus_data_dir / "pgdata").resolve()

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def queue_names(self) -> tuple[str, str, str]:
        return (self.queue_work_items, self.queue_work_done, self.queue_consolidate)


def env_name(field: str) -> str:
    return field.upper()


def describe(field: str) -> str:
    info = Settings.model_fields[field]
    return info.description or ""


def _format_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if part != "__root__"]
        if loc:
            name = env_name(loc[0])
            given = item.get("input")
            shown = f"={given!r}" if isinstance(given, str | int | float) else ""
            accepted = describe(loc[0]) if loc[0] in Settings.model_fields else ""
            reason = item["msg"].removeprefix("Value error, ")
            hint = f"; expected {accepted}" if accepted else ""
            lines.append(f"invalid setting {name}{shown}: {reason}{hint}")
        else:
            lines.append(f"invalid settings: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (plus explicit overrides); raise SettingsError on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_format_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings for entry points (CLI, function_app); services receive them explicitly."""
    return load_settings()
