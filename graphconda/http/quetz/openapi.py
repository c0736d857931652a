"""`GET /api/openapi.json`: an OpenAPI 3.1 document generated from the Quetz-compatible route definitions.

Paths, methods and path parameters come from the routes themselves, summaries and
descriptions from the handlers' docstrings, so the document cannot drift from what is served.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graphconda import __version__

_PARAM = re.compile(r"{([a-z_]+)(?::[a-z]+)?}")
_CREATED = ("/api/channels", "/members", "/api-keys", "/files", "/files/", "/upload/{filename}")


def _operation(route: Route, method: str) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or "").strip()
    summary = doc.split("\n\n", 1)[0].replace("\n", " ")
    path = _PARAM.sub(r"{\1}", route.path)
    created = method == "POST" and path.endswith(_CREATED)
    tag = path.removeprefix("/api/").removeprefix("paginated/").split("/", 1)[0]
    return {
        "summary": summary,
        "description": " ".join(doc.split()),
        "tags": [tag],
        "operationId": f"{method.lower()}_{route.name}_{len(path)}",
        "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                       for name in _PARAM.findall(route.path)],
        "responses": {"201" if created else "200": {"description": "success"},
                      "401": {"description": "credentials needed"}, "403": {"description": "not allowed"},
                      "404": {"description": "absent or invisible"},
                      "422": {"description": "invalid input; `field` names it"}},
    }


def document(routes: list[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(_PARAM.sub(r"{\1}", route.path), {})[method.lower()] = _operation(route, method)
    return {
        "openapi": "3.1.0",
        "info": {"title": "graphconda Quetz-compatible REST API", "version": __version__,
                 "description": "Quetz's REST routes over graphconda's services; GraphQL at /graphql is the "
                                "primary API. Authenticate with X-API-Key, a session cookie or Bearer."},
        "components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": [{}, {"apiKey": []}],
        "paths": dict(sorted(paths.items())),
    }


def openapi_route(api_routes: list[Any]) -> Route:
    doc = document(api_routes)

    async def openapi(request: Request) -> Response:
        """This document."""
        return JSONResponse(doc)

    return Route("/api/openapi.json", openapi, methods=["GET"])
