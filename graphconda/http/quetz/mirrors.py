"""Quetz registered-mirror routes: list, register (what a mirror created with "register with upstream"
calls), unregister. Adapters over services/mirror_metrics.py; ids in Quetz's UUID form."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.db.models import RegisteredMirror
from graphconda.errors import NotFoundError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import as_uuid, json_body, ok, parse_id, quetz, text
from graphconda.services import mirror_metrics


def _mirror_json(mirror: RegisteredMirror) -> dict[str, Any]:
    # Exactly Quetz's ChannelMirror fields (when it last synced: GraphQL `Channel.registeredMirrors`).
    return {"id": as_uuid(mirror.id), "url": mirror.url, "api_endpoint": mirror.api_endpoint,
            "metrics_endpoint": mirror.metrics_endpoint}


async def list_mirrors(request: Request) -> Response:
    """The channel's registered mirrors."""
    found = await mirror_metrics.list_mirrors(services_of(request), actor_of(request), request.path_params["channel"])
    return ok([_mirror_json(m) for m in found])


async def register_mirror(request: Request) -> Response:
    """Register a mirror (`url`, `api_endpoint`, `metrics_endpoint`): 201 with it."""
    body = await json_body(request)
    mirror = await mirror_metrics.register_mirror(
        services_of(request), actor_of(request), request.path_params["channel"], url=text(body, "url") or "",
        api_endpoint=text(body, "api_endpoint") or "", metrics_endpoint=text(body, "metrics_endpoint") or "")
    return ok(_mirror_json(mirror), 201)


async def unregister_mirror(request: Request) -> Response:
    """Remove a registered mirror (the figures it added stay)."""
    mirror_id = parse_id(request.path_params["mirror_id"])
    if mirror_id is None:
        raise NotFoundError("registered mirror not found")
    await mirror_metrics.unregister_mirror(services_of(request), actor_of(request), mirror_id)
    return ok(None)


routes = [
    Route("/api/channels/{channel}/mirrors", quetz(list_mirrors), methods=["GET"]),
    Route("/api/channels/{channel}/mirrors", quetz(register_mirror), methods=["POST"]),
    Route("/api/channels/{channel}/mirrors/{mirror_id}", quetz(unregister_mirror), methods=["DELETE"]),
]
