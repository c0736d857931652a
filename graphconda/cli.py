"""The `graphconda` command line: thin commands over the same services the API uses."""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from graphconda.errors import ConfigError, GraphcondaError
from graphconda.settings import Settings, load_settings

T = TypeVar("T")


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def settings_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config / --data-dir on every command, so they all find the same database and storage."""

    @click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="TOML config file (default: $GRAPHCONDA_CONFIG).")
    @click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Where SQLite and local packages live (default: ./graphconda-data).")
    @functools.wraps(func)
    def wrapper(*args: Any, config_file: Path | None, data_dir: Path | None, **kwargs: Any) -> Any:
        overrides: dict[str, Any] = {"server": {}}
        if data_dir is not None:
            overrides["server"]["data_dir"] = str(data_dir)
        for key in ("host", "port", "workers", "dev"):
            value = kwargs.get(key)
            if value not in (None, False):
                overrides["server"][key] = value
        try:
            settings = load_settings(config_file, overrides=overrides)
            return func(*args, settings=settings, **kwargs)
        except ConfigError as exc:
            fail(str(exc), code=2)
        except GraphcondaError as exc:
            fail(str(exc))

    return wrapper


def run(coro_fn: Callable[..., Coroutine[Any, Any, T]], settings: Settings, *args: Any) -> T:
    """Open services, run one service call, close them."""

    async def main() -> T:
        from graphconda.services.context import open_services

        handle = await open_services(settings)
        try:
            return await coro_fn(handle.services, *args)
        finally:
            await handle.aclose()

    return asyncio.run(main())


def prepare(settings: Settings) -> None:
    """Make the data dir, check storage and migrate the database, or fail with one line.

    A data dir this call created is removed again when a later step fails, so a failed
    start leaves nothing half-initialised behind.
    """
    import shutil

    from graphconda.db.migrate import upgrade_sync
    from graphconda.storage import open_store

    data_dir = settings.data_dir
    created = not data_dir.exists()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data dir {data_dir} is not writable ({exc.strerror or exc}); pass --data-dir") from None

    async def check_storage() -> None:
        store = open_store(settings)
        try:
            await store.check()
        finally:
            await store.close()

    try:
        asyncio.run(check_storage())
        upgrade_sync(settings.database_url)
    except BaseException:
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use; choose another with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@click.group()
@click.version_option(package_name="graphconda")
def main() -> None:
    """graphconda: a conda package server with a GraphQL API."""


@main.command()
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
    common = {"host": server.host, "port": server.port, "log_level": server.log_level, "proxy_headers": True}
    if server.workers > 1:
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run("graphconda.app:app_from_env", factory=True, workers=server.workers, **common)
    else:
        uvicorn.run(create_app(settings), **common)


@main.command()
@settings_options
def migrate(settings: Settings) -> None:
    """Upgrade the database schema to the newest version."""
    from graphconda.db import redact

    prepare(settings)
    click.echo(f"database {redact(settings.database_url)} is up to date")


@main.group()
def channel() -> None:
    """Create and list channels."""


@channel.command("create")
@click.argument("name")
@click.option("--private", is_flag=True, help="Visible only to its members.")
@click.option("--description", default="", help="A line about the channel.")
@settings_options
def channel_create(settings: Settings, name: str, private: bool, description: str) -> None:
    """Create channel NAME (as the server itself)."""
    from graphconda.services import channels
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    spec = channels.ChannelSpec(name=name, description=description, private=private)
    created = run(channels.create_channel, settings, SYSTEM, spec)
    click.echo(f"created channel {created.name}" + (" (private)" if created.private else ""))


@channel.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def channel_list(settings: Settings, as_json: bool) -> None:
    """List every channel."""
    from graphconda.services import channels
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    rows = run(channels.list_channels, settings, SYSTEM)
    if as_json:
        click.echo(json.dumps([{"name": c.name, "private": c.private, "description": c.description,
                                "mirror_mode": c.mirror_mode} for c in rows], indent=2))
        return
    for c in rows:
        flags = " ".join(f for f in ("private" if c.private else "", c.mirror_mode or "") if f)
        click.echo(f"{c.name}\t{flags}\t{c.description}".rstrip())
