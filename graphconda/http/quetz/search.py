"""Quetz search routes: packages (`/api/packages/search/?q=`) and channels (`/api/channels/search/?q=`).

Only what the caller may see is searched (private channels and their packages otherwise never match).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import ok, quetz
from graphconda.http.quetz.packages import package_json
from graphconda.services import catalog


async def search_packages(request: Request) -> Response:
    """Packages whose name, summary or description contains `q`, best matches first, with their channel."""
    found = await catalog.search_packages(services_of(request), actor_of(request), request.query_params.get("q", ""))
    return ok([{**package_json(p), "channel_name": p.channel_name} for p in found])


async def search_channels(request: Request) -> Response:
    """Channels whose name or description contains `q`."""
    found = await catalog.search_channels(services_of(request), actor_of(request), request.query_params.get("q", ""))
    return ok([{"name": c.name, "description": c.description, "private": c.private} for c in found])


routes = [
    Route("/api/packages/search/", quetz(search_packages), methods=["GET"]),
    Route("/api/packages/search", quetz(search_packages), methods=["GET"]),
    Route("/api/channels/search/", quetz(search_channels), methods=["GET"]),
]
