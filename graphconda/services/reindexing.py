"""Rebuilding a channel's records from the package files already in storage (`graphconda reindex`).

For when the database lost rows or files were put into storage by other means: every
package blob under the channel's prefix whose record is missing or disagrees is read
again (metadata only, as an upload would be); rows whose blob is gone are dropped; then
every subdir's shards, shard index and monolithic files are rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from graphconda.conda.archive import read_package
from graphconda.conda.records import dumps_record, is_v3, make_record
from graphconda.db.models import Channel, PackageFile
from graphconda.errors import GraphcondaError
from graphconda.services import authz, layout, publishing, republishing
from graphconda.services.access import gate
from graphconda.services.authz import Actor
from graphconda.services.context import Services
from graphconda.services.locks import lock_subdir
from graphconda.services.packages import write_rows
from graphconda.services.staging import StagedPackage, read_limits
from graphconda.services.temp_files import temp_file

log = logging.getLogger("graphconda.reindex")


@dataclass
class ReindexResult:
    added: int = 0
    removed: int = 0
    skipped: int = 0  # blobs that are not valid packages (left alone, logged)


async def _download(services: Services, key: str, directory: Path) -> Path:
    fd, path = await run_in_threadpool(temp_file, directory, "reindex")
    out = os.fdopen(fd, "wb")
    try:
        async for chunk in services.storage.open(key):
            await run_in_threadpool(out.write, chunk)
    finally:
        await run_in_threadpool(out.close)
    return path


def _checksums(path: Path) -> tuple[str, str, int]:
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), md5.hexdigest(), size


async def _stage(services: Services, channel: Channel, key: str, subdir: str, sha: str,
                 filename: str, directory: Path) -> StagedPackage | None:
    local = services.storage.local_path(key)
    path = local if local is not None else await _download(services, key, directory)
    try:
        actual, md5, size = await run_in_threadpool(_checksums, path)
        if actual != sha:
            log.warning("%s: content does not match the checksum in its key; skipped", key)
            return None
        meta = await run_in_threadpool(read_package, path, filename, read_limits(services.settings, channel.name))
        if meta.subdir != subdir:
            log.warning("%s: index.json says subdir %s; skipped", key, meta.subdir)
            return None
        record = make_record(meta, md5=md5, sha256=sha, size=size)
        access = authz.ChannelAccess(channel.id, channel.private, None)  # type: ignore[arg-type]
        return StagedPackage(channel, access, path, meta, sha, md5, size, dumps_record(record), is_v3(record))
    except GraphcondaError as exc:
        log.warning("%s is not a valid package (%s); skipped", key, exc)
        return None
    finally:
        if local is None:
            path.unlink(missing_ok=True)


async def reindex_channel(services: Services, actor: Actor, channel_name: str, *,
                          on_subdir: Callable[[int, int, str], None] | None = None) -> ReindexResult:
    """Reindex the channel; `on_subdir(done, total, subdir)` is called before each subdir (job progress)."""
    async with services.db.read() as session:
        channel, access = await gate(session, actor, channel_name)
        rows = {(f.subdir, f.filename): f.sha256 for f in await session.scalars(
            select(PackageFile).where(col(PackageFile.channel_id) == channel.id, col(PackageFile.stored).is_(True)))}
    authz.require_manage_channel(actor, access)
    assert channel.id is not None
    blobs: dict[tuple[str, str], list[str]] = {}
    async for blob in services.storage.list(layout.channel_prefix(channel.name)):
        parsed = layout.parse_package_key(blob.key)
        if parsed is not None and parsed[0] == channel.name:
            blobs.setdefault((parsed[1], parsed[3]), []).append(parsed[2])
    result = ReindexResult()
    directory = services.settings.data_dir / "tmp"
    directory.mkdir(parents=True, exist_ok=True)
    subdirs = {subdir for subdir, _ in [*blobs, *rows]}
    for index, subdir in enumerate(sorted(subdirs)):
        if on_subdir is not None:
            on_subdir(index, len(subdirs), subdir)
        staged: list[StagedPackage] = []
        for (sd, filename), shas in sorted(blobs.items()):
            if sd != subdir or rows.get((sd, filename)) in shas:
                continue
            for sha in shas:  # the first that reads well wins
                key = layout.package_key(channel.name, subdir, sha, filename)
                item = await _stage(services, channel, key, subdir, sha, filename, directory)
                if item is not None:
                    staged.append(item)
                    break
            else:
                result.skipped += 1
        gone = [fn for (sd, fn), sha in rows.items() if sd == subdir and sha not in blobs.get((sd, fn), [])]
        async with services.db.write() as session:
            await lock_subdir(session, channel.id, subdir, services.now(), bump=True)
            for filename in gone:
                await session.execute(delete(PackageFile).where(col(PackageFile.channel_id) == channel.id,
                                                                col(PackageFile.subdir) == subdir,
                                                                col(PackageFile.filename) == filename))
            for item in staged:
                existing = await session.scalar(select(PackageFile).where(
                    col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == subdir,
                    col(PackageFile.filename) == item.filename))
                await write_rows(session, item, existing, actor, services.now())
        await republishing.republish_subdir(services, channel.id, subdir)
        result.added += len(staged)
        result.removed += len(gone)
    async with services.db.write() as session:
        total = (select(func.coalesce(func.sum(col(PackageFile.size)), 0))
                 .where(col(PackageFile.channel_id) == channel.id))
        await session.execute(update(Channel).where(Channel.id == channel.id)  # type: ignore[arg-type]
                              .values(size=total.scalar_subquery()))
    await publishing.publish_channeldata(services, channel.id)
    log.info("reindexed %s: %d added, %d removed, %d skipped", channel.name, result.added, result.removed,
             result.skipped)
    return result

