"""Build Nivoda search items on demand from (seed, row) and the inventory's current columns.

Nothing per stone is stored beyond the columns: attributes that filtering does not need (lab,
measurements, spellings, media, supplier...) come from the row's pseudo-random bytes
(`ids.stone_bytes`), so a stone's payload is the same on every request until churn changes its
price or availability. A page is built in one pass: numpy computes the bytes and measurements of
all its rows, then each item is a dict literal filled from lookup tables (this is the hot path of
the simulator; sub-objects that depend only on a byte, such as `supplier`, are shared, read-only).

Quirks reproduced on purpose (the mapper must cope with them): prices in integer cents; grades in
several spellings; `certificate.labgrown` null or wrong for about half the stones (filters use the
stone's true nature); fancy colours with compound spellings ("ORANGE BROWN" and "BROWN ORANGE");
eyeClean as true/"Yes"/"No"/"100%"/null; about 0.5% of stones without a certificate; 0.25% without
any image and 0.25% without any video in the payload although Nivoda's index says they have one (so
they pass has_image/has_v360 filters); 0.1% with nonsense values (carats 0 or negative, shape "???").
About 1% of what a full run fetches is therefore unmappable, as with the real feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from feedsim import vocab
from feedsim.ids import format_id, stone_bytes
from feedsim.inventory import Inventory

# Payload defects, as thresholds on a 16-bit value (out of 65,536).
NO_CERTIFICATE: Final = 328  # ~0.5%
NO_IMAGE: Final = NO_CERTIFICATE + 164  # ~0.25%
NO_VIDEO: Final = NO_IMAGE + 164  # ~0.25%
NONSENSE: Final = NO_VIDEO + 66  # ~0.1%

_MEDIA: Final = "https://cdn.feedsim.example"
_BASE_COLUMNS: Final = (
    "price_cents",
    "ct100",
    "shape",
    "color",
    "clarity",
    "cut",
    "availability",
    "labgrown",
    "has_image",
    "has_v360",
    "hold_seq",
)
# length/width ratio per shape (same order as vocab.SHAPES)
_RATIOS: Final = np.array([1.0, 1.4, 1.45, 1.1, 1.05, 1.15, 1.1, 1.0, 1.25, 2.0, 1.55, 1.0, 1.0, 1.05, 1.0, 1.1, 1.0])
_FULL_SHAPES: Final = tuple(shape.title() for shape in vocab.SHAPES)
_BOWTIE_SHAPES: Final = frozenset({1, 9, 10, 16})  # oval, marquise, pear, heart

# Byte-indexed tables: every value a byte can select, computed once.
_BYTES: Final = range(256)
_DEPTH_PCT: Final = tuple(round(59 + b / 64, 1) for b in _BYTES)
_TABLE_PCT: Final = tuple(round(53 + b / 32, 1) for b in _BYTES)
_CROWN_ANGLE: Final = tuple(round(32 + b / 64, 1) for b in _BYTES)
_CROWN_HEIGHT: Final = tuple(round(13 + b / 64, 1) for b in _BYTES)
_PAV_ANGLE: Final = tuple(round(40.2 + b / 256, 1) for b in _BYTES)
_PAV_DEPTH: Final = tuple(round(42 + b / 128, 1) for b in _BYTES)
_DISCOUNT: Final = tuple(-(500 + b * 20) / 100 for b in _BYTES)
_MARKUP_PCT: Final = tuple(3 + b % 8 for b in _BYTES)
_MARKUP_DISCOUNT: Final = tuple(tuple(round(d + m, 2) for m in range(3, 11)) for d in _DISCOUNT)
_GRADES: Final = (
    *(tuple(spellings[b % len(spellings)] for b in _BYTES) for spellings in vocab.GRADE_SPELLINGS),
    (None,) * 256,  # NO_CUT
)


def _cycle(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(values[b % len(values)] for b in _BYTES)


_EYE_CLEAN: Final = _cycle(vocab.EYE_CLEAN)
_TINGE: Final = _cycle(vocab.TINGES)
_COUNTRY: Final = _cycle(vocab.COUNTRIES)
_POLISHING: Final = _cycle(vocab.POLISHING_COUNTRIES)
_RETURN_WINDOW: Final = _cycle(vocab.RETURN_WINDOWS)
_FLUORESCENCE: Final = _cycle(vocab.FLUORESCENCE)
_GIRDLE: Final = _cycle(vocab.GIRDLES)
_CULET: Final = _cycle(vocab.CULETS)
_KEY_TO_SYMBOLS: Final = _cycle(vocab.KEY_TO_SYMBOLS)
_COMMENTS: Final = _cycle(vocab.COMMENTS)
_FANCY_COLOUR: Final = _cycle(vocab.FANCY_COLOURS)
_FANCY_INTENSITY: Final = _cycle(vocab.FANCY_INTENSITIES)
_FANCY_OVERTONE: Final = _cycle(vocab.FANCY_OVERTONES)
# Fancy stones say "Fancy"/"FANCY"; a few carry a white grade or nothing instead.
_FANCY_COLOR_FIELD: Final = _cycle(("Fancy", "FANCY", "Fancy", "FANCY", "Fancy", "FANCY", "", "N"))
_NATURAL_LAB: Final = _cycle(vocab.NATURAL_LABS)
_LABGROWN_LAB: Final = _cycle(vocab.LABGROWN_LABS)
_LABGROWN_TYPE: Final = _cycle(("CVD", "HPHT", None))
_SUPPLIER: Final = _cycle([{"id": i, "name": n, "legal_name": legal} for i, n, legal in vocab.SUPPLIERS])
_DELIVERY: Final = tuple(
    {"express_timeline_applicable": b < 64, "min_business_days": 2 + b % 3, "max_business_days": 5 + b % 6}
    for b in _BYTES
)


def _certificate_labgrown(labgrown: bool, pick: int) -> bool | None:
    """Nivoda's flag: right for about half the stones, null or wrong for the rest."""
    if pick < 128:
        return labgrown
    if pick < 218:
        return None
    return not labgrown


def build_items(inventory: Inventory, rows: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
    """The search items of `rows`, in order, exactly as the server returns them."""
    rows_array = np.asarray(rows, dtype=np.int64)
    if len(rows_array) == 0:
        return []
    columns = [inventory.column(name)[rows_array] for name in _BASE_COLUMNS]
    randomness = stone_bytes(inventory.seed, rows_array)
    ratio = _RATIOS[columns[2]] * (1 + randomness[:, 2] / 8192)  # length >= width
    width = np.round(6.45 * (columns[1] / 100) ** (1 / 3) / np.sqrt(ratio), 2)
    length = np.round(width * ratio, 2)
    depth_pct = 59 + randomness[:, 4] / 64
    depth = np.round(width * depth_pct / 100, 2)
    hexes = randomness[:, 48:].tobytes().hex()
    fields: list[list[Any]] = [
        rows_array.tolist(),
        randomness[:, :48].tolist(),
        *(column.tolist() for column in columns),
        length.tolist(),
        width.tolist(),
        depth.tolist(),
    ]
    per_row = zip(*fields, strict=True)
    return [_item(hexes[96 * i : 96 * i + 96], *values) for i, values in enumerate(per_row)]


def _item(
    hx: str,
    row: int,
    h: list[int],
    price: int,
    ct100: int,
    shape: int,
    color: int,
    clarity: int,
    cut: int,
    availability: int,
    labgrown: bool,
    has_image: bool,
    has_v360: bool,
    hold_seq: int,
    length: float,
    width: float,
    depth: float,
) -> dict[str, Any]:
    did = format_id(row, hx[0:24])
    defect = h[25] << 8 | h[26]
    stock = f"NIV{100_000_000 + row}"
    image_ok = has_image and not (NO_CERTIFICATE <= defect < NO_IMAGE)
    video_ok = has_v360 and not (NO_IMAGE <= defect < NO_VIDEO)
    image = f"{_MEDIA}/{did}/still.jpg" if image_ok else None
    v360 = {"id": f"v360-{hx[48:60]}", "url": f"{_MEDIA}/v360/{stock}/video.html"} if video_ok else None
    discount_byte, markup_byte = h[31], h[32]

    certificate = None
    if defect >= NO_CERTIFICATE:
        lab = (_LABGROWN_LAB if labgrown else _NATURAL_LAB)[h[0]]
        cert_number = (
            f"{'LG' if labgrown and lab == 'IGI' else ''}{(row * 7_919 + h[1]) % 9_000_000_000 + 1_000_000_000}"
        )
        is_round = shape == 0
        fancy = color == vocab.FANCY
        carats: float = ct100 / 100
        shape_name = vocab.SHAPES[shape]
        if NO_VIDEO <= defect < NONSENSE:
            carats, shape_name = (0.0, "???") if h[42] % 2 else (-carats, shape_name)
        image_count = 1 + h[33] % 3
        certificate = {
            "id": f"{hx[60:68]}-{hx[68:72]}-4{hx[73:76]}-{hx[76:80]}-{row:012x}",
            "lab": lab,
            "certNumber": cert_number,
            "pdfUrl": f"{_MEDIA}/certs/{lab}/{cert_number}.pdf",
            "shape": shape_name,
            "fullShape": _FULL_SHAPES[shape],
            "carats": carats,
            "clarity": vocab.CLARITIES[clarity],
            "cut": _GRADES[cut][h[8]],
            "polish": _GRADES[min(cut, 2) if cut < vocab.NO_CUT else h[6] % 3][h[6]],
            "symmetry": _GRADES[min(cut, 2) if cut < vocab.NO_CUT else h[7] % 3][h[7]],
            "color": _FANCY_COLOR_FIELD[h[30]] if fancy else vocab.WHITE_COLOURS[color],
            "length": length,
            "width": width,
            "depth": depth,
            "depthPercentage": _DEPTH_PCT[h[4]],
            "table": _TABLE_PCT[h[5]],
            "crownAngle": _CROWN_ANGLE[h[38]] if is_round else None,
            "crownHeight": _CROWN_HEIGHT[h[38]] if is_round else None,
            "pavAngle": _PAV_ANGLE[h[39]] if is_round else None,
            "pavHeight": None,
            "pavDepth": _PAV_DEPTH[h[39]] if is_round else None,
            "floInt": _FLUORESCENCE[h[9]],
            "floCol": "BLUE" if h[44] < 40 else None,
            "verified": h[37] < 230,
            "labgrown": _certificate_labgrown(labgrown, h[23]),
            "labgrown_type": _LABGROWN_TYPE[h[24]] if labgrown else None,
            "treated": h[36] < 5,
            "girdle": _GIRDLE[h[17]],
            "culetSize": _CULET[h[18]],
            "girdleCondition": "FACETED" if h[17] < 40 else None,
            "culet_condition": None,
            "cut_style": "BRILLIANT" if is_round and h[46] < 128 else None,
            "keyToSymbols": _KEY_TO_SYMBOLS[h[19]],
            "comments": _COMMENTS[h[20]],
            "f_color": _FANCY_COLOUR[h[27]] if fancy else None,
            "f_intensity": _FANCY_INTENSITY[h[28]] if fancy else None,
            "f_overtone": _FANCY_OVERTONE[h[29]] if fancy else None,
            "colorShade": None,
            "image": image if h[33] < 128 else None,
            "video": None,
            "country_of_origin": None if labgrown else _COUNTRY[h[15]],
            "v360": v360,
            "product_images": [
                {
                    "id": f"img-{hx[80:88]}-{index}",
                    "url": f"{image}?view={index}",
                    "loupe360_url": None,
                    "type": "image",
                    "display_index": index,
                }
                for index in range(image_count)
            ]
            if image
            else [],
            "product_videos": [
                {"id": f"vid-{hx[88:96]}", "url": v360["url"], "loupe360_url": v360["url"], "type": "v360"}
            ]
            if v360
            else [],
        }

    return {
        "id": format_id(row, hx[24:48]),
        "price": price,
        "discount": _DISCOUNT[discount_byte],
        "diamond_price": price * 100 // (100 + _MARKUP_PCT[markup_byte]),
        "markup_price": price,
        "markup_discount": _MARKUP_DISCOUNT[discount_byte][markup_byte % 8],
        "diamond": {
            "id": did,
            "availability": vocab.AVAILABILITIES[availability],
            "HoldId": f"{hold_seq:08x}-0000-4000-8000-{row:012x}" if hold_seq else None,
            "NivodaStockId": stock,
            "supplierStockId": f"S{h[14] % 40:02d}-{row:07d}",
            "image": image,
            "video": f"{_MEDIA}/{did}/video.mp4" if video_ok and h[34] < 180 else None,
            "eyeClean": _EYE_CLEAN[h[10]],
            "brown": _TINGE[h[11]],
            "green": _TINGE[h[12]],
            "blue": _TINGE[h[45]],
            "gray": _TINGE[h[46]],
            "milky": _TINGE[h[13]],
            "bowtie": _TINGE[h[47]] if shape in _BOWTIE_SHAPES else None,
            "mine_of_origin": None if labgrown else _COUNTRY[h[41]],
            "supplier_video_link": f"{_MEDIA}/supplier/{stock}.mp4" if video_ok and h[35] < 100 else None,
            "approval_type": "AUTO" if h[40] < 200 else "MANUAL",
            "final_price": price,
            "show_measurements": True,
            "show_certificate_number": h[40] % 16 != 0,
            "return_window": _RETURN_WINDOW[h[21]],
            "CertificateType": None if certificate is None else certificate["lab"],
            "delivery_time": _DELIVERY[h[22]],
            "scs_certificate": None,
            "country_of_polishing": _POLISHING[h[16]],
            "other": None,
            "v360": v360,
            "certificate": certificate,
            "supplier": _SUPPLIER[h[14]],
        },
    }
