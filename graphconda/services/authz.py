"""The one place that decides what an actor may do.

HTTP routes, GraphQL resolvers, the CLI and jobs ask here; nothing else compares roles.
Private channels are invisible to anyone without a role on them, so "may not see" is
reported as NotFoundError, never as PermissionDeniedError, and never names the channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from graphconda.errors import NotFoundError, PermissionDeniedError


class Role(StrEnum):
    OWNER = "owner"
    MAINTAINER = "maintainer"
    MEMBER = "member"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.MEMBER: 1, Role.MAINTAINER: 2, Role.OWNER: 3}


def at_least(role: str | Role | None, floor: Role) -> bool:
    return role is not None and Role(role).rank >= floor.rank


def highest(*roles: str | Role | None) -> Role | None:
    present = [Role(r) for r in roles if r is not None]
    return max(present, key=lambda r: r.rank) if present else None


@dataclass(frozen=True)
class KeyScope:
    """An API key's restriction: `role` on `channel_id` (and only `package_name`, if set)."""

    channel_id: int
    role: Role
    package_name: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who is asking. `scopes` is None for full user rights, or an API key's restrictions."""

    user_id: int | None = None
    username: str | None = None
    server_role: Role | None = None
    scopes: tuple[KeyScope, ...] | None = None
    system: bool = False  # the server itself: CLI admin commands, scheduled jobs
    api_key_id: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.system or self.user_id is not None


ANONYMOUS = Actor()
SYSTEM = Actor(username="system", server_role=Role.OWNER, system=True)


@dataclass(frozen=True)
class ChannelAccess:
    """What authz needs to know about a channel for one actor."""

    channel_id: int
    private: bool
    member_role: Role | None  # the actor's own channel role, if any


def is_server_staff(actor: Actor) -> bool:
    """Server owners and maintainers act on every channel (as in Quetz)."""
    return actor.system or (actor.scopes is None and at_least(actor.server_role, Role.MAINTAINER))


def channel_role(actor: Actor, access: ChannelAccess, package_name: str | None = None) -> Role | None:
    """The effective role of `actor` on a channel (or one of its packages), after key scopes."""
    if actor.system:
        return Role.OWNER
    role = Role.OWNER if at_least(actor.server_role, Role.MAINTAINER) else access.member_role
    if actor.scopes is None:
        return role
    scoped = [
        s.role
        for s in actor.scopes
        if s.channel_id == access.channel_id and (s.package_name is None or s.package_name == package_name)
    ]
    granted = highest(*scoped)
    if granted is None or role is None:
        return None
    return granted if granted.rank <= role.rank else role


def can_read_channel(actor: Actor, access: ChannelAccess) -> bool:
    if not access.private:
        return True
    if actor.system or (actor.scopes is None and at_least(actor.server_role, Role.MAINTAINER)):
        return True
    return channel_role(actor, access) is not None


def require_read_channel(actor: Actor, access: ChannelAccess) -> None:
    if not can_read_channel(actor, access):
        raise NotFoundError("channel not found")


def can_create_channel(actor: Actor) -> bool:
    return actor.system or (actor.scopes is None and actor.user_id is not None)


def require_create_channel(actor: Actor) -> None:
    if not can_create_channel(actor):
        raise PermissionDeniedError("you must be logged in (without a scoped API key) to create channels")
