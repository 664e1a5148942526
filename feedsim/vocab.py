"""Nivoda's raw vocabularies as the simulator emits them, and the coded grades it filters on.

Inventory columns hold small integer codes into the tuples below; payloads spell them the way
Nivoda's suppliers do (several spellings per grade), so that the mapper's normalisation is exercised.
"""

from __future__ import annotations

from typing import Final

from shared.feed.variants import ALL_SHAPES

SHAPES: Final = ALL_SHAPES
# Share of each shape in the inventory (same order as SHAPES); rounds dominate.
SHAPE_WEIGHTS: Final = (
    0.45,
    0.12,
    0.07,
    0.05,
    0.01,
    0.03,
    0.02,
    0.02,
    0.06,
    0.02,
    0.06,
    0.04,
    0.01,
    0.01,
    0.01,
    0.005,
    0.015,
)

AVAILABILITIES: Final = ("AVAILABLE", "On Hold", "Sold", "MEMO", "NOT AVAILABLE")
AVAILABLE, ON_HOLD, SOLD, MEMO, NOT_AVAILABLE = range(5)
AVAILABILITY_WEIGHTS: Final = (0.90, 0.04, 0.015, 0.03, 0.015)

WHITE_COLOURS: Final = ("D", "E", "F", "G", "H", "I", "J", "K", "L", "M")
FANCY: Final = len(WHITE_COLOURS)  # colour code of fancy-coloured stones
NATURAL_COLOUR_WEIGHTS: Final = (0.05, 0.08, 0.11, 0.15, 0.15, 0.13, 0.11, 0.08, 0.05, 0.05)
LABGROWN_COLOUR_WEIGHTS: Final = (0.20, 0.25, 0.22, 0.15, 0.08, 0.05, 0.03, 0.01, 0.005, 0.005)

CLARITIES: Final = ("FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "I1", "I2")
NATURAL_CLARITY_WEIGHTS: Final = (0.005, 0.02, 0.06, 0.09, 0.17, 0.20, 0.20, 0.15, 0.07, 0.035)
LABGROWN_CLARITY_WEIGHTS: Final = (0.01, 0.05, 0.20, 0.25, 0.25, 0.15, 0.07, 0.02, 0.0, 0.0)

# Cut grades: EX, VG, G, F, P, and NO_CUT for stones without a cut grade (common on fancy shapes).
CUT_GRADES: Final = ("EX", "VG", "G", "F", "P")
FAIR, POOR, NO_CUT = 3, 4, 5
ROUND_CUT_WEIGHTS: Final = (0.70, 0.18, 0.07, 0.03, 0.02, 0.0)
FANCY_SHAPE_CUT_WEIGHTS: Final = (0.20, 0.12, 0.05, 0.02, 0.01, 0.60)

# Payload spellings per grade code; the payload picks one per stone.
GRADE_SPELLINGS: Final = (
    ("EX", "EXCELLENT", "EX", "IDEAL"),
    ("VG", "VERY GOOD", "VG"),
    ("G", "GOOD", "G"),
    ("F", "FAIR", "F"),
    ("P", "POOR", "P"),
)
FLUORESCENCE: Final = ("NON", "NONE", "FNT", "FAINT", "MED", "MEDIUM", "STG", "STRONG", "VST", "VERY STRONG")
FANCY_COLOURS: Final = (
    "YELLOW",
    "YELLOW",
    "YELLOW",
    "PINK",
    "BLUE",
    "ORANGE BROWN",
    "BROWN ORANGE",
    "PINK BROWN",
    "GREY",
    "YELLOW GREEN",
    "GREEN YELLOW",
    "ORANGY YELLOW",
    "BROWN",
    "GREEN",
    "EVEN",
)
FANCY_INTENSITIES: Final = (
    "FANCY_VIVID",
    "Fancy Intense",
    "FANCY-LIGHT",
    "VERY LIGHT",
    "Fancy Deep",
    "FANCY",
    "Fancy Light",
    "FANCY INTENSE",
    "Faint",
)
FANCY_OVERTONES: Final = ("NONE", "GREENISH", "BROWNISH", "PINKISH", "ORANGY", "")
EYE_CLEAN: Final = (True, True, "Yes", "Yes", "No", "100%", None, None)
TINGES: Final = ("NONE", "NONE", "NO BGM", "0", "FAINT", None)
NATURAL_LABS: Final = ("GIA", "GIA", "GIA", "GIA", "GIA", "IGI", "HRD", "AGS")
LABGROWN_LABS: Final = ("IGI", "IGI", "IGI", "IGI", "GIA", "GCAL", "IGI", "GIA")
COUNTRIES: Final = ("Botswana", "Russia", "Canada", "South Africa", "Australia", "Namibia", None, None)
POLISHING_COUNTRIES: Final = ("India", "India", "India", "Belgium", "Israel", "USA", "Thailand", None)
GIRDLES: Final = ("MEDIUM", "THIN TO MEDIUM", "MEDIUM TO SLIGHTLY THICK", "SLIGHTLY THICK", None)
CULETS: Final = ("NONE", "NONE", "POINTED", "VERY SMALL", None)
KEY_TO_SYMBOLS: Final = ("Crystal, Needle", "Cloud, Pinpoint", "Feather", "Crystal, Feather, Cloud", None)
COMMENTS: Final = ("Additional pinpoints are not shown.", "Surface graining is not shown.", None, None)
RETURN_WINDOWS: Final = ("30", "15", "0", "7")
SUPPLIERS: Final = tuple(
    (f"{index:08x}-5a1e-4c0d-8e5f-{index * 7919:012x}", f"Supplier {index:02d}", f"Supplier {index:02d} Ltd")
    for index in range(1, 41)
)
