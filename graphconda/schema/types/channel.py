"""Channel: a conda channel as GraphQL sees it, with its packages, members and URLs."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graphconda.db import models
from graphconda.schema import loaders
from graphconda.schema.context import Info
from graphconda.schema.pagination import After, Connection, First, connection, page_args
from graphconda.schema.types.enums import BigInt, MirrorMode, Role
from graphconda.schema.types.member import Member
from graphconda.schema.types.metrics import (
    DOWNLOADS_DESCRIPTION,
    DownloadPeriod,
    DownloadSeries,
    PackageOrder,
    download_series,
)
from graphconda.schema.types.registered_mirror import RegisteredMirror
from graphconda.services import authz, metrics
from graphconda.services.publishing import options_of
from graphconda.services.upstream import shown_url

if TYPE_CHECKING:
    from graphconda.schema.types.job import Job, Schedule
    from graphconda.schema.types.package import Package

PackageRef = Annotated["Package", strawberry.lazy("graphconda.schema.types.package")]
JobRef = Annotated["Job", strawberry.lazy("graphconda.schema.types.job")]
ScheduleRef = Annotated["Schedule", strawberry.lazy("graphconda.schema.types.job")]


@strawberry.type(description="Which optional index files a channel publishes in every subdir.")
class ChannelPublishing:
    bz2: bool = strawberry.field(description="repodata.json.bz2 (deprecated; rattler reads it only without .zst).")
    current_repodata: bool = strawberry.field(description="current_repodata.json (conda's classic solver).")
    shards: bool = strawberry.field(
        description="Sharded repodata (CEP 16, repodata_shards.msgpack.zst); when false, clients use repodata.json.zst."
    )


@strawberry.type(description="How a mirror or proxy channel follows its upstream.")
class MirrorStatus:
    mode: MirrorMode
    upstream_url: str = strawberry.field(
        description="The upstream channel; credentials (user info, `/t/<token>/`) redacted except for server staff."
    )
    ttl: int = strawberry.field(description="Proxy channels: seconds upstream index files are served before "
                                            "they are revalidated (the server default applied).")
    prune: bool = strawberry.field(description="Mirror channels: files gone upstream are removed.")
    channel_id: strawberry.Private[int]
    access: strawberry.Private[Callable[[Info], Awaitable[authz.ChannelAccess]]]
    # One lookup for all the sync fields asked of this object (they resolve concurrently).
    loading: strawberry.Private[list[asyncio.Task[Any]]] = dataclasses.field(default_factory=list)

    async def _state(self, info: Info) -> Any:
        from graphconda.services.mirroring import mirror_state

        if self.mode != MirrorMode.MIRROR:
            return None
        if not self.loading:
            self.loading.append(asyncio.ensure_future(mirror_state(info.context.services, self.channel_id)))
        return await asyncio.shield(self.loading[0])

    @strawberry.field(description="Mirror channels: when the newest finished sync run ended; null before any.")
    async def last_sync_at(self, info: Info) -> datetime | None:
        state = await self._state(info)
        return state.last_sync_at if state else None

    @strawberry.field(description="Mirror channels: when the newest successful sync run ended.")
    async def last_success_at(self, info: Info) -> datetime | None:
        state = await self._state(info)
        return state.last_success_at if state else None

    @strawberry.field(description="Mirror channels: the newest sync run (queued, running or finished); null "
                                  "unless you may see the channel's jobs (as `Channel.jobs`).")
    async def last_job(self, info: Info) -> JobRef | None:
        from graphconda.schema.types.job import Job

        if not authz.can_see_job(info.context.actor, await self.access(info)):
            return None
        state = await self._state(info)
        return Job.from_model(state.last_job) if state and state.last_job is not None else None

    @strawberry.field(description="Mirror channels: package files stored here.")
    async def files_mirrored(self, info: Info) -> int:
        state = await self._state(info)
        return state.files if state else 0

    @strawberry.field(description="Mirror channels: bytes of the package files stored here.")
    async def bytes_mirrored(self, info: Info) -> BigInt:
        state = await self._state(info)
        return BigInt(state.bytes if state else 0)

    @strawberry.field(description="Mirror channels: the error of the newest finished sync, if it failed "
                                  "(which files failed and why); empty otherwise, and for whoever may not see "
                                  "the channel's jobs.")
    async def last_error(self, info: Info) -> str:
        if not authz.can_see_job(info.context.actor, await self.access(info)):
            return ""
        state = await self._state(info)
        return str(state.last_error) if state else ""


@strawberry.type(description="A conda channel: `url` is what users give conda (`-c <url>`).")
class Channel:
    id: strawberry.Private[int]
    options: strawberry.Private[dict[str, object]]
    name: str
    description: str
    private: bool = strawberry.field(description="Private channels are visible to their members and server staff only.")
    mirror_mode: MirrorMode | None = strawberry.field(description="Null for channels that only hold uploads.")
    upstream: strawberry.Private[str | None]
    mirror_ttl: strawberry.Private[int | None]
    mirror_prune: strawberry.Private[bool]
    includelist: list[str] = strawberry.field(description="Mirrors: only these package names or match specs.")
    excludelist: list[str] = strawberry.field(description="Mirrors: never these package names or match specs.")
    proxylist: list[str] = strawberry.field(description="Mirrors: indexed here, downloaded from upstream.")
    size: BigInt = strawberry.field(description="Bytes of all package files in the channel.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, channel: models.Channel) -> Channel:
        assert channel.id is not None
        return cls(
            id=channel.id,
            options=dict(channel.options or {}),
            name=channel.name,
            description=channel.description,
            private=channel.private,
            mirror_mode=MirrorMode.of(channel.mirror_mode),
            upstream=channel.mirror_channel_url,
            mirror_ttl=channel.mirror_ttl,
            mirror_prune=channel.mirror_prune,
            includelist=list(channel.includelist or []),
            excludelist=list(channel.excludelist or []),
            proxylist=list(channel.proxylist or []),
            size=BigInt(channel.size),
            created_at=channel.created_at,
            updated_at=channel.updated_at,
        )

    @strawberry.field(description="The upstream channel of a mirror or proxy (credentials redacted except for "
                                  "server staff); null for other channels.")
    def mirror_channel_url(self, info: Info) -> str | None:
        if self.upstream is None:
            return None
        return shown_url(info.context.actor, self.upstream)

    @strawberry.field(description="Mirror and proxy channels: how they follow upstream; null for other channels.")
    def mirror(self, info: Info) -> MirrorStatus | None:
        if self.mirror_mode is None:
            return None
        ttl = self.mirror_ttl if self.mirror_ttl is not None else info.context.services.settings.mirror.ttl_seconds
        return MirrorStatus(mode=self.mirror_mode, upstream_url=self.mirror_channel_url(info) or "", ttl=ttl,
                            prune=self.mirror_prune, channel_id=self.id, access=self.access)

    @strawberry.field(description="The optional index files this channel publishes (server default applied).")
    def publishing(self, info: Info) -> ChannelPublishing:
        opts = options_of(info.context.services.settings, self.options)
        return ChannelPublishing(bz2=opts.bz2, current_repodata=opts.current_repodata, shards=opts.shards)

    @strawberry.field(description="The channel URL for conda, mamba and pixi.")
    def url(self, info: Info) -> str:
        return f"{info.context.base_url}/get/{self.name}"

    @strawberry.field(description="Subdirs with packages, plus noarch (which every channel serves).")
    async def subdirs(self, info: Info) -> list[str]:
        found = await loaders.channel_subdirs(info.context).load(self.id)
        return sorted({"noarch", *found})

    @strawberry.field(description="The repodata.json URL of each subdir in `subdirs`.")
    async def repodata_urls(self, info: Info) -> list[str]:
        base = self.url(info)
        return [f"{base}/{subdir}/repodata.json" for subdir in await self.subdirs(info)]

    @strawberry.field(description="How many packages (names) the channel holds.")
    async def package_count(self, info: Info) -> int:
        return await loaders.channel_package_count(info.context).load((self.id, None))


    @strawberry.field(description="Users with a role on this channel.")
    async def members(self, info: Info) -> list[Member]:
        rows = await loaders.channel_members(info.context).load(self.id)
        return [Member.from_model(user, role) for user, role in rows]

    async def access(self, info: Info) -> authz.ChannelAccess:
        """What permission checks need to know of this channel and the caller's role on it."""
        own = await loaders.viewer_channel_role(info.context).load(self.id)
        return authz.ChannelAccess(self.id, self.private, authz.Role(own) if own else None)

    @strawberry.field(description="The caller's effective role here (after API key scopes); null for none.")
    async def viewer_role(self, info: Info) -> Role | None:
        return Role.of(authz.channel_role(info.context.actor, await self.access(info)))

    @strawberry.field(description="The channel's job runs, newest first; null unless you maintain the channel.")
    async def jobs(self, info: Info, first: First = None, after: After = None) -> Connection[JobRef] | None:
        from graphconda.schema.types.job import Job

        page = page_args(loaders.JOBS, first, after, info.context.services.settings.limits.graphql_max_page_size)
        if not authz.can_see_job(info.context.actor, await self.access(info)):
            return None
        rows = await loaders.channel_jobs(info.context).load((self.id, page))
        counter = loaders.channel_job_count(info.context)
        return connection(rows, loaders.JOBS, page, Job.from_model, lambda: counter.load(self.id))

    @strawberry.field(description="The channel's job schedules; null unless you maintain the channel.")
    async def schedules(self, info: Info) -> list[ScheduleRef] | None:
        from graphconda.schema.types.job import Schedule

        if not authz.can_see_job(info.context.actor, await self.access(info)):
            return None
        return [Schedule.from_model(s) for s in await loaders.channel_schedules(info.context).load(self.id)]

    @strawberry.field(description="The channel's packages by name.")
    async def packages(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        name_contains: str | None = None,
        order_by: PackageOrder = PackageOrder.NAME,
    ) -> Connection[PackageRef]:
        from graphconda.schema.types.package import Package

        order = str(order_by.value)
        keyset = loaders.PACKAGE_ORDERS[order]
        page = page_args(keyset, first, after, info.context.services.settings.limits.graphql_max_page_size)
        name_contains = name_contains or None
        rows = await loaders.channel_packages(info.context).load((self.id, name_contains, page, order))
        counter = loaders.channel_package_count(info.context)
        count = lambda: counter.load((self.id, name_contains))  # noqa: E731
        return connection(rows, keyset, page, Package.from_model, count)

    @strawberry.field(description="Mirrors of this channel on other servers whose download figures it pulls.")
    async def registered_mirrors(self, info: Info) -> list[RegisteredMirror]:
        return [RegisteredMirror.from_model(r) for r in await loaders.channel_registered_mirrors(info.context).load(
            self.id)]

    @strawberry.field(description="All-time downloads of the channel's package files (registered mirrors' included).")
    async def download_count(self, info: Info) -> BigInt:
        return BigInt(await loaders.channel_downloads(info.context).load(self.id))

    @strawberry.field(description=DOWNLOADS_DESCRIPTION)
    async def downloads(self, info: Info, period: DownloadPeriod, from_: Annotated[datetime | None, strawberry.argument(
            name="from")] = None, to: datetime | None = None, fill_zeros: bool | None = False) -> DownloadSeries:
        return await download_series(info, metrics.Scope(self.id), period, from_, to, fill_zeros)

    @strawberry.field(description="One package of this channel by name.")
    async def package(self, info: Info, name: str) -> PackageRef | None:
        from graphconda.schema.types.package import Package

        found = await loaders.package_by_name(info.context).load((self.id, name))
        return Package.from_model(found) if found else None
