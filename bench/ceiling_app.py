"""The least an ASGI app under uvicorn can do: a constant 304. bench/serve.py measures it as uvicorn's ceiling."""

from __future__ import annotations

from typing import Any

HEADERS = [(b"etag", b'"ceiling"'), (b"cache-control", b"public, max-age=60")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 304, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b""})
