"""The dashboard (static files from graphconda/web/ that talk to /graphql only) and the browser security headers.

Every HTTP response that passes the middleware stack carries a strict Content-Security-Policy
(scripts only from our own files: no inline script, no `javascript:` URLs, no eval; no
plugins, no <base>, never framed), `X-Content-Type-Options: nosniff` and
`Referrer-Policy: same-origin`. The policy is what makes a stored XSS inert even if some
text ever reached the page as markup; the dashboard itself never builds HTML from data.
`same-origin` (not `no-referrer`) because browsers send `Origin: null` on POSTs under
`no-referrer`, and the CSRF guard (http/identity.py) needs our own origin there; it also
keeps `/t/<key>/...` URLs out of the Referer sent to other sites.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Package data (pyproject.toml), so a wheel install serves the same files as a checkout.
WEB_DIR = Path(__file__).resolve().parents[1] / "web"

_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",  # also our own ws:// and wss:// (GraphQL subscriptions)
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(**overrides: str) -> str:
    """The policy, with some directives replaced (`style_src="..."` for `style-src`)."""
    policy = {**_POLICY, **{name.replace("_", "-"): value for name, value in overrides.items()}}
    return "; ".join(f"{name} {value}" for name, value in policy.items())


CONTENT_SECURITY_POLICY = content_security_policy()
# GraphiQL's components add <style> elements at run time and its CSS embeds fonts as data: URLs;
# scripts stay as strict as everywhere else.
GRAPHIQL_CONTENT_SECURITY_POLICY = content_security_policy(style_src="'self' 'unsafe-inline'",
                                                           font_src="'self' data:")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


_ENCODED_HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


class SecurityHeadersMiddleware:
    """Add SECURITY_HEADERS to every HTTP response that did not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in _ENCODED_HEADERS if header[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_secured)


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def graphiql_page() -> Response:
    """The GraphiQL page (GET /graphql from a browser): vendored files only, see web/vendor/README.md."""
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": GRAPHIQL_CONTENT_SECURITY_POLICY}
    return FileResponse(WEB_DIR / "graphiql" / "index.html", headers=headers)


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Mount("/web", app=StaticFiles(directory=WEB_DIR, check_dir=False), name="web"),
]
