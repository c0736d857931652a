"""`graphconda serve` and `graphconda migrate`."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import click

from graphconda.cli.common import check_port, prepare, run, settings_options
from graphconda.settings import Settings


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--workers", type=int, default=None, help="Server processes (default 1).")
@click.option("--dev", is_flag=True, help="Development mode: dev login routes and a dev admin with an API key.")
@settings_options
def serve(settings: Settings, **_: Any) -> None:
    """Run the server (migrating the database first)."""
    import uvicorn

    from graphconda.app import SETTINGS_ENV, create_app
    from graphconda.db import redact

    server = settings.server
    check_port(server.host, server.port)
    prepare(settings)
    storage = settings.storage_path.resolve() if settings.storage.backend == "local" else (
        f"s3://{settings.storage.s3.endpoint}/{settings.storage.s3.bucket}/{settings.storage.s3.prefix}"
    )
    click.echo(f"graphconda listening on http://{server.host}:{server.port}" + ("  [dev mode]" if server.dev else ""))
    click.echo(f"  data:     {settings.data_dir.resolve()}")
    click.echo(f"  database: {redact(settings.database_url)}")
    click.echo(f"  storage:  {storage}")
    click.echo(f"  GraphQL:  http://{server.host}:{server.port}/graphql")
    if server.dev:
        from graphconda.services.api_keys import ensure_dev_admin

        admin, key = run(ensure_dev_admin, settings)
        click.echo(f"  dev login: http://{server.host}:{server.port}/auth/dev/login/{admin.username}")
        click.echo(f"  dev API key: {key}")
    # httptools and uvloop (uvicorn[standard]) explicitly: the pure-Python fallbacks serve far fewer requests.
    common: dict[str, Any] = {"host": server.host, "port": server.port, "log_level": server.log_level,
                              "proxy_headers": True, "access_log": server.access_log, "http": "httptools",
                              "loop": "uvloop"}
    with prometheus_dir(settings):
        if server.workers > 1:
            os.environ[SETTINGS_ENV] = settings.model_dump_json()
            uvicorn.run("graphconda.app:app_from_env", factory=True, workers=server.workers, **common)
        else:
            uvicorn.run(create_app(settings), **common)


def prometheus_dir(settings: Settings) -> AbstractContextManager[object]:
    """Workers share their Prometheus metrics through files in a directory of this run (see ops_metrics)."""
    from graphconda.services.ops_metrics import MULTIPROC_ENV, multiprocess_dir

    # One process needs none, unless the operator named one: then it must start empty here too.
    if settings.metrics.prometheus and (settings.server.workers > 1 or os.environ.get(MULTIPROC_ENV)):
        return multiprocess_dir()
    return nullcontext()


@click.command()
@settings_options
def migrate(settings: Settings) -> None:
    """Upgrade the database schema to the newest version."""
    from graphconda.db import redact

    prepare(settings)
    click.echo(f"database {redact(settings.database_url)} is up to date")
