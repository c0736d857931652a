"""create_app(settings) -> Starlette: routes, middleware and a lifespan that owns every resource."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, WebSocketRoute

from graphconda.http import auth, conda, health, metrics, quetz, upload, web
from graphconda.http.errors import exception_handlers
from graphconda.http.fastpath import FastStarlette
from graphconda.http.identity import identity_middleware
from graphconda.http.prometheus import InstrumentedStarlette
from graphconda.schema import graphql_app
from graphconda.services import ops_metrics, staging
from graphconda.services.context import Services, open_services
from graphconda.settings import Settings

SETTINGS_ENV = "GRAPHCONDA_SETTINGS_JSON"  # how `serve --workers N` hands settings to worker processes


def create_app(settings: Settings, *, services: Services | None = None) -> Starlette:
    """Build the ASGI app. Pass `services` to share already-open ones (tests, embedding)."""
    gql = graphql_app(settings)

    prometheus = settings.metrics.prometheus
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            await staging.remove_stale_upload_files(services)
            async with ops_metrics.collecting(services.db) if prometheus else nullcontext():
                yield
            return
        handle = await open_services(settings, runner=settings.jobs.embedded_runner,
                                     scheduler=settings.jobs.embedded_scheduler)
        app.state.services = handle.services
        # Upload temp files that a process which died left behind (not those of live processes).
        await staging.remove_stale_upload_files(handle.services)
        try:
            async with ops_metrics.collecting(handle.services.db) if prometheus else nullcontext():
                yield
        finally:
            await handle.aclose()

    routes: list[Any] = [
        *health.routes,
        *auth.routes(settings),
        *conda.routes,
        *upload.routes,
        *quetz.routes,
        *metrics.routes,
        Route("/graphql", gql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", gql),
        *web.routes,
    ]
    # Security headers outermost, so that errors answered by inner layers carry them too.
    middleware = [Middleware(web.SecurityHeadersMiddleware), *identity_middleware(settings)]
    # FastStarlette answers anonymous revalidations and shard GETs before any middleware;
    # with Prometheus metrics on, its subclass counts and times every request around that.
    app_class = InstrumentedStarlette if prometheus else FastStarlette
    app = app_class(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=exception_handlers)
    app.state.settings = settings
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn worker processes: settings arrive serialised from `graphconda serve`."""
    return create_app(Settings.model_validate(json.loads(os.environ[SETTINGS_ENV])))
