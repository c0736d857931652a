"""The cleanup sweep: deletes what nothing needs any more, once per deployment (the `cleanup` job).

    superseded shards past publish.shard_retention_seconds   (publishing.expire_shards)
    API keys expired or revoked over jobs.api_key_retention_seconds ago
    upload temp files left by a process that died            (staging.remove_stale_upload_files)
    expired browser sessions                                 (sessions.delete_expired_sessions)
    blobs no row references, older than jobs.orphan_blob_grace_seconds (not a proxy channel's cache)
    finished job runs older than jobs.run_retention_seconds

With `dry_run` nothing is deleted; the report says what would be. Package blobs without a
row are what `graphconda reindex` recovers, so they are only deleted after the grace time
(an operator restoring an older database backup has that long to reindex first).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlmodel import col

from graphconda.db.models import ApiKey, Channel, JobRun, PackageFile, Shard, SupersededShard
from graphconda.services import layout, publishing, sessions, staging
from graphconda.services.context import Services

log = logging.getLogger("graphconda.cleanup")


@dataclass
class CleanupReport:
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self, *, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        parts = [f"{n} {what}" for what, n in self.counts.items()]
        return f"{verb} " + (", ".join(parts) if parts else "nothing")


async def _ended_sessions(services: Services, dry_run: bool) -> int:
    return await sessions.delete_expired_sessions(services, dry_run=dry_run)


async def _expired_shards(services: Services, dry_run: bool) -> int:
    if not dry_run:
        return await publishing.expire_shards(services)
    cutoff = services.now() - timedelta(seconds=services.settings.publish.shard_retention_seconds)
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(SupersededShard)
                                        .where(col(SupersededShard.superseded_at) <= cutoff)) or 0)


async def _old_api_keys(services: Services, dry_run: bool) -> int:
    cutoff = services.now() - timedelta(seconds=services.settings.jobs.api_key_retention_seconds)
    gone = or_(col(ApiKey.expires_at) < cutoff, col(ApiKey.revoked_at) < cutoff)
    async with services.db.write() as session:
        count = int(await session.scalar(select(func.count()).select_from(ApiKey).where(gone)) or 0)
        if count and not dry_run:
            await session.execute(delete(ApiKey).where(gone))
    return count


async def _old_runs(services: Services, dry_run: bool) -> int:
    cutoff = services.now() - timedelta(seconds=services.settings.jobs.run_retention_seconds)
    old = col(JobRun.finished_at) < cutoff
    async with services.db.write() as session:
        count = int(await session.scalar(select(func.count()).select_from(JobRun).where(old)) or 0)
        if count and not dry_run:
            await session.execute(delete(JobRun).where(old))
    return count


async def _orphan_blobs(services: Services, dry_run: bool, log_line: Callable[[str], None]) -> int:
    """Blobs under channels/ that no row references: package files, shards, whole deleted channels."""
    grace = services.now().timestamp() - services.settings.jobs.orphan_blob_grace_seconds
    async with services.db.read() as session:
        rows = (await session.scalars(select(Channel))).all()
    channels = {c.name: c.id for c in rows}
    # A proxy's files are a cache of upstream's (services/proxy.py), with no rows to reference
    # them: served from storage when upstream is down, so never deleted as unreferenced.
    proxies = {c.name for c in rows if c.mirror_mode == "proxy"}
    packages: dict[str, set[tuple[str, str, str]]] = {}
    shards: dict[str, set[tuple[str, str]]] = {}

    async def known(channel: str) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
        if channel not in packages:
            cid = channels[channel]
            async with services.db.read() as session:
                packages[channel] = {(s, sha, fn) for s, sha, fn in (await session.execute(
                    select(col(PackageFile.subdir), col(PackageFile.sha256), col(PackageFile.filename))
                    .where(col(PackageFile.channel_id) == cid))).all()}
                current = (await session.execute(select(col(Shard.subdir), col(Shard.digest))
                                                 .where(col(Shard.channel_id) == cid))).all()
                old = (await session.execute(select(col(SupersededShard.subdir), col(SupersededShard.digest))
                                             .where(col(SupersededShard.channel_id) == cid))).all()
                shards[channel] = {(s, d) for s, d in [*current, *old]}
        return packages[channel], shards[channel]

    count = 0
    async for blob in services.storage.list("channels/"):
        if blob.mtime > grace:
            continue  # maybe an upload or publish whose row is not committed yet
        parts = blob.key.split("/")
        if len(parts) < 3:
            continue
        channel = parts[1]
        orphan = False
        if channel not in channels:
            orphan = True
        elif channel not in proxies:
            files, digests = await known(channel)
            parsed = layout.parse_package_key(blob.key)
            if parsed is not None:
                orphan = (parsed[1], parsed[2], parsed[3]) not in files
            elif len(parts) == 5 and parts[3] == "shards" and parts[4].endswith(".msgpack.zst"):
                orphan = (parts[2], parts[4].removesuffix(".msgpack.zst")) not in digests
        if orphan:
            count += 1
            log_line(f"{'would delete' if dry_run else 'deleting'} {blob.key}")
            if not dry_run:
                await services.storage.delete(blob.key)
    return count


async def run_cleanup(services: Services, *, dry_run: bool = False,
                      progress: Callable[..., None] | None = None, log: Callable[[str], None] | None = None,
                      check_cancelled: Callable[[], None] | None = None) -> CleanupReport:
    """Run every cleanup step; `progress(done=, total=, message=)` and `log(line)` report as it goes."""
    report = CleanupReport()
    say = log or (lambda _line: None)

    async def staged_files(services: Services, dry_run: bool) -> int:
        files = await staging.remove_stale_upload_files(services, dry_run=dry_run)
        for path in files:
            say(f"{'would delete' if dry_run else 'deleted'} {path}")
        return len(files)


    async def blobs(services: Services, dry_run: bool) -> int:
        return await _orphan_blobs(services, dry_run, say)

    steps: list[tuple[str, Callable[[Services, bool], Any]]] = [
        ("superseded shards", _expired_shards),
        ("old API keys", _old_api_keys),
        ("upload temp files", staged_files),
        ("expired sessions", _ended_sessions),
        ("unreferenced blobs", blobs),
        ("old job runs", _old_runs),
    ]
    for index, (what, step) in enumerate(steps):
        if check_cancelled is not None:
            check_cancelled()
        if progress is not None:
            progress(done=index, total=len(steps), message=f"cleaning {what}")
        count = await step(services, dry_run)
        report.counts[what] = count
        say(f"{what}: {count}")
    if progress is not None:
        progress(done=len(steps), total=len(steps))
    return report
