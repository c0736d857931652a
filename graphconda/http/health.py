"""Liveness and readiness probes.

`/readyz` says ready (200) or unavailable (503, with Retry-After). Why it is unavailable
names infrastructure (the database URL, the storage path), so the reasons are shown only to
server staff and to callers on this machine (a local supervisor's probe); everyone else
gets the status alone.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from graphconda.http.deps import actor_of, services_of
from graphconda.services import authz, health

RETRY_AFTER_SECONDS = 5


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def readyz(request: Request) -> JSONResponse:
    state = await health.readiness(services_of(request))
    body: dict[str, Any] = {"status": "ready" if state.ready else "unavailable"}
    if authz.can_see_health_details(actor_of(request), loopback=_loopback(request)):
        body["checks"] = {check.name: {"ok": check.ok, **({"detail": check.detail} if not check.ok else {})}
                          for check in state.checks}
        if not state.ready:
            body["reason"] = state.reason
    if state.ready:
        return JSONResponse(body, headers={"cache-control": "no-store"})
    return JSONResponse(body, status_code=503,
                        headers={"cache-control": "no-store", "retry-after": str(RETRY_AFTER_SECONDS)})


routes = [Route("/healthz", healthz, methods=["GET", "HEAD"]), Route("/readyz", readyz, methods=["GET", "HEAD"])]
