"""The OpenAPI document and the interactive documentation are served by this server, from its own
files (Swagger UI vendored in static/vendor), under the site's security headers."""

from __future__ import annotations

import re
from typing import Any


def test_openapi_document_describes_every_collection(api: Any) -> None:
    doc = api.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    paths = set(doc["paths"])
    for path in ("/me", "/customers", "/customers/{id}", "/contacts", "/follow-ups", "/opportunities/{id}/stage",
                 "/care-tasks/{id}/execute", "/care-tasks/{id}/feedback", "/products", "/orders", "/orders/{id}/lines",
                 "/transfers", "/pools", "/pools/{pool_id}/claim", "/pools/{pool_id}/return", "/dictionaries"):
        assert path in paths, path
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "x-permission" in operation, (method, path)
            assert "401" in operation["responses"], (method, path)


def test_docs_page_loads_only_local_files(api: Any) -> None:
    page = api.get("/api/v1/docs")
    assert page.status_code == 200 and "content-security-policy" in page.headers
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    assert "<script>" not in page.text  # no inline script (the CSP forbids it)
    for asset in assets:
        r = api.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
