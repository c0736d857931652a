"""The cleanup job: what it deletes, what it keeps, and dry runs that only report."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from graphconda.db.models import ApiKey, JobRun
from graphconda.services import api_keys, jobs, packages
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.cleanup import run_cleanup
from graphconda.services.context import Services
from tests.helpers.channels import chunks, make_channel, make_user, storage_keys
from tests.helpers.jobs import run_to_end
from tests.helpers.packages import build_package

ORPHAN_PACKAGE = "channels/main/noarch/" + "a" * 64 + "/lost-1.0-0.conda"
ORPHAN_SHARD = "channels/main/noarch/shards/" + "b" * 64 + ".msgpack.zst"
GONE_CHANNEL = "channels/gone/noarch/repodata.json"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"jobs": {"orphan_blob_grace_seconds": 0, "poll_seconds": 0.1, "heartbeat_seconds": 0.2,
                     "stale_seconds": 2}}


async def _setup(services: Services, tmp_path: Path) -> dict[str, int]:
    await make_channel(services, "main")
    path = build_package(tmp_path, "alpha", "1.0")
    await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    await services.publisher.wait_idle()
    for key in (ORPHAN_PACKAGE, ORPHAN_SHARD, GONE_CHANNEL):
        await services.storage.put(key, b"nobody points here")
    user = await make_user(services, "user", Role.MEMBER)
    ids = {}
    for name in ("live", "revoked_long_ago", "expired_long_ago", "revoked_lately"):
        info, _ = await api_keys.create_api_key(services, user, description=name)
        ids[name] = info.id
    long_ago = services.now() - timedelta(days=400)
    async with services.db.write() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == ids["revoked_long_ago"]).values(revoked_at=long_ago))
        await session.execute(update(ApiKey).where(ApiKey.id == ids["expired_long_ago"]).values(expires_at=long_ago))
        await session.execute(update(ApiKey).where(ApiKey.id == ids["revoked_lately"])
                              .values(revoked_at=services.now()))
        session.add(JobRun(kind="cleanup", status="succeeded", created_at=long_ago, finished_at=long_ago))
        session.add(JobRun(kind="cleanup", status="succeeded", created_at=services.now(),
                           finished_at=services.now()))
    await asyncio.sleep(0.01)  # the blobs' mtimes are in the past now
    return ids


async def _keys(services: Services) -> set[str]:
    async with services.db.read() as session:
        return set((await session.scalars(select(ApiKey.description))).all())


async def test_dry_run_reports_then_cleanup_deletes(services: Services, tmp_path: Path) -> None:
    await _setup(services, tmp_path)
    before = await storage_keys(services)
    lines: list[str] = []
    report = await run_cleanup(services, dry_run=True, log=lines.append)
    assert report.counts["old API keys"] == 2 and report.counts["unreferenced blobs"] == 3
    assert report.counts["old job runs"] == 1
    assert f"would delete {ORPHAN_PACKAGE}" in lines
    assert await storage_keys(services) == before
    assert await _keys(services) == {"live", "revoked_long_ago", "expired_long_ago", "revoked_lately"}

    report = await run_cleanup(services)
    assert report.counts["old API keys"] == 2 and report.counts["unreferenced blobs"] == 3
    assert await storage_keys(services) == before - {ORPHAN_PACKAGE, ORPHAN_SHARD, GONE_CHANNEL}
    assert any(k.endswith("/alpha-1.0-0.conda") for k in await storage_keys(services))  # referenced: kept
    assert await _keys(services) == {"live", "revoked_lately"}
    async with services.db.read() as session:
        assert len((await session.scalars(select(JobRun))).all()) == 1
    assert (await run_cleanup(services)).summary(dry_run=False).startswith("deleted 0 superseded shards, 0 old")


async def test_cleanup_as_a_job(services: Services, tmp_path: Path) -> None:
    await _setup(services, tmp_path)
    run = await jobs.run_job(services, SYSTEM, "cleanup", args={"dry_run": True})
    assert run.id is not None
    done = await run_to_end(services, run.id)
    assert done.status == "succeeded", done.error
    assert done.message.startswith("would delete ") and "3 unreferenced blobs" in done.message
    assert f"would delete {GONE_CHANNEL}" in done.log_tail
    assert GONE_CHANNEL in await storage_keys(services)


async def test_a_proxy_channels_cached_files_are_kept(services: Services) -> None:
    """A proxy stores upstream's files with no package or shard rows: they are its cache (served when
    upstream is down), not orphans; a deleted proxy's files go like any deleted channel's."""
    from graphconda.services import channels

    await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name="px", mirror_mode="proxy", mirror_channel_url="http://127.0.0.1:9/upstream"))
    cached = {"channels/px/noarch/" + "c" * 64 + "/alpha-1.0-0.conda",
              "channels/px/noarch/shards/" + "d" * 64 + ".msgpack.zst", "channels/px/noarch/repodata.json"}
    for key in cached:
        await services.storage.put(key, b"from upstream")
    await asyncio.sleep(0.01)  # the blobs' mtimes are in the past now
    assert (await run_cleanup(services)).counts["unreferenced blobs"] == 0
    assert cached <= await storage_keys(services)
    await channels.delete_channel(services, SYSTEM, "px")
    for key in cached:  # as if the deletion's own purge had missed them
        await services.storage.put(key, b"from upstream")
    await asyncio.sleep(0.01)
    assert (await run_cleanup(services)).counts["unreferenced blobs"] == 3
    assert not cached & await storage_keys(services)
