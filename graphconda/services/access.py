"""Loads the facts authz decides on: an actor's channel and package roles.

Kept apart from authz.py so that the decisions stay pure functions; every service that
acts on a channel or a package builds its `ChannelAccess` here and then asks authz.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from graphconda.conda.names import validate_channel_name
from graphconda.db.models import Channel, ChannelMember, Package, PackageMember
from graphconda.errors import InvalidInputError, NotFoundError
from graphconda.services import authz
from graphconda.services.authz import Actor, ChannelAccess, Role


def could_be_channel_name(name: object) -> bool:
    """Whether a channel could have this name; lookups skip the query otherwise.

    Besides saving a query, this keeps text no database takes (NUL, lone surrogates,
    from a percent-encoded URL) away from the database, where it would fail as a 500.
    """
    try:
        validate_channel_name(name)  # type: ignore[arg-type]
    except InvalidInputError:
        return False
    return True


async def channel_member_role(session: AsyncSession, user_id: int | None, channel_id: int) -> Role | None:
    if user_id is None:
        return None
    role = await session.scalar(
        select(ChannelMember.role).where(ChannelMember.channel_id == channel_id, ChannelMember.user_id == user_id)
    )
    return Role(role) if role else None


async def package_member_role(
    session: AsyncSession, user_id: int | None, channel_id: int, package_name: str
) -> Role | None:
    if user_id is None:
        return None
    role = await session.scalar(
        select(PackageMember.role)
        .join(Package, Package.id == PackageMember.package_id)  # type: ignore[arg-type]
        .where(Package.channel_id == channel_id, Package.name == package_name, PackageMember.user_id == user_id)
    )
    return Role(role) if role else None


async def channel_access(
    session: AsyncSession, actor: Actor, channel: Channel, package_name: str | None = None
) -> ChannelAccess:
    """The actor's roles on `channel` (and on `package_name` in it); no query for anonymous callers."""
    assert channel.id is not None
    member = await channel_member_role(session, actor.user_id, channel.id)
    package = await package_member_role(session, actor.user_id, channel.id, package_name) if package_name else None
    return ChannelAccess(channel.id, channel.private, member, package_role=package)


async def visible_channel(
    session: AsyncSession, actor: Actor, name: str, package_name: str | None = None
) -> tuple[Channel, ChannelAccess]:
    """The channel called `name` with the actor's access, if the actor may see it; NotFoundError otherwise."""
    channel = await session.scalar(select(Channel).where(Channel.name == name)) if could_be_channel_name(name) else None
    if channel is None:
        raise NotFoundError("channel not found")
    access = await channel_access(session, actor, channel, package_name)
    authz.require_read_channel(actor, access)
    return channel, access
