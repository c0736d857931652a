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

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
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
    PublicError,
    StorageError,
)
from graphconda.services import authz, layout, ops_metrics, publishing
from graphconda.services.access import UPLOADS, ChannelKind, gate
from graphconda.services.authz import Actor, Role
from graphconda.services.context import Services
from graphconda.services.locks import insert_ignore_many, lock_subdir
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
    async with services.db.read() as session:  # once for the request, not once per file
        gated = await gate(session, actor, channel_name, allow=UPLOADS, action="uploads")
    try:
        for filename, body in files:
            staged.append(await stage_package(services, actor, channel_name, filename, body, gated=gated))
        if on_staged is not None:
            await on_staged()
        await check_new_many(services, actor, staged, force=force)
        # One transaction and one shard-index write for the whole request, not one per file.
        return await commit_packages(services, actor, staged, force=force)
    finally:
        for item in staged:
            await run_in_threadpool(item.discard)


async def ingest_each(
    services: Services,
    actor: Actor,
    channel_name: str,
    files: Sequence[tuple[str, AsyncIterator[bytes]]],
    *,
    force: bool = False,
) -> list[PackageFile | PublicError]:
    """Several files, each succeeding or failing on its own (GraphQL `uploadPackages`: one result
    per file, in order), but those that pass every check are committed together, in one batch
    (one shard-index write per subdir, not one per file). A failure of that commit is every
    batched file's result."""
    results: list[PackageFile | PublicError | None] = [None] * len(files)
    staged: list[tuple[int, StagedPackage]] = []
    seen: set[str] = set()
    try:
        gated: tuple[Channel, Any] | None = None
        try:
            async with services.db.read() as session:  # once for the request, not once per file
                gated = await gate(session, actor, channel_name, allow=UPLOADS, action="uploads")
        except PublicError:
            pass  # each file then gets the error from its own staging
        for i, (filename, body) in enumerate(files):
            try:
                if filename in seen:
                    raise InvalidInputError(f"{filename} is sent twice in one request; send each file once",
                                            field="files")
                seen.add(filename)
                item = await stage_package(services, actor, channel_name, filename, body, gated=gated)
                staged.append((i, item))
                await check_new(services, actor, item, force=force)
            except PublicError as exc:
                results[i] = exc
        ready = [(i, item) for i, item in staged if results[i] is None]
        if ready:
            try:
                rows = await commit_packages(services, actor, [item for _, item in ready], force=force)
                for (i, _), row in zip(ready, rows, strict=True):
                    results[i] = row
            except PublicError as exc:
                for i, _ in ready:
                    results[i] = exc
    finally:
        for _, item in staged:
            await run_in_threadpool(item.discard)
    return [result for result in results if result is not None]


def _where_file(channel_id: int, subdir: str, filename: str) -> tuple[Any, ...]:
    return (PackageFile.channel_id == channel_id, PackageFile.subdir == subdir, PackageFile.filename == filename)


async def commit_package(
    services: Services, actor: Actor, staged: StagedPackage, *, force: bool = False
) -> PackageFile:
    """Store a staged package and publish it; all or nothing."""
    await check_new(services, actor, staged, force=force)
    return (await commit_packages(services, actor, [staged], force=force))[0]


@dataclass
class BatchChanges:
    """What a batch's row writes changed, for `commit_batch` to publish."""

    names: dict[str, set[str]]  # subdir -> package names whose shards must be rewritten
    old_keys: list[str] = field(default_factory=list)  # blobs no committed row uses any more (deleted after commit)


async def commit_batch(
    services: Services,
    channel: Channel,
    subdirs: Iterable[str],
    write: Callable[[AsyncSession], Awaitable[BatchChanges]],
    *,
    new_keys: Sequence[str] = (),
    publish: bool = True,
) -> BatchChanges:
    """The one batch-commit path (multi-file uploads and mirror syncs): in one transaction holding the
    subdirs' locks, `write` writes the rows, then each touched shard and each subdir's shard index is
    written once, whatever the number of files. On failure the shards are rebuilt from the committed
    rows and the error re-raised (blobs are the caller's business); after commit the old blobs go and
    the monolithic files are queued for republishing."""
    assert channel.id is not None
    now = services.now()
    changes: BatchChanges | None = None
    states: list[publishing.IndexState] = []
    try:
        async with services.db.write() as session:
            # Always in the same order, so two batches over the same subdirs cannot deadlock.
            generations = {subdir: await lock_subdir(session, channel.id, subdir, now, bump=True)
                           for subdir in sorted(set(subdirs))}
            changes = await write(session)
            await session.flush()
            started = time.perf_counter()
            for subdir in sorted(changes.names):
                states.append(await publishing.publish_shards(services, session, channel, subdir,
                                                              sorted(changes.names[subdir]), generations[subdir]))
            ops_metrics.observe_publish("shards", time.perf_counter() - started)
    except BaseException:
        if changes is not None:
            with anyio.CancelScope(shield=True):
                for subdir, names in changes.names.items():
                    try:
                        await publishing.repair_shards(services, channel, subdir, names)
                    except Exception:
                        log.exception("rebuilding the shards of %s/%s after a failed commit failed",
                                      channel.name, subdir)
        raise
    for state in states:
        publishing.remember_index(services, state)
    publishing.notify_written(services, [*new_keys, *changes.old_keys])
    for key in changes.old_keys:
        await _delete_blob(services, key)
    if publish:  # else the caller queues the monolithic files' rebuild itself, later
        for subdir in sorted(set(subdirs)):
            request_publish(services, channel.id, subdir)
    return changes


async def commit_packages(
    services: Services, actor: Actor, staged: Sequence[StagedPackage], *, force: bool = False
) -> list[PackageFile]:
    """Store staged packages of one channel and publish them in one transaction; all or nothing.

    The caller has run `check_new` on each (it is checked again under the lock).
    """
    channel = staged[0].channel
    assert channel.id is not None and all(item.channel.id == channel.id for item in staged)
    keys = [layout.package_key(channel.name, item.subdir, item.sha256, item.filename) for item in staged]
    rows: list[PackageFile] = []
    replacing: set[str] = set()
    now = services.now()

    async def write(session: AsyncSession) -> BatchChanges:
        changes = BatchChanges({})
        existing = await _existing_files(session, channel, staged)
        for item in staged:
            found = existing.get((item.subdir, item.filename))
            if found is not None:
                _check_replace(actor, item, force)
                replacing.add(item.filename)
                if found.stored and found.sha256 != item.sha256:
                    changes.old_keys.append(layout.package_key(channel.name, item.subdir, found.sha256,
                                                               item.filename))
            changes.names.setdefault(item.subdir, set()).add(item.meta.name)
        # Checked after the files' own conflicts: a losing upload of the same bytes may have
        # removed the shared blob, and then this upload has lost the same race.
        stats = await asyncio.gather(*(services.storage.stat(key) for key in keys))
        for item, stat in zip(staged, stats, strict=True):
            if stat is None:
                raise StorageError(f"stored {item.filename} vanished during a concurrent upload; retry")
        rows.extend(await write_rows_many(session, staged, existing, actor, now))
        return changes

    try:
        for item, key in zip(staged, keys, strict=True):
            await services.storage.put_file(key, item.path)
        await commit_batch(services, channel, {item.subdir for item in staged}, write, new_keys=keys)
    except BaseException:
        with anyio.CancelScope(shield=True):
            for item, key in zip(staged, keys, strict=True):
                await _drop_unused_blob(services, channel, item.subdir, item.filename, item.sha256, key)
        raise
    for item in staged:
        ops_metrics.count_upload(item.size)
        log.info("stored %s/%s/%s (%d bytes)%s", channel.name, item.subdir, item.filename, item.size,
                 " replacing the previous file" if item.filename in replacing else "")
    return rows


async def check_new(services: Services, actor: Actor, staged: StagedPackage, *, force: bool = False) -> None:
    """Raise AlreadyExistsError if the file exists and `force` is off (or the actor may not overwrite)."""
    await check_new_many(services, actor, [staged], force=force)


async def check_new_many(services: Services, actor: Actor, staged: Sequence[StagedPackage], *,
                         force: bool = False) -> None:
    """`check_new` for files of one channel, in one query."""
    async with services.db.read() as session:
        existing = await _existing_files(session, staged[0].channel, staged)
    for item in staged:
        if (item.subdir, item.filename) in existing:
            _check_replace(actor, item, force)


async def _existing_files(session: AsyncSession, channel: Channel,
                          staged: Sequence[StagedPackage]) -> dict[tuple[str, str], PackageFile]:
    """The rows (by subdir and filename) that files of `staged` would replace."""
    found: dict[tuple[str, str], PackageFile] = {}
    for subdir in sorted({item.subdir for item in staged}):
        filenames = [item.filename for item in staged if item.subdir == subdir]
        for row in await session.scalars(select(PackageFile).where(
                col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == subdir,
                PackageFile.filename.in_(filenames))):  # type: ignore[attr-defined]
            found[(subdir, row.filename)] = row
    return found


async def write_rows(
    session: AsyncSession, staged: StagedPackage, existing: PackageFile | None, actor: Actor, now: Any
) -> PackageFile:
    """Insert (or overwrite `existing`) the file's row, upsert its Package, keep the channel size right."""
    found = {(staged.subdir, staged.filename): existing} if existing is not None else {}
    return (await write_rows_many(session, [staged], found, actor, now))[0]


async def write_rows_many(
    session: AsyncSession, staged: Sequence[StagedPackage], existing: Mapping[tuple[str, str], PackageFile],
    actor: Actor, now: Any,
) -> list[PackageFile]:
    """`write_rows` for files of one channel in a few statements, not several per file: the Package
    rows upserted at once (a new package's uploader becomes its owner), the files' rows inserted
    or overwritten in one flush, one channel-size update."""
    channel = staged[0].channel
    assert channel.id is not None
    names = sorted({item.meta.name for item in staged})
    known = set(await session.scalars(select(col(Package.name)).where(
        col(Package.channel_id) == channel.id, col(Package.name).in_(names))))
    created = [name for name in names if name not in known]
    if created:
        await session.execute(insert_ignore_many(session, Package, ["channel_id", "name"]), [
            {"channel_id": channel.id, "name": name, "summary": "", "description": "", "license": "", "home": "",
             "dev_url": "", "doc_url": "", "latest_version": "", "about": {}, "created_at": now,
             "updated_at": now} for name in created])
    packages = {p.name: p for p in await session.scalars(locked_packages(channel.id, names))}
    if created and actor.user_id is not None:
        await session.execute(insert_ignore_many(session, PackageMember, ["package_id", "user_id"]), [
            {"package_id": packages[name].id, "user_id": actor.user_id, "role": Role.OWNER} for name in created])
    for item in staged:
        _update_package(packages[item.meta.name], item.meta, now)
    delta = 0
    new_rows: list[dict[str, Any]] = []
    for item in staged:
        old = existing.get((item.subdir, item.filename))
        delta += item.size - (old.size if old is not None else 0)
        values = _values(item, packages[item.meta.name], actor, now)
        if old is None:
            new_rows.append(values)  # inserted at once below (building ORM objects costs more than the insert)
        else:
            for key, value in values.items():
                setattr(old, key, value)
    session.add_all(packages.values())
    await session.flush()
    if new_rows:
        await session.execute(insert(PackageFile), new_rows)
    rows = await _existing_files(session, channel, staged)
    await session.execute(update(Channel).where(Channel.id == channel.id)  # type: ignore[arg-type]
                          .values(size=Channel.size + delta, updated_at=now))
    for name in sorted({item.meta.name for item in staged if (item.subdir, item.filename) in existing}):
        await _refresh_latest(session, packages[name])
    return [rows[(item.subdir, item.filename)] for item in staged]


def _check_replace(actor: Actor, staged: StagedPackage, force: bool) -> None:
    if not force:
        raise AlreadyExistsError(
            f"{staged.filename} already exists in {staged.channel.name}/{staged.subdir}; "
            "upload with force to replace it"
        )
    authz.require_upload(actor, staged.access, staged.meta.name, force=True)


def _values(staged: StagedPackage, package: Package, actor: Actor, now: Any) -> dict[str, Any]:
    """A file's PackageFile column values."""
    meta = staged.meta
    timestamp = meta.index.get("timestamp")
    return {
        "channel_id": staged.channel.id, "subdir": staged.subdir, "filename": staged.filename,
        "package_id": package.id, "name": meta.name, "version": meta.version, "build": meta.build,
        "build_number": meta.index["build_number"], "size": staged.size, "md5": staged.md5,
        "sha256": staged.sha256, "record": staged.record_json, "v3": staged.v3,
        "packed": pack_record(staged.filename, staged.record_json),  # shards concatenate these
        "timestamp": int(timestamp) if timestamp is not None else None, "stored": True,
        "traits": sorted(k for k, v in meta.traits.items() if v), "uploader_id": actor.user_id,
        "uploaded_at": now,
    }


def _text(value: Any, limit: int | None = None) -> str:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), "")
    if not isinstance(value, str):
        return ""
    return value[:limit] if limit else value


def _update_package(package: Package, meta: PackageMetadata, now: Any) -> None:
    """A newer (or equal) version than the package's latest makes its about fields the package's."""
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


def locked_packages(channel_id: int, names: Sequence[str]) -> Any:
    """The Package rows of `names`, locked until the transaction ends (in name order: no deadlock) and
    read afresh: writers in other subdirs update the same rows, and each computes `latest_version`
    from what it read (on PostgreSQL, two uploads of 1.4 and 1.5 at once could leave 1.4)."""
    return (select(Package).where(col(Package.channel_id) == channel_id, col(Package.name).in_(names))
            .order_by(col(Package.name)).with_for_update().execution_options(populate_existing=True))


async def _refresh_latest(session: AsyncSession, package: Package) -> None:
    """After a file was replaced or deleted: the newest version still present."""
    versions = (await session.scalars(select(col(PackageFile.version))
                                      .where(col(PackageFile.package_id) == package.id))).all()
    package.latest_version = max(versions, key=rd.version_key) if versions else ""
    session.add(package)


async def _delete_blob(services: Services, key: str) -> None:
    try:
        await services.storage.delete(key)
    except Exception:  # the rows are right; an orphan blob only costs space
        log.warning("could not delete blob %s", key, exc_info=True)


async def _drop_unused_blob(
    services: Services, channel: Channel, subdir: str, filename: str, sha256: str, key: str
) -> None:
    """After a failed commit: drop our blob unless a committed row uses it."""
    assert channel.id is not None
    try:
        async with services.db.write() as session:
            # The subdir lock orders this against a concurrent upload of the same bytes.
            await lock_subdir(session, channel.id, subdir, services.now(), bump=False)
            used = await session.scalar(select(col(PackageFile.id)).where(*_where_file(channel.id, subdir, filename),
                                                                     col(PackageFile.sha256) == sha256))
            if used is None:
                await services.storage.delete(key)
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
            package = await session.get(Package, row.package_id, with_for_update=True, populate_existing=True)
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
        found = (await session.execute(select(col(PackageFile.id), col(PackageFile.sha256), col(PackageFile.size),
                                              col(PackageFile.stored))
                                       .where(*_where_file(channel.id, subdir, filename)))).first()
    if found is None:
        return None
    fid, sha256, size, stored = found
    assert fid is not None
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
        query = select(PackageFile).where(col(PackageFile.channel_id) == channel.id)
        if subdir is not None:
            query = query.where(col(PackageFile.subdir) == subdir)
        if name is not None:
            query = query.where(col(PackageFile.name) == name)
        return list(await session.scalars(query.order_by(PackageFile.subdir, PackageFile.filename)))
