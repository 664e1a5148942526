"""Numbers no double holds: where they are in an item (the path its error record names)."""

from __future__ import annotations

from shared.feed.numbers import Unrepresentable, loads, unrepresentable_in


def test_every_unrepresentable_number_is_found_with_its_path_in_document_order() -> None:
    item = loads(
        b'{"id": "o1", "price": 1e400, "diamond": {"id": "d1", "certificate": {"carats": 1.01,'
        b' "product_images": [{"display_index": 1}, {"display_index": -Infinity}]}, "other": [NaN, 2]}}'
    )
    found = [(path, number.text) for path, number in unrepresentable_in(item)]
    assert found == [
        ("price", "1e400"),
        ("diamond.certificate.product_images[1].display_index", "-Infinity"),
        ("diamond.other[0]", "NaN"),
    ]


def test_an_item_without_one_has_none() -> None:
    assert unrepresentable_in(loads(b'{"id": "o1", "price": 1.7976931348623157e308, "diamond": null}')) == []
    assert [path for path, _ in unrepresentable_in(Unrepresentable("1e400"))] == ["(the item)"]
