"""Users and their linked login identities: creation, first login, server roles, disabling.

A user has a unique username (compared case-insensitively) and any number of identities
(provider + subject). The first login through a provider creates the user, with a
username taken from the provider and de-duplicated, and applies the server roles that
`settings.auth.admins/maintainers/members` grant to "provider:login" entries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import Identity, User
from graphconda.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    InvalidNameError,
    NotFoundError,
)
from graphconda.services import authz
from graphconda.services.authz import Actor, Role
from graphconda.services.context import Services

USERNAME_MAX = 64
_USERNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")


def validate_username(name: str) -> str:
    """A username: 1-64 ASCII letters, digits, '.', '_' or '-', starting and ending alphanumeric."""
    if not isinstance(name, str) or not _USERNAME.fullmatch(name):
        raise InvalidNameError(
            "a username is 1-64 ASCII letters, digits, '.', '_' or '-', starting and ending with a letter or digit",
            field="username",
        )
    return name


def _username_base(login: str, email: str) -> str:
    """A valid username derived from what the provider calls the user."""
    raw = login or email
    if "@" in raw:
        raw = raw.split("@", 1)[0]
    base = _NOT_ALLOWED.sub("-", raw).strip("._-")[:48].strip("._-")
    return base or "user"


def actor_for(user: User, *, api_key_id: int | None = None, scopes: tuple[authz.KeyScope, ...] | None = None) -> Actor:
    """The actor a user acts as (with an API key's scopes, if any)."""
    role = Role(user.server_role) if user.server_role else None
    return Actor(user_id=user.id, username=user.username, server_role=role, scopes=scopes, api_key_id=api_key_id)


async def _find(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(func.lower(User.username) == username.lower()))


async def get_user(services: Services, username: str) -> User:
    async with services.db.read() as session:
        user = await _find(session, username) if isinstance(username, str) else None
    if user is None:
        raise NotFoundError("user not found")
    return user


async def get_user_by_id(services: Services, user_id: int) -> User:
    async with services.db.read() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError("user not found")
    return user


async def create_user(
    services: Services,
    actor: Actor,
    username: str,
    *,
    server_role: Role | str | None = None,
    display_name: str = "",
    email: str = "",
) -> User:
    """Create a user without a login identity (bootstrap, bots); server owners only."""
    authz.require_create_user(actor)
    username = validate_username(username)
    role = authz.parse_role(server_role, field="serverRole", optional=True)
    if len(display_name) > 256 or len(email) > 320:
        raise InvalidInputError("display name or e-mail too long", field="displayName")
    user = User(
        username=username,
        display_name=display_name,
        email=email,
        server_role=role.value if role else None,
        created_at=services.now(),
    )
    try:
        async with services.db.write() as session:
            if await _find(session, username) is not None:
                raise AlreadyExistsError(f"user {username!r} already exists")
            session.add(user)
    except IntegrityError:
        raise AlreadyExistsError(f"user {username!r} already exists") from None
    return user


def _granted_role(services: Services, provider: str, names: Sequence[str]) -> Role | None:
    """The server role settings grant to any of `names` ("provider:login" entries, case-insensitive)."""
    keys = {f"{provider}:{n}".lower() for n in names if n}
    auth = services.settings.auth
    lists = ((Role.OWNER, auth.admins), (Role.MAINTAINER, auth.maintainers), (Role.MEMBER, auth.members))
    granted = [role for role, entries in lists if any(entry.strip().lower() in keys for entry in entries)]
    return authz.highest(*granted)


async def _free_username(session: AsyncSession, base: str) -> str:
    taken = {
        name.lower()
        for name in await session.scalars(
            select(col(User.username)).where(func.lower(col(User.username)).like(f"{base.lower()}%"))
        )
    }
    if base.lower() not in taken:
        return base
    n = 2
    while f"{base}-{n}".lower() in taken:
        n += 1
    return f"{base}-{n}"


async def login_identity(
    services: Services,
    provider: str,
    subject: str,
    *,
    login: str = "",
    display_name: str = "",
    email: str = "",
    avatar_url: str = "",
    email_verified: bool = False,
) -> User:
    """The user behind a provider identity; the first login creates it (and its server role).

    `login` is the provider's username (GitHub login, OIDC preferred_username or e-mail);
    role lists match it, and the e-mail too when the provider says it is verified.
    """
    if not subject or len(subject) > 256 or len(provider) > 64:
        raise AuthenticationError("the identity provider returned no usable subject")
    login, display_name, email, avatar_url = login[:256], display_name[:256], email[:320], avatar_url[:1024]
    for _attempt in range(3):
        async with services.db.write() as session:
            found = await session.execute(
                select(User, Identity)
                .join(Identity, Identity.user_id == User.id)  # type: ignore[arg-type]
                .where(col(Identity.provider) == provider, col(Identity.subject) == subject)
            )
            row = found.first()
            if row is not None:
                user, identity = row
                if user.disabled:
                    raise AuthenticationError("this account is disabled")
                if login and identity.login != login:
                    identity.login = login
                for attr, value in (("display_name", display_name), ("email", email), ("avatar_url", avatar_url)):
                    if value and getattr(user, attr) != value:
                        setattr(user, attr, value)
                return user
        try:
            # An unverified e-mail could be anyone's: it never matches a role list entry.
            role_names = [login, email if email_verified else ""]
            return await _first_login(
                services, provider, subject, login, display_name, email, avatar_url, role_names=role_names
            )
        except IntegrityError:
            continue  # a concurrent first login of the same identity or username won; look again
    raise ConflictError("could not create the user; try logging in again")


async def _first_login(
    services: Services,
    provider: str,
    subject: str,
    login: str,
    display_name: str,
    email: str,
    avatar_url: str,
    *,
    role_names: Sequence[str],
) -> User:
    role = _granted_role(services, provider, role_names)
    now = services.now()
    async with services.db.write() as session:
        user = User(
            username=await _free_username(session, _username_base(login, email)),
            display_name=display_name,
            email=email,
            avatar_url=avatar_url,
            server_role=role.value if role else None,
            created_at=now,
        )
        session.add(user)
        await session.flush()
        assert user.id is not None
        session.add(Identity(user_id=user.id, provider=provider, subject=subject, login=login, created_at=now))
    return user


async def set_server_role(services: Services, actor: Actor, username: str, role: Role | str | None) -> User:
    """Give a user a server role (None removes it). Server owners only; the last owner stays."""
    new = authz.parse_role(role, field="role", optional=True)
    authz.require_set_server_role(actor, None, new)
    async with services.db.write() as session:
        user = await _find(session, username)
        if user is None:
            raise NotFoundError("user not found")
        authz.require_set_server_role(actor, user, new)
        if user.server_role == Role.OWNER and new != Role.OWNER and await _enabled_owners(session) <= 1:
            raise ConflictError("cannot remove the last server owner; make someone else owner first")
        await session.execute(update(User).where(User.id == user.id).values(server_role=new.value if new else None))  # type: ignore[arg-type]
        if new is None:
            # Setting the role to none is how an operator takes access away: the browser sessions end with it.
            await _end_sessions(session, user, services)
        user.server_role = new.value if new else None
    return user


async def _enabled_owners(session: AsyncSession) -> int:
    found = await session.scalar(
        select(func.count()).select_from(User).where(User.server_role == Role.OWNER.value, ~User.disabled)  # type: ignore[arg-type]
    )
    return int(found or 0)


async def _end_sessions(session: AsyncSession, user: User, services: Services) -> None:
    from graphconda.services.sessions import revoke_user_sessions  # sessions builds on this module

    assert user.id is not None
    await revoke_user_sessions(session, user.id, services.now())


async def set_disabled(services: Services, actor: Actor, username: str, disabled: bool) -> User:
    """Disable a user (no login, session or key works; their sessions end) or enable them again.

    Server owners only; the last enabled server owner cannot be disabled.
    """
    authz.require_disable_user(actor)
    async with services.db.write() as session:
        user = await _find(session, username)
        if user is None:
            raise NotFoundError("user not found")
        if disabled and not user.disabled and user.server_role == Role.OWNER and await _enabled_owners(session) <= 1:
            raise ConflictError("cannot disable the last server owner; make someone else owner first")
        await session.execute(update(User).where(User.id == user.id).values(disabled=disabled))  # type: ignore[arg-type]
        if disabled:
            await _end_sessions(session, user, services)
        user.disabled = disabled
    return user


def all_users(actor: Actor) -> Select[User]:
    """Every user, by username: the statement, for callers reading through a session of their own
    (GraphQL reads each operation through one session). Server staff only."""
    authz.require_read_users(actor)
    return select(User).order_by(col(User.username))


async def list_users(services: Services, actor: Actor) -> Sequence[User]:
    statement = all_users(actor)
    async with services.db.read() as session:
        return list(await session.scalars(statement))
