"""The per-process serving cache (graphconda/services/serving.py): concurrent misses, invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from graphconda.services.authz import ANONYMOUS
from graphconda.services.context import Services
from graphconda.services.serving import serving_cache
from tests.helpers.channels import make_channel


@pytest.fixture
def channel_queries(services: Services) -> Iterator[list[str]]:
    """SQL statements that read the channels table, as the database driver sees them."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM channels" in statement:
            seen.append(statement)

    engine = services.db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


async def test_concurrent_misses_share_one_lookup(services: Services, channel_queries: list[str]) -> None:
    """When an entry is missing or expired under load, the requests that find it so cost one query together."""
    await make_channel(services, "main")
    channel_queries.clear()  # on PostgreSQL reads and writes share one engine
    cache = serving_cache(services)
    infos = await asyncio.gather(*(cache.channel(ANONYMOUS, "main") for _ in range(20)))
    assert {info.name for info in infos} == {"main"}
    assert len(channel_queries) == 1


async def test_concurrent_file_misses_share_one_read_and_see_later_writes(services: Services) -> None:
    key = "channels/main/noarch/repodata.json"
    await services.storage.put(key, b"{}")
    cache = serving_cache(services)
    entries = await asyncio.gather(*(cache.file(key) for _ in range(20)))
    assert len({id(entry) for entry in entries}) == 1 and entries[0] is not None and entries[0].data == b"{}"
    # A write by this process invalidates at once: the next lookup reads again.
    await services.storage.put(key, b'{"a":1}')
    cache.invalidate([key])
    again = await cache.file(key)
    assert again is not None and again.data == b'{"a":1}'
