"""Channel and package members: who holds which role, changed only as authz allows.

A channel keeps at least one owner once it has one: the last owner can be neither
removed nor demoted, so a channel never ends up managed by nobody but server staff.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import Channel, ChannelMember, Package, PackageMember, User
from graphconda.errors import AlreadyExistsError, ConflictError, NotFoundError
from graphconda.services import authz, serving
from graphconda.services.access import gate
from graphconda.services.authz import Actor, ChannelAccess, Role
from graphconda.services.context import Services


@dataclass(frozen=True)
class Membership:
    """A user's role on a channel or package, as stored."""

    user: User
    role: Role


async def _visible(session: AsyncSession, actor: Actor, channel: str) -> tuple[Channel, ChannelAccess]:
    return await gate(session, actor, channel)


async def _user(session: AsyncSession, username: str) -> User:
    user = (
        await session.scalar(select(User).where(func.lower(User.username) == username.lower()))
        if isinstance(username, str) and len(username) <= 64
        else None
    )
    if user is None or user.disabled:
        raise NotFoundError("user not found")
    return user


async def _package(session: AsyncSession, actor: Actor, channel: Channel, name: str) -> tuple[Package, Role | None]:
    """The package and the actor's own role on it."""
    package = await session.scalar(select(Package).where(col(Package.channel_id) == channel.id,
                                                         col(Package.name) == name))
    if package is None:
        raise NotFoundError("package not found")
    role = None
    if actor.user_id is not None:
        role = await session.scalar(
            select(col(PackageMember.role)).where(
                col(PackageMember.package_id) == package.id, col(PackageMember.user_id) == actor.user_id
            )
        )
    return package, Role(role) if role else None


async def _keeps_an_owner(session: AsyncSession, channel_id: int, member: ChannelMember, new: Role | None) -> None:
    if member.role != Role.OWNER or new == Role.OWNER:
        return
    owners = await session.scalar(
        select(func.count())
        .select_from(ChannelMember)
        .where(col(ChannelMember.channel_id) == channel_id, col(ChannelMember.role) == Role.OWNER.value)
    )
    if (owners or 0) <= 1:
        raise ConflictError("a channel keeps at least one owner; make someone else owner first")


async def set_channel_member(
    services: Services, actor: Actor, channel: str, username: str, role: Role | str
) -> Membership:
    """Add `username` to `channel` with `role`, or change the role they hold."""
    new = authz.parse_role(role)
    assert new is not None
    async with services.db.write() as session:
        found, access = await _visible(session, actor, channel)
        authz.require_manage_members(actor, access, new)  # before saying whether the user exists
        user = await _user(session, username)
        member = await session.get(ChannelMember, (found.id, user.id))
        authz.require_manage_members(actor, access, new, current_role=member.role if member else None)
        if member is None:
            session.add(ChannelMember(channel_id=found.id, user_id=user.id, role=new.value))  # type: ignore[arg-type]
        else:
            await _keeps_an_owner(session, access.channel_id, member, new)
            member.role = new.value
    return Membership(user, new)


async def remove_channel_member(services: Services, actor: Actor, channel: str, username: str) -> Channel:
    """Take `username`'s role on `channel` away; returns the channel."""
    async with services.db.write() as session:
        found, access = await _visible(session, actor, channel)
        authz.require_manage_members(actor, access, None)
        user = await _user(session, username)
        member = await session.get(ChannelMember, (found.id, user.id))
        if member is None:
            raise NotFoundError(f"{user.username} is not a member of this channel")
        authz.require_manage_members(actor, access, None, current_role=member.role)
        await _keeps_an_owner(session, access.channel_id, member, None)
        await session.delete(member)
    # This process's serving cache remembers who may read the channel: forget, so a removed
    # member loses a private channel at once (other processes within publish.serve_cache_seconds).
    serving.forget_channel(services, found.name)
    return found


async def _package_membership(
    session: AsyncSession, actor: Actor, channel: str, package: str, username: str
) -> tuple[Package, ChannelAccess, User, PackageMember | None]:
    """The package, the actor's access to it (checked: may manage members), the user and their membership."""
    found, access = await _visible(session, actor, channel)
    pkg, own_role = await _package(session, actor, found, package)
    access = ChannelAccess(access.channel_id, access.private, access.member_role, package_role=own_role)
    authz.require_manage_package_members(actor, access, pkg.name, None)
    user = await _user(session, username)
    return pkg, access, user, await session.get(PackageMember, (pkg.id, user.id))


async def set_package_member(
    services: Services, actor: Actor, channel: str, package: str, username: str, role: Role | str,
    *, exists_ok: bool = True,
) -> Membership:
    """Give `username` `role` on one package of `channel` (AlreadyExistsError if they hold one and not `exists_ok`)."""
    new = authz.parse_role(role)
    assert new is not None
    async with services.db.write() as session:
        pkg, access, user, member = await _package_membership(session, actor, channel, package, username)
        authz.require_manage_package_members(actor, access, pkg.name, new, current_role=member.role if member else None)
        if member is not None and not exists_ok:
            raise AlreadyExistsError(f"{user.username} already has a role on this package")
        if member is None:
            session.add(PackageMember(package_id=pkg.id, user_id=user.id, role=new.value))  # type: ignore[arg-type]
        else:
            member.role = new.value
    return Membership(user, new)


async def remove_package_member(services: Services, actor: Actor, channel: str, package: str, username: str) -> Package:
    """Take `username`'s role on one package away; returns the package."""
    async with services.db.write() as session:
        pkg, access, user, member = await _package_membership(session, actor, channel, package, username)
        if member is None:
            raise NotFoundError(f"{user.username} is not a member of this package")
        authz.require_manage_package_members(actor, access, pkg.name, None, current_role=member.role)
        await session.delete(member)
    return pkg
