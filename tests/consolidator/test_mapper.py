"""Nivoda item -> canonical diamond: the original's pinned behaviours and the fixes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from consolidator.mapper import MAPPED_COLUMNS, MappedDiamond, MappingFailure, map_item
from tests.consolidator.items import DROP, nivoda_item


def mapped(item: dict[str, Any], *, feed: str = "nivoda-natural", labgrown: bool = False) -> MappedDiamond:
    result = map_item(item, feed=feed, labgrown=labgrown)
    assert isinstance(result, MappedDiamond), result
    return result


def failure(item: Any, *, labgrown: bool = False) -> MappingFailure:
    result = map_item(item, feed="nivoda-natural", labgrown=labgrown)
    assert isinstance(result, MappingFailure), result
    return result


def test_basic_field_mapping() -> None:
    diamond = mapped(nivoda_item())
    assert diamond == MappedDiamond(
        feed="nivoda-natural",
        supplier_stone_id="stone-1d2e3f40",
        offer_id="offer-7f3a91c2",
        shape="ROUND",
        carats=Decimal("1.50"),
        color="G",
        clarity="VS1",
        cut="EXCELLENT",
        polish="EXCELLENT",
        symmetry="VERY_GOOD",
        fluorescence="Faint Blue",
        fluorescence_intensity="FAINT",
        fancy_color=None,
        fancy_intensity=None,
        fancy_overtone=None,
        lab_grown=False,
        treated=False,
        feed_price=Decimal("1500.50"),
        diamond_price=Decimal("1400.00"),
        price_per_carat=Decimal("1000.33"),
        availability="available",
        raw_availability="AVAILABLE",
        hold_id=None,
        image_url="https://img.nivoda.net/stone-1d2e3f40/still.jpg",
        video_url="https://v360.nivoda.net/stone-1d2e3f40/video.html",
        meta_images=[
            {"id": "img-a", "url": "https://img.nivoda.net/a.jpg", "displayIndex": 1},
            {"id": "img-b", "url": "https://img.nivoda.net/b.jpg", "displayIndex": 2},
        ],
        certificate_lab="GIA",
        certificate_number="2141438167",
        certificate_pdf_url="https://certs.nivoda.net/2141438167.pdf",
        ratio=Decimal("1.005"),
        table_pct=Decimal("57.00"),
        depth_pct=Decimal("61.70"),
        length_mm=Decimal("7.36"),
        width_mm=Decimal("7.32"),
        depth_mm=Decimal("4.53"),
        crown_angle=Decimal("34.50"),
        crown_height=Decimal("14.50"),
        pavilion_angle=Decimal("40.80"),
        pavilion_depth=Decimal("43.00"),
        girdle="Medium to Slightly Thick",
        culet_size="None",
        eye_clean=True,
        brown="NONE",
        green="NONE",
        milky="NO MILKY",
        supplier_name="Shree Diamonds",
        supplier_legal_name="Shree Diamonds Pvt Ltd",
    )


def test_a_mapped_diamond_is_frozen() -> None:
    diamond = mapped(nivoda_item())
    with pytest.raises(AttributeError):
        diamond.carats = Decimal(2)  # type: ignore[misc]


def test_columns_are_the_struct_fields_in_order() -> None:
    assert MAPPED_COLUMNS[:3] == ("feed", "supplier_stone_id", "offer_id")
    assert len(MAPPED_COLUMNS) == len(set(MAPPED_COLUMNS)) == 47


# --- money ------------------------------------------------------------------------------------


def test_prices_are_cents_converted_exactly_to_dollars() -> None:
    diamond = mapped(nivoda_item(price=150050, diamond_price=140000))
    assert diamond.feed_price == Decimal("1500.50")
    assert str(diamond.feed_price) == "1500.50"
    assert diamond.diamond_price == Decimal("1400")
    assert str(diamond.diamond_price) == "1400.00"
    # 1500.50 / 1.50 = 1000.3333... -> 1000.33
    assert diamond.price_per_carat == Decimal("1000.33")


def test_price_per_carat_rounds_half_up() -> None:
    # 1000.05 / 2 = 500.025 exactly: half-up gives .03 where banker's rounding would give .02
    diamond = mapped(nivoda_item(price=100005, certificate={"carats": 2}))
    assert diamond.price_per_carat == Decimal("500.03")


def test_float_and_text_cents_are_accepted_when_whole() -> None:
    assert mapped(nivoda_item(price=150050.0)).feed_price == Decimal("1500.50")
    assert mapped(nivoda_item(price="150050")).feed_price == Decimal("1500.50")
    assert mapped(nivoda_item(price=1)).feed_price == Decimal("0.01")


def test_missing_diamond_price_is_none() -> None:
    assert mapped(nivoda_item(diamond_price=None)).diamond_price is None
    assert mapped(nivoda_item(diamond_price=DROP)).diamond_price is None


@pytest.mark.parametrize(
    ("price", "words"),
    [
        (None, "positive"),
        (0, "positive"),
        (-100, "non-negative"),
        (150050.5, "whole"),
        ("12.5", "whole"),
        ("a lot", "whole"),
        (True, "whole"),
        (float("nan"), "whole"),
        (float("inf"), "whole"),
        ([150050], "whole"),
        (10_000_000_000, "exceeds"),
        (10**40, "exceeds"),
    ],
)
def test_invalid_price_is_a_failure(price: object, words: str) -> None:
    result = failure(nivoda_item(price=price))
    assert result.code == "invalid_price"
    assert words in result.reason
    assert (result.supplier_stone_id, result.offer_id) == ("stone-1d2e3f40", "offer-7f3a91c2")


def test_largest_price_that_fits() -> None:
    diamond = mapped(nivoda_item(price=9_999_999_999, certificate={"carats": 1}))
    assert diamond.feed_price == Decimal("99999999.99")


def test_dearest_stone_at_the_smallest_weight_still_fits_price_per_carat() -> None:
    diamond = mapped(nivoda_item(price=9_999_999_999, certificate={"carats": 0.005}))
    assert diamond.carats == Decimal("0.01")
    assert diamond.price_per_carat == Decimal("9999999999.00")  # numeric(12, 2) holds < 10^10


def test_invalid_diamond_price_is_a_failure() -> None:
    assert failure(nivoda_item(diamond_price=-5)).code == "invalid_price"


# --- availability and identity ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "hold_id", "expected"),
    [
        ("AVAILABLE", None, "available"),
        ("On Hold", "hold-77", "on_hold"),
        ("HOLD", None, "on_hold"),
        ("SOLD", None, "sold"),
        ("MEMO", None, "sold"),
        ("unavailable", None, "unavailable"),
        ("NOT AVAILABLE", None, "unavailable"),
        ("somethingelse", None, "unavailable"),
        (None, None, "unavailable"),
    ],
)
def test_availability(raw: str | None, hold_id: str | None, expected: str) -> None:
    diamond = mapped(nivoda_item(diamond={"availability": raw, "HoldId": hold_id}))
    assert diamond.availability == expected
    assert diamond.raw_availability == raw
    assert diamond.hold_id == hold_id


def test_offer_id_is_the_item_id_and_stone_id_the_diamond_id() -> None:
    diamond = mapped(nivoda_item(id="OFFER-1", diamond={"id": "STONE-9"}))
    assert diamond.offer_id == "OFFER-1"
    assert diamond.supplier_stone_id == "STONE-9"


def test_numeric_ids_become_text() -> None:
    diamond = mapped(nivoda_item(id=123, diamond={"id": 456}))
    assert (diamond.offer_id, diamond.supplier_stone_id) == ("123", "456")


@pytest.mark.parametrize(
    ("item", "stone_id", "offer_id"),
    [
        ("not an item", None, None),
        ({"id": "o-1"}, None, None),
        ({"id": "o-1", "diamond": []}, None, None),
        (nivoda_item(diamond={"id": DROP}), None, "offer-7f3a91c2"),
        (nivoda_item(diamond={"id": "  "}), None, "offer-7f3a91c2"),
        (nivoda_item(id=DROP), "stone-1d2e3f40", None),
        (nivoda_item(id={"nested": True}), "stone-1d2e3f40", None),
    ],
)
def test_malformed_items_fail_with_what_identity_they_have(
    item: Any, stone_id: str | None, offer_id: str | None
) -> None:
    result = failure(item)
    assert result.code == "malformed_item"
    assert (result.supplier_stone_id, result.offer_id) == (stone_id, offer_id)


# --- lab-grown flag ---------------------------------------------------------------------------


@pytest.mark.parametrize("certificate_says", [True, False, None, "yes"])
def test_lab_grown_comes_from_the_feed_variant_not_the_certificate(certificate_says: object) -> None:
    item = nivoda_item(certificate={"labgrown": certificate_says, "labgrown_type": "CVD"})
    assert mapped(item, feed="nivoda-labgrown", labgrown=True).lab_grown is True
    assert mapped(item, feed="nivoda-natural", labgrown=False).lab_grown is False


def test_feed_is_the_variant_passed_in() -> None:
    assert mapped(nivoda_item(), feed="nivoda-labgrown", labgrown=True).feed == "nivoda-labgrown"


# --- optional fields --------------------------------------------------------------------------


def test_missing_optional_fields_are_none() -> None:
    optional_certificate = dict.fromkeys(
        (
            "color",
            "clarity",
            "cut",
            "polish",
            "symmetry",
            "floInt",
            "floCol",
            "f_color",
            "f_intensity",
            "f_overtone",
            "lab",
            "certNumber",
            "pdfUrl",
            "length",
            "width",
            "depth",
            "depthPercentage",
            "table",
            "crownAngle",
            "crownHeight",
            "pavAngle",
            "pavDepth",
            "girdle",
            "culetSize",
            "treated",
            "product_images",
        ),
        DROP,
    )
    item = nivoda_item(
        diamond_price=DROP,
        certificate=optional_certificate,
        diamond={
            "availability": DROP,
            "HoldId": DROP,
            "eyeClean": DROP,
            "brown": DROP,
            "green": DROP,
            "milky": DROP,
            "supplier": DROP,
        },
    )
    diamond = mapped(item)
    required = {
        "feed",
        "supplier_stone_id",
        "offer_id",
        "shape",
        "carats",
        "lab_grown",
        "treated",
        "feed_price",
        "price_per_carat",
        "availability",
        "image_url",
        "video_url",
    }
    for column in MAPPED_COLUMNS:
        value = getattr(diamond, column)
        assert (value is not None) == (column in required), column
    assert diamond.availability == "unavailable"
    assert diamond.treated is False


def test_blank_text_is_none_and_text_is_trimmed() -> None:
    diamond = mapped(nivoda_item(certificate={"girdle": "  ", "certNumber": " 123 "}, supplier={"name": ""}))
    assert diamond.girdle is None
    assert diamond.certificate_number == "123"
    assert diamond.supplier_name is None


def test_non_object_supplier_is_ignored() -> None:
    diamond = mapped(nivoda_item(diamond={"supplier": "Shree"}))
    assert diamond.supplier_name is None
    assert diamond.supplier_legal_name is None


# --- grades -----------------------------------------------------------------------------------


def test_grades_are_normalised_for_storage() -> None:
    diamond = mapped(
        nivoda_item(
            certificate={
                "shape": "cushion_modified",
                "color": "h",
                "clarity": "vvs 2",
                "cut": "Very Good",
                "polish": "V.GOOD",
                "symmetry": "ID",
                "floInt": "VST",
                "floCol": None,
                "lab": "igi",
            }
        )
    )
    assert (diamond.shape, diamond.color, diamond.clarity) == ("CUSHION MODIFIED", "H", "VVS2")
    assert (diamond.cut, diamond.polish, diamond.symmetry) == ("VERY_GOOD", "VERY_GOOD", "IDEAL")
    assert (diamond.fluorescence, diamond.fluorescence_intensity) == ("VST", "VERY_STRONG")
    assert diamond.certificate_lab == "IGI"


def test_unknown_optional_grades_are_none() -> None:
    diamond = mapped(nivoda_item(certificate={"color": "N", "clarity": "SI4", "cut": "8X", "floInt": "GLOW"}))
    assert (diamond.color, diamond.clarity, diamond.cut, diamond.fluorescence_intensity) == (None, None, None, None)
    assert diamond.fluorescence == "GLOW Blue"


@pytest.mark.parametrize(
    ("flo_int", "flo_col", "expected"),
    [("Faint", "Blue", "Faint Blue"), ("Medium", None, "Medium"), ("Strong", "", "Strong"), (None, "Blue", None)],
)
def test_fluorescence_is_intensity_and_colour(flo_int: str | None, flo_col: str | None, expected: str | None) -> None:
    assert mapped(nivoda_item(certificate={"floInt": flo_int, "floCol": flo_col})).fluorescence == expected


@pytest.mark.parametrize("shape", ["BLOB", "", None, 3, ["ROUND"]])
def test_unknown_shape_is_a_failure(shape: object) -> None:
    result = failure(nivoda_item(certificate={"shape": shape}))
    assert result.code == "unknown_shape"
    assert repr(shape) in result.reason


# --- fancy colour -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f_color", "f_overtone", "f_intensity", "expected"),
    [
        ("PINK", None, "FANCY_VIVID", ("Pink", None, "Fancy Vivid")),
        ("GREY", "BLUE", "fancy-light", ("Gray", "Blue", "Fancy Light")),
        ("PINK BROWN", "ORANGY BROWN", "Fancy Deep", ("Brown-Pink", "Orangy Brown", "Fancy Deep")),
        ("ORANGE BROWN", "EVEN", "VERY LIGHT", ("Brown-Orange", None, "Very Light")),
        ("YELLOW GREEN", "U-V", "FANCY-INTENSE", ("Yellow-Green", None, "Fancy Intense")),
        ("PURPLE PINK", "GREEN YELLOW", "FANCY DARK", ("Pink-Purple", "Green-Yellow", "Fancy Dark")),
    ],
)
def test_fancy_colour_intensity_and_overtone(
    f_color: str, f_overtone: str | None, f_intensity: str, expected: tuple[str | None, ...]
) -> None:
    diamond = mapped(
        nivoda_item(
            certificate={"color": "Fancy", "f_color": f_color, "f_overtone": f_overtone, "f_intensity": f_intensity}
        )
    )
    assert (diamond.fancy_color, diamond.fancy_overtone, diamond.fancy_intensity) == expected
    assert diamond.color == "FANCY"


def test_a_fancy_colour_makes_the_colour_fancy() -> None:
    diamond = mapped(nivoda_item(certificate={"color": "D", "f_color": "Blue"}))
    assert (diamond.color, diamond.fancy_color) == ("FANCY", "Blue")


def test_colour_fancy_without_a_fancy_colour_is_unknown() -> None:
    diamond = mapped(nivoda_item(certificate={"color": "FANCY", "f_color": "EVEN"}))
    assert (diamond.color, diamond.fancy_color) == ("FANCY", "Unknown")


def test_white_stone_has_no_fancy_colour() -> None:
    diamond = mapped(nivoda_item(certificate={"color": "E", "f_color": None}))
    assert (diamond.color, diamond.fancy_color) == ("E", None)


# --- media and certificate --------------------------------------------------------------------


def test_missing_certificate_is_a_failure() -> None:
    result = failure(nivoda_item(diamond={"certificate": None}))
    assert result.code == "missing_certificate"
    assert result.supplier_stone_id == "stone-1d2e3f40"
    assert result.offer_id == "offer-7f3a91c2"
    assert "stone-1d2e3f40" in result.reason


def test_image_falls_back_to_the_certificate_image() -> None:
    assert mapped(nivoda_item(diamond={"image": None})).image_url == "https://img.nivoda.net/certs/2141438167.jpg"
    assert mapped(nivoda_item(diamond={"image": ""})).image_url == "https://img.nivoda.net/certs/2141438167.jpg"


def test_missing_image_is_a_failure() -> None:
    result = failure(nivoda_item(diamond={"image": None}, certificate={"image": DROP}))
    assert result.code == "missing_image"


@pytest.mark.parametrize(
    ("diamond", "certificate", "expected"),
    [
        ({}, {}, "https://v360.nivoda.net/stone-1d2e3f40/video.html"),
        ({"video": None}, {}, "https://v360.nivoda.net/cert/2141438167.html"),
        ({"video": None}, {"v360": None}, "https://v360.nivoda.net/stone-1d2e3f40/v360.html"),
        (
            {"video": None, "v360": {"url": None}, "supplier_video_link": "https://supplier.example/v.mp4"},
            {"v360": {"id": "x"}},
            "https://supplier.example/v.mp4",
        ),
    ],
)
def test_video_fallback_order(diamond: dict[str, Any], certificate: dict[str, Any], expected: str) -> None:
    assert mapped(nivoda_item(diamond=diamond, certificate=certificate)).video_url == expected


def test_missing_video_is_a_failure() -> None:
    result = failure(nivoda_item(diamond={"video": None, "v360": None}, certificate={"v360": None}))
    assert result.code == "missing_video"


def test_supplier_video_link_alone_is_accepted_as_video() -> None:
    item = nivoda_item(
        diamond={"video": None, "v360": None, "supplier_video_link": "https://s.example/v"}, certificate={"v360": None}
    )
    assert mapped(item).video_url == "https://s.example/v"


def test_meta_images_sorted_and_cleaned() -> None:
    images = [
        {"id": "c", "url": "https://i/c.jpg", "display_index": None},
        {"id": "a", "url": "https://i/a.jpg", "display_index": 5},
        {"id": "x", "url": None, "display_index": 0},
        "junk",
        {"id": 7, "url": "https://i/b.jpg", "display_index": 1},
    ]
    diamond = mapped(nivoda_item(certificate={"product_images": images}))
    assert diamond.meta_images == [
        {"id": "c", "url": "https://i/c.jpg", "displayIndex": 0},
        {"id": "7", "url": "https://i/b.jpg", "displayIndex": 1},
        {"id": "a", "url": "https://i/a.jpg", "displayIndex": 5},
    ]
    assert mapped(nivoda_item(certificate={"product_images": []})).meta_images is None


# --- measurements -----------------------------------------------------------------------------


def test_measurements_are_rounded_half_up_to_their_column_scale() -> None:
    diamond = mapped(
        nivoda_item(certificate={"table": 57.125, "depthPercentage": "61.7", "length": 6, "carats": 1.005})
    )
    assert diamond.table_pct == Decimal("57.13")
    assert diamond.depth_pct == Decimal("61.70")
    assert diamond.length_mm == Decimal("6.00")
    assert diamond.carats == Decimal("1.01")


@pytest.mark.parametrize(
    ("length", "width", "expected"),
    [(7.36, 7.32, Decimal("1.005")), (10, 5, Decimal("2.000")), (10, 0, None), (None, 5, None), (5, None, None)],
)
def test_ratio_is_length_over_width_to_three_places(length: float, width: float, expected: Decimal | None) -> None:
    assert mapped(nivoda_item(certificate={"length": length, "width": width})).ratio == expected


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("table", 1000, "does not fit"),
        ("table", 999.995, "does not fit"),
        ("length", 10000, "does not fit"),
        ("crownAngle", -1, "negative"),
        ("pavDepth", "deep", "not a number"),
        ("depth", [4.5], "not a number"),
        ("depthPercentage", float("nan"), "not a number"),
        ("depthPercentage", True, "not a number"),
    ],
)
def test_measurement_that_cannot_be_stored_is_a_failure(field: str, value: object, words: str) -> None:
    result = failure(nivoda_item(certificate={field: value}))
    assert result.code == "invalid_measurement"
    assert f"certificate.{field}" in result.reason
    assert words in result.reason


def test_largest_measurements_that_fit() -> None:
    diamond = mapped(nivoda_item(certificate={"table": 999.99, "length": 9999.99, "width": 10.0, "carats": 9999.99}))
    assert (diamond.table_pct, diamond.length_mm, diamond.ratio) == (
        Decimal("999.99"),
        Decimal("9999.99"),
        Decimal("999.999"),
    )
    assert diamond.carats == Decimal("9999.99")


def test_ratio_that_cannot_be_stored_is_a_failure() -> None:
    result = failure(nivoda_item(certificate={"length": 9999, "width": 0.5}))
    assert result.code == "invalid_measurement"
    assert "ratio" in result.reason


@pytest.mark.parametrize("carats", [None, 0, 0.004, -1, "heavy", 10000, True])
def test_invalid_carats_is_a_failure(carats: object) -> None:
    assert failure(nivoda_item(certificate={"carats": carats})).code == "invalid_carats"


def test_negative_zero_is_stored_as_zero() -> None:
    diamond = mapped(nivoda_item(certificate={"crownHeight": -0.0}, diamond_price=-0.0))
    assert str(diamond.crown_height) == "0.00"
    assert str(diamond.diamond_price) == "0.00"


# --- flags and text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", False),
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("t", True),
        ("Y", True),
        (True, True),
        (1, True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("F", False),
        ("n", False),
        ("None", False),
        ("N/A", False),
        (False, False),
        ("100%", None),
        ("mostly", None),
        ({"x": 1}, None),
    ],
)
def test_eye_clean(raw: object, expected: bool | None) -> None:
    assert mapped(nivoda_item(diamond={"eyeClean": raw})).eye_clean is expected


@pytest.mark.parametrize(("raw", "expected"), [(True, True), (False, False), (None, False), ("yes", True)])
def test_treated(raw: object, expected: bool) -> None:
    assert mapped(nivoda_item(certificate={"treated": raw})).treated is expected


@pytest.mark.parametrize(
    ("where", "value"),
    [("certificate", {"girdle": "Thin\x00Medium"}), ("diamond", {"brown": "\ud800"}), ("supplier", {"name": "A\x00"})],
)
def test_text_postgresql_cannot_store_is_a_failure(where: str, value: dict[str, Any]) -> None:
    result = failure(nivoda_item(**{where: value}))
    assert result.code == "invalid_text"
    assert result.supplier_stone_id == "stone-1d2e3f40"


def test_a_stone_id_postgresql_cannot_store_fails_without_that_id() -> None:
    result = failure(nivoda_item(diamond={"id": "bad\x00id"}))
    assert result.code == "invalid_text"
    assert result.supplier_stone_id is None


def test_the_item_is_not_modified() -> None:
    item = nivoda_item()
    before = repr(item)
    mapped(item)
    assert repr(item) == before


MEGABYTE = 1 << 20


def test_an_id_too_long_for_an_index_is_a_failure() -> None:
    # diamonds.offer_id is indexed: a 1 MB offer id failed the whole consolidation batch's insert.
    offer = failure(nivoda_item(id="o" * MEGABYTE))
    assert (offer.code, offer.supplier_stone_id) == ("malformed_item", "stone-1d2e3f40")
    assert offer.reason == "item.id is 1048576 characters long (at most 200)"
    stone = failure(nivoda_item(diamond={"id": "s" * MEGABYTE}))
    assert (stone.code, stone.supplier_stone_id) == ("malformed_item", None)
    assert mapped(nivoda_item(id="o" * 200)).offer_id == "o" * 200


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [
        ("certificate", {"girdle": "g" * MEGABYTE}, "certificate.girdle"),
        ("diamond", {"image": "h" * MEGABYTE}, "diamond.image"),
        ("certificate", {"certNumber": "1" * MEGABYTE}, "certificate.certNumber"),
        ("supplier", {"name": "n" * MEGABYTE}, "diamond.supplier.name"),
    ],
)
def test_huge_text_is_a_failure_naming_the_field(where: str, value: dict[str, Any], field: str) -> None:
    result = failure(nivoda_item(**{where: value}))
    assert (result.code, result.supplier_stone_id) == ("invalid_text", "stone-1d2e3f40")
    assert result.reason == f"{field} is 1048576 characters long (at most 8192)"


def test_the_longest_text_is_kept() -> None:
    assert mapped(nivoda_item(certificate={"girdle": "g" * 8192})).girdle == "g" * 8192
