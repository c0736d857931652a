"""Statements that run too long, and writers that share a write lock: bounded, and never a raw driver error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from graphconda.db.models import Channel
from graphconda.errors import DatabaseUnavailableError
from graphconda.services.context import Services


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"database": {"statement_timeout_seconds": 1.0, "busy_timeout_ms": 300}}


async def test_a_statement_past_the_timeout_is_cancelled(services: Services) -> None:
    if services.db.backend != "postgresql":
        pytest.skip("statement timeouts are PostgreSQL's (SQLite's lock wait is busy_timeout_ms)")
    start = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="cannot answer now"):
        async with services.db.read() as session:
            await session.execute(text("SELECT pg_sleep(10)"))
    assert time.monotonic() - start < 5  # generous: the timeout is 1 s
    async with services.db.read() as session:  # the pool recovers
        assert await session.scalar(text("SELECT 1")) == 1


async def test_writers_of_one_process_queue_past_the_busy_timeout(services: Services) -> None:
    """Each writer holds the lock longer than busy_timeout_ms; together far longer. None fails."""

    async def writer(i: int) -> int:
        async with services.db.write() as session:
            now = services.now()
            session.add(Channel(name=f"queued-{i}", created_at=now, updated_at=now))
            await session.flush()
            await asyncio.sleep(0.35)  # longer than the 300 ms busy timeout
        return i

    assert sorted(await asyncio.gather(*(writer(i) for i in range(5)))) == list(range(5))
    async with services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Channel)) == 5
