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
    if server.dev:
        from graphconda.services.api_keys import ensure_dev_admin

        admin, key = run(ensure_dev_admin, settings)
        click.echo(f"  dev login: http://{server.host}:{server.port}/auth/dev/login/{admin.username}")
        click.echo(f"  dev API key: {key}")
    # httptools and uvloop (uvicorn[standard]) explicitly: the pure-Python fallbacks serve far fewer requests.
    common = {"host": server.host, "port": server.port, "log_level": server.log_level, "proxy_headers": True,
              "access_log": server.access_log, "http": "httptools", "loop": "uvloop"}
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
    """Create, update and list channels."""


@channel.command("create")
@click.argument("name")
@click.option("--private", is_flag=True, help="Visible only to its members.")
@click.option("--description", default="", help="A line about the channel.")
@click.option("--owner", default=None, help="User who becomes the channel's owner.")
@click.option("--bz2", is_flag=True, help="Also publish repodata.json.bz2.")
@click.option("--current-repodata", is_flag=True, help="Also publish current_repodata.json.")
@click.option("--no-shards", is_flag=True, help="Publish no sharded repodata (default: the server setting).")
@settings_options
def channel_create(settings: Settings, name: str, private: bool, description: str, owner: str | None, bz2: bool,
                   current_repodata: bool, no_shards: bool) -> None:
    """Create channel NAME (as the server itself, or as --owner)."""
    from graphconda.services import channels, users
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    spec = channels.ChannelSpec(name=name, description=description, private=private, publish_bz2=bz2,
                                publish_current_repodata=current_repodata, publish_shards=False if no_shards else None)

    async def create(services: Any) -> Any:
        # Created by the owner, so the channel service makes them its owner as for any creator.
        actor = users.actor_for(await users.get_user(services, owner)) if owner else SYSTEM
        return await channels.create_channel(services, actor, spec)

    created = run(create, settings)
    click.echo(f"created channel {created.name}" + (" (private)" if created.private else ""))


@channel.command("update")
@click.argument("name")
@click.option("--description", default=None, help="A line about the channel.")
@click.option("--private/--public", default=None, help="Visible only to its members, or to everyone.")
@click.option("--bz2/--no-bz2", default=None, help="Publish repodata.json.bz2, or delete it.")
@click.option("--current-repodata/--no-current-repodata", default=None,
              help="Publish current_repodata.json, or delete it.")
@click.option("--shards/--no-shards", default=None,
              help="Publish sharded repodata (rebuilds every subdir's shards), or remove the shard indexes.")
@settings_options
def channel_update(settings: Settings, name: str, description: str | None, private: bool | None, bz2: bool | None,
                   current_repodata: bool | None, shards: bool | None) -> None:
    """Change channel NAME's settings; options not given stay as they are. Returns once files follow."""
    from graphconda.services import channels
    from graphconda.services.authz import SYSTEM
    from graphconda.services.publishing import options_of

    prepare(settings)
    changes = channels.ChannelUpdate(description=description, private=private, publish_bz2=bz2,
                                     publish_current_repodata=current_repodata, publish_shards=shards)
    updated = run(channels.update_channel, settings, SYSTEM, name, changes)
    opts = options_of(settings, updated.options)
    click.echo(f"updated channel {updated.name}: {'private' if updated.private else 'public'}, "
               f"bz2 {'on' if opts.bz2 else 'off'}, current_repodata {'on' if opts.current_repodata else 'off'}, "
               f"shards {'on' if opts.shards else 'off'}")


@channel.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def channel_list(settings: Settings, as_json: bool) -> None:
    """List every channel."""
    from dataclasses import asdict

    from graphconda.services import channels
    from graphconda.services.authz import SYSTEM
    from graphconda.services.publishing import options_of

    prepare(settings)
    rows = run(channels.list_channels, settings, SYSTEM)
    if as_json:
        click.echo(json.dumps([{"name": c.name, "private": c.private, "description": c.description,
                                "mirror_mode": c.mirror_mode, "publishing": asdict(options_of(settings, c.options))}
                               for c in rows], indent=2))
        return
    for c in rows:
        flags = " ".join(f for f in ("private" if c.private else "", c.mirror_mode or "") if f)
        click.echo(f"{c.name}\t{flags}\t{c.description}".rstrip())


@main.group()
def user() -> None:
    """Create users and set their server roles (bootstrap without a login provider)."""


ROLE_CHOICE = click.Choice(["owner", "maintainer", "member"])


@user.command("create")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, default=None, help="Server role (default: none).")
@click.option("--email", default="", help="E-mail address.")
@settings_options
def user_create(settings: Settings, name: str, role: str | None, email: str) -> None:
    """Create user NAME."""
    from graphconda.services import users
    from graphconda.services.authz import SYSTEM

    prepare(settings)

    async def create(services: Any) -> Any:
        return await users.create_user(services, SYSTEM, name, server_role=role, email=email)

    created = run(create, settings)
    click.echo(f"created user {created.username}" + (f" ({created.server_role})" if created.server_role else ""))


@user.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["owner", "maintainer", "member", "none"]))
@settings_options
def user_set_role(settings: Settings, name: str, role: str) -> None:
    """Give user NAME the server ROLE ("none" removes it)."""
    from graphconda.services import users
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    changed = run(users.set_server_role, settings, SYSTEM, name, None if role == "none" else role)
    click.echo(f"user {changed.username} now has server role {changed.server_role or 'none'}")


@user.command("list")
@settings_options
def user_list(settings: Settings) -> None:
    """List users with their server roles."""
    from graphconda.services import users
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    for u in run(users.list_users, settings, SYSTEM):
        click.echo(f"{u.username}\t{u.server_role or ''}\t{u.email}".rstrip())


@main.group("api-key")
def api_key() -> None:
    """Create, list and revoke API keys."""


@api_key.command("create")
@click.option("--user", "username", required=True, help="The user the key acts as.")
@click.option("--channel", default=None, help="Restrict the key to this channel...")
@click.option("--package", default=None, help="...and to this package in it.")
@click.option("--role", type=ROLE_CHOICE, default=None, help="The role the key has there (needs --channel).")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None, help="Expire after N days.")
@click.option("--description", default="", help="What the key is for.")
@settings_options
def api_key_create(
    settings: Settings,
    username: str,
    channel: str | None,
    package: str | None,
    role: str | None,
    expires_in_days: int | None,
    description: str,
) -> None:
    """Create an API key and print it (only it) on stdout; it cannot be shown again.

    With --channel, the key acts only there, with --role; the user is given that role on
    the channel (or on --package, if it exists) first when they hold less. Find the key's
    id for revoking with `graphconda api-key list --user NAME`.
    """
    from datetime import timedelta

    from graphconda.services import api_keys, users
    from graphconda.services.authz import SYSTEM

    if (package or role) and not channel:
        raise click.UsageError("--package and --role need --channel")
    if channel and not role:
        raise click.UsageError("--channel needs --role (owner, maintainer or member)")
    prepare(settings)
    scopes = [api_keys.ScopeSpec(channel=channel, role=role, package=package)] if channel and role else []

    async def create(services: Any) -> Any:
        owner = await users.get_user(services, username)
        assert owner.id is not None
        expires = services.now() + timedelta(days=expires_in_days) if expires_in_days else None
        # The admin asked for this role: the user gets it where they hold less, then the key.
        await api_keys.grant_scope_roles(services, SYSTEM, owner.id, scopes)
        return await api_keys.create_api_key(
            services, SYSTEM, user_id=owner.id, description=description, expires_at=expires, scopes=scopes
        )

    _, secret = run(create, settings)
    click.echo(secret)


@api_key.command("list")
@click.option("--user", "username", required=True, help="Whose keys.")
@settings_options
def api_key_list(settings: Settings, username: str) -> None:
    """List a user's keys (never their secrets)."""
    from graphconda.services import api_keys, users
    from graphconda.services.authz import SYSTEM

    prepare(settings)

    async def listed(services: Any) -> Any:
        owner = await users.get_user(services, username)
        return await api_keys.list_api_keys(services, SYSTEM, owner.id)

    for info in run(listed, settings):
        k = info.key
        state = "revoked" if k.revoked_at else (f"expires {k.expires_at:%Y-%m-%d}" if k.expires_at else "active")
        scopes = ",".join(f"{s.channel}{'/' + s.package if s.package else ''}:{s.role}" for s in info.scopes) or "all"
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        click.echo(f"{k.id}\t{state}\t{scopes}\t{used}\t{k.description}".rstrip())


@api_key.command("revoke")
@click.argument("key_id", type=int)
@settings_options
def api_key_revoke(settings: Settings, key_id: int) -> None:
    """Revoke API key KEY_ID (see `graphconda api-key list`)."""
    from graphconda.services import api_keys
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    run(api_keys.revoke_api_key, settings, SYSTEM, key_id)
    click.echo(f"revoked API key {key_id}")


@main.command()
@click.option("--url", default=None,
              help="The server, e.g. http://localhost:8000 (default: server.public_url, else server.host:port).")
@click.option("--channel", "-c", "channel_name", required=True, help="Channel to upload to.")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@click.option("--api-key", envvar="GRAPHCONDA_API_KEY", default=None, show_envvar=True,
              help="API key (better passed in the environment than on the command line).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@settings_options
def upload(settings: Settings, url: str | None, channel_name: str, force: bool, api_key: str | None,
           no_progress: bool, files: tuple[Path, ...]) -> None:
    """Upload package FILES to a running server; a refused file does not stop the others."""
    from graphconda.upload_client import upload_files

    server = settings.server
    url = url or server.public_url or f"http://{server.host}:{server.port}"
    failed = upload_files(url, channel_name, files, api_key=api_key, force=force, progress=not no_progress,
                          echo=click.echo)
    if failed:
        fail(f"{failed} of {len(files)} files failed")


@main.command()
@click.argument("channel_name")
@settings_options
def reindex(settings: Settings, channel_name: str) -> None:
    """Rebuild CHANNEL_NAME's records and indexes from the package files in storage."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.reindexing import reindex_channel

    prepare(settings)
    result = run(reindex_channel, settings, SYSTEM, channel_name)
    click.echo(f"reindexed {channel_name}: {result.added} files added, {result.removed} removed, "
               f"{result.skipped} unreadable skipped")


@main.group()
def package() -> None:
    """Manage package files."""


@package.command("delete")
@click.argument("channel_name")
@click.argument("subdir")
@click.argument("filename")
@settings_options
def package_delete(settings: Settings, channel_name: str, subdir: str, filename: str) -> None:
    """Delete FILENAME from CHANNEL_NAME/SUBDIR (indexes and storage)."""
    from graphconda.services.authz import SYSTEM
    from graphconda.services.packages import delete_package_file

    prepare(settings)
    run(delete_package_file, settings, SYSTEM, channel_name, subdir, filename)
    click.echo(f"deleted {channel_name}/{subdir}/{filename}")
