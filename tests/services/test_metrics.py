"""Aggregating downloads: UTC buckets across hour, day, month and year boundaries and a leap day
(injected clock), exactly once however often and however concurrently it runs, and history
that outlives a deleted file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from graphconda.db.models import DownloadEvent
from graphconda.services import jobs, packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services, open_services
from graphconda.services.downloads import flush_downloads, record_download
from graphconda.services.metrics import Period, Scope, aggregate, series, totals
from graphconda.services.publisher import wait_published
from graphconda.settings import Settings
from tests.helpers.channels import chunks, make_channel
from tests.helpers.jobs import run_to_end
from tests.helpers.packages import build_package

A = "alpha-1.0-0.conda"
B = "alpha-2.0-0.conda"
C = "beta-1.0-0.conda"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def download_at(services: Services, when: str, channel_id: int, filename: str, times: int = 1) -> None:
    services.clock = lambda: t(when)
    for _ in range(times):
        record_download(services, channel_id, "noarch", filename)
    await flush_downloads(services)


def points(found: object) -> list[tuple[str, int]]:
    return [(p.start.isoformat()[:19], p.count) for p in found.points]  # type: ignore[attr-defined]


async def test_buckets_across_boundaries_and_a_leap_day(services: Services) -> None:
    channel = await make_channel(services, "main")
    assert channel.id is not None
    cid = channel.id
    await download_at(services, "2024-02-28 23:59:59", cid, A)
    await download_at(services, "2024-02-29 00:00:00", cid, A, 2)   # leap day, next hour, day
    await download_at(services, "2024-02-29 23:30:00", cid, B)
    await download_at(services, "2024-03-01 00:00:01", cid, A)      # next month
    await download_at(services, "2024-12-31 23:59:59", cid, C)
    await download_at(services, "2025-01-01 00:00:00", cid, C, 3)   # next year
    folded = await aggregate(services)
    assert folded.downloads == 9

    whole = Scope(cid)
    assert points(await series(services, whole, Period.HOUR)) == [
        ("2024-02-28T23:00:00", 1), ("2024-02-29T00:00:00", 2), ("2024-02-29T23:00:00", 1),
        ("2024-03-01T00:00:00", 1), ("2024-12-31T23:00:00", 1), ("2025-01-01T00:00:00", 3)]
    assert points(await series(services, whole, Period.DAY)) == [
        ("2024-02-28T00:00:00", 1), ("2024-02-29T00:00:00", 3), ("2024-03-01T00:00:00", 1),
        ("2024-12-31T00:00:00", 1), ("2025-01-01T00:00:00", 3)]
    assert points(await series(services, whole, Period.MONTH)) == [
        ("2024-02-01T00:00:00", 4), ("2024-03-01T00:00:00", 1), ("2024-12-01T00:00:00", 1),
        ("2025-01-01T00:00:00", 3)]
    assert points(await series(services, whole, Period.YEAR)) == [("2024-01-01T00:00:00", 6),
                                                                  ("2025-01-01T00:00:00", 3)]
    # A package is the sum of its files; a file is itself; ranges take buckets starting in [from, to).
    alpha = await series(services, Scope(cid, package="alpha"), Period.DAY)
    assert alpha.total == 5 and points(alpha)[1] == ("2024-02-29T00:00:00", 3)
    one_file = await series(services, Scope(cid, "alpha", "noarch", B), Period.MONTH)
    assert points(one_file) == [("2024-02-01T00:00:00", 1)]
    leap = await series(services, whole, Period.HOUR, start=t("2024-02-29 00:00:00"), end=t("2024-03-01 00:00:00"))
    assert leap.total == 3
    filled = await series(services, whole, Period.DAY, start=t("2024-02-27 12:00:00"), end=t("2024-03-02 00:00:00"),
                          fill_zeros=True)
    assert points(filled) == [("2024-02-27T00:00:00", 0), ("2024-02-28T00:00:00", 1), ("2024-02-29T00:00:00", 3),
                              ("2024-03-01T00:00:00", 1)]
    async with services.db.read() as session:
        assert await totals(session, cid) == {None: 9}
        assert await totals(session, cid, packages=["alpha", "beta", "none"]) == {"alpha": 5, "beta": 4}
        assert await totals(session, cid, files=[("noarch", B)]) == {("noarch", B): 1}

    # Running it again folds nothing more: the events went in the same transaction as the counts.
    assert (await aggregate(services)).downloads == 0
    assert (await series(services, whole, Period.YEAR)).total == 9
    await download_at(services, "2025-01-01 00:59:59", cid, C)
    await aggregate(services, batch_size=1)
    assert points(await series(services, whole, Period.YEAR))[-1] == ("2025-01-01T00:00:00", 4)


async def test_deleting_a_file_keeps_the_history(services: Services, tmp_path: Path) -> None:
    channel = await make_channel(services, "main")
    assert channel.id is not None
    path = build_package(tmp_path, "alpha", "1.0", "0")
    await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    await wait_published(services)
    await download_at(services, "2025-06-01 10:00:00", channel.id, path.name, 2)
    await aggregate(services)
    await download_at(services, "2025-06-01 11:00:00", channel.id, path.name)  # not folded yet
    await packages.delete_package_file(services, SYSTEM, "main", "noarch", path.name)
    await aggregate(services)
    assert (await series(services, Scope(channel.id), Period.DAY)).total == 3
    assert (await series(services, Scope(channel.id, package="alpha"), Period.HOUR)).total == 3


async def test_aggregate_metrics_job(services: Services) -> None:
    channel = await make_channel(services, "main")
    assert channel.id is not None
    await download_at(services, "2025-06-01 10:00:00", channel.id, A, 4)
    services.clock = lambda: datetime.now(UTC)
    run = await jobs.run_job(services, SYSTEM, "aggregate_metrics")
    assert run.id is not None
    done = await run_to_end(services, run.id)
    assert done.status == "succeeded", done.error
    assert done.message.startswith("4 downloads folded")
    assert (await series(services, Scope(channel.id), Period.MONTH)).total == 4


async def test_two_aggregations_at_once_count_once(services: Services, settings: Settings) -> None:
    """Two processes' aggregations (own pools, small batches) over the same events: each event once."""
    channel = await make_channel(services, "main")
    assert channel.id is not None
    rows = [{"channel_id": channel.id, "subdir": "noarch", "filename": f"pkg{i % 7}-1.0-0.conda",
             "at": t(f"2025-03-{1 + i % 28:02d} {i % 24:02d}:00:00"), "count": 1 + i % 3} for i in range(3000)]
    async with services.db.write() as session:
        await session.execute(DownloadEvent.__table__.insert(), rows)  # type: ignore[attr-defined]
    expected = sum(r["count"] for r in rows)
    other = await open_services(settings)
    try:
        first, second = await asyncio.gather(aggregate(services, batch_size=50),
                                             aggregate(other.services, batch_size=50))
    finally:
        await other.aclose()
    assert first.downloads + second.downloads == expected
    # Both ran over the same events at once (how they interleave is the database's choice: SQLite
    # serialises writers, so one may take nearly every batch); in batches of 50, each event once.
    assert first.batches + second.batches >= len(rows) // 50 and first.events + second.events == len(rows)
    async with services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(DownloadEvent)) == 0
        assert await totals(session, channel.id) == {None: expected}
    assert (await series(services, Scope(channel.id), Period.MONTH)).total == expected
    assert (await series(services, Scope(channel.id), Period.HOUR)).total == expected
