"""The Query root: thin resolvers over the services (parse, call, map)."""

from __future__ import annotations

import hashlib
from typing import Any

import strawberry
from sqlalchemy import Select, func, select

from graphconda.db import models
from graphconda.errors import NotFoundError
from graphconda.schema import loaders
from graphconda.schema.context import Context, Info
from graphconda.schema.pagination import After, Connection, First, Keyset, connection, page_args, paginate
from graphconda.schema.types.channel import Channel
from graphconda.schema.types.inputs import ChannelFilter, JobFilter
from graphconda.schema.types.job import Job, Schedule
from graphconda.schema.types.package import Package
from graphconda.schema.types.server import ServerInfo
from graphconda.schema.types.user import User
from graphconda.services import access, channels, job_queries, search, users

CHANNELS = Keyset("channel", (models.Channel.name,), (str,))


def _max_page(info: Info) -> int:
    return info.context.services.settings.limits.graphql_max_page_size


async def _page(ctx: Context, stmt: Select[Any]) -> list[Any]:
    async with ctx.read() as session:
        return list(await session.execute(stmt))


def _counter(ctx: Context, stmt: Select[Any]):
    async def count() -> int:
        async with ctx.read() as session:
            return int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)

    return count


async def _visible_channel(ctx: Context, name: str) -> Channel | None:
    async with ctx.read() as session:
        try:
            found, _ = await access.gate(session, ctx.actor, name)
        except NotFoundError:
            return None
    return Channel.from_model(found)


@strawberry.type
class Query:
    @strawberry.field(description="Version and backends of this server.")
    def server_info(self, info: Info) -> ServerInfo:
        return ServerInfo.from_services(info.context.services)

    @strawberry.field(description="The caller, with roles and API keys; null when not logged in.")
    async def viewer(self, info: Info) -> User | None:
        user_id = info.context.actor.user_id
        user = await loaders.user_by_id(info.context).load(user_id) if user_id is not None else None
        return User.from_model(user) if user is not None else None

    @strawberry.field(description="The channels you may see, by name.")
    async def channels(
        self, info: Info, first: First = None, after: After = None, filter: ChannelFilter | None = None
    ) -> Connection[Channel]:
        page = page_args(CHANNELS, first, after, _max_page(info))
        f = filter or ChannelFilter()
        stmt = channels.visible_channels(
            info.context.actor,
            name_contains=f.name_contains,
            private=f.private,
            mirror_mode=str(f.mirror_mode.value) if f.mirror_mode else None,
        )
        rows = await _page(info.context, paginate(stmt, CHANNELS, page))
        return connection(rows, CHANNELS, page, Channel.from_model, _counter(info.context, stmt))

    @strawberry.field(description="A channel by name; null when it does not exist or you may not see it.")
    async def channel(self, info: Info, name: str) -> Channel | None:
        return await _visible_channel(info.context, name)

    @strawberry.field(description="A package by channel and name; null when absent or not visible to you.")
    async def package(self, info: Info, channel: str, name: str) -> Package | None:
        found = await _visible_channel(info.context, channel)
        package = await loaders.package_by_name(info.context).load((found.id, name)) if found is not None else None
        return Package.from_model(package) if package is not None else None

    @strawberry.field(
        description="Packages whose name, summary or description contain `query`, in the channels you may see. "
        "Exact name matches first, then name prefixes, name substrings, and summary/description matches."
    )
    async def search(
        self, info: Info, query: str, first: First = None, after: After = None
    ) -> Connection[Package]:
        found = search.search_packages(info.context.actor, query)
        digest = hashlib.sha256(search.normalize(query).encode()).hexdigest()[:12]
        keyset = Keyset(f"search:{digest}", (found.rank, models.Package.name, models.Package.id), (int, str, int))
        page = page_args(keyset, first, after, _max_page(info))
        rows = await _page(info.context, paginate(found.statement, keyset, page))
        return connection(rows, keyset, page, Package.from_model, _counter(info.context, found.statement))

    @strawberry.field(description="Every user, by username (server owners and maintainers only).")
    async def users(self, info: Info) -> list[User]:
        # Through the operation's session like every other read: a connection of its own would
        # answer in a varying order, and with it how many batches the loaders below need.
        return [User.from_model(row[0]) for row in await _page(info.context, users.all_users(info.context.actor))]

    @strawberry.field(
        description="Job runs you may see (your channels' as their owner or maintainer; all for server staff), "
        "newest first."
    )
    async def jobs(
        self, info: Info, filter: JobFilter | None = None, first: First = None, after: After = None
    ) -> Connection[Job]:
        page = page_args(loaders.JOBS, first, after, _max_page(info))
        f = filter or JobFilter()
        stmt = job_queries.visible_jobs(
            info.context.actor, channel=f.channel, kind=f.kind, status=str(f.status.value) if f.status else None
        )
        rows = await _page(info.context, paginate(stmt, loaders.JOBS, page))
        return connection(rows, loaders.JOBS, page, Job.from_model, _counter(info.context, stmt))

    @strawberry.field(description="A job run by id; null when it does not exist or you may not see it.")
    async def job(self, info: Info, id: strawberry.ID) -> Job | None:
        job_id = job_queries.parse_job_id(id)
        if job_id is None:
            return None
        found = await _page(info.context, job_queries.visible_job(info.context.actor, job_id))
        return Job.from_model(found[0][0]) if found else None

    @strawberry.field(description="The job schedules you may see: server-wide ones first, then by channel.")
    async def schedules(self, info: Info) -> list[Schedule]:
        rows = await _page(info.context, job_queries.visible_schedules(info.context.actor))
        return [Schedule.from_model(row[0]) for row in rows]
