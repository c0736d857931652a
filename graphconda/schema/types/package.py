"""Package: a package name in a channel, its metadata, versions (files) and members."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphconda.db import models
from graphconda.schema import loaders
from graphconda.schema.context import Info
from graphconda.schema.pagination import After, Connection, First, connection, page_args
from graphconda.schema.types.enums import BigInt
from graphconda.schema.types.member import Member
from graphconda.schema.types.metrics import DOWNLOADS_DESCRIPTION, DownloadPeriod, DownloadSeries, download_series
from graphconda.schema.types.package_file import PackageFile
from graphconda.services import metrics

if TYPE_CHECKING:
    from graphconda.schema.types.channel import Channel


@strawberry.type(description="A package name in a channel, described by its latest upload's about.json.")
class Package:
    id: strawberry.Private[int]
    channel_id: strawberry.Private[int]
    name: str
    summary: str
    description: str
    license: str
    home: str
    dev_url: str
    doc_url: str
    latest_version: str = strawberry.field(description="The highest version uploaded (conda version order).")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, package: models.Package) -> Package:
        assert package.id is not None
        return cls(
            id=package.id,
            channel_id=package.channel_id,
            name=package.name,
            summary=package.summary,
            description=package.description,
            license=package.license,
            home=package.home,
            dev_url=package.dev_url,
            doc_url=package.doc_url,
            latest_version=package.latest_version,
            created_at=package.created_at,
            updated_at=package.updated_at,
        )

    @strawberry.field
    async def channel(self, info: Info) -> Annotated[Channel, strawberry.lazy("graphconda.schema.types.channel")]:
        from graphconda.schema.types.channel import Channel

        found = await loaders.channel_by_id(info.context).load(self.channel_id)
        assert found is not None  # the package row references it
        return Channel.from_model(found)

    @strawberry.field(description="Users with a role on this package (channel members have theirs on the channel).")
    async def members(self, info: Info) -> list[Member]:
        rows = await loaders.package_members(info.context).load(self.id)
        return [Member.from_model(user, role) for user, role in rows]

    @strawberry.field(description="The files of `latestVersion`, in every subdir and format.")
    async def latest_files(self, info: Info) -> list[PackageFile]:
        return [PackageFile.from_model(f) for f in await loaders.latest_files(info.context).load(self.id)]

    @strawberry.field(description="Every uploaded file of this package, newest upload first.")
    async def versions(
        self, info: Info, first: First = None, after: After = None, subdir: str | None = None
    ) -> Connection[PackageFile]:
        page = page_args(loaders.VERSIONS, first, after, info.context.services.settings.limits.graphql_max_page_size)
        rows = await loaders.package_files(info.context).load((self.id, subdir, page))
        count = loaders.package_file_count(info.context)
        return connection(rows, loaders.VERSIONS, page, PackageFile.from_model, lambda: count.load((self.id, subdir)))

    @strawberry.field(description="All-time downloads of the package's files, deleted files included.")
    async def download_count(self, info: Info) -> BigInt:
        return BigInt(await loaders.package_downloads(info.context).load((self.channel_id, self.name)))

    @strawberry.field(description=DOWNLOADS_DESCRIPTION)
    async def downloads(self, info: Info, period: DownloadPeriod, from_: Annotated[datetime | None, strawberry.argument(
            name="from")] = None, to: datetime | None = None, fill_zeros: bool | None = False) -> DownloadSeries:
        return await download_series(info, metrics.Scope(self.channel_id, package=self.name), period, from_, to,
                                     fill_zeros)
