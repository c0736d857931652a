"""Publishing a channel's index files from stored records: shards per change, monolithic files coalesced.

Per upload or deletion (`publish_shards`, inside the changer's transaction, under the
subdir lock): the changed package names' shards and the shard index are written before
the transaction commits, so a package is installable through sharded repodata as soon as
its upload returns. Shards are content-addressed and written before the index that names
them; the previous shard of a name is recorded as superseded and deleted after
`publish.shard_retention_seconds` (`expire_shards`).

The monolithic files of a subdir (repodata.json, .zst, a gzip copy served as
`Content-Encoding: gzip`, run_exports.json, optional .bz2 and current_repodata.json with its
.zst and gzip copy) and the channel's channeldata.json are rebuilt from the stored
record strings, never by re-reading packages (`publish_subdir`, `publish_channeldata`),
by the per-process publisher (services/publisher.py) that coalesces bursts of changes.
Each subdir's `generation` counts changes and `published_generation` records what the
monolithic files were built from; rebuilds hold the publish lock so that two processes
never write the same files out of order.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import LargeBinary, case, cast, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from graphconda.conda import repodata as rd
from graphconda.conda.repodata_files import SubdirFiles
from graphconda.conda.shards import PackedIndex, build_shard_packed, pack_record, shard_digest
from graphconda.db.models import Channel, Package, PackageFile, Shard, SubdirState, SupersededShard
from graphconda.errors import StorageFullError
from graphconda.services import layout
from graphconda.services.context import Services
from graphconda.services.locks import lock_subdir, publish_lock
from graphconda.services.temp_files import TEMP_DIR, temp_file
from graphconda.settings import Settings

log = logging.getLogger("graphconda.publishing")
# Shards are small and the index is mostly incompressible digests: a high zstd level only
# costs time there (level 16 took 100 ms for a 30,000-name index). Fixed, so that every
# process writes the same bytes for the same records.
SHARD_ZSTD_LEVEL = 3
# The index is rewritten by every upload and is mostly digests: level 1 packs a 10,000-name
# index in half the time of level 3, for a 5 % larger file. Its bytes need not be deterministic.
INDEX_ZSTD_LEVEL = 1


@dataclass(frozen=True)
class PublishOptions:
    shards: bool
    bz2: bool
    current_repodata: bool


def options_of(settings: Settings, channel_options: Mapping[str, Any] | None) -> PublishOptions:
    """A channel's publishing options (Channel.options) over the server defaults."""
    opts = channel_options or {}
    return PublishOptions(
        shards=bool(opts.get("shards", settings.publish.shards)),
        bz2=bool(opts.get("bz2", False)),
        current_repodata=bool(opts.get("current_repodata", False)),
    )


# --- who else wants to know ------------------------------------------------------------


def add_listener(services: Services, listener: Callable[[Iterable[str]], None]) -> None:
    """Call `listener(keys)` after this process rewrites published blobs (the file cache uses it)."""
    services.publish_listeners.append(listener)


def notify_written(services: Services, keys: Iterable[str]) -> None:
    """Tell this process's listeners that these blobs changed (were written or deleted)."""
    keys = list(keys)
    for listener in services.publish_listeners:
        listener(keys)


# --- shards, per change ----------------------------------------------------------------


@dataclass
class IndexState:
    """The {name: digest} map a committed shard index was built from (per-process cache)."""

    channel_id: int
    subdir: str
    generation: int
    shards: dict[str, bytes]
    channel_created: Any = None  # ids can be reused by a channel created after a deletion
    packed: PackedIndex | None = None  # the same map, packed (never changed: copied before a change)


def _index_cache(services: Services) -> dict[tuple[int, str], IndexState]:
    return services.shard_index_cache


def remember_index(services: Services, state: IndexState | None) -> None:
    """Call after the transaction that wrote the index committed; lets the next change skip a full read."""
    if state is not None:
        _index_cache(services)[(state.channel_id, state.subdir)] = state


def forget_index(services: Services, channel_id: int, subdir: str) -> None:
    _index_cache(services).pop((channel_id, subdir), None)


# The record JSON only where no packed form is stored (pack_record makes it then): not read for nothing.
RECORD_IF_UNPACKED = case((col(PackageFile.packed).is_(None), col(PackageFile.record)), else_=None)


def build_packed_shard(rows: Iterable[tuple[str, bytes | None, str | None, bool]]) -> bytes:
    """One name's shard from (filename, packed record or None, record JSON (needed without it), v3) rows."""
    return build_shard_packed([(fn, packed if packed is not None else pack_record(fn, record or ""), bool(v3))
                               for fn, packed, record, v3 in rows], level=SHARD_ZSTD_LEVEL)


async def publish_shards(
    services: Services,
    session: AsyncSession,
    channel: Channel,
    subdir: str,
    names: Iterable[str],
    generation: int | None,
) -> IndexState:
    """Rewrite the shards of `names` and the subdir's shard index, inside a transaction holding the subdir lock.

    `generation` is the one `lock_subdir(bump=True)` returned (None when not bumped: the
    cached name map is then not trusted). Pass the result to `remember_index` after commit.
    """
    assert channel.id is not None
    cid, now = channel.id, services.now()
    cached = _index_cache(services).get((cid, subdir))
    if (generation is not None and cached is not None and cached.generation == generation - 1
            and cached.channel_created == channel.created_at):
        current = dict(cached.shards)
        packed = cached.packed.copy() if cached.packed is not None else None
    else:
        rows = (await session.execute(select(col(Shard.name), col(Shard.digest)).where(col(Shard.channel_id) == cid,
                                                                              col(Shard.subdir) == subdir))).all()
        current = {name: bytes.fromhex(digest) for name, digest in rows}
        packed = None
    if packed is None:
        packed = await run_in_threadpool(PackedIndex, current)
    # Every name's rows in a few queries, the shards built in one thread hop and stored with one
    # flush (put_many): a batch of many names costs about what one name does.
    wanted = sorted(set(names))
    grouped: dict[str, list[Any]] = {}
    for start in range(0, len(wanted), 500):
        for name, *row in (await session.execute(
                select(col(PackageFile.name), col(PackageFile.filename), col(PackageFile.packed),
                       RECORD_IF_UNPACKED, col(PackageFile.v3))
                .where(col(PackageFile.channel_id) == cid, col(PackageFile.subdir) == subdir,
                       col(PackageFile.name).in_(wanted[start:start + 500])))).all():
            grouped.setdefault(name, []).append(row)
    built = await run_in_threadpool(lambda: {name: build_packed_shard(rows) for name, rows in grouped.items()})
    to_store: dict[str, bytes] = {}
    changed: list[dict[str, Any]] = []
    superseded: list[dict[str, Any]] = []
    removed: list[str] = []
    for name in wanted:
        data = built.get(name)
        old = current.get(name)
        if data is None:
            if old is None:
                continue
            del current[name]
            packed.remove(name)
            removed.append(name)
        else:
            digest = shard_digest(data)
            if digest == old:
                continue
            to_store[layout.shard_key(channel.name, subdir, digest.hex())] = data
            current[name] = digest
            packed.set(name, digest)
            changed.append({"channel_id": cid, "subdir": subdir, "name": name, "digest": digest.hex(),
                            "updated_at": now})
        if old is not None:
            superseded.append({"channel_id": cid, "subdir": subdir, "digest": old.hex(), "superseded_at": now})
    if to_store:
        await services.storage.put_many(to_store)
    gone = removed + [row["name"] for row in changed]
    for start in range(0, len(gone), 500):
        await session.execute(delete(Shard).where(col(Shard.channel_id) == cid, col(Shard.subdir) == subdir,
                                                  col(Shard.name).in_(gone[start:start + 500])))
    if changed:
        await session.execute(insert(Shard), changed)
    if superseded:  # one statement, not an ORM object and an INSERT each
        await session.execute(insert(SupersededShard), superseded)
    await put_index(services, channel, subdir, current, packed)
    return IndexState(cid, subdir, generation if generation is not None else -1, current, channel.created_at, packed)


async def put_index(services: Services, channel: Channel, subdir: str, shards: dict[str, bytes],
                    packed: PackedIndex | None = None) -> None:
    """Write the subdir's shard index; `packed`, when given, holds the same map already packed."""
    now = services.now()
    index = await run_in_threadpool(
        lambda: (packed if packed is not None else PackedIndex(shards)).build(subdir, now, level=INDEX_ZSTD_LEVEL))
    key = layout.subdir_file_key(channel.name, subdir, layout.SHARD_INDEX)
    await services.storage.put(key, index)
    notify_written(services, [key])


async def repair_shards(services: Services, channel: Channel, subdir: str, names: Iterable[str]) -> None:
    """Rewrite shards and index from committed rows, after a change that wrote them failed to commit."""
    assert channel.id is not None
    forget_index(services, channel.id, subdir)
    async with services.db.write() as session:
        await lock_subdir(session, channel.id, subdir, services.now(), bump=False)
        await publish_shards(services, session, channel, subdir, names, None)


# --- monolithic files, coalesced ---------------------------------------------------------


async def publish_subdir(services: Services, channel_id: int, subdir: str) -> bool:
    """Rebuild a subdir's monolithic files if its records changed since they were built; True if it did."""
    db = services.db
    async with publish_lock(db, f"subdir:{channel_id}:{subdir}"):
        async with db.read() as session:
            channel = await session.get(Channel, channel_id)
            state = await session.get(SubdirState, (channel_id, subdir))
            if channel is None or state is None or state.published_generation >= state.generation:
                return False
            generation, removed = state.generation, list(state.removed or [])
            files, temps, count = await stream_subdir_files(services, session, channel, subdir, removed)
        try:
            await write_subdir_files(services, channel, subdir, files, generation)
        finally:
            await run_in_threadpool(unlink_all, temps)
    log.info("published %s/%s (generation %d, %d records)", channel.name, subdir, generation, count)
    return True


STREAM_ROWS = 2000  # records per fetch while streaming a subdir's files (~2 MB)


async def stream_subdir_files(services: Services, session: AsyncSession, channel: Channel, subdir: str,
                              removed: list[str]) -> tuple[dict[str, bytes | Path | None], list[Path], int]:
    """A subdir's monolithic files built from its rows as they are read: (files, the temporary files
    behind them for the caller to delete, the record count).

    Memory stays bounded by a fetch, whatever the subdir's size (the big files are temporary
    files, stored without being read back); only the optional current_repodata.json is built
    from every record in memory.
    """
    assert channel.id is not None
    opts = options_of(services.settings, channel.options)
    where = (col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == subdir)
    v3 = [rd.RecordEntry(fn, record, True) for fn, record in (await session.execute(
        select(col(PackageFile.filename), col(PackageFile.record)).where(*where, col(PackageFile.v3).is_(True))
    )).all()]
    temps: list[Path] = []

    def temp(name: str) -> Path:
        fd, path = temp_file(services.settings.data_dir / TEMP_DIR, "publish")
        os.close(fd)
        temps.append(path)
        return path

    legacy = (*where, col(PackageFile.v3).is_not(True))
    # The records' count and lengths in bytes give repodata.json's size up front, so that zstd compresses
    # it while it is written (its frame records the size) instead of after it: one cheap aggregate read.
    octets = (func.octet_length if services.db.backend == "postgresql"
              else lambda text: func.length(cast(text, LargeBinary)))
    n_legacy, n_conda, content = (await session.execute(select(
        func.count(), func.coalesce(func.sum(case((col(PackageFile.filename).like("%.conda"), 1), else_=0)), 0),
        func.coalesce(func.sum(octets(col(PackageFile.filename)) + octets(col(PackageFile.record))), 0),
    ).where(*legacy))).one()

    def start() -> SubdirFiles:
        writer = SubdirFiles(subdir, temp, removed=removed, v3=v3, bz2=opts.bz2)
        try:
            writer.compress_while_writing(int(n_legacy) - int(n_conda), int(n_conda), int(content),
                                          services.settings.publish.zstd_level)
        except BaseException:
            writer.close()
            raise
        return writer

    try:
        writer = await run_in_threadpool(start)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(unlink_all, temps)
        _raise_full(exc)
        raise
    current: list[rd.RecordEntry] | None = list(v3) if opts.current_repodata else None
    # Python's order (code points) is the byte order of UTF-8: PostgreSQL's "C" collation, SQLite's default.
    order = col(PackageFile.filename).collate("C") if services.db.backend == "postgresql" else col(PackageFile.filename)
    query = select(col(PackageFile.filename), col(PackageFile.record)).where(*legacy).order_by(order)
    count = len(v3)
    writing: asyncio.Future[None] | None = None  # one batch is written while the next is read
    try:
        result = await session.stream(query.execution_options(yield_per=STREAM_ROWS))
        async for part in result.partitions(STREAM_ROWS):
            rows = [(fn, record) for fn, record in part]
            count += len(rows)
            if current is not None:
                current.extend(rd.RecordEntry(fn, record, False) for fn, record in rows)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(run_in_threadpool(writer.add, rows))
        if writing is not None:
            await writing
            writing = None
        paths = await run_in_threadpool(writer.finish, services.settings.publish.zstd_level)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            if writing is not None:
                await asyncio.gather(writing, return_exceptions=True)
            await run_in_threadpool(writer.close)
            await run_in_threadpool(unlink_all, temps)
        _raise_full(exc)
        raise
    files: dict[str, bytes | Path | None] = {
        layout.REPODATA: paths["repodata.json"], layout.REPODATA_ZST: paths["repodata.json.zst"],
        layout.REPODATA_GZ: paths["repodata.json.gz"], layout.REPODATA_BZ2: paths.get("repodata.json.bz2"),
        layout.RUN_EXPORTS: paths["run_exports.json"],
        layout.CURRENT_REPODATA: None, layout.CURRENT_REPODATA_ZST: None, layout.CURRENT_REPODATA_GZ: None,
    }
    if current is not None:
        level = services.settings.publish.zstd_level
        data = await run_in_threadpool(rd.build_current_repodata, subdir, current, removed)
        files[layout.CURRENT_REPODATA] = data
        # conda asks for the .zst first: without it, every refresh costs a 404 and a second request.
        files[layout.CURRENT_REPODATA_ZST] = await run_in_threadpool(rd.compress_zst, data, level)
        files[layout.CURRENT_REPODATA_GZ] = await run_in_threadpool(rd.compress_gzip, data)
    return files, temps, count


def _raise_full(exc: BaseException) -> None:
    """A full disk while building is what it is when storing: StorageFullError (the publisher retries)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StorageFullError(f"no space left on the data filesystem to build the index files: {exc}") from exc


def unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


async def write_subdir_files(services: Services, channel: Channel, subdir: str,
                             files: Mapping[str, bytes | Path | None], generation: int) -> None:
    """Store built monolithic files and record the generation they show; hold the publish lock.

    All of them or none (put_many writes every file before it replaces any): a full disk
    leaves the previous set whole and the generation unrecorded, so the rebuild is retried.
    """
    keys = {name: layout.subdir_file_key(channel.name, subdir, name) for name in files}
    try:
        await services.storage.put_many({keys[name]: data for name, data in files.items() if data is not None})
        for name, data in files.items():
            if data is None:
                await services.storage.delete(keys[name])
    finally:
        notify_written(services, keys.values())  # also after a failure: some may have been replaced
    async with services.db.write() as session:
        await session.execute(
            update(SubdirState)
            .where(col(SubdirState.channel_id) == channel.id, col(SubdirState.subdir) == subdir,
                   col(SubdirState.published_generation) < generation)
            .values(published_generation=generation, published_at=services.now())
        )


async def publish_channeldata(services: Services, channel_id: int) -> None:
    """Rebuild channeldata.json (CEP 38) from stored rows: about.json of each name's latest version.

    Rows are read ordered by name and reduced one name at a time, so memory is bounded by
    the names, not by the channel's records.
    """
    async with publish_lock(services.db, f"channeldata:{channel_id}"):
        entries: dict[str, Any] = {}
        subdirs: set[str] = set()
        async with services.db.read() as session:
            channel = await session.get(Channel, channel_id)
            if channel is None:
                return
            abouts: dict[str, Any] = dict((await session.execute(select(col(Package.name), col(Package.about))
                                                 .where(col(Package.channel_id) == channel_id))).all())
            result = await session.stream(
                select(col(PackageFile.name), col(PackageFile.version), col(PackageFile.subdir),
                       col(PackageFile.timestamp), col(PackageFile.traits), col(PackageFile.record))
                .where(col(PackageFile.channel_id) == channel_id).order_by(col(PackageFile.name))
                .execution_options(yield_per=STREAM_ROWS))
            group: list[rd.ChannelPackage] = []
            async for part in result.partitions(STREAM_ROWS):
                packages = await run_in_threadpool(_channel_packages, abouts, part)
                for package in packages:
                    if group and package.name != group[0].name:
                        entries[group[0].name] = rd.channeldata_entry(group)
                        group = []
                    group.append(package)
                    subdirs.add(package.subdir)
            if group:
                entries[group[0].name] = rd.channeldata_entry(group)
        subdirs.update(await channel_subdirs(services, channel_id))
        data = await run_in_threadpool(rd.channeldata_document, channel.name, entries, subdirs)
        key = layout.channel_file_key(channel.name, layout.CHANNELDATA)
        await services.storage.put(key, data)
        notify_written(services, [key])


def _channel_packages(abouts: dict[str, Any], rows: Iterable[Any]) -> list[rd.ChannelPackage]:
    packages = []
    for name, version, subdir, timestamp, traits, record in rows:
        about = abouts.get(name) or {}
        # Parse the record only for what the columns lack: run_exports, or a license about.json omits.
        parsed = json.loads(record) if ('"run_exports"' in record or not about.get("license")) else {}
        packages.append(rd.ChannelPackage(
            name=name, version=version, subdir=subdir, timestamp=timestamp, about=about,
            license=parsed.get("license"), run_exports=parsed.get("run_exports"),
            traits=dict.fromkeys(traits or (), True),
        ))
    return packages


async def unpublished_subdirs(services: Services) -> list[tuple[int, str]]:
    """Subdirs whose monolithic files lag behind their records (a process died before rebuilding)."""
    async with services.db.read() as session:
        rows = await session.execute(select(col(SubdirState.channel_id), col(SubdirState.subdir))
                                     .where(col(SubdirState.published_generation) < col(SubdirState.generation)))
        return [(cid, subdir) for cid, subdir in rows.all()]


# --- superseded shards -----------------------------------------------------------------


async def expire_shards(services: Services) -> int:
    """Delete superseded shards older than the retention time that no index names again; return how many."""
    cutoff = services.now() - timedelta(seconds=services.settings.publish.shard_retention_seconds)
    async with services.db.read() as session:
        subdirs = (await session.execute(select(col(SupersededShard.channel_id), col(SupersededShard.subdir))
                                         .where(col(SupersededShard.superseded_at) <= cutoff).distinct())).all()
    deleted = 0
    for cid, subdir in subdirs:
        # Under the subdir lock, so no upload can make a digest current again while we delete it.
        async with services.db.write() as session:
            await lock_subdir(session, cid, subdir, services.now(), bump=False)
            channel = await session.get(Channel, cid)
            if channel is None:
                continue
            where = (col(SupersededShard.channel_id) == cid, col(SupersededShard.subdir) == subdir)
            expired = set((await session.scalars(select(col(SupersededShard.digest))
                                                 .where(*where, col(SupersededShard.superseded_at) <= cutoff))).all())
            keep = set((await session.scalars(select(col(Shard.digest)).where(col(Shard.channel_id) == cid,
                                                                         col(Shard.subdir) == subdir,
                                                                         col(Shard.digest).in_(expired)))).all())
            keep |= set((await session.scalars(select(col(SupersededShard.digest))
                                               .where(*where, col(SupersededShard.superseded_at) > cutoff,
                                                      col(SupersededShard.digest).in_(expired)))).all())
            for digest in sorted(expired - keep):
                await services.storage.delete(layout.shard_key(channel.name, subdir, digest))
                deleted += 1
            await session.execute(delete(SupersededShard).where(*where, col(SupersededShard.superseded_at) <= cutoff))
    return deleted


async def channel_subdirs(services: Services, channel_id: int) -> list[str]:
    """Subdirs that ever held a package in the channel (noarch is always there too)."""
    async with services.db.read() as session:
        found = (await session.scalars(select(col(SubdirState.subdir))
                                       .where(col(SubdirState.channel_id) == channel_id))).all()
    return sorted({*found, "noarch"})
