"""Channels: create, find, list, with visibility decided by authz."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from graphconda.conda.names import validate_channel_name
from graphconda.db.models import Channel, ChannelMember
from graphconda.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from graphconda.services import authz
from graphconda.services.authz import Actor, ChannelAccess, Role
from graphconda.services.context import Services

MIRROR_MODES = ("proxy", "mirror")


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    description: str = ""
    private: bool = False
    mirror_mode: str | None = None
    mirror_channel_url: str | None = None


async def member_role(session: AsyncSession, actor: Actor, channel_id: int) -> Role | None:
    if actor.user_id is None:
        return None
    role = await session.scalar(
        select(ChannelMember.role).where(ChannelMember.channel_id == channel_id, ChannelMember.user_id == actor.user_id)
    )
    return Role(role) if role else None


async def access_for(session: AsyncSession, actor: Actor, channel: Channel) -> ChannelAccess:
    assert channel.id is not None
    return ChannelAccess(channel.id, channel.private, await member_role(session, actor, channel.id))


async def get_visible(session: AsyncSession, actor: Actor, name: str) -> Channel:
    """The channel called `name` if `actor` may see it; NotFoundError (naming nothing) otherwise."""
    channel = await session.scalar(select(Channel).where(Channel.name == name))
    if channel is None:
        raise NotFoundError("channel not found")
    authz.require_read_channel(actor, await access_for(session, actor, channel))
    return channel


def visible_filter(actor: Actor):  # type: ignore[no-untyped-def]
    """A WHERE clause selecting the channels `actor` may see (for lists, search and counts)."""
    if authz.is_server_staff(actor):
        return True
    if actor.user_id is None:
        return Channel.private.is_(False)  # type: ignore[attr-defined]
    member_of = select(ChannelMember.channel_id).where(ChannelMember.user_id == actor.user_id)
    if actor.scopes is not None:
        member_of = member_of.where(ChannelMember.channel_id.in_([s.channel_id for s in actor.scopes]))  # type: ignore[attr-defined]
    return or_(Channel.private.is_(False), Channel.id.in_(member_of))  # type: ignore[attr-defined, union-attr]


async def create_channel(services: Services, actor: Actor, spec: ChannelSpec) -> Channel:
    authz.require_create_channel(actor)
    name = validate_channel_name(spec.name)
    if spec.mirror_mode is not None:
        if spec.mirror_mode not in MIRROR_MODES:
            raise InvalidInputError(f"mirror mode must be one of {', '.join(MIRROR_MODES)}", field="mirrorMode")
        if not spec.mirror_channel_url or not spec.mirror_channel_url.startswith(("http://", "https://")):
            raise InvalidInputError("a mirror channel needs an http(s) upstream URL", field="mirrorChannelUrl")
    now = services.now()
    channel = Channel(
        name=name,
        description=spec.description,
        private=spec.private,
        mirror_mode=spec.mirror_mode,
        mirror_channel_url=spec.mirror_channel_url if spec.mirror_mode else None,
        created_at=now,
        updated_at=now,
    )
    try:
        async with services.db.write() as session:
            if await session.scalar(select(Channel.id).where(Channel.name == name)) is not None:
                raise AlreadyExistsError(f"channel {name!r} already exists")
            session.add(channel)
            await session.flush()
            if actor.user_id is not None:
                session.add(ChannelMember(channel_id=channel.id, user_id=actor.user_id, role=Role.OWNER))
    except IntegrityError:
        raise AlreadyExistsError(f"channel {name!r} already exists") from None
    return channel


async def list_channels(services: Services, actor: Actor) -> Sequence[Channel]:
    async with services.db.read() as session:
        rows = await session.scalars(select(Channel).where(visible_filter(actor)).order_by(Channel.name))
        return list(rows)
