"""Publishing a whole subdir at once from its stored records: every shard, the index, the monolithic files.

Used by reindexing and whenever many records arrive without uploads (benchmarks, imports).
The records are read once and shared by both outputs; shard blobs are written while
repodata.json is being compressed (the writes wait on the disk, the compression on the
CPU), as one batch made durable at once (storage.put_many) before the index that names
them is written. Shard rows and the index are then written under the subdir lock; if the
subdir changed while we built, everything is built again from what is committed then, so a
concurrent upload's shard is never replaced by an older one.
"""

from __future__ import annotations

import asyncio
import itertools

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from graphconda.conda.shards import shard_digest
from graphconda.db.models import Channel, PackageFile, Shard, SubdirState, SupersededShard
from graphconda.services import layout
from graphconda.services.context import Services
from graphconda.services.locks import lock_subdir, publish_lock
from graphconda.services.publishing import (
    IndexState,
    build_packed_shard,
    build_subdir_files,
    log,
    publish_subdir,
    put_index,
    remember_index,
    write_subdir_files,
)

Row = tuple[str, str, bytes | None, str, bool]  # name, filename, packed record, record JSON, v3


def _build_all_shards(rows: list[Row]) -> dict[str, bytes]:
    """{name: shard bytes} from rows sorted by name."""
    return {name: build_packed_shard([row[1:] for row in group])
            for name, group in itertools.groupby(rows, key=lambda row: row[0])}


async def _put_shards(services: Services, channel: Channel, subdir: str, shards: dict[str, bytes]) -> None:
    """Store every shard and make them durable at once (one flush, not one per shard), before any index names them."""
    await services.storage.put_many({layout.shard_key(channel.name, subdir, shard_digest(data).hex()): data
                                     for data in shards.values()})


async def _rows(session: AsyncSession, channel_id: int, subdir: str) -> list[Row]:
    query = (select(col(PackageFile.name), col(PackageFile.filename), col(PackageFile.packed),
                    col(PackageFile.record), col(PackageFile.v3))
             .where(col(PackageFile.channel_id) == channel_id, col(PackageFile.subdir) == subdir)
             .order_by(col(PackageFile.name)))
    return [(name, fn, packed, record, bool(v3))
            for name, fn, packed, record, v3 in (await session.execute(query)).all()]


async def republish_subdir(services: Services, channel_id: int, subdir: str) -> None:
    """Rebuild every shard, the shard index and the monolithic files of a subdir."""
    async with publish_lock(services.db, f"subdir:{channel_id}:{subdir}"):
        async with services.db.read() as session:
            channel = await session.get(Channel, channel_id)
            state = await session.get(SubdirState, (channel_id, subdir))
            rows = await _rows(session, channel_id, subdir)
        if channel is None:
            return
        seen = state.generation if state else 0
        removed = list(state.removed or []) if state else []
        shards = await run_in_threadpool(_build_all_shards, rows)
        files, _ = await asyncio.gather(
            run_in_threadpool(build_subdir_files, services, channel, subdir, [(fn, r, v3) for _, fn, _, r, v3 in rows],
                              removed),
            _put_shards(services, channel, subdir, shards),
        )
        async with services.db.write() as session:
            generation = await lock_subdir(session, channel_id, subdir, services.now(), bump=True)
            changed = generation != seen + 1
            if changed:  # uploads landed meanwhile: build from what is committed now
                shards = await run_in_threadpool(_build_all_shards, await _rows(session, channel_id, subdir))
                await _put_shards(services, channel, subdir, shards)
            digests = await _store_shard_rows(services, session, channel_id, subdir, shards)
            await put_index(services, channel, subdir, digests)
        remember_index(services, IndexState(channel_id, subdir, generation, digests, channel.created_at))
        if not changed:
            await write_subdir_files(services, channel, subdir, files, generation)
            log.info("republished %s/%s (generation %d, %d records, %d shards)", channel.name, subdir,
                     generation, len(rows), len(shards))
    if changed:
        await publish_subdir(services, channel_id, subdir)


async def _store_shard_rows(services: Services, session: AsyncSession, channel_id: int, subdir: str,
                            shards: dict[str, bytes]) -> dict[str, bytes]:
    """Replace the subdir's shard rows; digests no longer current become superseded."""
    digests = {name: shard_digest(data) for name, data in shards.items()}
    where = (col(Shard.channel_id) == channel_id, col(Shard.subdir) == subdir)
    old = dict((await session.execute(select(col(Shard.name), col(Shard.digest)).where(*where))).all())
    now = services.now()
    superseded = {d for n, d in old.items() if n not in digests or digests[n].hex() != d}
    await session.execute(delete(Shard).where(*where))
    if digests:
        await session.execute(insert(Shard), [{"channel_id": channel_id, "subdir": subdir, "name": n,
                                               "digest": d.hex(), "updated_at": now} for n, d in digests.items()])
    if superseded:
        await session.execute(insert(SupersededShard), [{"channel_id": channel_id, "subdir": subdir, "digest": d,
                                                         "superseded_at": now} for d in superseded])
    return digests
