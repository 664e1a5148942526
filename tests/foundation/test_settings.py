from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_are_valid_for_local_use() -> None:
    settings = load_settings()
    assert settings.feeds == ["nivoda-natural", "nivoda-labgrown"]
    assert settings.uses_embedded_database
    assert settings.queue_names == ("work-items", "work-done", "consolidate")


def test_an_empty_string_is_not_silently_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "")
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert "WORKER_CONCURRENCY=''" in message
    assert "an integer 1-128" in message


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("SCHEDULE_CRON", "0 */6 * * *", "NCRONTAB needs 6"),
        ("FEEDS", "nivoda-natural,nivoda-pink", "unknown feed(s) nivoda-pink"),
        ("NIVODA_RATE_LIMIT_PER_S", "-1", "NIVODA_RATE_LIMIT_PER_S='-1'"),
        ("HMAC_SECRETS", "{not json", "HMAC_SECRETS"),
        ("AUTO_CONSOLIDATION_THRESHOLD", "1.5", "share of completed partitions"),
        ("LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR"),
        ("FULL_RUN_START_DATE", "2000-01-01T00:00:00", "time zone"),
        ("NIVODA_ENDPOINT", "not a url", "NIVODA_ENDPOINT"),
        ("FEEDSIM_SEED", "-5", "an integer seed 0-"),
        ("FEEDSIM_LATENCY_MS", "inf", "a number >= 0"),
        ("MAPPING_ERROR_ALERT_RATIO", "NaN", "share of unmappable items"),
    ],
)
def test_invalid_values_fail_fast_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=None) as err:
        load_settings()
    assert name in str(err.value)
    assert fragment in str(err.value)


def test_values_are_parsed_from_their_documented_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDS", " nivoda-labgrown ")
    monkeypatch.setenv("HMAC_SECRETS", '{"shop": "s3cret"}')
    monkeypatch.setenv("RUN_ON_STARTUP", "false")
    settings = load_settings()
    assert settings.feeds == ["nivoda-labgrown"]
    assert settings.hmac_secrets["shop"].get_secret_value() == "s3cret"
    assert settings.run_on_startup is False


def test_azure_runtime_requires_its_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPUS_RUNTIME", "azure")
    with pytest.raises(SettingsError, match="requires DATABASE_URL, NIVODA_ENDPOINT"):
        load_settings()


def test_local_settings_example_lists_every_setting() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    values = example["Values"]
    expected = {name.upper() for name in Settings.model_fields}
    missing = expected - set(values)
    assert not missing, f"local.settings.json.example lacks {sorted(missing)}"
    # And the example's own values are valid settings.
    ours = {k: v for k, v in values.items() if k.lower() in Settings.model_fields and v != ""}
    for key, value in ours.items():
        load_settings(**{key.lower(): value})


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert not missing, f"README settings table lacks {missing}"


def test_the_hosts_pool_fits_the_pool_bound_at_the_largest_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    """`opus run` widens the pool to one connection per consumer plus headroom; at the largest
    concurrencies the settings accept, that must stay within what DB_POOL_MAX_SIZE itself may be
    (the embedded server's max_connections is the same 200)."""
    from localhost.host import host_pool_size

    bounds = {name: _upper_bound(name) for name in ("worker_concurrency", "consolidator_concurrency")}
    for name, bound in bounds.items():
        monkeypatch.setenv(name.upper(), str(bound))
    assert host_pool_size(load_settings()) <= _upper_bound("db_pool_max_size")


def _upper_bound(field: str) -> int:
    [bound] = [m.le for m in Settings.model_fields[field].metadata if getattr(m, "le", None) is not None]
    assert isinstance(bound, int)
    return bound
