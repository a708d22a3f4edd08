"""Security headers on every response: pages, errors, 404s, redirects, static files.

One pure ASGI middleware, outermost (outside the request log and the error pages), so nothing the
application answers leaves without them. The header list is built once: a response only gets
the ones it has not set itself, and ``Cache-Control: no-store`` unless it is a static asset.

The Content-Security-Policy allows scripts and styles from this server only. There is no inline
script anywhere (page behaviour lives in static/js, parameters in ``data-`` attributes or
``<script type="application/json">`` blocks, which the browser never runs), no inline event
handler, no ``javascript:`` URL, no ``eval``. The only inline style is the plain pages' one
(``PLAIN_PAGE_STYLE``: the 500/503 pages and the CSRF refusal, which must render whatever else is
broken), allowed by its hash. ECharts' tooltips are rendered by the chart itself, not as HTML
(``renderMode: "richText"``), so no style attribute is ever injected either. The browser tests
(tests/browser/test_csp.py) open every page as every role and fail on any violation.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_admin.core.asgi import HttpMiddleware
from crm_admin.core.errors import PLAIN_PAGE_STYLE

# Served by StaticFiles (ours and SQLAdmin's): the same bytes for everyone, fine to cache.
STATIC_PREFIXES = ("/static/", "/admin/statics/")

HSTS = "max-age=31536000; includeSubDomains"


def _sha256_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy() -> str:
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": f"'self' {_sha256_source(PLAIN_PAGE_STYLE)}",
        # data: for the small SVG icons inside tabler's and select2's stylesheets
        "img-src": "'self' data:",
        "font-src": "'self'",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


# Powerful browser features a CRM page never uses, switched off for this site and anything it embeds.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in ("accelerometer", "camera", "geolocation", "gyroscope", "magnetometer", "microphone",
                    "payment", "usb")
)


def security_headers(*, https: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        ("Content-Security-Policy", content_security_policy()),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),  # frame-ancestors 'none' for browsers that predate CSP 2
        # Full URLs (customer ids, search terms) stay on this site; the export reads the same-origin one.
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        # no other site may load our pages or exports as its own images or scripts
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Permissions-Policy", PERMISSIONS_POLICY),
    ]
    if https:
        headers.append(("Strict-Transport-Security", HSTS))
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


NO_STORE = (b"cache-control", b"no-store")


class SecurityHeadersMiddleware(HttpMiddleware):
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        super().__init__(app)
        self.headers = security_headers(https=https)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Pages, exports and look-ups carry customer data: no copy in the browser's or a proxy's cache.
        cacheable = scope["path"].startswith(STATIC_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers")
                if not isinstance(headers, list):
                    headers = message["headers"] = list(headers or ())
                present = {name.lower() for name, _value in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                if not cacheable and NO_STORE[0] not in present:
                    headers.append(NO_STORE)
            await send(message)

        await self.app(scope, receive, send_with_headers)
