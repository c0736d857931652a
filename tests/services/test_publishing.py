"""Incremental publishing (graphconda/services/publishing.py, publisher.py): correctness under
concurrency and across processes, coalescing, recovery, shard retention, atomicity for readers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from graphconda.conda.shards import pack_record
from graphconda.db.models import Channel, Package, PackageFile, SubdirState
from graphconda.services import packages, publishing, republishing
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services, open_services
from graphconda.services.locks import publish_lock
from graphconda.services.publisher import publisher, wait_published
from graphconda.settings import Settings
from tests.helpers.channels import (
    chunks,
    make_channel,
    read_blob,
    repodata,
    shard,
    shard_index,
    storage_keys,
)
from tests.helpers.packages import build_package


async def ingest(services: Services, path: Path, channel: str = "main") -> None:
    await packages.ingest_package(services, SYSTEM, channel, path.name, chunks(path))


@pytest.fixture
async def second_process(settings: Settings) -> AsyncIterator[Services]:
    """Services of a second server process: same database and storage, its own caches and publisher."""
    handle = await open_services(settings)
    try:
        yield handle.services
    finally:
        await handle.aclose()


async def assert_complete(services: Services, names: dict[str, set[str]], subdir: str = "noarch") -> None:
    """repodata.json and the shards hold exactly `names` ({package name: filenames})."""
    published = await repodata(services, "main", subdir)
    assert published is not None
    assert set(published["packages.conda"]) == set().union(*names.values())
    index = await shard_index(services, "main", subdir)
    assert index is not None and set(index["shards"]) == set(names)
    for name, digest in index["shards"].items():
        assert set((await shard(services, "main", subdir, digest))["packages.conda"]) == names[name]


async def test_two_processes_uploading_at_once_lose_nothing(services: Services, second_process: Services,
                                                            tmp_path: Path) -> None:
    await make_channel(services, "main")
    paths = [build_package(tmp_path, f"pkg{i % 5}", f"1.{i}") for i in range(30)]
    await asyncio.gather(*(ingest(services if i % 2 else second_process, p) for i, p in enumerate(paths)))
    await wait_published(second_process)
    expected = {f"pkg{n}": {p.name for p in paths if p.name.startswith(f"pkg{n}-")} for n in range(5)}
    await assert_complete(services, expected)
    async with services.db.read() as session:
        state = (await session.scalars(select(SubdirState))).one()
    assert state.generation == 30 and state.published_generation == 30


async def test_bursts_are_coalesced_into_one_rebuild(services: Services, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    channel = await make_channel(services, "main")
    paths = [build_package(tmp_path, f"pkg{i}") for i in range(15)]
    caplog.set_level(logging.INFO, logger="graphconda.publishing")
    # While a rebuild is running elsewhere (here: the lock is held), changes pile up behind it.
    async with publish_lock(services.db, f"subdir:{channel.id}:noarch"):
        await asyncio.gather(*(ingest(services, p) for p in paths))
    await wait_published(services)
    rebuilds = [r for r in caplog.records if r.getMessage().startswith("published main/noarch")]
    assert len(rebuilds) == 1
    await assert_complete(services, {f"pkg{i}": {p.name} for i, p in enumerate(paths)})


async def test_readers_never_see_an_index_naming_a_missing_shard(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    paths = [build_package(tmp_path, f"pkg{i % 3}", f"2.{i}") for i in range(12)]
    done = False
    checks = 0

    async def reader() -> None:
        nonlocal checks
        while not done:
            index = await shard_index(services, "main", "noarch")
            for digest in (index or {"shards": {}})["shards"].values():
                key = f"channels/main/noarch/shards/{digest.hex()}.msgpack.zst"
                assert await read_blob(services, key) is not None
            checks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await asyncio.gather(*(ingest(services, p) for p in paths))
    done = True
    await task
    assert checks > 1


async def test_a_dead_process_is_caught_up_from_stored_records(services: Services, second_process: Services,
                                                               tmp_path: Path) -> None:
    channel = await make_channel(services, "main")
    paths = [build_package(tmp_path, name) for name in ("alpha", "beta")]
    for path in paths:
        await ingest(services, path)
    await wait_published(services)
    # What a process that died between commit and rebuild leaves: a newer generation than was published.
    # The package files themselves are gone too: publishing must work from stored records alone.
    for key in await storage_keys(services, "channels/main/noarch/"):
        if key.endswith((".conda", "repodata.json", "repodata.json.zst")):
            await services.storage.delete(key)
    async with services.db.write() as session:
        await session.execute(update(SubdirState).where(SubdirState.channel_id == channel.id)
                              .values(generation=SubdirState.generation + 1))
    await publisher(second_process).catch_up()
    published = await repodata(second_process, "main", "noarch")
    assert published is not None and set(published["packages.conda"]) == {p.name for p in paths}
    assert await read_blob(services, "channels/main/noarch/repodata.json.zst") is not None


async def test_superseded_shards_are_kept_for_the_retention_time(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    start = services.now()
    services.clock = lambda: start
    await ingest(services, build_package(tmp_path, "alpha", "1.0"))
    first = (await shard_index(services, "main", "noarch"))["shards"]["alpha"]  # type: ignore[index]
    await ingest(services, build_package(tmp_path, "alpha", "2.0"))
    second = (await shard_index(services, "main", "noarch"))["shards"]["alpha"]  # type: ignore[index]
    third_path = build_package(tmp_path, "alpha", "3.0")
    await ingest(services, third_path)
    # Deleting 3.0 brings back the exact shard of {1.0, 2.0}: same bytes, same name.
    await packages.delete_package_file(services, SYSTEM, "main", "noarch", third_path.name)
    assert (await shard_index(services, "main", "noarch"))["shards"]["alpha"] == second  # type: ignore[index]

    def shard_keys() -> set[str]:
        return {f"channels/main/noarch/shards/{d.hex()}.msgpack.zst" for d in (first, second)}

    assert await publishing.expire_shards(services) == 0
    assert shard_keys() <= await storage_keys(services)
    services.clock = lambda: start + timedelta(days=7, seconds=1)
    assert await publishing.expire_shards(services) == 2  # the 1.0 and the 1.0+2.0+3.0 shards
    keys = await storage_keys(services, "channels/main/noarch/shards/")
    assert f"channels/main/noarch/shards/{second.hex()}.msgpack.zst" in keys  # current again: kept
    assert f"channels/main/noarch/shards/{first.hex()}.msgpack.zst" not in keys
    assert len(keys) == 1


async def test_channel_options_drive_optional_files(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main", options={"bz2": True, "current_repodata": True})
    await ingest(services, build_package(tmp_path, "alpha"))
    await wait_published(services)
    keys = await storage_keys(services, "channels/main/noarch/")
    assert {"channels/main/noarch/repodata.json.bz2", "channels/main/noarch/current_repodata.json"} <= keys
    async with services.db.write() as session:
        await session.execute(update(Channel).where(Channel.name == "main").values(options={}))
    await ingest(services, build_package(tmp_path, "beta"))
    await wait_published(services)
    keys = await storage_keys(services, "channels/main/noarch/")
    assert "channels/main/noarch/repodata.json.bz2" not in keys
    assert "channels/main/noarch/current_repodata.json" not in keys



async def test_uploads_and_deletes_across_subdirs_at_once(services: Services, second_process: Services,
                                                          tmp_path: Path) -> None:
    """Changes to several subdirs of one channel (and to one package's row) from two processes."""
    await make_channel(services, "main")
    olds = [build_package(tmp_path / "linux-64", "alpha", f"0.{i}", subdir="linux-64") for i in range(6)]
    for path in olds:
        await ingest(services, path)
    news = {subdir: [build_package(tmp_path / subdir, "alpha", f"1.{i}", subdir=subdir) for i in range(6)]
            for subdir in ("noarch", "osx-64")}
    work = [ingest(services if i % 2 else second_process, p)
            for i, p in enumerate(news["noarch"] + news["osx-64"])]
    work += [packages.delete_package_file(second_process if i % 2 else services, SYSTEM, "main", "linux-64", p.name)
             for i, p in enumerate(olds)]
    await asyncio.gather(*work)
    await wait_published(second_process)
    for subdir, paths in news.items():
        await assert_complete(services, {"alpha": {p.name for p in paths}}, subdir)
    linux = await repodata(services, "main", "linux-64")
    assert linux is not None and linux["packages.conda"] == {}
    async with services.db.read() as session:
        package = (await session.scalars(select(Package))).one()
        size = await session.scalar(select(Channel.size))
    assert package.latest_version == "1.5"
    assert size == sum(p.stat().st_size for paths in news.values() for p in paths)


async def test_shards_from_prepacked_records_equal_shards_from_record_json(services: Services,
                                                                          tmp_path: Path) -> None:
    """Uploads store each record pre-packed; rows without it (older ones) give byte-identical shards."""
    channel = await make_channel(services, "main")
    for fmt in (".conda", ".tar.bz2"):
        await ingest(services, build_package(tmp_path, "alpha", "1.0", "0", fmt=fmt, depends=["beta >=2.0"]))
    await ingest(services, build_package(tmp_path, "beta", "2.0", "0", depends=['gamma[when="__unix"]']))  # v3
    async with services.db.read() as session:
        rows = (await session.execute(select(PackageFile.filename, PackageFile.record, PackageFile.packed))).all()
    assert rows and all(packed == pack_record(fn, record) for fn, record, packed in rows)
    before = await shard_index(services, "main", "noarch")
    assert before is not None and set(before["shards"]) == {"alpha", "beta"}
    async with services.db.write() as session:
        await session.execute(update(PackageFile).values(packed=None))
    await republishing.republish_subdir(services, channel.id, "noarch")
    after = await shard_index(services, "main", "noarch")
    assert after is not None and after["shards"] == before["shards"]
    alpha = await shard(services, "main", "noarch", after["shards"]["alpha"])
    assert {"alpha-1.0-0.conda"} == set(alpha["packages.conda"]) and {"alpha-1.0-0.tar.bz2"} == set(alpha["packages"])
    beta = await shard(services, "main", "noarch", after["shards"]["beta"])
    assert set(beta["v3"]["conda"]) == {"beta-2.0-0"}
