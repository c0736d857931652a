"""Download figures: folding counted downloads into UTC buckets, and reading them back.

Server processes write `DownloadEvent` rows (services/downloads.py). `aggregate` (the
`aggregate_metrics` job) folds them into `DownloadCount` rows, one per file, period (hour,
day, month, year, total) and bucket: in one transaction per batch it adds the batch's counts
and deletes its events, so a batch is folded exactly once even when two aggregations run at
once (on PostgreSQL each claims its events with FOR UPDATE SKIP LOCKED; SQLite has one
writer at a time). Channel and package figures are sums over their files' rows, which name
the file (channel, subdir, filename) and its package rather than reference rows: deleting a
file or a package keeps the history. Counts pulled from registered mirrors are rows of
their own `source` (services/mirror_metrics.py).

Reads check visibility first (`visible_channel`): a private channel's figures are as
invisible as its packages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import DownloadCount, DownloadEvent
from graphconda.errors import InvalidInputError
from graphconda.services.context import Services

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the one bucket of period "total"
MAX_POINTS = 10_000  # a series with zeros filled in may not be longer (ask for a coarser period)
_UPSERT_ROWS = 500  # rows per INSERT ... ON CONFLICT statement


class Period(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


TOTAL = "total"
PERIODS: tuple[str, ...] = (*(p.value for p in Period), TOTAL)


def bucket_start(period: str, at: datetime) -> datetime:
    """The start of the UTC bucket of `period` that holds `at`."""
    at = at.astimezone(UTC)
    if period == Period.HOUR:
        return at.replace(minute=0, second=0, microsecond=0)
    if period == Period.DAY:
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Period.MONTH:
        return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if period == Period.YEAR:
        return at.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return EPOCH


def next_bucket(period: str, start: datetime) -> datetime:
    if period == Period.HOUR:
        return start + timedelta(hours=1)
    if period == Period.DAY:
        return start + timedelta(days=1)
    if period == Period.MONTH:
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)
    return start.replace(year=start.year + 1)


def package_of(filename: str) -> str:
    """The package name of a conda filename (`name-version-build.ext`: version and build hold no '-')."""
    return filename.rsplit("-", 2)[0][:64]


# --- folding ----------------------------------------------------------------------------


CountKey = tuple[int, str, str, str, datetime]  # channel id, subdir, filename, period, bucket


def upsert_statement(session: AsyncSession, rows: list[dict[str, Any]], *, add: bool) -> Any:
    """INSERT the count rows; on a bucket that exists, add to its count (`add`) or replace it."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(DownloadCount).values(rows)
    value = col(DownloadCount.count) + stmt.excluded["count"] if add else stmt.excluded["count"]
    return stmt.on_conflict_do_update(
        index_elements=["channel_id", "subdir", "filename", "period", "bucket", "source"],
        set_={"count": value},
    )


async def add_counts(session: AsyncSession, counts: dict[CountKey, int], *, source: str = "",
                     replace: bool = False) -> None:
    """Add (or with `replace`, set) counts, in key order: concurrent writers lock rows in the same order."""
    rows = [{"channel_id": c, "subdir": s, "filename": f, "period": p, "bucket": b, "count": n,
             "source": source, "package_name": package_of(f)}
            for (c, s, f, p, b), n in sorted(counts.items())]
    for start in range(0, len(rows), _UPSERT_ROWS):
        await session.execute(upsert_statement(session, rows[start:start + _UPSERT_ROWS], add=not replace))


def fold(events: Iterable[tuple[int, str, str, datetime, int]]) -> dict[CountKey, int]:
    """Counts per file and bucket of every period, from (channel id, subdir, filename, at, count)."""
    counts: dict[CountKey, int] = defaultdict(int)
    for channel_id, subdir, filename, at, count in events:
        for period in PERIODS:
            counts[(channel_id, subdir, filename, period, bucket_start(period, at))] += count
    return counts


@dataclass
class AggregateResult:
    events: int = 0  # event rows folded
    downloads: int = 0  # downloads they held
    batches: int = 0


async def aggregate(services: Services, *, batch_size: int | None = None,
                    progress: Callable[[AggregateResult], None] | None = None) -> AggregateResult:
    """Fold every DownloadEvent into DownloadCount, one transaction per batch; returns what was folded."""
    size = batch_size or services.settings.metrics.aggregate_batch
    result = AggregateResult()
    while True:
        async with services.db.write() as session:
            query = (select(col(DownloadEvent.id), col(DownloadEvent.channel_id), col(DownloadEvent.subdir),
                            col(DownloadEvent.filename), col(DownloadEvent.at), col(DownloadEvent.count))
                     .order_by(col(DownloadEvent.id)).limit(size))
            if session.get_bind().dialect.name == "postgresql":
                # Another aggregation's claimed events are skipped, not waited for nor counted twice.
                query = query.with_for_update(skip_locked=True)
            found = (await session.execute(query)).all()
            rows: list[tuple[int, int, str, str, datetime, int]] = [
                (r[0] or 0, int(r[1]), str(r[2]), str(r[3]), r[4], int(r[5])) for r in found]
            if not rows:
                return result
            await add_counts(session, fold((c, s, f, at, n) for _, c, s, f, at, n in rows))
            await session.execute(delete(DownloadEvent).where(col(DownloadEvent.id).in_([row[0] for row in rows])))
        result.events += len(rows)
        result.downloads += sum(row[5] for row in rows)
        result.batches += 1
        if progress is not None:
            progress(result)
        if len(rows) < size:
            return result


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    start: datetime
    count: int


@dataclass(frozen=True)
class Series:
    period: Period
    points: list[Point]
    total: int


@dataclass(frozen=True)
class Scope:
    """Whose figures: a channel, one package of it, or one file of it."""

    channel_id: int
    package: str | None = None
    subdir: str | None = None
    filename: str | None = None

    def where(self) -> list[Any]:
        clauses: list[Any] = [col(DownloadCount.channel_id) == self.channel_id]
        if self.package is not None:
            clauses.append(col(DownloadCount.package_name) == self.package)
        if self.filename is not None:
            clauses += [col(DownloadCount.subdir) == self.subdir, col(DownloadCount.filename) == self.filename]
        return clauses


def parse_period(value: str) -> Period:
    """A period by name (hour, HOUR) or by Quetz's letter (H, D, M, Y)."""
    letters = {"H": Period.HOUR, "D": Period.DAY, "M": Period.MONTH, "Y": Period.YEAR}
    if value in letters:
        return letters[value]
    try:
        return Period(value.lower())
    except ValueError:
        raise InvalidInputError(f"unknown period {value!r} (H, D, M or Y)", field="period") from None


async def series(services: Services, scope: Scope, period: Period, *, start: datetime | None = None,
                 end: datetime | None = None, fill_zeros: bool = False) -> Series:
    """Downloads per bucket of `period` in [start, end) (buckets that start in it), oldest first."""
    query = (select(col(DownloadCount.bucket), func.sum(col(DownloadCount.count)))
             .where(*scope.where(), col(DownloadCount.period) == period.value)
             .group_by(col(DownloadCount.bucket)).order_by(col(DownloadCount.bucket)))
    if start is not None:
        query = query.where(col(DownloadCount.bucket) >= bucket_start(period, start))
    if end is not None:
        query = query.where(col(DownloadCount.bucket) < end)
    async with services.db.read() as session:
        found = {bucket.astimezone(UTC): int(count) for bucket, count in (await session.execute(query)).all()}
    points = [Point(bucket, count) for bucket, count in found.items() if count]
    if fill_zeros:
        points = _filled(period, found, start, end, services.now())
    return Series(period, points, sum(p.count for p in points))


def _filled(period: Period, found: dict[datetime, int], start: datetime | None, end: datetime | None,
            now: datetime) -> list[Point]:
    first = bucket_start(period, start) if start is not None else min(found, default=None)
    if first is None:
        return []
    stop = end if end is not None else next_bucket(period, bucket_start(period, now))
    points: list[Point] = []
    bucket = first
    while bucket < stop:
        if len(points) >= MAX_POINTS:
            raise InvalidInputError(f"more than {MAX_POINTS} points: ask for a longer period or a shorter range",
                                    field="period")
        points.append(Point(bucket, found.get(bucket, 0)))
        bucket = next_bucket(period, bucket)
    return points


async def totals(session: AsyncSession, channel_id: int, *, packages: Sequence[str] = (),
                 files: Sequence[tuple[str, str]] = ()) -> dict[Any, int]:
    """All-time downloads in one statement: of the channel (key None), or per package name, or per
    (subdir, filename)."""
    base = [col(DownloadCount.channel_id) == channel_id, col(DownloadCount.period) == TOTAL]
    if packages:
        rows = await session.execute(select(col(DownloadCount.package_name), func.sum(col(DownloadCount.count)))
                                     .where(*base, col(DownloadCount.package_name).in_(packages))
                                     .group_by(col(DownloadCount.package_name)))
        return {name: int(count) for name, count in rows.all()}
    if files:
        file_rows = await session.execute(select(col(DownloadCount.subdir), col(DownloadCount.filename),
                                            func.sum(col(DownloadCount.count)))
                                     .where(*base, tuple_(col(DownloadCount.subdir),
                                                          col(DownloadCount.filename)).in_(files))
                                     .group_by(col(DownloadCount.subdir), col(DownloadCount.filename)))
        return {(subdir, filename): int(count) for subdir, filename, count in file_rows.all()}
    total = await session.scalar(select(func.coalesce(func.sum(col(DownloadCount.count)), 0)).where(*base))
    return {None: int(total or 0)}


# --- the Quetz metrics API (http/metrics.py; registered mirrors read it too) --------------

QUETZ_LETTERS = {Period.HOUR: "H", Period.DAY: "D", Period.MONTH: "M", Period.YEAR: "Y"}
METRIC_NAMES = ("download",)


def check_metric_name(name: str) -> None:
    if name not in METRIC_NAMES:
        raise InvalidInputError(f"unknown metric {name!r}: graphconda counts 'download'", field="metric_name")


@dataclass(frozen=True)
class ChannelMetrics:
    series: Series  # the whole channel (of `platform` only, when given)
    files: dict[str, list[Point]]  # "subdir/filename" -> its points


async def channel_metrics(services: Services, actor: Any, channel_name: str, period: Period, *,
                          platform: str | None = None, start: datetime | None = None,
                          end: datetime | None = None) -> ChannelMetrics:
    """A channel's downloads per file and bucket; NotFoundError when the actor may not see the channel."""
    from graphconda.services.access import gate

    async with services.db.read() as session:
        channel, _ = await gate(session, actor, channel_name)
        query = (select(col(DownloadCount.subdir), col(DownloadCount.filename), col(DownloadCount.bucket),
                        func.sum(col(DownloadCount.count)))
                 .where(col(DownloadCount.channel_id) == channel.id, col(DownloadCount.period) == period.value)
                 .group_by(col(DownloadCount.subdir), col(DownloadCount.filename), col(DownloadCount.bucket))
                 .order_by(col(DownloadCount.subdir), col(DownloadCount.filename), col(DownloadCount.bucket)))
        if platform:
            query = query.where(col(DownloadCount.subdir) == platform)
        if start is not None:
            query = query.where(col(DownloadCount.bucket) >= bucket_start(period, start))
        if end is not None:
            query = query.where(col(DownloadCount.bucket) < end)
        rows = (await session.execute(query)).all()
    files: dict[str, list[Point]] = defaultdict(list)
    whole: dict[datetime, int] = defaultdict(int)
    for subdir, filename, bucket, count in rows:
        if count:
            at = bucket.astimezone(UTC)
            files[f"{subdir}/{filename}"].append(Point(at, int(count)))
            whole[at] += int(count)
    points = [Point(at, whole[at]) for at in sorted(whole)]
    return ChannelMetrics(Series(period, points, sum(p.count for p in points)), dict(files))


async def file_metrics(services: Services, actor: Any, channel_name: str, package: str, platform: str,
                       filename: str, period: Period, *, start: datetime | None = None, end: datetime | None = None,
                       fill_zeros: bool = False) -> Series:
    """One file's downloads; NotFoundError for an invisible channel, or a file that neither exists nor has figures."""
    from graphconda.db.models import PackageFile
    from graphconda.errors import NotFoundError
    from graphconda.services.access import gate

    async with services.db.read() as session:
        channel, _ = await gate(session, actor, channel_name)
        assert channel.id is not None
        exists = await session.scalar(select(col(PackageFile.id)).where(
            col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == platform,
            col(PackageFile.filename) == filename,
            col(PackageFile.name) == package))
        if exists is None:
            exists = await session.scalar(select(col(DownloadCount.id)).where(
                *Scope(channel.id, package, platform, filename).where()).limit(1))
    if exists is None:
        raise NotFoundError(f"package version {platform}/{filename} not found")
    return await series(services, Scope(channel.id, package, platform, filename), period, start=start, end=end,
                        fill_zeros=fill_zeros)
