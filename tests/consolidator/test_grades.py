"""Grade normalisation: one vocabulary for what the mapper stores and what the API filters on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import grades
from shared.grades import (
    GRADE_NORMALISERS,
    GRADE_VOCABULARIES,
    normalise_availability,
    normalise_clarity,
    normalise_color,
    normalise_cut_grade,
    normalise_fancy_color,
    normalise_fancy_intensity,
    normalise_fluorescence_intensity,
    normalise_lab,
    normalise_shape,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ROUND", "ROUND"),
        ("round", "ROUND"),
        (" Oval ", "OVAL"),
        ("Cushion Modified", "CUSHION MODIFIED"),
        ("cushion_modified", "CUSHION MODIFIED"),
        ("CUSHION-BRILLIANT", "CUSHION BRILLIANT"),
        ("cushion  b", "CUSHION B"),
        ("Old Miner", "OLD MINER"),
        ("BLOB", None),
        ("", None),
        (None, None),
        (17, None),
    ],
)
def test_shape(raw: object, expected: str | None) -> None:
    assert normalise_shape(raw) == expected


def test_every_shape_normalises_to_itself() -> None:
    assert len(grades.SHAPES) == 17
    assert all(normalise_shape(shape) == shape for shape in grades.SHAPES)
    assert all(normalise_shape(shape.lower().replace(" ", "_")) == shape for shape in grades.SHAPES)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("d", "D"), (" M ", "M"), ("G", "G"), ("Fancy", "FANCY"), ("fancy", "FANCY"), ("N", None), ("Z", None)],
)
def test_color(raw: str, expected: str | None) -> None:
    assert normalise_color(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("vvs1", "VVS1"), ("VVS 2", "VVS2"), ("SI-1", "SI1"), ("if", "IF"), ("FL", "FL"), ("I3", "I3"), ("SI4", None)],
)
def test_clarity(raw: str, expected: str | None) -> None:
    assert normalise_clarity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("EX", "EXCELLENT"),
        ("Excellent", "EXCELLENT"),
        ("excellent", "EXCELLENT"),
        ("VG", "VERY_GOOD"),
        ("Very Good", "VERY_GOOD"),
        ("very-good", "VERY_GOOD"),
        ("V.GOOD", "VERY_GOOD"),
        ("VERY_GOOD", "VERY_GOOD"),
        ("G", "GOOD"),
        ("F", "FAIR"),
        ("P", "POOR"),
        ("ID", "IDEAL"),
        ("Ideal", "IDEAL"),
        ("SUPERB", None),
    ],
)
def test_cut_grade(raw: str, expected: str | None) -> None:
    assert normalise_cut_grade(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NON", "NONE"),
        ("None", "NONE"),
        ("FNT", "FAINT"),
        ("Faint", "FAINT"),
        ("MED", "MEDIUM"),
        ("STG", "STRONG"),
        ("VST", "VERY_STRONG"),
        ("Very Strong", "VERY_STRONG"),
        ("very-strong", "VERY_STRONG"),
        ("Very Slight", "VERY_SLIGHT"),
        ("SLIGHT", "SLIGHT"),
        ("GLOWING", None),
    ],
)
def test_fluorescence_intensity(raw: str, expected: str | None) -> None:
    assert normalise_fluorescence_intensity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("EVEN", None),
        ("even", None),
        ("U-V", None),
        ("", None),
        ("  ", None),
        ("GREY", "Gray"),
        ("PINK", "Pink"),
        ("yellow", "Yellow"),
        # compound colours are hyphenated Title Case
        ("BROWN PINK", "Brown-Pink"),
        ("GRAY BLUE", "Gray-Blue"),
        ("GREY BLUE", "Gray-Blue"),
        ("brown-pink", "Brown-Pink"),
        # reversed pairs collapse to one canonical form ...
        ("ORANGE BROWN", "Brown-Orange"),
        ("BROWN ORANGE", "Brown-Orange"),
        ("PINK BROWN", "Brown-Pink"),
        ("YELLOW BROWN", "Brown-Yellow"),
        ("BROWN YELLOW", "Brown-Yellow"),
        ("PURPLE PINK", "Pink-Purple"),
        ("PINK PURPLE", "Pink-Purple"),
        # ... except pairs whose order changes the colour
        ("GREEN YELLOW", "Green-Yellow"),
        ("YELLOW GREEN", "Yellow-Green"),
        ("ORANGE YELLOW", "Orange-Yellow"),
        ("YELLOW ORANGE", "Yellow-Orange"),
        # adjective forms keep the space
        ("ORANGY BROWN", "Orangy Brown"),
        ("ORANGY YELLOW", "Orangy Yellow"),
        ("pinkish purple", "Pinkish Purple"),
    ],
)
def test_fancy_color(raw: str, expected: str | None) -> None:
    assert normalise_fancy_color(raw) == expected


@pytest.mark.parametrize(
    "raw", ["FANCY VIVID", "FANCY_VIVID", "FANCY-VIVID", "fancy vivid", "Fancy Vivid", " fancy__vivid "]
)
def test_fancy_intensity_separator_variants(raw: str) -> None:
    assert normalise_fancy_intensity(raw) == "Fancy Vivid"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("FAINT", "Faint"),
        ("VERY_LIGHT", "Very Light"),
        ("very-light", "Very Light"),
        ("LIGHT", "Light"),
        ("FANCY-LIGHT", "Fancy Light"),
        ("FANCY", "Fancy"),
        ("FANCY_INTENSE", "Fancy Intense"),
        ("Fancy Deep", "Fancy Deep"),
        ("FANCY DARK", "Fancy Dark"),
        ("SPARKLY", None),
    ],
)
def test_fancy_intensity(raw: str, expected: str | None) -> None:
    assert normalise_fancy_intensity(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("gia", "GIA"), (" IGI ", "IGI"), ("Hrd", "HRD"), ("gcal", "GCAL"), ("", None)]
)
def test_lab(raw: str, expected: str | None) -> None:
    assert normalise_lab(raw) == expected


@pytest.mark.parametrize(
    ("raw", "hold_id", "expected"),
    [
        ("AVAILABLE", None, "available"),
        ("Available", None, "available"),
        (" available ", None, "available"),
        ("ON HOLD", None, "on_hold"),
        ("On Hold", None, "on_hold"),
        ("on_hold", None, "on_hold"),
        ("HOLD", None, "on_hold"),
        ("ONHOLD", None, "on_hold"),
        ("SOLD", None, "sold"),
        ("MEMO", None, "sold"),
        # exact match, never a substring: the original mapped these to "available"
        ("unavailable", None, "unavailable"),
        ("UNAVAILABLE", None, "unavailable"),
        ("NOT AVAILABLE", None, "unavailable"),
        ("AVAILABLE SOON", None, "unavailable"),
        ("", None, "unavailable"),
        (None, None, "unavailable"),
        (42, None, "unavailable"),
        # a hold id puts an otherwise unrecognised stone on hold; it never hides an available one
        ("RESERVED", "hold-1", "on_hold"),
        (None, "hold-1", "on_hold"),
        ("AVAILABLE", "hold-1", "available"),
        ("SOLD", "hold-1", "sold"),
        ("RESERVED", "  ", "unavailable"),
    ],
)
def test_availability(raw: object, hold_id: object, expected: str) -> None:
    assert normalise_availability(raw, hold_id) == expected


@pytest.mark.parametrize("column", sorted(set(GRADE_NORMALISERS) & set(GRADE_VOCABULARIES)))
def test_published_vocabularies_are_fixed_points(column: str) -> None:
    """Every value the API publishes as allowed normalises to itself, so filters built from the
    published list hit the stored values exactly."""
    normalise = GRADE_NORMALISERS[column]
    for value in GRADE_VOCABULARIES[column]:
        assert normalise(value) == value
        assert normalise(value.lower()) == value


@given(st.sampled_from(sorted(GRADE_NORMALISERS)), st.one_of(st.text(), st.none(), st.integers(), st.floats()))
def test_normalisers_are_total_and_idempotent(column: str, raw: object) -> None:
    normalise = GRADE_NORMALISERS[column]
    once = normalise(raw)
    assert once is None or (isinstance(once, str) and once == once.strip() and once)
    if once is not None:
        assert normalise(once) == once
    if column in GRADE_VOCABULARIES and once is not None:
        assert once in GRADE_VOCABULARIES[column]


@given(st.one_of(st.text(), st.none(), st.integers()), st.one_of(st.text(), st.none()))
def test_availability_is_always_a_stored_value(raw: object, hold_id: object) -> None:
    assert normalise_availability(raw, hold_id) in grades.AVAILABILITIES


@pytest.mark.parametrize("column", sorted(GRADE_NORMALISERS))
def test_text_too_long_to_be_a_grade_is_unknown(column: str) -> None:
    """API callers send arbitrary text; none of it should be kept in the normalisers' memo."""
    assert GRADE_NORMALISERS[column]("ROUND " + "x" * 100) is None


@pytest.mark.parametrize("raw", ["GIA\x00", "Pink\x00", "\ud800"])
def test_open_vocabularies_refuse_text_postgresql_cannot_store(raw: str) -> None:
    assert normalise_lab(raw) is None
    assert normalise_fancy_color(raw) is None


def test_availability_of_overlong_text_is_unavailable() -> None:
    assert normalise_availability("AVAILABLE" + " " * 100) == "unavailable"
