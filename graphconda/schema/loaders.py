"""Per-request DataLoaders: every relation of the GraphQL types, one SQL query per batch.

Each loader is created on first use in a request (`name(info.context).load(key)`), batches
all keys asked for in the same tick, and reads through the request's shared session. Keys
of paged relations carry the page arguments, so the packages of every channel on a page
come from one ROW_NUMBER() query. Visibility of the caller is applied here wherever a
relation can reach another channel (memberships, key scopes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import BigInteger, case, cast, func, select, tuple_
from sqlmodel import col
from strawberry.dataloader import DataLoader

from graphconda.db import models as m
from graphconda.schema.context import Context
from graphconda.schema.pagination import Keyset, Page, paginate_per_parent
from graphconda.services import job_queries
from graphconda.services.authz import visible_channels_clause

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PACKAGES = Keyset("package", (m.Package.name,), (str,))


def _package_downloads() -> Any:
    """A package's all-time downloads, as an expression over the packages row (for ordering)."""
    # Cast: PostgreSQL sums BIGINT as NUMERIC (a Decimal, which a cursor cannot hold).
    return (select(cast(func.coalesce(func.sum(m.DownloadCount.count), 0), BigInteger))
            .where(col(m.DownloadCount.channel_id) == col(m.Package.channel_id),
                   col(m.DownloadCount.package_name) == col(m.Package.name), col(m.DownloadCount.period) == "total")
            .correlate(m.Package).scalar_subquery())


# Channel.packages(orderBy: DOWNLOADS | UPDATED): most first, ties by name / id (both descending).
PACKAGES_BY_DOWNLOADS = Keyset("package-downloads", (_package_downloads(), m.Package.name), (int, str),
                               descending=True)
PACKAGES_BY_UPDATED = Keyset("package-updated", (m.Package.updated_at, m.Package.id), (datetime, int),
                             descending=True)
PACKAGE_ORDERS = {"name": PACKAGES, "downloads": PACKAGES_BY_DOWNLOADS, "updated": PACKAGES_BY_UPDATED}
VERSIONS = Keyset("file", (m.PackageFile.id,), (int,), descending=True)  # newest upload first
JOBS = Keyset("job", (m.JobRun.id,), (int,), descending=True)  # newest run first


def loader(batch: Callable[[Context, list[K]], Awaitable[Sequence[V]]]) -> Callable[[Context], DataLoader[K, V]]:
    """Make `batch(context, keys)` a per-request DataLoader, fetched by `batch_name(context)`."""
    name = batch.__name__

    def get(context: Context) -> DataLoader[K, V]:
        return context.loader(name, lambda ctx: DataLoader(load_fn=partial(batch, ctx)))

    get.__name__ = name
    return get


async def _rows(ctx: Context, stmt: Any) -> list[Any]:
    async with ctx.read() as session:
        return list(await session.execute(stmt))


def _grouped(keys: Sequence[Any], rows: Sequence[Any], key_of: Callable[[Any], Any], value_of: Callable[[Any], Any]):
    out: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        out[key_of(row)].append(value_of(row))
    return [out.get(k, []) for k in keys]


# --- entities by id ---------------------------------------------------------


@loader
async def channel_by_id(ctx: Context, ids: list[int]) -> list[m.Channel | None]:
    rows = await _rows(ctx, select(m.Channel).where(m.Channel.id.in_(ids)))  # type: ignore[union-attr]
    found = {row[0].id: row[0] for row in rows}
    return [found.get(i) for i in ids]


@loader
async def package_by_id(ctx: Context, ids: list[int]) -> list[m.Package | None]:
    rows = await _rows(ctx, select(m.Package).where(m.Package.id.in_(ids)))  # type: ignore[union-attr]
    found = {row[0].id: row[0] for row in rows}
    return [found.get(i) for i in ids]


@loader
async def package_by_name(ctx: Context, keys: list[tuple[int, str]]) -> list[m.Package | None]:
    """Keys: (channel id, package name)."""
    stmt = select(m.Package).where(tuple_(m.Package.channel_id, m.Package.name).in_(keys))
    found = {(row[0].channel_id, row[0].name): row[0] for row in await _rows(ctx, stmt)}
    return [found.get(k) for k in keys]


@loader
async def user_by_id(ctx: Context, ids: list[int]) -> list[m.User | None]:
    rows = await _rows(ctx, select(m.User).where(m.User.id.in_(ids)))  # type: ignore[union-attr]
    found = {row[0].id: row[0] for row in rows}
    return [found.get(i) for i in ids]


# --- channel relations ------------------------------------------------------


@loader
async def channel_members(ctx: Context, ids: list[int]) -> list[list[tuple[m.User, str]]]:
    stmt = (
        select(col(m.ChannelMember.channel_id), m.User, col(m.ChannelMember.role))
        .join(m.User, col(m.User.id) == col(m.ChannelMember.user_id))
        .where(m.ChannelMember.channel_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(m.User.username)
    )
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0], lambda r: (r[1], r[2]))


@loader
async def viewer_channel_role(ctx: Context, ids: list[int]) -> list[str | None]:
    if ctx.actor.user_id is None:
        return [None for _ in ids]
    stmt = select(col(m.ChannelMember.channel_id), col(m.ChannelMember.role)).where(
        col(m.ChannelMember.channel_id).in_(ids),
        col(m.ChannelMember.user_id) == ctx.actor.user_id,
    )
    found = {cid: role for cid, role in await _rows(ctx, stmt)}
    return [found.get(i) for i in ids]


@loader
async def channel_subdirs(ctx: Context, ids: list[int]) -> list[list[str]]:
    stmt = (
        select(col(m.PackageFile.channel_id), col(m.PackageFile.subdir))
        .where(m.PackageFile.channel_id.in_(ids))  # type: ignore[attr-defined]
        .group_by(col(m.PackageFile.channel_id), col(m.PackageFile.subdir))
        .order_by(m.PackageFile.subdir)
    )
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0], lambda r: r[1])


def _packages_of(channel_ids: Sequence[int], name_contains: str | None) -> Any:
    stmt = select(m.Package).where(m.Package.channel_id.in_(channel_ids))  # type: ignore[attr-defined]
    if name_contains:
        stmt = stmt.where(m.Package.name.contains(name_contains.lower(), autoescape=True))  # type: ignore[attr-defined]
    return stmt


@loader
async def channel_package_count(ctx: Context, keys: list[tuple[int, str | None]]) -> list[int]:
    """Keys: (channel id, name filter)."""
    found: dict[tuple[int, str | None], int] = {}
    for name_contains in {k[1] for k in keys}:
        ids = [k[0] for k in keys if k[1] == name_contains]
        inner = _packages_of(ids, name_contains).subquery()
        stmt = select(inner.c.channel_id, func.count()).group_by(inner.c.channel_id)
        found.update({(cid, name_contains): n for cid, n in await _rows(ctx, stmt)})
    return [found.get(k, 0) for k in keys]


@loader
async def channel_packages(ctx: Context, keys: list[tuple[int, str | None, Page, str]]) -> list[list[Any]]:
    """Keys: (channel id, name filter, page, order: a PACKAGE_ORDERS key); values: rows (package, channel id,
    key values)."""
    found: dict[Any, list[Any]] = defaultdict(list)
    for name_contains, page, order in {k[1:] for k in keys}:
        ids = [k[0] for k in keys if k[1:] == (name_contains, page, order)]
        stmt = paginate_per_parent(_packages_of(ids, name_contains), m.Package, PACKAGE_ORDERS[order], page,
                                   m.Package.channel_id)
        for row in await _rows(ctx, stmt):
            found[(row[1], name_contains, page, order)].append(row)
    return [found.get(k, []) for k in keys]


# --- package relations ------------------------------------------------------


@loader
async def package_members(ctx: Context, ids: list[int]) -> list[list[tuple[m.User, str]]]:
    stmt = (
        select(col(m.PackageMember.package_id), m.User, col(m.PackageMember.role))
        .join(m.User, col(m.User.id) == col(m.PackageMember.user_id))
        .where(m.PackageMember.package_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(m.User.username)
    )
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0], lambda r: (r[1], r[2]))


@loader
async def latest_files(ctx: Context, ids: list[int]) -> list[list[m.PackageFile]]:
    """The files (every subdir and format) of each package's latest version."""
    stmt = (
        select(m.PackageFile)
        .join(m.Package, m.Package.id == m.PackageFile.package_id)  # type: ignore[arg-type]
        .where(col(m.Package.id).in_(ids), col(m.PackageFile.version) == col(m.Package.latest_version))
        .order_by(m.PackageFile.subdir, m.PackageFile.filename)
    )
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0].package_id, lambda r: r[0])


def _files_of(package_ids: Sequence[int], subdir: str | None) -> Any:
    stmt = select(m.PackageFile).where(m.PackageFile.package_id.in_(package_ids))  # type: ignore[attr-defined]
    return stmt.where(col(m.PackageFile.subdir) == subdir) if subdir is not None else stmt


@loader
async def package_file_count(ctx: Context, keys: list[tuple[int, str | None]]) -> list[int]:
    found: dict[tuple[int, str | None], int] = {}
    for subdir in {k[1] for k in keys}:
        ids = [k[0] for k in keys if k[1] == subdir]
        inner = _files_of(ids, subdir).subquery()
        stmt = select(inner.c.package_id, func.count()).group_by(inner.c.package_id)
        found.update({(pid, subdir): n for pid, n in await _rows(ctx, stmt)})
    return [found.get(k, 0) for k in keys]


@loader
async def package_files(ctx: Context, keys: list[tuple[int, str | None, Page]]) -> list[list[Any]]:
    """Keys: (package id, subdir filter, page); values: rows (file, package id, key values)."""
    found: dict[Any, list[Any]] = defaultdict(list)
    for subdir, page in {(k[1], k[2]) for k in keys}:
        ids = [k[0] for k in keys if (k[1], k[2]) == (subdir, page)]
        stmt = paginate_per_parent(_files_of(ids, subdir), m.PackageFile, VERSIONS, page, m.PackageFile.package_id)
        for row in await _rows(ctx, stmt):
            found[(row[1], subdir, page)].append(row)
    return [found.get(k, []) for k in keys]


# --- users and keys ---------------------------------------------------------


@loader
async def user_memberships(ctx: Context, ids: list[int]) -> list[list[tuple[m.Channel, str]]]:
    """Channel roles of each user, on the channels the caller may see."""
    stmt = (
        select(col(m.ChannelMember.user_id), m.Channel, col(m.ChannelMember.role))
        .join(m.Channel, col(m.Channel.id) == col(m.ChannelMember.channel_id))
        .where(m.ChannelMember.user_id.in_(ids), visible_channels_clause(ctx.actor))  # type: ignore[attr-defined]
        .order_by(m.Channel.name)
    )
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0], lambda r: (r[1], r[2]))


@loader
async def user_api_keys(ctx: Context, ids: list[int]) -> list[list[m.ApiKey]]:
    stmt = select(m.ApiKey).where(m.ApiKey.user_id.in_(ids)).order_by(m.ApiKey.id.desc())  # type: ignore[attr-defined, union-attr]
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0].user_id, lambda r: r[0])


@loader
async def api_key_scopes(ctx: Context, ids: list[int]) -> list[list[tuple[str | None, str | None, str]]]:
    """(channel name, package, role) per key; the name is None where the caller may no longer see the channel."""
    name = case((visible_channels_clause(ctx.actor), m.Channel.name), else_=None)
    stmt = (
        select(col(m.ApiKeyScope.api_key_id), name, col(m.ApiKeyScope.package_name), col(m.ApiKeyScope.role))
        .join(m.Channel, col(m.Channel.id) == col(m.ApiKeyScope.channel_id))
        .where(m.ApiKeyScope.api_key_id.in_(ids))  # type: ignore[attr-defined]
        .order_by(col(m.ApiKeyScope.id))
    )
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0], lambda r: (r[1], r[2], r[3]))



# --- jobs (the caller's visibility applied in SQL: see services/job_queries.py) ----------


@loader
async def channel_job_count(ctx: Context, ids: list[int]) -> list[int]:
    inner = job_queries.visible_jobs(ctx.actor, channel_ids=ids).subquery()
    stmt = select(inner.c.channel_id, func.count()).group_by(inner.c.channel_id)
    found = {cid: n for cid, n in await _rows(ctx, stmt)}
    return [found.get(i, 0) for i in ids]


@loader
async def channel_jobs(ctx: Context, keys: list[tuple[int, Page]]) -> list[list[Any]]:
    """Keys: (channel id, page); values: rows (job run, channel id, key values)."""
    found: dict[Any, list[Any]] = defaultdict(list)
    for page in {k[1] for k in keys}:
        ids = [k[0] for k in keys if k[1] == page]
        stmt = paginate_per_parent(
            job_queries.visible_jobs(ctx.actor, channel_ids=ids), m.JobRun, JOBS, page, m.JobRun.channel_id
        )
        for row in await _rows(ctx, stmt):
            found[(row[1], page)].append(row)
    return [found.get(k, []) for k in keys]


@loader
async def channel_schedules(ctx: Context, ids: list[int]) -> list[list[m.JobSchedule]]:
    stmt = job_queries.visible_schedules(ctx.actor, channel_ids=ids)
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0].channel_id, lambda r: r[0])


# --- download figures (all-time totals; the caller reached the object, so may see them) ------


def _totals_where() -> Any:
    return m.DownloadCount.period == "total"


@loader
async def channel_downloads(ctx: Context, ids: list[int]) -> list[int]:
    stmt = (select(col(m.DownloadCount.channel_id), func.sum(col(m.DownloadCount.count)))
            .where(_totals_where(), col(m.DownloadCount.channel_id).in_(ids))
            .group_by(col(m.DownloadCount.channel_id)))
    found = {cid: int(n) for cid, n in await _rows(ctx, stmt)}
    return [found.get(i, 0) for i in ids]


@loader
async def package_downloads(ctx: Context, keys: list[tuple[int, str]]) -> list[int]:
    """Keys: (channel id, package name)."""
    stmt = (select(col(m.DownloadCount.channel_id), col(m.DownloadCount.package_name),
                   func.sum(col(m.DownloadCount.count)))
            .where(_totals_where(),
                   tuple_(col(m.DownloadCount.channel_id), col(m.DownloadCount.package_name)).in_(keys))
            .group_by(col(m.DownloadCount.channel_id), col(m.DownloadCount.package_name)))
    found = {(cid, name): int(n) for cid, name, n in await _rows(ctx, stmt)}
    return [found.get(k, 0) for k in keys]


@loader
async def file_downloads(ctx: Context, keys: list[tuple[int, str, str]]) -> list[int]:
    """Keys: (channel id, subdir, filename)."""
    columns = (col(m.DownloadCount.channel_id), col(m.DownloadCount.subdir), col(m.DownloadCount.filename))
    stmt = (select(*columns, func.sum(col(m.DownloadCount.count)))
            .where(_totals_where(), tuple_(*columns).in_(keys))
            .group_by(*columns))
    found = {(cid, subdir, name): int(n) for cid, subdir, name, n in await _rows(ctx, stmt)}
    return [found.get(k, 0) for k in keys]


@loader
async def channel_registered_mirrors(ctx: Context, ids: list[int]) -> list[list[m.RegisteredMirror]]:
    stmt = (select(m.RegisteredMirror).where(col(m.RegisteredMirror.channel_id).in_(ids))
            .order_by(col(m.RegisteredMirror.id)))
    return _grouped(ids, await _rows(ctx, stmt), lambda r: r[0].channel_id, lambda r: r[0])
