"""Browser sessions: started at login, checked on every cookie request, ended by sign-out or by the server.

The signed session cookie carries a random token (256 bits); the `user_sessions` table
keeps only its SHA-256, like API keys (`api_keys.py`), so a database dump holds no live
session. A cookie is worth something only while its row says so: signing out revokes the
row, "sign out everywhere" revokes all of a user's rows, and so do losing the server role
or being disabled (`users.py`). A session lasts `auth.session_max_age_seconds` from login,
as long as the signed cookie itself (Starlette re-signs it only when it changes), so a
request costs one indexed read and never a write. Expired and revoked rows are deleted by
the cleanup job (`delete_expired_sessions`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import User, UserSession
from graphconda.errors import AuthenticationError
from graphconda.services import authz
from graphconda.services.authz import Actor
from graphconda.services.context import Services
from graphconda.services.users import actor_for

_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _lifetime(services: Services) -> timedelta:
    return timedelta(seconds=services.settings.auth.session_max_age_seconds)


async def start_session(services: Services, user: User) -> str:
    """A new session for `user` (just logged in); returns the token for the cookie, shown nowhere else."""
    if user.id is None or user.disabled:
        raise AuthenticationError("this account is disabled")
    token = secrets.token_urlsafe(32)
    now = services.now()
    async with services.db.write() as session:
        session.add(UserSession(user_id=user.id, token_hash=hash_token(token), created_at=now,
                                expires_at=now + _lifetime(services)))
    return token


async def session_actor(services: Services, token: object) -> Actor:
    """Who a session cookie's token stands for; AuthenticationError unless the session is live.

    One indexed query answers it: the session's row joined with its user.
    """
    if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
        raise AuthenticationError("your session is invalid; log in again")
    now = services.now()
    async with services.db.read() as session:
        row = (
            await session.execute(
                select(col(UserSession.expires_at), col(UserSession.revoked_at), User)
                .join(User, User.id == UserSession.user_id)  # type: ignore[arg-type]
                .where(col(UserSession.token_hash) == hash_token(token))
            )
        ).first()
    if row is None:
        raise AuthenticationError("your session is no longer valid; log in again")
    expires_at, revoked_at, user = row
    if revoked_at is not None:
        raise AuthenticationError("you were signed out; log in again")
    if expires_at <= now:
        raise AuthenticationError("your session has expired; log in again")
    if user.disabled:
        raise AuthenticationError("this account is disabled")
    return actor_for(user)


async def end_session(services: Services, token: object) -> bool:
    """Sign out: revoke the session of this cookie token (False when it was not live)."""
    if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
        return False
    async with services.db.write() as session:
        result = await session.execute(
            update(UserSession)
            .where(col(UserSession.token_hash) == hash_token(token), col(UserSession.revoked_at).is_(None))
            .values(revoked_at=services.now())
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_user_sessions(session: AsyncSession, user_id: int, now: datetime) -> int:
    """Revoke every live session of `user_id` inside the caller's transaction; how many were live."""
    result = await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None), UserSession.expires_at > now)  # type: ignore[union-attr,arg-type]
        .values(revoked_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def end_all_sessions(services: Services, actor: Actor, user_id: int | None = None) -> int:
    """Sign out everywhere: end every browser session of `user_id` (default: the actor's own).

    API keys are not sessions: they stay valid until revoked.
    """
    target = user_id if user_id is not None else actor.user_id
    authz.require_end_sessions(actor, target)
    assert target is not None
    async with services.db.write() as session:
        return await revoke_user_sessions(session, target, services.now())


async def delete_expired_sessions(services: Services, *, dry_run: bool = False) -> int:
    """Delete the rows of sessions that expired or were revoked (the cleanup job); how many
    (with `dry_run`, how many would be)."""
    ended = or_(col(UserSession.expires_at) <= services.now(), col(UserSession.revoked_at).is_not(None))
    if dry_run:
        async with services.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(UserSession).where(ended)) or 0)
    async with services.db.write() as session:
        result = await session.execute(delete(UserSession).where(ended))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
