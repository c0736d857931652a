"""Paths older Quetz documentation and deployments use: `/health/ready`, `/health/live`, `/channels/<c>/...`.

`/channels/<channel>/...` serves exactly what `/get/<channel>/...` serves (same handler);
the health aliases answer as /readyz and /healthz.
"""

from __future__ import annotations

from starlette.routing import Route

from graphconda.http import conda, health

routes = [
    Route("/health/ready", health.readyz, methods=["GET", "HEAD"]),
    Route("/health/live", health.healthz, methods=["GET", "HEAD"]),
    Route("/channels/{path:path}", conda.serve, methods=["GET", "HEAD"]),
]
