"""The database layer: migrations match the models, times stay UTC, SQLite writers wait for each other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import func, select

from graphconda.db.migrate import alembic_config
from graphconda.db.models import Channel, JobRun
from graphconda.services.context import Services


def test_migrations_match_models(database_url: str) -> None:
    """A model change without a migration fails here (alembic check autogenerates a diff)."""
    command.check(alembic_config(database_url))


async def test_datetimes_come_back_aware_utc(services: Services) -> None:
    local = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    async with services.db.write() as session:
        session.add(Channel(name="tz", created_at=local, updated_at=local))
    async with services.db.read() as session:
        channel = await session.scalar(select(Channel).where(Channel.name == "tz"))
    assert channel is not None
    assert channel.created_at == local
    assert channel.created_at.tzinfo == UTC


async def test_naive_datetimes_are_refused(services: Services) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with services.db.write() as session:
            session.add(Channel(name="naive", created_at=datetime(2026, 1, 1), updated_at=datetime(2026, 1, 1)))
    async with services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Channel)) == 0


async def test_concurrent_read_modify_write_transactions_all_commit(services: Services) -> None:
    """Twenty writers that read then write at once: none fails with 'database is locked', none is lost."""
    now = services.now()
    async with services.db.write() as session:
        session.add(JobRun(kind="counter", progress_done=0, created_at=now))

    async def bump() -> None:
        async with services.db.write() as session:
            # FOR UPDATE is what services use on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises anyway.
            job = await session.scalar(select(JobRun).where(JobRun.kind == "counter").with_for_update())
            assert job is not None
            await asyncio.sleep(0)  # let the others interleave between the read and the write
            job.progress_done += 1

    await asyncio.gather(*(bump() for _ in range(20)))
    async with services.db.read() as session:
        assert await session.scalar(select(JobRun.progress_done).where(JobRun.kind == "counter")) == 20
