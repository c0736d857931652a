"""The one place that decides what an actor may do.

HTTP routes, GraphQL resolvers, the CLI and jobs ask here; nothing else compares roles.
Functions here are pure: callers load the facts (`ChannelAccess`, see services/access.py)
and ask. Private channels are invisible to anyone without a role on them, so "may not
see" is reported as NotFoundError, never as PermissionDeniedError, and never names the
channel. Every channel-level `require_*` checks visibility first for that reason.

The matrix (documented in the README, "Permissions"), with roles after API-key scopes:

    action                               who
    read a public channel                anyone
    read a private channel (+ metrics)   server owner/maintainer, any channel role
    create a channel                     any logged-in user (not with a scoped key); becomes its owner
    create a mirror/proxy channel        server owner/maintainer
    upload a new package / version       channel owner/maintainer, package owner/maintainer
    overwrite (force) / delete files     channel owner/maintainer, package owner
    update a channel, run its jobs       channel owner/maintainer
    see a channel's jobs and schedules   channel owner/maintainer (a channel they cannot see: never)
    see server-wide jobs and schedules   server owner/maintainer
    delete a channel                     channel owner
    add/change/remove channel members    channel owner (any role), maintainer (up to maintainer)
    add/change/remove package members    package owner, channel owner/maintainer
    list users, see e-mails              server owner/maintainer (and each user themself)
    create users, set server roles       server owner
    create/list/revoke API keys          the user themself (unscoped); server owner for anyone

Server owners and maintainers count as owner of every channel. An API key with scopes
acts with the lower of its scope's role and the user's own role, and only where a
scope applies; scoped keys cannot create channels, keys, or users.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlmodel import col

from graphconda.db.models import Channel, ChannelMember, JobRun
from graphconda.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError


class Role(StrEnum):
    OWNER = "owner"
    MAINTAINER = "maintainer"
    MEMBER = "member"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.MEMBER: 1, Role.MAINTAINER: 2, Role.OWNER: 3}


def parse_role(value: str | Role | None, *, field: str = "role", optional: bool = False) -> Role | None:
    """A Role from user input; InvalidInputError naming the valid ones otherwise."""
    if value is None or value == "":
        if optional:
            return None
        raise InvalidInputError("a role is required (owner, maintainer or member)", field=field)
    try:
        return Role(str(value).lower())
    except ValueError:
        raise InvalidInputError("role must be one of owner, maintainer, member", field=field) from None


def at_least(role: str | Role | None, floor: Role) -> bool:
    return role is not None and Role(role).rank >= floor.rank


def highest(*roles: str | Role | None) -> Role | None:
    present = [Role(r) for r in roles if r is not None]
    return max(present, key=lambda r: r.rank) if present else None


def lowest(*roles: str | Role | None) -> Role | None:
    """The lower of the roles; None (no role) if any is None."""
    if any(r is None for r in roles):
        return None
    return min((Role(r) for r in roles if r is not None), key=lambda r: r.rank, default=None)


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

    @property
    def scoped(self) -> bool:
        return self.scopes is not None


ANONYMOUS = Actor()
SYSTEM = Actor(username="system", server_role=Role.OWNER, system=True)


@dataclass(frozen=True)
class ChannelAccess:
    """What authz needs to know about a channel (and maybe one package in it) for one actor.

    `package_role` is the actor's role on the package being acted on (None when none or
    when the action is about the whole channel).
    """

    channel_id: int
    private: bool
    member_role: Role | None  # the actor's own channel role, if any
    package_role: Role | None = None


# --- building blocks ----------------------------------------------------------


def is_server_staff(actor: Actor) -> bool:
    """Server owners and maintainers act on every channel (as in Quetz)."""
    return actor.system or (actor.scopes is None and at_least(actor.server_role, Role.MAINTAINER))


def is_server_owner(actor: Actor) -> bool:
    return actor.system or (actor.scopes is None and actor.server_role == Role.OWNER)


def _scope_limit(actor: Actor, channel_id: int, package_name: str | None) -> Role | None:
    """The most a key's scopes allow on this channel/package; OWNER when the actor is unscoped."""
    if actor.scopes is None:
        return Role.OWNER
    return highest(
        *(
            s.role
            for s in actor.scopes
            if s.channel_id == channel_id and (s.package_name is None or s.package_name == package_name)
        )
    )


def _raw_channel_role(actor: Actor, access: ChannelAccess) -> Role | None:
    if actor.system or at_least(actor.server_role, Role.MAINTAINER):
        return Role.OWNER
    return access.member_role


def channel_role(actor: Actor, access: ChannelAccess, package_name: str | None = None) -> Role | None:
    """The effective channel role of `actor` for channel-wide actions (or for `package_name`), after scopes."""
    if actor.system:
        return Role.OWNER
    return lowest(_raw_channel_role(actor, access), _scope_limit(actor, access.channel_id, package_name))


def package_role(actor: Actor, access: ChannelAccess, package_name: str) -> Role | None:
    """The effective role on one package: the higher of channel and package role, after scopes."""
    if actor.system:
        return Role.OWNER
    own = highest(_raw_channel_role(actor, access), access.package_role)
    return lowest(own, _scope_limit(actor, access.channel_id, package_name))


def _require_user(actor: Actor, what: str) -> None:
    if not actor.authenticated:
        raise AuthenticationError(f"log in or pass an API key to {what}")


def require_login(actor: Actor, what: str) -> None:
    """Anonymous callers may not `what` (AuthenticationError, 401)."""
    _require_user(actor, what)


def _require_unscoped(actor: Actor, what: str) -> None:
    _require_user(actor, what)
    if actor.scopes is not None:
        raise PermissionDeniedError(f"a scoped API key cannot {what}")


# --- channels -----------------------------------------------------------------


def can_read_channel(actor: Actor, access: ChannelAccess) -> bool:
    if not access.private or actor.system:
        return True
    if actor.scopes is not None and not any(s.channel_id == access.channel_id for s in actor.scopes):
        return False
    # Package roles do not make a private channel visible: membership of the channel does.
    return at_least(actor.server_role, Role.MAINTAINER) or access.member_role is not None


def require_read_channel(actor: Actor, access: ChannelAccess) -> None:
    if not can_read_channel(actor, access):
        raise NotFoundError("channel not found")


# Download counts of a channel are exactly as visible as the channel (Quetz leaked them).
can_read_channel_metrics = can_read_channel
require_read_channel_metrics = require_read_channel


def can_create_channel(actor: Actor, *, mirror: bool = False) -> bool:
    if mirror:
        return is_server_staff(actor)
    return actor.system or (actor.scopes is None and actor.user_id is not None)


def require_create_channel(actor: Actor, *, mirror: bool = False) -> None:
    _require_unscoped(actor, "create channels")
    if mirror and not is_server_staff(actor):
        raise PermissionDeniedError("only server owners and maintainers may create mirror or proxy channels")


def can_see_upstream_credentials(actor: Actor) -> bool:
    """Credentials in a mirror's upstream URL (user info, `/t/<token>/`) are for server staff only."""
    return is_server_staff(actor)


def can_adopt_stored_files(actor: Actor) -> bool:
    """May a new channel take over files left in storage under its name? They may be a deleted
    private channel's, so only server staff; anyone else's new channel starts empty."""
    return is_server_staff(actor)


def can_manage_channel(actor: Actor, access: ChannelAccess) -> bool:
    return can_read_channel(actor, access) and at_least(channel_role(actor, access), Role.MAINTAINER)


def require_manage_channel(actor: Actor, access: ChannelAccess, *, mirror_config: bool = False) -> None:
    """Update a channel's settings, or start its jobs (sync, reindex). Mirror URLs: server staff."""
    require_read_channel(actor, access)
    _require_user(actor, "change channels")
    if not at_least(channel_role(actor, access), Role.MAINTAINER):
        raise PermissionDeniedError("only channel owners and maintainers may change this channel")
    if mirror_config and not is_server_staff(actor):
        raise PermissionDeniedError("only server owners and maintainers may configure mirroring")


def require_delete_channel(actor: Actor, access: ChannelAccess) -> None:
    require_read_channel(actor, access)
    _require_user(actor, "delete channels")
    if channel_role(actor, access) != Role.OWNER:
        raise PermissionDeniedError("only channel owners may delete this channel")


def _grantable(holder: Role | None, target: Role) -> bool:
    """Owners grant any role; maintainers up to maintainer; members nothing."""
    if holder == Role.OWNER:
        return True
    return holder == Role.MAINTAINER and target.rank <= Role.MAINTAINER.rank


def require_manage_members(
    actor: Actor, access: ChannelAccess, target_role: Role | str | None, *, current_role: Role | str | None = None
) -> None:
    """Add a channel member with `target_role`, or change/remove (`target_role=None`) one holding `current_role`."""
    require_read_channel(actor, access)
    _require_user(actor, "manage members")
    mine = channel_role(actor, access)
    for role in (target_role, current_role):
        if role is not None and not _grantable(mine, Role(role)):
            raise PermissionDeniedError("your channel role does not allow managing that member role")
    if not _grantable(mine, Role.MEMBER):
        raise PermissionDeniedError("only channel owners and maintainers may manage members")


# --- packages -----------------------------------------------------------------


def _package_rights(actor: Actor, access: ChannelAccess, package_name: str) -> tuple[Role | None, Role | None]:
    """(effective channel role, effective package role) for acting on `package_name`.

    A key scoped to one package carries a package role: its channel-wide rights come only
    from channel-wide scopes, and what the user holds on the channel counts for the package
    up to the scope's role (so a package-maintainer key cannot overwrite or delete files).
    """
    if actor.system:
        return Role.OWNER, Role.OWNER
    channel = _raw_channel_role(actor, access)
    channel_limit = _scope_limit(actor, access.channel_id, None)
    package_limit = _scope_limit(actor, access.channel_id, package_name)
    return lowest(channel, channel_limit), lowest(highest(channel, access.package_role), package_limit)


def can_upload(actor: Actor, access: ChannelAccess, package_name: str, *, force: bool = False) -> bool:
    if not can_read_channel(actor, access) or not actor.authenticated:
        return False
    channel, package = _package_rights(actor, access, package_name)
    if force:
        return at_least(channel, Role.MAINTAINER) or package == Role.OWNER
    return at_least(highest(channel, package), Role.MAINTAINER)


def require_upload(actor: Actor, access: ChannelAccess, package_name: str, *, force: bool = False) -> None:
    """Upload a file of `package_name` (a new package, or a new version of one); `force` overwrites."""
    require_read_channel(actor, access)
    _require_user(actor, "upload")
    if not can_upload(actor, access, package_name):
        raise PermissionDeniedError("you may not upload to this channel (channel or package maintainer needed)")
    if force and not can_upload(actor, access, package_name, force=True):
        raise PermissionDeniedError("overwriting files needs channel owner/maintainer or package owner rights")


def require_upload_intent(actor: Actor, access: ChannelAccess) -> None:
    """Before an upload body is read: the channel is visible and the caller is somebody.

    Which package the files are is only known after reading them; `require_upload` then
    decides per file. This keeps anonymous callers from making the server spool bodies.
    """
    require_read_channel(actor, access)
    _require_user(actor, "upload")


def require_delete_package_file(actor: Actor, access: ChannelAccess, package_name: str) -> None:
    """Delete one file, or a whole package, of `package_name`."""
    require_read_channel(actor, access)
    _require_user(actor, "delete packages")
    channel, package = _package_rights(actor, access, package_name)
    if not (at_least(channel, Role.MAINTAINER) or package == Role.OWNER):
        raise PermissionDeniedError("deleting needs channel owner/maintainer or package owner rights")


require_delete_package = require_delete_package_file


def require_manage_package(actor: Actor, access: ChannelAccess, package_name: str) -> None:
    """Edit a package's metadata: like uploading a new version of it."""
    require_upload(actor, access, package_name)


def require_manage_package_members(
    actor: Actor,
    access: ChannelAccess,
    package_name: str,
    target_role: Role | str | None,
    *,
    current_role: Role | str | None = None,
) -> None:
    require_read_channel(actor, access)
    _require_user(actor, "manage package members")
    channel, package = _package_rights(actor, access, package_name)
    # Package owners grant any package role (target_role/current_role are only validated).
    for role in (target_role, current_role):
        parse_role(role, optional=True)
    if not (at_least(channel, Role.MAINTAINER) or package == Role.OWNER):
        raise PermissionDeniedError("only package owners and channel owners/maintainers may manage package members")


# --- jobs ---------------------------------------------------------------------


def can_see_job(actor: Actor, access: ChannelAccess | None) -> bool:
    """See a job run or schedule (status, progress, log, arguments) of a channel, or a server-wide one (None).

    Job details are operational (logs, errors, upstream URLs), so reading the channel is
    not enough: the job's channel owners and maintainers see them, server staff see all.
    """
    if access is None:
        return is_server_staff(actor)
    return can_manage_channel(actor, access)


def require_run_job(actor: Actor, access: ChannelAccess | None) -> None:
    """Run or cancel a job, or set its schedule: whoever may see it (can_see_job); the channel must be visible."""
    if access is not None:
        require_read_channel(actor, access)
    _require_user(actor, "run jobs")
    if not can_see_job(actor, access):
        raise PermissionDeniedError("only server owners and maintainers may run server jobs" if access is None
                                    else "only channel owners and maintainers may run this channel's jobs")


# --- users, server roles, API keys -------------------------------------------


def require_server_staff(actor: Actor) -> None:
    """Server-wide operations (server jobs, all job runs, server settings)."""
    _require_user(actor, "do that")
    if not is_server_staff(actor):
        raise PermissionDeniedError("only server owners and maintainers may do that")


def can_see_health_details(actor: Actor, *, loopback: bool) -> bool:
    """Why the server is not ready names its infrastructure (database URL, storage path):
    server staff, and callers on the server's own machine (a supervisor's probe), may see it."""
    return loopback or is_server_staff(actor)


def require_metrics_scrape(token: str, authorization: str | None) -> None:
    """GET /metrics (when on): anyone, unless `metrics.prometheus_token` is set; then that bearer token only."""
    if not token:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise AuthenticationError("send the metrics token as 'Authorization: Bearer <token>'")


def can_read_users(actor: Actor) -> bool:
    return is_server_staff(actor)


def require_read_users(actor: Actor) -> None:
    _require_user(actor, "list users")
    if not can_read_users(actor):
        raise PermissionDeniedError("only server owners and maintainers may list users")


def can_read_user_private(actor: Actor, user_id: int | None) -> bool:
    """E-mail, identities, API keys of a user: the user themself and server staff."""
    return is_server_staff(actor) or (actor.user_id is not None and actor.user_id == user_id)


def require_create_user(actor: Actor) -> None:
    _require_user(actor, "create users")
    if not is_server_owner(actor):
        raise PermissionDeniedError("only server owners may create users")


def require_set_server_role(actor: Actor, target_user: Any, role: Role | str | None) -> None:
    """Give `target_user` (anything with `.server_role`) the server `role` (None removes it)."""
    _require_user(actor, "set server roles")
    if role is not None:
        parse_role(role)
    if not is_server_owner(actor):
        raise PermissionDeniedError("only server owners may set server roles")


def require_disable_user(actor: Actor) -> None:
    """Disable a user or enable them again."""
    _require_user(actor, "disable users")
    if not is_server_owner(actor):
        raise PermissionDeniedError("only server owners may disable users")


def require_manage_api_keys(actor: Actor, user_id: int | None) -> None:
    """Create, list or revoke the API keys of user `user_id`."""
    _require_unscoped(actor, "manage API keys")
    if actor.system or (actor.user_id is not None and actor.user_id == user_id) or is_server_owner(actor):
        return
    raise PermissionDeniedError("you may only manage your own API keys")


def require_end_sessions(actor: Actor, user_id: int | None) -> None:
    """Sign user `user_id` out of every browser session: the user themself, server owners anyone.

    Like managing keys, this acts on the whole account, so a scoped key may not.
    """
    _require_unscoped(actor, "sign out everywhere")
    if user_id is not None and (actor.system or actor.user_id == user_id or is_server_owner(actor)):
        return
    raise PermissionDeniedError("you may only end your own sessions")


# --- the same rules as SQL, for lists, search and counts ---------------------------------


def visible_channels_clause(actor: Actor) -> ColumnElement[bool]:
    """A WHERE clause selecting the channels `actor` may see (for lists, search and counts).

    Mirrors can_read_channel: staff see all; a scoped key sees public channels and
    the private ones it is scoped to where its user is staff or a member.
    """
    if actor.system or (actor.scopes is None and is_server_staff(actor)):
        return true()
    public = Channel.private.is_(False)  # type: ignore[attr-defined]
    if actor.user_id is None:
        return public
    if actor.scopes is not None:
        scoped_ids = sorted({s.channel_id for s in actor.scopes})
        if at_least(actor.server_role, Role.MAINTAINER):
            return or_(public, Channel.id.in_(scoped_ids))  # type: ignore[union-attr]
        member_of = select(col(ChannelMember.channel_id)).where(
            col(ChannelMember.user_id) == actor.user_id,
            col(ChannelMember.channel_id).in_(scoped_ids),
        )
    else:
        member_of = select(col(ChannelMember.channel_id)).where(col(ChannelMember.user_id) == actor.user_id)
    return or_(public, Channel.id.in_(member_of))  # type: ignore[union-attr]


def visible_jobs_clause(actor: Actor, channel_id: Any = None) -> ColumnElement[bool]:
    """A WHERE clause selecting the job runs (or, given `JobSchedule.channel_id`, schedules) `actor` may see.

    Mirrors can_see_job: staff see all; others the rows of channels where their effective
    role (after API key scopes) is maintainer or owner; rows without a channel (server-wide
    jobs) only staff, since `NULL IN (...)` is never true.
    """
    if channel_id is None:
        channel_id = col(JobRun.channel_id)
    if actor.system or (actor.scopes is None and is_server_staff(actor)):
        return true()
    if actor.user_id is None:
        return false()
    managed = select(col(ChannelMember.channel_id)).where(
        col(ChannelMember.user_id) == actor.user_id,
        col(ChannelMember.role).in_([Role.OWNER.value, Role.MAINTAINER.value]),
    )
    if actor.scopes is None:
        return channel_id.in_(managed)
    scoped = sorted(
        {s.channel_id for s in actor.scopes if s.package_name is None and at_least(s.role, Role.MAINTAINER)}
    )
    if at_least(actor.server_role, Role.MAINTAINER):
        return channel_id.in_(scoped)
    return and_(channel_id.in_(scoped), channel_id.in_(managed))

