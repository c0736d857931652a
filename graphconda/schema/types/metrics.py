"""Download figures as GraphQL sees them: `downloads(period, from, to, fillZeros)` series and the
`PackageOrder` of Channel.packages. Whoever reached a channel, package or file may see its figures:
the objects themselves are only reachable by those who may see them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from graphconda.schema.context import Info
from graphconda.schema.types.enums import BigInt
from graphconda.services import metrics


@strawberry.enum(description="The length of a download series' buckets (UTC).")
class DownloadPeriod(Enum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


@strawberry.enum(description="How Channel.packages is ordered.")
class PackageOrder(Enum):
    NAME = strawberry.enum_value("name", description="By name, A to Z.")
    DOWNLOADS = strawberry.enum_value("downloads", description="Most downloaded first (all time), then by name.")
    UPDATED = strawberry.enum_value("updated", description="Most recently updated first.")


@strawberry.type(description="Downloads in one bucket.")
class DownloadPoint:
    start: datetime = strawberry.field(description="The start of the bucket (UTC).")
    count: BigInt


@strawberry.type(description="Downloads per bucket, oldest first; buckets with none are left out unless "
                             "`fillZeros` asked for them.")
class DownloadSeries:
    period: DownloadPeriod
    points: list[DownloadPoint]
    total: BigInt = strawberry.field(description="The sum of `points`.")


async def download_series(info: Info, scope: metrics.Scope, period: DownloadPeriod, start: datetime | None,
                          end: datetime | None, fill_zeros: bool | None) -> DownloadSeries:
    found = await metrics.series(info.context.services, scope, metrics.Period(period.value), start=start, end=end,
                                 fill_zeros=bool(fill_zeros))
    return DownloadSeries(period=period, total=BigInt(found.total),
                          points=[DownloadPoint(start=p.start, count=BigInt(p.count)) for p in found.points])


DOWNLOADS_DESCRIPTION = ("Downloads per `period` bucket whose start is in [`from`, `to`) (all when omitted). "
                         "Figures trail downloads by up to metrics.flush_seconds + jobs.metrics_interval_seconds.")
