"""Read-only listings with paging and counts: channels, packages, versions, members, users, jobs.

The lists a REST client pages through with `skip`/`limit` (the Quetz-compatible API) and a
total count. Every statement starts from the visibility rules of authz (channels a caller
may not see never appear, nor their packages, members or jobs); absent and invisible look
the same (NotFoundError without a name).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import (
    Channel,
    ChannelMember,
    JobRun,
    Package,
    PackageFile,
    PackageMember,
    User,
)
from graphconda.errors import InvalidInputError, NotFoundError
from graphconda.services import authz, metrics
from graphconda.services.access import gate
from graphconda.services.authz import Actor
from graphconda.services.channels import visible_channels
from graphconda.services.context import Services
from graphconda.services.job_queries import visible_jobs

T = TypeVar("T")
MAX_QUERY = 256


@dataclass(frozen=True)
class Page(Generic[T]):
    """`items` from `skip` on (at most `limit`; -1: all) and how many match in all."""

    skip: int
    limit: int
    total: int
    items: list[T]


@dataclass(frozen=True)
class ChannelSummary:
    channel: Channel
    members: int
    packages: int


@dataclass(frozen=True)
class PackageSummary:
    package: Package
    channel_name: str
    platforms: list[str]


@dataclass(frozen=True)
class FileSummary:
    file: PackageFile
    channel_name: str
    uploader: User | None
    downloads: int


def check_paging(skip: int, limit: int) -> None:
    if skip < 0:
        raise InvalidInputError("skip must be 0 or more", field="skip")
    if limit < -1:
        raise InvalidInputError("limit must be -1 (all) or more", field="limit")


def _query(q: str | None) -> str | None:
    if q is None or q == "":
        return None
    if len(q) > MAX_QUERY or "\x00" in q:
        raise InvalidInputError(f"q is at most {MAX_QUERY} characters", field="q")
    return q.lower()


async def _page(session: AsyncSession, stmt: Select[Any], order: Sequence[Any], skip: int,
                limit: int) -> tuple[int, list[Any]]:
    total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    paged = stmt.order_by(*order).offset(skip)
    if limit >= 0:
        paged = paged.limit(limit)
    return total, list((await session.execute(paged)).all())


# --- channels ---------------------------------------------------------------------------


async def _channel_summaries(session: AsyncSession, channels: list[Channel]) -> list[ChannelSummary]:
    ids = [c.id for c in channels]
    members = dict((await session.execute(
        select(col(ChannelMember.channel_id), func.count()).where(col(ChannelMember.channel_id).in_(ids))
        .group_by(col(ChannelMember.channel_id)))).all())
    packages = dict((await session.execute(
        select(col(Package.channel_id), func.count()).where(col(Package.channel_id).in_(ids))
        .group_by(col(Package.channel_id)))).all())
    return [ChannelSummary(c, int(members.get(c.id or 0, 0)), int(packages.get(c.id or 0, 0))) for c in channels]


async def page_channels(services: Services, actor: Actor, *, q: str | None = None, public: bool = True,
                        skip: int = 0, limit: int = -1) -> Page[ChannelSummary]:
    """Visible channels by name; `public=False` keeps only those the actor holds a role on."""
    check_paging(skip, limit)
    stmt = visible_channels(actor, name_contains=_query(q))
    if not public:
        stmt = stmt.where(col(Channel.id).in_(
            select(col(ChannelMember.channel_id)).where(col(ChannelMember.user_id) == (actor.user_id or -1))))
    async with services.db.read() as session:
        total, rows = await _page(session, stmt, [col(Channel.name)], skip, limit)
        return Page(skip, limit, total, await _channel_summaries(session, [r[0] for r in rows]))


async def channel_summary(services: Services, actor: Actor, name: str) -> ChannelSummary:
    async with services.db.read() as session:
        channel, _ = await gate(session, actor, name)
        return (await _channel_summaries(session, [channel]))[0]


async def search_channels(services: Services, actor: Actor, q: str) -> list[Channel]:
    """Visible channels whose name or description contains `q` (case-insensitive)."""
    text = _query(q)
    if text is None:
        raise InvalidInputError("q must not be empty", field="q")
    stmt = visible_channels(actor).where(or_(func.lower(col(Channel.name)).contains(text, autoescape=True),
                                             func.lower(col(Channel.description)).contains(text, autoescape=True)))
    async with services.db.read() as session:
        return list(await session.scalars(stmt.order_by(col(Channel.name)).limit(1000)))


# --- packages ---------------------------------------------------------------------------


async def _package_of(session: AsyncSession, channel: Channel, name: str) -> Package | None:
    return await session.scalar(select(Package).where(col(Package.channel_id) == channel.id,
                                                      col(Package.name) == name))

PACKAGE_ORDER = {"name": col(Package.name), "current_version": col(Package.latest_version),
                 "latest_change": col(Package.updated_at)}


def _package_order(order_by: str | None) -> list[Any]:
    """Quetz's `order_by`: `field[:asc|:desc]`, comma-separated; fields name, current_version, latest_change."""
    order: list[Any] = []
    for part in (order_by or "").split(","):
        if not part.strip():
            continue
        field, _, direction = part.strip().partition(":")
        column = PACKAGE_ORDER.get(field)
        if column is None or direction not in ("", "asc", "desc"):
            raise InvalidInputError(f"order_by takes {', '.join(PACKAGE_ORDER)} with :asc or :desc", field="order_by")
        order.append(column.desc() if direction == "desc" else column.asc())
    return [*order, col(Package.name), col(Package.id)]


async def _platforms(session: AsyncSession, package_ids: list[Any]) -> dict[int, list[str]]:
    rows = await session.execute(select(col(PackageFile.package_id), col(PackageFile.subdir))
                                 .where(col(PackageFile.package_id).in_(package_ids))
                                 .group_by(col(PackageFile.package_id), col(PackageFile.subdir))
                                 .order_by(col(PackageFile.subdir)))
    out: dict[int, list[str]] = {}
    for package_id, subdir in rows:
        out.setdefault(package_id, []).append(subdir)
    return out


async def page_packages(services: Services, actor: Actor, channel: str, *, q: str | None = None, skip: int = 0,
                        limit: int = -1, order_by: str | None = None) -> Page[PackageSummary]:
    check_paging(skip, limit)
    order = _package_order(order_by)
    text = _query(q)
    async with services.db.read() as session:
        found, _ = await gate(session, actor, channel)
        stmt = select(Package).where(col(Package.channel_id) == found.id)
        if text:
            stmt = stmt.where(func.lower(col(Package.name)).contains(text, autoescape=True))
        total, rows = await _page(session, stmt, order, skip, limit)
        packages = [r[0] for r in rows]
        platforms = await _platforms(session, [p.id for p in packages])
    return Page(skip, limit, total, [PackageSummary(p, found.name, platforms.get(p.id or 0, [])) for p in packages])


async def package_summary(services: Services, actor: Actor, channel: str, name: str) -> PackageSummary:
    async with services.db.read() as session:
        found, _ = await gate(session, actor, channel)
        package = await _package_of(session, found, name)
        if package is None:
            raise NotFoundError("package not found")
        platforms = await _platforms(session, [package.id])
    return PackageSummary(package, found.name, platforms.get(package.id or 0, []))


async def search_packages(services: Services, actor: Actor, q: str, limit: int = 1000) -> list[PackageSummary]:
    """services.search ranking, with each package's channel name and platforms."""
    from graphconda.services.search import search_packages as ranked

    query = ranked(actor, q)
    async with services.db.read() as session:
        stmt = query.statement.add_columns(col(Channel.name)).order_by(query.rank, col(Package.name), col(Package.id))
        rows = list((await session.execute(stmt.limit(limit))).all())
        platforms = await _platforms(session, [r[0].id for r in rows])
    return [PackageSummary(p, channel_name, platforms.get(p.id or 0, [])) for p, channel_name in rows]


async def package_files(services: Services, actor: Actor, channel: str, package: str, *,
                        platform: str | None = None, filename: str | None = None,
                        created_since: datetime | None = None) -> list[FileSummary]:
    """The files of one package (newest first), with uploader and downloads (counted totals, mirrors' included)."""
    async with services.db.read() as session:
        found, _ = await gate(session, actor, channel)
        pkg = await _package_of(session, found, package)
        if pkg is None:
            raise NotFoundError("package not found")
        stmt = (select(PackageFile, User).outerjoin(User, col(User.id) == col(PackageFile.uploader_id))
                .where(col(PackageFile.package_id) == pkg.id))
        if platform is not None:
            stmt = stmt.where(col(PackageFile.subdir) == platform)
        if filename is not None:
            stmt = stmt.where(col(PackageFile.filename) == filename)
        if created_since is not None:
            stmt = stmt.where(col(PackageFile.uploaded_at) >= created_since)
        rows = (await session.execute(stmt.order_by(col(PackageFile.uploaded_at).desc(), col(PackageFile.id)))).all()
        assert found.id is not None
        counts = await metrics.totals(session, found.id, files=[(f.subdir, f.filename) for f, _ in rows]) \
            if rows else {}
    return [FileSummary(f, found.name, u, counts.get((f.subdir, f.filename), 0)) for f, u in rows]


# --- members ------------------------------------------------------------------------------


async def channel_members(services: Services, actor: Actor, channel: str) -> list[tuple[User, str]]:
    """Who holds a role on a visible channel (as GraphQL's Channel.members shows it)."""
    async with services.db.read() as session:
        found, _ = await gate(session, actor, channel)
        rows = await session.execute(select(User, col(ChannelMember.role))
                                     .join(ChannelMember, col(ChannelMember.user_id) == col(User.id))
                                     .where(col(ChannelMember.channel_id) == found.id).order_by(col(User.username)))
        return [(u, r) for u, r in rows]


async def package_members(services: Services, actor: Actor, channel: str, package: str) -> list[tuple[User, str]]:
    async with services.db.read() as session:
        found, _ = await gate(session, actor, channel)
        pkg = await _package_of(session, found, package)
        if pkg is None:
            raise NotFoundError("package not found")
        rows = await session.execute(select(User, col(PackageMember.role))
                                     .join(PackageMember, col(PackageMember.user_id) == col(User.id))
                                     .where(col(PackageMember.package_id) == pkg.id).order_by(col(User.username)))
        return [(u, r) for u, r in rows]


# --- users ----------------------------------------------------------------------------------


async def page_users(services: Services, actor: Actor, *, q: str | None = None, skip: int = 0,
                     limit: int = -1) -> Page[User]:
    """Users by name: server staff see all; anyone else logged in sees only themself (as Quetz does)."""
    authz.require_login(actor, "list users")
    check_paging(skip, limit)
    text = _query(q)
    stmt = select(User).where(col(User.disabled).is_(False))
    if not authz.can_read_users(actor):
        stmt = stmt.where(col(User.id) == (actor.user_id or -1))
    if text:
        stmt = stmt.where(func.lower(col(User.username)).contains(text, autoescape=True))
    async with services.db.read() as session:
        total, rows = await _page(session, stmt, [col(User.username)], skip, limit)
    return Page(skip, limit, total, [r[0] for r in rows])


async def user_profile(services: Services, actor: Actor, username: str) -> User:
    """A user's public profile: the user themself and server staff (others are refused before any lookup)."""
    authz.require_login(actor, "read user profiles")
    if not authz.can_read_users(actor) and (actor.username or "").lower() != str(username).lower():
        authz.require_read_users(actor)
    async with services.db.read() as session:
        user = await session.scalar(select(User).where(func.lower(col(User.username)) == str(username).lower()))
    if user is None or user.disabled:
        raise NotFoundError("user not found")
    return user


# --- jobs ------------------------------------------------------------------------------------


async def page_jobs(services: Services, actor: Actor, *, statuses: Sequence[str], skip: int = 0,
                    limit: int = -1) -> Page[tuple[JobRun, str | None]]:
    """Job runs the actor may see with one of `statuses`, newest first, with their channel's name."""
    from graphconda.services.jobs import JobStatus

    authz.require_login(actor, "list jobs")
    check_paging(skip, limit)
    known = {s.value for s in JobStatus}
    for status in statuses:
        if status not in known:
            raise InvalidInputError(f"status must be one of {', '.join(sorted(known))}", field="status")
    stmt = visible_jobs(actor).where(col(JobRun.status).in_(list(statuses)))
    async with services.db.read() as session:
        total, rows = await _page(session, stmt, [col(JobRun.id).desc()], skip, limit)
        names = dict((await session.execute(select(col(Channel.id), col(Channel.name)).where(
            col(Channel.id).in_({r[0].channel_id for r in rows if r[0].channel_id is not None})))).all())
    return Page(skip, limit, total, [(r[0], names.get(r[0].channel_id)) for r in rows])
