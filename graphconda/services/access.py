"""The channel gate: finds a channel with the actor's roles on it, checks visibility and the channel's kind.

Kept apart from authz.py so that the decisions stay pure functions; every service that
acts on a channel or a package goes through `gate` (or `find_channel` where absence is
not an error) and then asks authz. What a channel's kind allows (uploads only into
local channels, proxies answer from upstream, ...) is the `allow` argument, as in
Quetz's `ChannelChecker(allow_proxy, allow_mirror, allow_local)`.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.conda.names import validate_channel_name
from graphconda.db.models import Channel, ChannelMember, Package, PackageMember
from graphconda.errors import ChannelKindError, InvalidInputError, NotFoundError
from graphconda.services import authz
from graphconda.services.authz import Actor, ChannelAccess, Role


class ChannelKind(StrEnum):
    """What a channel holds: uploads (local), an on-demand cache of upstream (proxy), a synced copy (mirror)."""

    LOCAL = "local"
    PROXY = "proxy"
    MIRROR = "mirror"

    @classmethod
    def of(cls, channel: Channel) -> ChannelKind:
        return cls(channel.mirror_mode) if channel.mirror_mode else cls.LOCAL


ANY_KIND: frozenset[ChannelKind] = frozenset(ChannelKind)
# Uploads and deletions: the packages of proxy and mirror channels come from their upstream only.
UPLOADS: frozenset[ChannelKind] = frozenset({ChannelKind.LOCAL})


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
        select(col(ChannelMember.role))
        .where(col(ChannelMember.channel_id) == channel_id, col(ChannelMember.user_id) == user_id)
    )
    return Role(role) if role else None


async def package_member_role(
    session: AsyncSession, user_id: int | None, channel_id: int, package_name: str
) -> Role | None:
    if user_id is None:
        return None
    role = await session.scalar(
        select(col(PackageMember.role))
        .join(Package, Package.id == PackageMember.package_id)  # type: ignore[arg-type]
        .where(col(Package.channel_id) == channel_id, col(Package.name) == package_name,
               col(PackageMember.user_id) == user_id)
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


async def find_channel(
    session: AsyncSession, actor: Actor, name: str, package_name: str | None = None
) -> tuple[Channel, ChannelAccess] | None:
    """The channel called `name` with the actor's roles (one query, two with a package), None when absent.

    Visibility is not checked: `gate` does that; callers that report "not found" for
    invisible channels themselves (update, delete, members) start here.
    """
    if not could_be_channel_name(name):
        return None
    stmt = select(Channel, col(ChannelMember.role)).where(col(Channel.name) == name)
    stmt = stmt.outerjoin(
        ChannelMember,
        (ChannelMember.channel_id == Channel.id) & (ChannelMember.user_id == (actor.user_id or -1)),  # type: ignore[arg-type]
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    channel, role = row
    assert channel.id is not None
    package = await package_member_role(session, actor.user_id, channel.id, package_name) if package_name else None
    return channel, ChannelAccess(channel.id, channel.private, Role(role) if role else None, package_role=package)


async def gate(
    session: AsyncSession,
    actor: Actor,
    name: str,
    *,
    allow: Collection[ChannelKind] = ANY_KIND,
    action: str = "such requests",
    package_name: str | None = None,
) -> tuple[Channel, ChannelAccess]:
    """The channel called `name` if the actor may see it and its kind is in `allow`.

    NotFoundError (naming nothing) when absent or invisible; ChannelKindError (a 409), saying what the
    channel is, when its kind does not take `action` (e.g. "uploads" into a mirror).
    """
    found = await find_channel(session, actor, name, package_name)
    if found is None:
        raise NotFoundError("channel not found")
    channel, access = found
    authz.require_read_channel(actor, access)
    kind = ChannelKind.of(channel)
    if kind not in allow:
        raise ChannelKindError(f"channel {channel.name!r} is a {kind} channel; it accepts no {action}")
    return channel, access
