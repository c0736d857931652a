"""Package files in channels: the one ingest path for every upload, deletion, lookups.

`ingest_package` is what the Quetz and prefix.dev upload routes, GraphQL `uploadPackages`
and mirror synchronisation all call. services.staging validates the filename before
reading a byte, checks visibility and upload rights, streams the body to a temporary file
while hashing it and reads the metadata; `commit_package` here then stores the blob, writes
the rows and the package's shard plus the shard index in one transaction, and asks the
publisher to rebuild the monolithic files. Any failure leaves no row, no blob and no index
change behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from graphconda.conda import repodata as rd
from graphconda.conda.archive import PackageMetadata
from graphconda.conda.names import parse_filename, validate_subdir
from graphconda.conda.shards import pack_record
from graphconda.db.models import Channel, Package, PackageFile, PackageMember
from graphconda.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)
from graphconda.services import authz, layout, ops_metrics, publishing
from graphconda.services.access import UPLOADS, ChannelKind, gate
from graphconda.services.authz import Actor, Role
from graphconda.services.context import Services
from graphconda.services.locks import insert_ignore, lock_subdir
from graphconda.services.publisher import request_publish
from graphconda.services.staging import StagedPackage, stage_package

log = logging.getLogger("graphconda.packages")


async def ingest_package(
    services: Services,
    actor: Actor,
    channel_name: str,
    filename: str,
    body: AsyncIterator[bytes],
    *,
    force: bool = False,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    allow: frozenset[ChannelKind] = UPLOADS,
) -> PackageFile:
    """Validate, store and publish one package file; see the module docstring.

    Raises InvalidNameError / InvalidPackageError / ChecksumMismatchError (bad input),
    TooLargeError, NotFoundError (no such channel, or invisible), AuthenticationError /
    PermissionDeniedError, ConflictError (a channel whose kind is not in `allow`: mirrors and proxies by default) and
    AlreadyExistsError (the file exists and `force` is not set).
    """
    staged = await stage_package(
        services, actor, channel_name, filename, body,
        expected_sha256=expected_sha256, expected_size=expected_size, allow=allow,
    )
    try:
        return await commit_package(services, actor, staged, force=force)
    finally:
        await run_in_threadpool(staged.discard)


async def ingest_packages(
    services: Services,
    actor: Actor,
    channel_name: str,
    files: Sequence[tuple[str, AsyncIterator[bytes]]],
    *,
    force: bool = False,
    on_staged: Callable[[], Awaitable[None]] | None = None,
) -> list[PackageFile]:
    """Several files at once: every one is validated and checked for conflicts before any is stored.

    `on_staged` runs once all are staged (the caller may free its own copies of the bodies then).
    """
    if not files:
        raise InvalidInputError("no package files were sent", field="files")
    seen: set[str] = set()
    for filename, _ in files:
        # Two bodies for one name cannot both be stored; refusing here keeps the request
        # all or nothing (otherwise the second would fail after the first was published).
        if filename in seen:
            raise InvalidInputError(f"{filename} is sent twice in one request; send each file once", field="files")
        seen.add(filename)
    staged: list[StagedPackage] = []
    try:
        for filename, body in files:
            staged.append(await stage_package(services, actor, channel_name, filename, body))
        if on_staged is not None:
            await on_staged()
        for item in staged:
            await check_new(services, actor, item, force=force)
        return [await commit_package(services, actor, item, force=force) for item in staged]
    finally:
        for item in staged:
            await run_in_threadpool(item.discard)


def _where_file(channel_id: int, subdir: str, filename: str) -> tuple[Any, ...]:
    return (PackageFile.channel_id == channel_id, PackageFile.subdir == subdir, PackageFile.filename == filename)


async def commit_package(
    services: Services, actor: Actor, staged: StagedPackage, *, force: bool = False
) -> PackageFile:
    """Store a staged package and publish it; all or nothing."""
    channel, subdir, filename, name = staged.channel, staged.subdir, staged.filename, staged.meta.name
    assert channel.id is not None
    await check_new(services, actor, staged, force=force)
    key = layout.package_key(channel.name, subdir, staged.sha256, filename)
    await services.storage.put_file(key, staged.path)
    index_state: publishing.IndexState | None = None
    replaced: tuple[int, str, bool] | None = None  # (size, sha256, stored) of the file a force upload replaces
    shards_touched = False
    now = services.now()
    try:
        async with services.db.write() as session:
            generation = await lock_subdir(session, channel.id, subdir, now, bump=True)
            existing = await session.scalar(select(PackageFile).where(*_where_file(channel.id, subdir, filename)))
            if existing is not None:
                _check_replace(actor, staged, force)
                replaced = (existing.size, existing.sha256, existing.stored)
            # Checked after the file's own conflict: a losing upload of the same bytes may have
            # removed the shared blob, and then this upload has lost the same race.
            if await services.storage.stat(key) is None:
                raise StorageError(f"stored {filename} vanished during a concurrent upload; retry")
            row = await write_rows(session, staged, existing, actor, now)
            shards_touched = True
            started = time.perf_counter()
            index_state = await publishing.publish_shards(services, session, channel, subdir, [name], generation)
            ops_metrics.observe_publish("shards", time.perf_counter() - started)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _undo(services, channel, subdir, filename, staged.sha256, key, name if shards_touched else None)
        raise
    publishing.remember_index(services, index_state)
    publishing.notify_written(services, [key])
    if replaced is not None and replaced[2]:
        old_key = layout.package_key(channel.name, subdir, replaced[1], filename)
        if old_key != key:
            await _delete_blob(services, old_key)
    request_publish(services, channel.id, subdir)
    ops_metrics.count_upload(staged.size)
    log.info("stored %s/%s/%s (%d bytes)%s", channel.name, subdir, filename, staged.size,
             " replacing the previous file" if replaced else "")
    return row


async def check_new(services: Services, actor: Actor, staged: StagedPackage, *, force: bool = False) -> None:
    """Raise AlreadyExistsError if the file exists and `force` is off (or the actor may not overwrite)."""
    assert staged.channel.id is not None
    async with services.db.read() as session:
        found = await session.scalar(select(PackageFile.id).where(
            *_where_file(staged.channel.id, staged.subdir, staged.filename)))
    if found is not None:
        _check_replace(actor, staged, force)


async def write_rows(
    session: AsyncSession, staged: StagedPackage, existing: PackageFile | None, actor: Actor, now: Any
) -> PackageFile:
    """Insert (or overwrite `existing`) the file's row, upsert its Package, keep the channel size right."""
    channel = staged.channel
    package = await _upsert_package(session, channel, staged.meta, actor, now)
    delta = staged.size - (existing.size if existing is not None else 0)
    row = existing or PackageFile(channel_id=channel.id, subdir=staged.subdir, filename=staged.filename)
    _fill(row, staged, package, actor, now)
    session.add(row)
    await session.flush()
    await session.execute(update(Channel).where(Channel.id == channel.id)  # type: ignore[arg-type]
                          .values(size=Channel.size + delta, updated_at=now))
    if existing is not None:
        await _refresh_latest(session, package)
    return row


def _check_replace(actor: Actor, staged: StagedPackage, force: bool) -> None:
    if not force:
        raise AlreadyExistsError(
            f"{staged.filename} already exists in {staged.channel.name}/{staged.subdir}; "
            "upload with force to replace it"
        )
    authz.require_upload(actor, staged.access, staged.meta.name, force=True)


def _fill(row: PackageFile, staged: StagedPackage, package: Package, actor: Actor, now: Any) -> None:
    meta = staged.meta
    timestamp = meta.index.get("timestamp")
    row.package_id = package.id  # type: ignore[assignment]
    row.name, row.version, row.build = meta.name, meta.version, meta.build
    row.build_number = meta.index["build_number"]
    row.size, row.md5, row.sha256 = staged.size, staged.md5, staged.sha256
    row.record, row.v3 = staged.record_json, staged.v3
    row.packed = pack_record(staged.filename, staged.record_json)  # shards concatenate these
    row.timestamp = int(timestamp) if timestamp is not None else None
    row.stored = True
    row.traits = sorted(k for k, v in meta.traits.items() if v)
    row.uploader_id = actor.user_id
    row.uploaded_at = now


def _text(value: Any, limit: int | None = None) -> str:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), "")
    if not isinstance(value, str):
        return ""
    return value[:limit] if limit else value


async def _upsert_package(
    session: AsyncSession, channel: Channel, meta: PackageMetadata, actor: Actor, now: Any
) -> Package:
    """The channel's Package row for this name (created on first upload, its uploader becoming owner)."""
    values = {"channel_id": channel.id, "name": meta.name, "summary": "", "description": "", "license": "",
              "home": "", "dev_url": "", "doc_url": "", "latest_version": "", "about": {},
              "created_at": now, "updated_at": now}
    created = await session.execute(insert_ignore(session, Package, values, ["channel_id", "name"]))
    package = (await session.scalars(select(Package).where(Package.channel_id == channel.id,
                                                           Package.name == meta.name))).one()
    if created.rowcount == 1 and actor.user_id is not None:  # type: ignore[attr-defined]
        session.add(PackageMember(package_id=package.id, user_id=actor.user_id, role=Role.OWNER))
    if not package.latest_version or rd.version_key(meta.version) >= rd.version_key(package.latest_version):
        about = meta.about
        package.latest_version = meta.version
        package.summary = _text(about.get("summary"))
        package.description = _text(about.get("description"))
        package.license = _text(about.get("license") or meta.index.get("license"), 256)
        package.home = _text(about.get("home"), 2048)
        package.dev_url = _text(about.get("dev_url"), 2048)
        package.doc_url = _text(about.get("doc_url"), 2048)
        package.about = {k: about[k] for k in rd.ABOUT_FIELDS if about.get(k)}
    package.updated_at = now
    session.add(package)
    return package


async def _refresh_latest(session: AsyncSession, package: Package) -> None:
    """After a file was replaced or deleted: the newest version still present."""
    versions = (await session.scalars(select(PackageFile.version).where(PackageFile.package_id == package.id))).all()
    package.latest_version = max(versions, key=rd.version_key) if versions else ""
    session.add(package)


async def _delete_blob(services: Services, key: str) -> None:
    try:
        await services.storage.delete(key)
    except Exception:  # the rows are right; an orphan blob only costs space
        log.warning("could not delete blob %s", key, exc_info=True)


async def _undo(
    services: Services, channel: Channel, subdir: str, filename: str, sha256: str, key: str, name: str | None
) -> None:
    """After a failed commit: drop our blob unless a committed row uses it, and restore shards."""
    assert channel.id is not None
    try:
        async with services.db.write() as session:
            # The subdir lock orders this against a concurrent upload of the same bytes.
            await lock_subdir(session, channel.id, subdir, services.now(), bump=False)
            used = await session.scalar(select(PackageFile.id).where(*_where_file(channel.id, subdir, filename),
                                                                     PackageFile.sha256 == sha256))
            if used is None:
                await services.storage.delete(key)
        if name is not None:
            await publishing.repair_shards(services, channel, subdir, [name])
    except Exception:
        log.exception("cleaning up after the failed upload of %s/%s/%s failed", channel.name, subdir, filename)


# --- deleting ------------------------------------------------------------------------------


async def delete_package_file(services: Services, actor: Actor, channel_name: str, subdir: str, filename: str) -> None:
    """Remove one file from its channel's indexes and from storage."""
    parsed = parse_filename(filename)
    validate_subdir(subdir)
    async with services.db.read() as session:
        channel, access = await gate(session, actor, channel_name, allow=UPLOADS, action="deletions",
                                     package_name=parsed.name)
    authz.require_delete_package_file(actor, access, parsed.name)
    assert channel.id is not None
    now = services.now()
    shards_touched = False
    try:
        async with services.db.write() as session:
            generation = await lock_subdir(session, channel.id, subdir, now, bump=True)
            row = await session.scalar(select(PackageFile).where(*_where_file(channel.id, subdir, filename)))
            if row is None:
                raise NotFoundError(f"{filename} not found in {channel.name}/{subdir}")
            await session.execute(delete(PackageFile).where(PackageFile.id == row.id))  # type: ignore[arg-type]
            # Package row before channel row, in the same order as uploads lock them (no deadlock).
            package = await session.get(Package, row.package_id)
            if package is not None:
                await _refresh_latest(session, package)
                await session.flush()
            await session.execute(update(Channel).where(Channel.id == channel.id)  # type: ignore[arg-type]
                                  .values(size=Channel.size - row.size, updated_at=now))
            shards_touched = True
            index_state = await publishing.publish_shards(services, session, channel, subdir, [parsed.name],
                                                          generation)
    except BaseException:
        if shards_touched:
            with anyio.CancelScope(shield=True):
                await publishing.repair_shards(services, channel, subdir, [parsed.name])
        raise
    publishing.remember_index(services, index_state)
    old_key = layout.package_key(channel.name, subdir, row.sha256, filename)
    publishing.notify_written(services, [old_key])
    if row.stored:
        await _delete_blob(services, old_key)
    request_publish(services, channel.id, subdir)
    log.info("deleted %s/%s/%s", channel.name, subdir, filename)


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """What serving a package file needs: its id (for download counts), blob key and size."""

    id: int
    key: str | None  # None: not stored here (proxylist), fetch upstream
    size: int
    sha256: str


async def find_file(services: Services, channel: Channel, subdir: str, filename: str) -> FileRef | None:
    """The stored file behind a download URL (visibility is the caller's business)."""
    assert channel.id is not None
    async with services.db.read() as session:
        found = (await session.execute(select(PackageFile.id, PackageFile.sha256, PackageFile.size,
                                              PackageFile.stored)
                                       .where(*_where_file(channel.id, subdir, filename)))).first()
    if found is None:
        return None
    fid, sha256, size, stored = found
    return FileRef(fid, layout.package_key(channel.name, subdir, sha256, filename) if stored else None, size, sha256)


async def get_package_file(services: Services, actor: Actor, channel_name: str, subdir: str,
                           filename: str) -> PackageFile:
    async with services.db.read() as session:
        channel, _ = await gate(session, actor, channel_name)
        row = await session.scalar(select(PackageFile).where(*_where_file(channel.id, subdir, filename)))  # type: ignore[arg-type]
    if row is None:
        raise NotFoundError(f"{filename} not found in {channel_name}/{subdir}")
    return row


async def list_package_files(services: Services, actor: Actor, channel_name: str, *, subdir: str | None = None,
                             name: str | None = None) -> Sequence[PackageFile]:
    """A channel's files (optionally of one subdir or package name), by subdir and filename."""
    async with services.db.read() as session:
        channel, _ = await gate(session, actor, channel_name)
        query = select(PackageFile).where(PackageFile.channel_id == channel.id)
        if subdir is not None:
            query = query.where(PackageFile.subdir == subdir)
        if name is not None:
            query = query.where(PackageFile.name == name)
        return list(await session.scalars(query.order_by(PackageFile.subdir, PackageFile.filename)))
