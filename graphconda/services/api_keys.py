"""API keys: creation (secret shown once, stored as a hash), scopes, revocation, authentication.

A key is `gc-` + 43 letters and digits (256 random bits): only characters conda accepts
in a token URL (`/t/<key>/get/...`, which conda reads with `/t/([a-zA-Z0-9-]*)`). Keys
issued before that change are `gc_` + 43 URL-safe characters (`_` included); they are
still accepted, and looked up by their hash like any other. Because the secret is
high-entropy, a plain SHA-256 is a sound, fast hash: there is nothing to brute-force,
and authenticating a request costs one indexed lookup. Scopes restrict a key to a role
on a channel (optionally one package); they can never grant more than the key's user holds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.conda.names import validate_package_name
from graphconda.db.models import ApiKey, ApiKeyScope, Channel, User
from graphconda.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from graphconda.services import authz
from graphconda.services.access import channel_access
from graphconda.services.authz import Actor, KeyScope, Role
from graphconda.services.context import Services
from graphconda.services.users import actor_for, get_user

PREFIX = "gc-"
SECRET_CHARACTERS = 43  # from 62 letters and digits: 256 bits
_ALPHABET = string.ascii_letters + string.digits
MAX_KEY_LENGTH = 128  # anything longer is not one of ours; refuse before hashing
MAX_SCOPES = 50
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key
# New keys, then the `gc_` keys issued before conda token URLs were taken into account.
_KEY_SHAPE = re.compile(r"gc-[A-Za-z0-9-]{20,120}|gc_[A-Za-z0-9_-]{20,120}")


@dataclass(frozen=True)
class ScopeSpec:
    """A requested scope, by name: `role` on `channel` (only `package`, when set)."""

    channel: str
    role: Role | str
    package: str | None = None


@dataclass(frozen=True)
class ApiKeyInfo:
    """A key as listed (never with its secret), with its scopes by channel name."""

    key: ApiKey
    scopes: tuple[ScopeSpec, ...]


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_secret() -> str:
    """A fresh key: letters and digits only after the prefix, so conda's token URL pattern reads all of it."""
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_CHARACTERS))


def looks_like_key(secret: str) -> bool:
    return len(secret) <= MAX_KEY_LENGTH and secret.isascii() and _KEY_SHAPE.fullmatch(secret) is not None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def _resolve_scopes(
    session: AsyncSession, owner: Actor, scopes: Sequence[ScopeSpec]
) -> list[tuple[int, str | None, Role]]:
    """Check each scope against what the key's user holds; (channel_id, package, role) rows."""
    if len(scopes) > MAX_SCOPES:
        raise InvalidInputError(f"at most {MAX_SCOPES} scopes per key", field="scopes")
    rows: list[tuple[int, str | None, Role]] = []
    for n, spec in enumerate(scopes, start=1):
        role = authz.parse_role(spec.role, field="scopes")
        assert role is not None
        package = validate_package_name(spec.package) if spec.package else None
        channel = await session.scalar(select(Channel).where(col(Channel.name) == spec.channel)) if isinstance(
            spec.channel, str
        ) else None
        access = await channel_access(session, owner, channel, package) if channel is not None else None
        # Private channels the user cannot see get the same answer as missing ones (no name either).
        if channel is None or access is None or not authz.can_read_channel(owner, access):
            raise InvalidInputError(f"scope {n}: channel not found", field="scopes")
        held = authz.package_role(owner, access, package) if package else authz.channel_role(owner, access)
        if not authz.at_least(held, role):
            raise PermissionDeniedError(f"scope {n}: a key cannot grant more than its user holds ({held or 'no role'})")
        assert channel.id is not None
        rows.append((channel.id, package, role))
    return rows


async def create_api_key(
    services: Services,
    actor: Actor,
    *,
    user_id: int | None = None,
    username: str | None = None,
    description: str = "",
    expires_at: datetime | None = None,
    scopes: Sequence[ScopeSpec] = (),
) -> tuple[ApiKey, str]:
    """Create a key for `user_id` or `username` (default: the actor's user); returns it and its secret, shown once."""
    if username is not None and username != actor.username:
        # Refuse before the lookup, so that callers cannot probe which usernames exist.
        authz.require_manage_api_keys(actor, None)
    if username is not None:
        user_id = (await get_user(services, username)).id
    target = user_id if user_id is not None else actor.user_id
    authz.require_manage_api_keys(actor, target)
    if target is None:
        raise InvalidInputError("name the user the key is for", field="user")
    if not isinstance(description, str) or len(description) > 512:
        raise InvalidInputError("a key description is at most 512 characters", field="description")
    now = services.now()
    if expires_at is not None:
        try:
            expires_at = _aware(expires_at).astimezone(UTC)
        except (OverflowError, ValueError):  # 9999-12-31T23:00-05:00 is past the last representable UTC time
            raise InvalidInputError("the expiry is out of range", field="expiresAt") from None
        if expires_at <= now:
            raise InvalidInputError("the expiry must be in the future", field="expiresAt")
    secret = new_secret()
    async with services.db.write() as session:
        user = await session.get(User, target)
        if user is None or user.disabled:
            raise NotFoundError("user not found")
        rows = await _resolve_scopes(session, actor_for(user), scopes)
        key = ApiKey(
            user_id=target,
            key_hash=hash_secret(secret),
            description=description,
            scoped=bool(rows),
            created_at=now,
            expires_at=expires_at,
        )
        session.add(key)
        await session.flush()
        assert key.id is not None
        for channel_id, package, role in rows:
            session.add(ApiKeyScope(api_key_id=key.id, channel_id=channel_id, package_name=package, role=role.value))
    return key, secret


async def _scopes_by_key(session: AsyncSession, key_ids: Sequence[int]) -> dict[int, list[ScopeSpec]]:
    out: dict[int, list[ScopeSpec]] = {k: [] for k in key_ids}
    if not key_ids:
        return out
    rows = await session.execute(
        select(col(ApiKeyScope.api_key_id), col(Channel.name), col(ApiKeyScope.package_name), col(ApiKeyScope.role))
        .join(Channel, Channel.id == ApiKeyScope.channel_id)  # type: ignore[arg-type]
        .where(ApiKeyScope.api_key_id.in_(key_ids))  # type: ignore[attr-defined]
        .order_by(col(ApiKeyScope.id))
    )
    for key_id, channel, package, role in rows:
        out[key_id].append(ScopeSpec(channel=channel, role=Role(role), package=package))
    return out


async def list_api_keys(services: Services, actor: Actor, user_id: int | None = None) -> list[ApiKeyInfo]:
    """The keys of `user_id` (default: the actor's own), newest first, revoked ones included."""
    target = user_id if user_id is not None else actor.user_id
    authz.require_manage_api_keys(actor, target)
    async with services.db.read() as session:
        keys = list(
            await session.scalars(select(ApiKey).where(col(ApiKey.user_id) == target).order_by(col(ApiKey.id).desc()))
        )
        scopes = await _scopes_by_key(session, [k.id for k in keys if k.id is not None])
    return [ApiKeyInfo(key=k, scopes=tuple(scopes.get(k.id or 0, ()))) for k in keys]


async def revoke_api_key(services: Services, actor: Actor, key_id: int) -> ApiKey:
    """Revoke a key (idempotent). Keys the actor may not manage are reported as not found."""
    authz.require_manage_api_keys(actor, actor.user_id)
    async with services.db.write() as session:
        # Ids outside 64 bits (typed on the command line) would overflow the database driver.
        key = await session.get(ApiKey, key_id) if type(key_id) is int and 0 < key_id < 2**63 else None
        if key is None:
            raise NotFoundError("API key not found")
        try:
            authz.require_manage_api_keys(actor, key.user_id)
        except PermissionDeniedError:
            raise NotFoundError("API key not found") from None
        if key.revoked_at is None:
            key.revoked_at = services.now()
    return key


async def authenticate_key(services: Services, secret: str) -> Actor:
    """The actor an API key stands for; AuthenticationError for anything but a live key."""
    if not isinstance(secret, str) or not looks_like_key(secret):
        raise AuthenticationError("invalid API key")
    digest = hash_secret(secret)
    now = services.now()
    async with services.db.read() as session:
        row = (
            await session.execute(
                select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == digest)  # type: ignore[arg-type]
            )
        ).first()
        if row is None:
            raise AuthenticationError("invalid API key")
        key, user = row
        if key.revoked_at is not None:
            raise AuthenticationError("this API key was revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationError("this API key has expired")
        if user.disabled:
            raise AuthenticationError("this account is disabled")
        scope_rows = (
            list(await session.scalars(select(ApiKeyScope).where(col(ApiKeyScope.api_key_id) == key.id)))
            if key.scoped
            else []
        )
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        async with services.db.write() as session:
            await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))  # type: ignore[arg-type]
    scopes = tuple(KeyScope(s.channel_id, Role(s.role), s.package_name) for s in scope_rows) if key.scoped else None
    return actor_for(user, api_key_id=key.id, scopes=scopes)


async def ensure_dev_admin(services: Services, username: str = "dev") -> tuple[User, str]:
    """Dev mode start-up: the `username` server owner (created if missing) and a fresh API key for it."""
    from graphconda.services.users import create_user, set_server_role

    try:
        user = await get_user(services, username)
    except NotFoundError:
        user = await create_user(services, authz.SYSTEM, username, server_role=Role.OWNER)
    if user.server_role != Role.OWNER:
        user = await set_server_role(services, authz.SYSTEM, username, Role.OWNER)
    _, secret = await create_api_key(services, authz.SYSTEM, user_id=user.id, description="dev mode start-up key")
    return user, secret


async def grant_scope_roles(services: Services, actor: Actor, user_id: int, scopes: Sequence[ScopeSpec]) -> None:
    """Give the user the roles its key's scopes ask for, where it holds less (the admin CLI's bootstrap).

    A package scope becomes a package role when the package exists, else a channel role up
    to maintainer (so the key can upload the package's first version). Changes go through the members service,
    so `actor` needs the rights to make them; channels the actor cannot see are left to
    `create_api_key` to report.
    """
    from graphconda.db.models import Package
    from graphconda.services import members

    async with services.db.read() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFoundError("user not found")
    owner = actor_for(user)
    for spec in scopes:
        role = authz.parse_role(spec.role, field="scopes")
        assert role is not None
        async with services.db.read() as session:
            channel = await session.scalar(select(Channel).where(col(Channel.name) == spec.channel))
            if channel is None:
                continue
            access = await channel_access(session, owner, channel, spec.package)
            package_exists = spec.package is not None and (
                await session.scalar(
                    select(col(Package.id))
                    .where(col(Package.channel_id) == channel.id, col(Package.name) == spec.package)
                )
                is not None
            )
        held = authz.package_role(owner, access, spec.package) if spec.package else authz.channel_role(owner, access)
        if authz.at_least(held, role):
            continue
        if spec.package and package_exists:
            await members.set_package_member(services, actor, spec.channel, spec.package, user.username, role)
        elif spec.package and role == Role.OWNER:
            # Only a channel role could stand in for it, and channel ownership is far more.
            raise InvalidInputError(
                f"package {spec.package!r} does not exist yet: ask for the maintainer role (enough to upload it)",
                field="scopes",
            )
        elif not authz.at_least(access.member_role, role):
            await members.set_channel_member(services, actor, spec.channel, user.username, role)


async def find_key_id(services: Services, secret: str) -> int | None:
    """The id of the key whose secret this is (looked up by its hash), None when there is none."""
    if not isinstance(secret, str) or not looks_like_key(secret):
        return None
    async with services.db.read() as session:
        return await session.scalar(select(col(ApiKey.id)).where(col(ApiKey.key_hash) == hash_secret(secret)))
