"""What every command shares: settings from --config/--data-dir, one-line errors, preparing storage and the database."""

from __future__ import annotations

import asyncio
import errno
import functools
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
        for key in ("host", "port", "workers"):
            value = kwargs.get(key)
            if value is not None:  # 0 is a value (and an error for --workers), not "unset"
                overrides["server"][key] = value
        if "dev" in kwargs:
            # Dev mode (a login for anyone, a printed owner key) only ever comes from the flag,
            # whatever a config file or GRAPHCONDA_SERVER__DEV says.
            overrides["server"]["dev"] = bool(kwargs["dev"])
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
