"""`graphconda user ...` and `graphconda api-key ...`: bootstrap without a login provider."""

from __future__ import annotations

from typing import Any

import click

from graphconda.cli.common import prepare, run, settings_options
from graphconda.settings import Settings


@click.group()
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


@user.command("disable")
@click.argument("name")
@settings_options
def user_disable(settings: Settings, name: str) -> None:
    """Disable user NAME: their logins, sessions and API keys stop working (sessions end)."""
    _set_disabled(settings, name, True)


@user.command("enable")
@click.argument("name")
@settings_options
def user_enable(settings: Settings, name: str) -> None:
    """Enable user NAME again (their unrevoked API keys work again; they log in anew)."""
    _set_disabled(settings, name, False)


def _set_disabled(settings: Settings, name: str, disabled: bool) -> None:
    from graphconda.services import users
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    changed = run(users.set_disabled, settings, SYSTEM, name, disabled)
    click.echo(f"user {changed.username} is now {'disabled' if disabled else 'enabled'}")


@user.command("list")
@settings_options
def user_list(settings: Settings) -> None:
    """List users with their server roles."""
    from graphconda.services import users
    from graphconda.services.authz import SYSTEM

    prepare(settings)
    for u in run(users.list_users, settings, SYSTEM):
        click.echo(f"{u.username}\t{u.server_role or ''}\t{u.email}".rstrip())


@click.group("api-key")
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
