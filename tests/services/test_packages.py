"""Ingesting and deleting package files (graphconda/services/packages.py), at the service level."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from graphconda.db.models import Channel, Package, PackageMember
from graphconda.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ChecksumMismatchError,
    ConflictError,
    InvalidNameError,
    InvalidPackageError,
    NotFoundError,
    PermissionDeniedError,
    TooLargeError,
)
from graphconda.services import packages
from graphconda.services.access import ChannelKind
from graphconda.services.authz import ANONYMOUS, SYSTEM, Role
from graphconda.services.context import Services
from tests.helpers.channels import (
    add_member,
    chunks,
    leftover_temp_files,
    make_channel,
    make_user,
    package_files,
    read_blob,
    repodata,
    shard,
    shard_index,
    snapshot,
    storage_keys,
)
from tests.helpers.packages import build_package, sha256_of


async def ingest(services: Services, path: Path, channel: str = "main", *, actor=SYSTEM, **kwargs):  # type: ignore[no-untyped-def]
    return await packages.ingest_package(services, actor, channel, path.name, chunks(path), **kwargs)


async def test_upload_stores_record_blob_and_is_in_shards_before_returning(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    path = build_package(tmp_path, "alpha", "1.2.0", "py_0", depends=["python >=3.9", "beta>=2.0"],
                         run_exports={"weak": ["alpha >=1.2"]}, timestamp=1_700_000_000_000)
    row = await ingest(services, path)

    record = json.loads(row.record)
    data = path.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["md5"] == hashlib.md5(data).hexdigest()
    assert record["size"] == len(data)
    assert record["depends"] == ["python >=3.9", "beta>=2.0"]  # kept as declared
    assert record["run_exports"] == {"weak": ["alpha >=1.2"]}
    assert record["timestamp"] == 1_700_000_000_000
    assert not {"fn", "url", "channel"} & record.keys()
    # The blob holds the exact bytes.
    blob = [k for k in await storage_keys(services) if k.endswith("/alpha-1.2.0-py_0.conda")]
    assert len(blob) == 1 and await read_blob(services, blob[0]) == data

    # Already in the shard index, without waiting for the publisher.
    index = await shard_index(services, "main", "noarch")
    assert index is not None and set(index["shards"]) == {"alpha"}
    assert index["info"]["subdir"] == "noarch"
    entry = await shard(services, "main", "noarch", index["shards"]["alpha"])
    packed = entry["packages.conda"]["alpha-1.2.0-py_0.conda"]
    assert packed["sha256"] == bytes.fromhex(record["sha256"])  # raw bytes, not hex

    published = await repodata(services, "main", "noarch")
    assert published is not None
    assert published["packages.conda"] == {"alpha-1.2.0-py_0.conda": record}
    assert published["info"] == {"subdir": "noarch"}


async def test_tar_bz2_goes_under_packages_and_platform_subdir(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    path = build_package(tmp_path, "gamma", "0.1", "h1_0", subdir="linux-64", fmt=".tar.bz2")
    await ingest(services, path)
    published = await repodata(services, "main", "linux-64")
    assert published is not None
    assert list(published["packages"]) == ["gamma-0.1-h1_0.tar.bz2"]
    assert published["packages.conda"] == {}
    assert published["info"]["subdir"] == "linux-64"


async def test_duplicate_without_force_is_refused_and_changes_nothing(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    first = build_package(tmp_path / "a", "alpha", "1.0", "0")
    await ingest(services, first)
    await repodata(services, "main", "noarch")
    before = await snapshot(services)
    other = build_package(tmp_path / "b", "alpha", "1.0", "0", files={"share/x": b"different"})
    with pytest.raises(AlreadyExistsError, match="already exists"):
        await ingest(services, other)
    assert await snapshot(services) == before


async def test_force_replaces_file_record_and_blob(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    first = build_package(tmp_path / "a", "alpha", "1.0", "0")
    await ingest(services, first)
    old_keys = await storage_keys(services)
    second = build_package(tmp_path / "b", "alpha", "1.0", "0", files={"share/x": b"rebuilt"})
    await ingest(services, second, force=True)

    published = await repodata(services, "main", "noarch")
    assert published is not None
    assert published["packages.conda"]["alpha-1.0-0.conda"]["sha256"] == sha256_of(second)
    blobs = [k for k in await storage_keys(services) if k.endswith(".conda")]
    assert len(blobs) == 1 and sha256_of(second) in blobs[0]
    assert next(k for k in old_keys if k.endswith(".conda")) not in blobs
    async with services.db.read() as session:
        size = await session.scalar(select(Channel.size).where(Channel.name == "main"))
    assert size == second.stat().st_size


async def test_wrong_sha256_is_refused_without_trace(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    before = await snapshot(services)
    path = build_package(tmp_path, "alpha")
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        await ingest(services, path, expected_sha256="0" * 64)
    assert await snapshot(services) == before
    assert not leftover_temp_files(services)


async def test_over_limit_stops_reading_at_once(services: Services, tmp_path: Path) -> None:
    services.settings.limits.max_upload_bytes = 100_000
    await make_channel(services, "main")
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            yield b"\0" * 65536

    with pytest.raises(TooLargeError, match="100000 bytes"):
        await packages.ingest_package(services, SYSTEM, "main", "alpha-1.0-0.conda", endless())
    assert sent <= 2 * 65536
    with pytest.raises(TooLargeError):  # announced too big: refused before reading anything
        await packages.ingest_package(services, SYSTEM, "main", "alpha-1.0-0.conda", endless(),
                                      expected_size=200_000)
    assert sent <= 2 * 65536
    assert not await storage_keys(services)


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("../alpha-1.0-0.conda", "must not contain"),
        ("sub/alpha-1.0-0.conda", "must not contain"),
        ("Alpha-1.0-0.conda", "invalid package name"),
        ("alpha-1.0-0.zip", "ends in '.conda' or '.tar.bz2'"),
        ("a" * 65 + "-1.0-0.conda", "limit is 64"),
        ("alpha-1.0.conda", "expected '<name>-<version>-<build>"),
    ],
)
async def test_bad_filenames_are_refused_before_reading(services: Services, filename: str, message: str) -> None:
    await make_channel(services, "main")
    read = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        read = True
        yield b"x"

    with pytest.raises(InvalidNameError, match=message):
        await packages.ingest_package(services, SYSTEM, "main", filename, body())
    assert not read


async def test_filename_must_match_index_json(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    renamed = build_package(tmp_path, "alpha", "1.0", "0", fmt=".tar.bz2")
    with pytest.raises(InvalidPackageError, match="does not match"):
        await packages.ingest_package(services, SYSTEM, "main", "alpha-2.0-0.tar.bz2", chunks(renamed))
    lying = build_package(tmp_path, "alpha", "1.0", "0", index_overrides={"version": "3.0"})
    with pytest.raises(InvalidPackageError, match="does not match"):
        await ingest(services, lying)
    assert not await storage_keys(services)
    assert not await package_files(services)


async def test_mirror_channels_refuse_uploads(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "mirrored", mirror=True)
    with pytest.raises(ConflictError, match="accepts no uploads"):
        await ingest(services, build_package(tmp_path, "alpha"), "mirrored")
    # What the gate allows is the caller's choice: a mirror sync stores into mirror channels.
    row = await ingest(services, build_package(tmp_path, "alpha"), "mirrored", allow=frozenset({ChannelKind.MIRROR}))
    assert row.filename == "alpha-1.0-0.conda"


async def test_visibility_and_rights(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "secret", private=True)
    await make_channel(services, "public")
    path = build_package(tmp_path, "alpha")
    with pytest.raises(NotFoundError, match="channel not found"):
        await ingest(services, path, "secret", actor=ANONYMOUS)
    with pytest.raises(NotFoundError, match="channel not found"):
        await ingest(services, path, "no-such-channel")
    with pytest.raises(AuthenticationError):
        await ingest(services, path, "public", actor=ANONYMOUS)
    member = await make_user(services, "member")
    await add_member(services, "secret", member, Role.MEMBER)
    with pytest.raises(PermissionDeniedError):
        await ingest(services, path, "secret", actor=member)
    assert not await storage_keys(services)


async def test_first_uploader_owns_the_package_and_about_tracks_latest(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    maintainer = await make_user(services, "maint")
    await add_member(services, "main", maintainer, Role.MAINTAINER)
    await ingest(services, build_package(tmp_path, "alpha", "2.0", about={"summary": "new", "home": "https://a.org"}),
                 actor=maintainer)
    await ingest(services, build_package(tmp_path, "alpha", "1.10", about={"summary": "old"}), actor=maintainer)
    async with services.db.read() as session:
        package = await session.scalar(select(Package).where(Package.name == "alpha"))
        owners = (await session.scalars(select(PackageMember.user_id).where(PackageMember.role == "owner"))).all()
    assert package is not None
    assert (package.latest_version, package.summary, package.home) == ("2.0", "new", "https://a.org")
    assert owners == [maintainer.user_id]
    await ingest(services, build_package(tmp_path, "alpha", "2.0.1", about={"summary": "newer"}), actor=maintainer)
    async with services.db.read() as session:
        package = await session.scalar(select(Package).where(Package.name == "alpha"))
    assert package is not None and (package.latest_version, package.summary) == ("2.0.1", "newer")


async def test_delete_removes_from_indexes_and_storage(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    keep = build_package(tmp_path, "alpha", "1.0")
    gone = build_package(tmp_path, "alpha", "2.0")
    await ingest(services, keep)
    await ingest(services, gone)
    await packages.delete_package_file(services, SYSTEM, "main", "noarch", gone.name)

    published = await repodata(services, "main", "noarch")
    assert published is not None and list(published["packages.conda"]) == [keep.name]
    index = await shard_index(services, "main", "noarch")
    assert index is not None
    assert list((await shard(services, "main", "noarch", index["shards"]["alpha"]))["packages.conda"]) == [keep.name]
    assert not [k for k in await storage_keys(services) if k.endswith(gone.name)]
    async with services.db.read() as session:
        package = await session.scalar(select(Package).where(Package.name == "alpha"))
    assert package is not None and package.latest_version == "1.0"

    await packages.delete_package_file(services, SYSTEM, "main", "noarch", keep.name)
    index = await shard_index(services, "main", "noarch")
    assert index is not None and index["shards"] == {}
    with pytest.raises(NotFoundError, match="not found"):
        await packages.delete_package_file(services, SYSTEM, "main", "noarch", keep.name)


async def test_delete_needs_rights(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    await ingest(services, build_package(tmp_path, "alpha"))
    member = await make_user(services, "member")
    await add_member(services, "main", member, Role.MEMBER)
    with pytest.raises(PermissionDeniedError):
        await packages.delete_package_file(services, member, "main", "noarch", "alpha-1.0-0.conda")
    with pytest.raises(AuthenticationError):
        await packages.delete_package_file(services, ANONYMOUS, "main", "noarch", "alpha-1.0-0.conda")
    assert len(await package_files(services)) == 1


async def test_concurrent_uploads_all_land(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    paths = [build_package(tmp_path, f"pkg{i % 4}", f"1.{i}") for i in range(12)]
    await asyncio.gather(*(ingest(services, p) for p in paths))
    published = await repodata(services, "main", "noarch")
    assert published is not None and set(published["packages.conda"]) == {p.name for p in paths}
    index = await shard_index(services, "main", "noarch")
    assert index is not None and set(index["shards"]) == {"pkg0", "pkg1", "pkg2", "pkg3"}
    for name, digest in index["shards"].items():
        files = (await shard(services, "main", "noarch", digest))["packages.conda"]
        assert set(files) == {p.name for p in paths if p.name.startswith(name + "-")}


async def test_same_file_raced_once_wins_and_loser_leaves_nothing(services: Services, tmp_path: Path) -> None:
    await make_channel(services, "main")
    a = build_package(tmp_path / "a", "alpha", files={"share/a": b"a"})
    b = build_package(tmp_path / "b", "alpha", files={"share/b": b"b"})
    results = await asyncio.gather(ingest(services, a), ingest(services, b), ingest(services, a),
                                   return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, AlreadyExistsError) for r in results if isinstance(r, BaseException))
    blobs = [k for k in await storage_keys(services) if k.endswith(".conda")]
    assert len(blobs) == 1 and wins[0].sha256 in blobs[0]
    assert await read_blob(services, blobs[0]) is not None
