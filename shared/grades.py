"""Grade vocabularies and their normalisation: the one place that decides how a grade is spelt.

The mapper normalises feed values with these functions before storing them, and the API normalises
filter values with the same functions, so `cut=Excellent`, `cut=EX` and `cut=excellent` all become the
stored `EXCELLENT` and an equality filter hits the index (the original uppercased filters but not
stored values, and its `color=Fancy` / `fancy_intensity=Fancy Vivid` filters never matched).

Stored forms:
- shape: one of SHAPES (upper case, single spaces: "CUSHION MODIFIED");
- color: "D".."M" or "FANCY" (other letters, e.g. N-Z, are not graded here and read as unknown);
- clarity: one of CLARITIES;
- cut / polish / symmetry: one of CUT_GRADES (IDEAL, EXCELLENT, VERY_GOOD, GOOD, FAIR, POOR);
- fluorescence_intensity: one of FLUORESCENCE_INTENSITIES;
- fancy_color / fancy_overtone: Title Case; two base colours are hyphenated ("Brown-Pink"), reversed
  pairs collapse to one form, adjective forms keep the space ("Orangy Brown");
- fancy_intensity: one of FANCY_INTENSITIES ("Fancy Vivid");
- certificate lab: upper case (open set; KNOWN_LABS lists the usual ones);
- availability: one of AVAILABILITIES.

Every normaliser accepts any object and returns None for blank, non-text or unknown input (the
nullable columns), except `normalise_availability`, which always answers (its column is NOT NULL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Final, Literal

SHAPES: Final = (
    "ROUND",
    "OVAL",
    "EMERALD",
    "CUSHION",
    "CUSHION B",
    "CUSHION MODIFIED",
    "CUSHION BRILLIANT",
    "ASSCHER",
    "RADIANT",
    "MARQUISE",
    "PEAR",
    "PRINCESS",
    "ROSE",
    "OLD MINER",
    "TRILLIANT",
    "HEXAGONAL",
    "HEART",
)
COLORS: Final = ("D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "FANCY")
CLARITIES: Final = ("FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "SI3", "I1", "I2", "I3")
CUT_GRADES: Final = ("IDEAL", "EXCELLENT", "VERY_GOOD", "GOOD", "FAIR", "POOR")
FLUORESCENCE_INTENSITIES: Final = (
    "NONE",
    "VERY_SLIGHT",
    "SLIGHT",
    "FAINT",
    "MEDIUM",
    "STRONG",
    "VERY_STRONG",
)
FANCY_INTENSITIES: Final = (
    "Faint",
    "Very Light",
    "Light",
    "Fancy Light",
    "Fancy",
    "Fancy Intense",
    "Fancy Vivid",
    "Fancy Deep",
    "Fancy Dark",
)
KNOWN_LABS: Final = ("GIA", "IGI", "HRD", "GCAL", "AGS", "GSI", "EGL")

Availability = Literal["available", "on_hold", "sold", "unavailable"]
AVAILABILITIES: Final[tuple[Availability, ...]] = ("available", "on_hold", "sold", "unavailable")

_NON_ALNUM = re.compile(r"[^0-9A-Z]+")
_SEPARATORS = re.compile(r"[\s_\-]+")
# Feeds repeat a handful of spellings millions of times: each normaliser memoises text -> value.
_MEMO_SIZE: Final = 4096
# No grade is longer; longer text (from a feed or an API caller) is unknown, and is never memoised.
_MAX_GRADE_LENGTH: Final = 64


def _grade_text(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= _MAX_GRADE_LENGTH else None


def _storable(text: str) -> bool:
    """Text PostgreSQL can store: no NUL character, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _vocabulary(
    canonical: tuple[str, ...], joiner: str, aliases: Mapping[str, str] | None = None
) -> Callable[[object], str | None]:
    """A lookup from any spelling to the canonical value: upper case, every run of punctuation or
    whitespace collapsed into `joiner`, then matched exactly against the values and the aliases."""

    def key(text: str) -> str:
        return _NON_ALNUM.sub(joiner, text.upper()).strip(joiner)

    table = {key(value): value for value in canonical}
    table.update(aliases or {})

    @lru_cache(maxsize=_MEMO_SIZE)
    def lookup(text: str) -> str | None:
        return table.get(key(text))

    def normalise(value: object) -> str | None:
        text = _grade_text(value)
        return None if text is None else lookup(text)

    return normalise


_shape = _vocabulary(SHAPES, " ")
_color = _vocabulary(COLORS, "")
_clarity = _vocabulary(CLARITIES, "")
_cut_grade = _vocabulary(
    CUT_GRADES,
    "_",
    {
        "ID": "IDEAL",
        "EX": "EXCELLENT",
        "EXC": "EXCELLENT",
        "VG": "VERY_GOOD",
        "V_GOOD": "VERY_GOOD",
        "VERYGOOD": "VERY_GOOD",
        "G": "GOOD",
        "GD": "GOOD",
        "F": "FAIR",
        "FR": "FAIR",
        "P": "POOR",
        "PR": "POOR",
    },
)
_fluorescence = _vocabulary(
    FLUORESCENCE_INTENSITIES,
    "_",
    {
        "NON": "NONE",
        "NIL": "NONE",
        "VSL": "VERY_SLIGHT",
        "VSLT": "VERY_SLIGHT",
        "SL": "SLIGHT",
        "SLT": "SLIGHT",
        "FNT": "FAINT",
        "FT": "FAINT",
        "MED": "MEDIUM",
        "MD": "MEDIUM",
        "STG": "STRONG",
        "ST": "STRONG",
        "VST": "VERY_STRONG",
        "VSTG": "VERY_STRONG",
    },
)
_fancy_intensity = _vocabulary(FANCY_INTENSITIES, " ")


def normalise_shape(value: object) -> str | None:
    """ "Cushion Modified", "cushion_modified" -> "CUSHION MODIFIED"; unknown -> None."""
    return _shape(value)


def normalise_color(value: object) -> str | None:
    """ "d" -> "D", "Fancy" -> "FANCY"; letters outside D-M and anything else -> None."""
    return _color(value)


def normalise_clarity(value: object) -> str | None:
    """ "vvs 1", "VVS-1" -> "VVS1"; unknown -> None."""
    return _clarity(value)


def normalise_cut_grade(value: object) -> str | None:
    """Cut, polish and symmetry: "EX", "Excellent" -> "EXCELLENT"; "VG", "V.GOOD" -> "VERY_GOOD"."""
    return _cut_grade(value)


def normalise_fluorescence_intensity(value: object) -> str | None:
    """ "NON" -> "NONE", "Very Strong", "VST" -> "VERY_STRONG"; unknown -> None."""
    return _fluorescence(value)


def normalise_fancy_intensity(value: object) -> str | None:
    """ "FANCY_VIVID", "fancy-vivid", "Fancy Vivid" -> "Fancy Vivid"; unknown -> None."""
    return _fancy_intensity(value)


def normalise_lab(value: object) -> str | None:
    """Certificate lab in upper case with single spaces ("gia" -> "GIA"); blank -> None."""
    text = _grade_text(value)
    if text is None or not _storable(text):
        return None
    return " ".join(text.upper().split()) or None


# Colours that combine with another colour as "<modifier>-<colour>" ("Gray-Blue"); any other word
# (an adjective such as "Orangy" or "Pinkish") keeps a space ("Orangy Brown").
_BASE_COLOURS: Final = frozenset(
    {
        "RED",
        "PINK",
        "PURPLE",
        "VIOLET",
        "BLUE",
        "GREEN",
        "YELLOW",
        "ORANGE",
        "BROWN",
        "GRAY",
        "BLACK",
        "WHITE",
    }
)
# Pairs that name the same colour whichever way round the supplier wrote them collapse to the
# alphabetically first form; pairs whose order changes the colour (Green-Yellow vs Yellow-Green,
# Orange-Yellow vs Yellow-Orange) are left as written.
_SAME_COLOUR_PAIRS: Final[Mapping[str, list[str]]] = {
    "ORANGE BROWN": ["BROWN", "ORANGE"],
    "PINK BROWN": ["BROWN", "PINK"],
    "YELLOW BROWN": ["BROWN", "YELLOW"],
    "PURPLE PINK": ["PINK", "PURPLE"],
}
# Grading noise the feed puts in the colour fields.
_NOT_A_COLOUR: Final = frozenset({"EVEN", "U V"})


def normalise_fancy_color(value: object) -> str | None:
    """Fancy colour or overtone: "GREY" -> "Gray", "PINK BROWN" -> "Brown-Pink",
    "ORANGY BROWN" -> "Orangy Brown", "EVEN" and "U-V" -> None."""
    text = _grade_text(value)
    return None if text is None or not _storable(text) else _fancy_color(text)


@lru_cache(maxsize=_MEMO_SIZE)
def _fancy_color(text: str) -> str | None:
    words = ["GRAY" if word == "GREY" else word for word in _SEPARATORS.split(text.upper()) if word]
    key = " ".join(words)
    if not key or key in _NOT_A_COLOUR:
        return None
    words = _SAME_COLOUR_PAIRS.get(key, words)
    joiner = "-" if all(word in _BASE_COLOURS for word in words) else " "
    return joiner.join(word.capitalize() for word in words)


_AVAILABLE: Final = frozenset({"AVAILABLE"})
_ON_HOLD: Final = frozenset({"ON HOLD", "HOLD", "ONHOLD"})
_SOLD: Final = frozenset({"SOLD", "MEMO"})


def normalise_availability(value: object, hold_id: object = None) -> Availability:
    """Nivoda availability -> available | on_hold | sold | unavailable, by EXACT match (case,
    spaces, underscores and dashes ignored) — never by substring: "unavailable" is unavailable.

    AVAILABLE wins over a hold id (a stale hold id on an available stone does not hide it); an
    unrecognised status with a hold id is on hold, as in the original's live availability check;
    SOLD and MEMO are sold whatever the hold id says.
    """
    text = _grade_text(value)
    status = None if text is None else _status(text)
    if status is None:
        return "on_hold" if isinstance(hold_id, str) and hold_id.strip() else "unavailable"
    return status


@lru_cache(maxsize=_MEMO_SIZE)
def _status(text: str) -> Availability | None:
    key = _SEPARATORS.sub(" ", text.strip().upper())
    if key in _AVAILABLE:
        return "available"
    if key in _ON_HOLD:
        return "on_hold"
    if key in _SOLD:
        return "sold"
    return None


# Column name -> normaliser, for callers that normalise by column (API filters, pricing rules).
GRADE_NORMALISERS: Final[Mapping[str, Callable[[object], str | None]]] = {
    "shape": normalise_shape,
    "color": normalise_color,
    "clarity": normalise_clarity,
    "cut": normalise_cut_grade,
    "polish": normalise_cut_grade,
    "symmetry": normalise_cut_grade,
    "fluorescence_intensity": normalise_fluorescence_intensity,
    "fancy_color": normalise_fancy_color,
    "fancy_overtone": normalise_fancy_color,
    "fancy_intensity": normalise_fancy_intensity,
    "certificate_lab": normalise_lab,
}

# Column name -> the closed set of stored values (what the API publishes as allowed values).
GRADE_VOCABULARIES: Final[Mapping[str, tuple[str, ...]]] = {
    "shape": SHAPES,
    "color": COLORS,
    "clarity": CLARITIES,
    "cut": CUT_GRADES,
    "polish": CUT_GRADES,
    "symmetry": CUT_GRADES,
    "fluorescence_intensity": FLUORESCENCE_INTENSITIES,
    "fancy_intensity": FANCY_INTENSITIES,
    "availability": AVAILABILITIES,
}
