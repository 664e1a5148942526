"""Per-queue properties of the local bus, read from the Service Bus emulator's configuration.

servicebus_config.json, beside this module, is the emulator's Config.json (deploy/docker-compose.yml
mounts it as such): it declares the queues the emulator creates (and that Azure must be given).
The local bus reads the same file, so the queues it stands in for cannot drift from it:
lock duration, max delivery count, duplicate-detection window, default time-to-live and
dead-lettering on expiry, each with Service Bus's meaning and limits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from shared.bus.port import QueueNames
from shared.settings import MIN_DUPLICATE_WINDOW_S, Settings

log = logging.getLogger(__name__)

# Package data, so that an installed `opus` reads it too; a real file, not a link into deploy/, which a
# checkout without symbolic links (Windows' default) would turn into a text file holding the path.
EMULATOR_CONFIG = Path(__file__).resolve().parent / "servicebus_config.json"


class QueueConfigError(ValueError):
    """The queue configuration is missing, malformed or disagrees with the app's queue names."""


@dataclass(frozen=True)
class QueueProperties:
    lock_duration: timedelta
    max_delivery_count: int
    # timedelta(0): no duplicate detection.
    duplicate_window: timedelta
    time_to_live: timedelta
    dead_letter_on_expiration: bool


def _iso_duration(value: Any) -> Any:
    # Service Bus (and its emulator) take ISO 8601 durations only; pydantic alone would also take
    # numbers and "HH:MM:SS", which the emulator refuses.
    if not isinstance(value, str) or not value.startswith("P"):
        raise ValueError(f"{value!r} is not an ISO 8601 duration such as PT5M")
    return value


IsoDuration = Annotated[timedelta, BeforeValidator(_iso_duration)]


class _Properties(BaseModel):
    """The properties the local bus implements, with Service Bus's bounds (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    LockDuration: IsoDuration = Field(ge=timedelta(seconds=5), le=timedelta(minutes=5))
    MaxDeliveryCount: StrictInt = Field(ge=1)
    DefaultMessageTimeToLive: IsoDuration = Field(gt=timedelta(0))
    DeadLetteringOnMessageExpiration: StrictBool
    RequiresDuplicateDetection: StrictBool
    DuplicateDetectionHistoryTimeWindow: IsoDuration = Field(
        ge=timedelta(seconds=MIN_DUPLICATE_WINDOW_S), le=timedelta(days=7)
    )

    def queue_properties(self) -> QueueProperties:
        detects = self.RequiresDuplicateDetection
        return QueueProperties(
            lock_duration=self.LockDuration,
            max_delivery_count=self.MaxDeliveryCount,
            duplicate_window=self.DuplicateDetectionHistoryTimeWindow if detects else timedelta(0),
            time_to_live=self.DefaultMessageTimeToLive,
            dead_letter_on_expiration=self.DeadLetteringOnMessageExpiration,
        )


class _Queue(BaseModel):
    Name: str = Field(min_length=1)
    Properties: dict[str, Any]


class _Namespace(BaseModel):
    Name: str
    Queues: list[_Queue]


class _UserConfig(BaseModel):
    Namespaces: list[_Namespace] = Field(min_length=1)


class _Document(BaseModel):
    UserConfig: _UserConfig


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'document'}: {item['msg'].removeprefix('Value error, ')}"
        for item in error.errors()
    )


def _declared(path: Path) -> dict[str, dict[str, Any]]:
    try:
        document = _Document.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise QueueConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise QueueConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        raise QueueConfigError(f"{path}: {_problems(exc)}") from None
    declared: dict[str, dict[str, Any]] = {}
    for namespace in document.UserConfig.Namespaces:
        for queue in namespace.Queues:
            if queue.Name in declared:
                raise QueueConfigError(f"{path}: queue {queue.Name!r} is declared twice")
            declared[queue.Name] = queue.Properties
    return declared


def _setting_names(queues: QueueNames) -> dict[str, str]:
    """Queue name -> the setting that names it (QUEUE_WORK_ITEMS ...)."""
    return {getattr(queues, f.name): f"QUEUE_{f.name.upper()}" for f in fields(queues)}


def load_queue_properties(queues: QueueNames, path: Path = EMULATOR_CONFIG) -> dict[str, QueueProperties]:
    """Each of the app's queues' properties as the emulator configuration declares them."""
    declared = _declared(path)
    settings = _setting_names(queues)
    missing = [f"{name!r} ({setting})" for name, setting in settings.items() if name not in declared]
    if missing:
        raise QueueConfigError(f"{path}: declares no queue {', '.join(missing)}; it declares {sorted(declared)}")
    unknown = sorted(set(declared) - set(settings))
    if unknown:
        raise QueueConfigError(
            f"{path}: queue(s) {unknown} are none of the app's queues ({', '.join(sorted(settings.values()))})"
        )
    properties: dict[str, QueueProperties] = {}
    for name, raw in declared.items():
        try:
            properties[name] = _Properties.model_validate(raw).queue_properties()
        except ValidationError as exc:
            raise QueueConfigError(f"{path}: queue {name!r}: {_problems(exc)}") from None
    return properties


def with_overrides(properties: Mapping[str, QueueProperties], **changes: Any) -> dict[str, QueueProperties]:
    """The same properties with each given `QueueProperties` field set on every queue (the BUS_* settings)."""
    return {queue: replace(props, **changes) for queue, props in properties.items()}


def setting_overrides(settings: Settings) -> dict[str, Any]:
    """The queue properties BUS_* settings set. BUS_MAX_DELIVERY_COUNT has a default (the Azure worker
    reads it as the work-items queue's MaxDeliveryCount), so only a value given explicitly counts."""
    overrides: dict[str, Any] = {}
    if settings.bus_lock_duration_s is not None:
        overrides["lock_duration"] = timedelta(seconds=settings.bus_lock_duration_s)
    if "bus_max_delivery_count" in settings.model_fields_set:
        overrides["max_delivery_count"] = settings.bus_max_delivery_count
    if settings.bus_duplicate_window_s is not None:
        overrides["duplicate_window"] = timedelta(seconds=settings.bus_duplicate_window_s)
    return overrides


def local_queue_properties(
    settings: Settings, queues: QueueNames, path: Path = EMULATOR_CONFIG
) -> dict[str, QueueProperties]:
    """The local bus's queue properties: the emulator's, with the BUS_* settings that are set."""
    overrides = setting_overrides(settings)
    if overrides:
        log.info("local bus: %s set for every queue, overriding %s", ", ".join(sorted(overrides)), path)
    return with_overrides(load_queue_properties(queues, path), **overrides)
