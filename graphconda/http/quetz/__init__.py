"""The Quetz-compatible REST API under /api: thin adapters over services, one module per subject.

See the README's "Quetz REST API" section for what exists, what differs and what is left out.
Search routes come before `/api/channels/{channel}` so that `search/` is never a channel name.
"""

from __future__ import annotations

from typing import Any

from graphconda.http.quetz import aliases, channels, jobs, members, mirrors, packages, search, uploads, users
from graphconda.http.quetz.openapi import openapi_route

api_routes: list[Any] = [*search.routes, *members.routes, *mirrors.routes, *packages.routes, *channels.routes,
                         *users.routes, *jobs.routes, *uploads.routes]
routes: list[Any] = [openapi_route(api_routes), *api_routes, *aliases.routes]
