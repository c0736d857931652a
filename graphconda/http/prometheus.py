"""HTTP side of the Prometheus metrics: per-request counts, latency and bytes, and GET /metrics.

Only apps created with `[metrics] prometheus = true` use `InstrumentedStarlette`; the others
are plain FastStarlette, so with metrics off no request pays anything. The instrumentation
wraps everything, the serving fast path included, and labels a request by its route's
template (`/get/{path:path}`, `/api/channels/{channel}/files`), never by its raw path, so the
number of series stays bounded whatever clients ask for; a path no route matches is
`<unmatched>`. /metrics itself is answered here, ahead of the identity middleware (its
bearer token is not an API key); the decision whether a scraper may read it is
services/authz.py's.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from graphconda.errors import GraphcondaError
from graphconda.http import conda
from graphconda.http.errors import error_response
from graphconda.http.fastpath import FastStarlette
from graphconda.services import authz, ops_metrics

METRICS_PATH = "/metrics"
_CONDA_ROUTE = conda.routes[0].path  # what the fast path answers, without routing
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_READS = frozenset({"GET", "HEAD"})
_UNMATCHED = "<unmatched>"
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class InstrumentedStarlette(FastStarlette):
    """FastStarlette that counts and times every HTTP request and answers /metrics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tally = ops_metrics.enable().tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        start = time.perf_counter()
        # [status (0: no response started, the client went away first), body bytes sent, received]
        seen = [0, 0, 0]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                seen[1] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                seen[0] = message["status"]
            await send(message)

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[2] += len(message.get("body", b""))
            return message

        path, method = scope["path"], scope["method"]
        try:
            if path == METRICS_PATH:
                await _serve_metrics(self, scope, receive, counting_send)
            else:
                # Request bodies only come with writes: reads skip the wrapper.
                await super().__call__(scope, receive if method in _READS else counting_receive, counting_send)
        finally:
            route = scope.get("route")
            if route is not None:
                template = route.path
            elif path == METRICS_PATH:
                template = METRICS_PATH
            else:  # the fast path answered (no routing), or no route matched
                template = _CONDA_ROUTE if path.startswith("/get/") else _UNMATCHED
            self._tally.add(template, method if method in _METHODS else "other", seen[0],
                            time.perf_counter() - start, seen[1], seen[2])


async def _serve_metrics(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    settings = app.state.settings.metrics
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
    response: Response
    try:
        authz.require_metrics_scrape(settings.prometheus_token, authorization)
        if scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse("use GET\n", status_code=405, headers={"Allow": "GET, HEAD"})
        else:
            body = await ops_metrics.exposition(app.state.services)
            response = Response(body, media_type=_CONTENT_TYPE, headers={"Cache-Control": "no-store"})
    except GraphcondaError as exc:  # 401 without the token; 503 while the database is down
        response = error_response(exc)
    await response(scope, receive, send)
