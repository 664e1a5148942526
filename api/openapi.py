"""The OpenAPI document FastAPI generates, with HMAC declared as the alternative to an API key.

FastAPI derives security requirements from dependencies, one scheme each; HMAC needs three headers
together, which only a requirement naming all three expresses ("API key, or all of these").
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI

API_KEY_SCHEME: Final = "APIKeyHeader"
_HMAC_SCHEMES: Final = {
    "HmacClientId": ("X-Client-Id", "the HMAC client's id (a key of HMAC_SECRETS)"),
    "HmacTimestamp": ("X-Timestamp", "unix seconds; within HMAC_TOLERANCE_S of the server clock"),
    "HmacSignature": (
        "X-Signature",
        "hex HMAC-SHA256 with the client's secret over METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nhex(SHA256(BODY)); "
        "accepted once",
    ),
}


def with_hmac(document: dict[str, Any]) -> dict[str, Any]:
    """Declare the HMAC headers and offer them wherever an API key is accepted."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    for scheme, (header, description) in _HMAC_SCHEMES.items():
        schemes[scheme] = {"type": "apiKey", "in": "header", "name": header, "description": description}
    hmac: dict[str, list[str]] = {scheme: [] for scheme in _HMAC_SCHEMES}
    for methods in document.get("paths", {}).values():
        for operation in methods.values():
            security = operation.get("security", [])
            if any(API_KEY_SCHEME in requirement for requirement in security):
                security.append(hmac)
    return document


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's own, which also caches the document in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_hmac(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
