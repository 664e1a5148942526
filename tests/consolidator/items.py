"""Hand-built Nivoda search items in the HEAD payload shape (original-system.md §1.4).

`nivoda_item()` is a complete, mappable natural round; keyword overrides replace top-level item
fields, `diamond=` / `certificate=` / `supplier=` dicts are merged into the nested objects, and a
value of `DROP` removes the key (to test missing fields).
"""

from __future__ import annotations

import copy
from typing import Any

DROP: Any = object()


def _merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if value is DROP:
            target.pop(key, None)
        else:
            target[key] = value


def nivoda_item(
    *,
    diamond: dict[str, Any] | None = None,
    certificate: dict[str, Any] | None = None,
    supplier: dict[str, Any] | None = None,
    **item_fields: Any,
) -> dict[str, Any]:
    item = copy.deepcopy(_BASE)
    _merge(item["diamond"]["certificate"], certificate or {})
    _merge(item["diamond"]["supplier"], supplier or {})
    _merge(item["diamond"], diamond or {})
    _merge(item, item_fields)
    return item


_BASE: dict[str, Any] = {
    "id": "offer-7f3a91c2",
    "price": 150050,
    "discount": None,
    "diamond_price": 140000,
    "markup_price": 165055,
    "markup_discount": None,
    "diamond": {
        "id": "stone-1d2e3f40",
        "availability": "AVAILABLE",
        "HoldId": None,
        "NivodaStockId": "NIV-884213",
        "supplierStockId": "SUP-55521",
        "image": "https://img.nivoda.net/stone-1d2e3f40/still.jpg",
        "video": "https://v360.nivoda.net/stone-1d2e3f40/video.html",
        "eyeClean": "yes",
        "brown": "NONE",
        "green": "NONE",
        "blue": None,
        "gray": None,
        "milky": "NO MILKY",
        "bowtie": None,
        "mine_of_origin": None,
        "supplier_video_link": None,
        "approval_type": None,
        "final_price": 150050,
        "show_measurements": True,
        "show_certificate_number": True,
        "return_window": 7,
        "CertificateType": "GIA",
        "delivery_time": {"express_timeline_applicable": False, "min_business_days": 3, "max_business_days": 5},
        "scs_certificate": None,
        "country_of_polishing": "India",
        "other": None,
        "v360": {"id": "v360-88", "url": "https://v360.nivoda.net/stone-1d2e3f40/v360.html"},
        "certificate": {
            "id": "cert-2281",
            "lab": "GIA",
            "certNumber": "2141438167",
            "pdfUrl": "https://certs.nivoda.net/2141438167.pdf",
            "shape": "ROUND",
            "fullShape": "Round Brilliant",
            "carats": 1.5,
            "clarity": "VS1",
            "cut": "EX",
            "polish": "EX",
            "symmetry": "VG",
            "color": "G",
            "length": 7.36,
            "width": 7.32,
            "depth": 4.53,
            "depthPercentage": 61.7,
            "table": 57,
            "crownAngle": 34.5,
            "crownHeight": 14.5,
            "pavAngle": 40.8,
            "pavHeight": 43.0,
            "pavDepth": 43,
            "floInt": "Faint",
            "floCol": "Blue",
            "verified": True,
            "labgrown": False,
            "labgrown_type": None,
            "treated": False,
            "girdle": "Medium to Slightly Thick",
            "culetSize": "None",
            "girdleCondition": "Faceted",
            "culet_condition": None,
            "cut_style": None,
            "keyToSymbols": "Crystal, Needle",
            "comments": None,
            "f_color": None,
            "f_intensity": None,
            "f_overtone": None,
            "colorShade": None,
            "brown": None,
            "green": None,
            "blue": None,
            "gray": None,
            "mix_tinge": None,
            "milky": None,
            "bowtie": None,
            "eyeclean": None,
            "starLength": None,
            "lowerGirdle": None,
            "image": "https://img.nivoda.net/certs/2141438167.jpg",
            "video": None,
            "country_of_origin": None,
            "v360": {"id": "cv360-12", "url": "https://v360.nivoda.net/cert/2141438167.html"},
            "product_videos": [],
            "product_images": [
                {
                    "id": "img-b",
                    "url": "https://img.nivoda.net/b.jpg",
                    "loupe360_url": None,
                    "type": "still",
                    "display_index": 2,
                },
                {
                    "id": "img-a",
                    "url": "https://img.nivoda.net/a.jpg",
                    "loupe360_url": None,
                    "type": "still",
                    "display_index": 1,
                },
            ],
        },
        "supplier": {"id": "sup-9", "name": "Shree Diamonds", "legal_name": "Shree Diamonds Pvt Ltd"},
    },
}
