"""The typed payload decoder gives the mapper exactly what a full parse gives it.

`decode_item` skips fields the mapper does not read; a field the mapper reads but the decoder does
not name would silently read as missing. Every item here is mapped from both decodings and the
results must be equal (values, and failure codes and reasons).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, reject, settings

from consolidator.mapper import MappedDiamond, MappingFailure, map_item
from consolidator.payload import decode_item
from feedsim.inventory import Inventory
from feedsim.payload import build_items
from tests.consolidator.items import nivoda_item
from tests.consolidator.test_mapper_properties import json_values, mutated_items


def both_ways(item: Any, *, labgrown: bool = False) -> tuple[Any, Any]:
    try:
        payload = orjson.dumps(item)
    except TypeError:  # not JSON (a lone surrogate, an integer beyond 64 bits): never stored
        reject()
    full = map_item(orjson.loads(payload), feed="nivoda-natural", labgrown=labgrown)
    typed = map_item(decode_item(payload), feed="nivoda-natural", labgrown=labgrown)
    return full, typed


@pytest.mark.parametrize("labgrown", [False, True])
def test_simulator_items_map_the_same(labgrown: bool) -> None:
    inventory = Inventory.generate(11, 3000, int(time.time() * 1000))
    items = build_items(inventory, list(range(3000)))
    outcomes = [both_ways(item, labgrown=labgrown) for item in items]
    for full, typed in outcomes:
        assert typed == full
    mapped = [full for full, _ in outcomes if isinstance(full, MappedDiamond)]
    # The sample covers what the decoder must carry: fancy colours, holds, images, failures.
    assert any(d.fancy_color for d in mapped)
    assert any(d.hold_id for d in mapped)
    assert any(d.meta_images for d in mapped)
    assert any(d.supplier_name for d in mapped)
    assert any(isinstance(full, MappingFailure) for full, _ in outcomes)


def test_every_field_of_a_complete_item_is_carried() -> None:
    full, typed = both_ways(nivoda_item())
    assert isinstance(typed, MappedDiamond)
    assert typed == full


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_items())
def test_mutated_items_map_the_same(item: dict[str, Any]) -> None:
    full, typed = both_ways(item)
    assert typed == full


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_maps_the_same(item: Any) -> None:
    full, typed = both_ways(item)
    assert typed == full


@pytest.mark.parametrize(
    "item",
    [
        nivoda_item(certificate=None) | {"diamond": {"certificate": ["not", "an", "object"]}},
        {"id": "x", "diamond": "a string"},
        ["an", "array"],
    ],
)
def test_a_shape_the_typed_decoder_refuses_is_parsed_whole(item: Any) -> None:
    payload = orjson.dumps(item)
    assert decode_item(payload) == orjson.loads(payload)


def test_invalid_json_raises_as_a_full_parse_does() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        decode_item(b'{"id": ')
