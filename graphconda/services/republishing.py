"""Publishing a whole subdir at once from its stored records: every shard, the index, the monolithic files.

Used by reindexing and whenever many records arrive without uploads (benchmarks, imports).
Both outputs stream the subdir's rows, so memory does not grow with the subdir: the
monolithic files through the publisher's writer (`publishing.stream_subdir_files`, the same
bytes as every rebuild makes), the shards from a second read ordered by name, built and stored
a fetch at a time while repodata.json is being compressed (the writes wait on the disk, the
compression on the CPU), each fetch's shards made durable at once (storage.put_many) before
the index that names them is written. Shard rows and the index are then written under the
subdir lock; if the subdir changed while we built, the shards are built again from what is
committed then and the monolithic files by the publisher, so a concurrent upload's shard is
never replaced by an older one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
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
    RECORD_IF_UNPACKED,
    STREAM_ROWS,
    IndexState,
    build_packed_shard,
    log,
    publish_subdir,
    put_index,
    remember_index,
    stream_subdir_files,
    unlink_all,
    write_subdir_files,
)

Row = tuple[str, str, bytes | None, str | None, bool]  # name, filename, packed record, record JSON (if not packed), v3


def _build_shards(rows: list[Row]) -> dict[str, bytes]:
    """{name: shard bytes} from rows sorted by name."""
    return {name: build_packed_shard([row[1:] for row in group])
            for name, group in itertools.groupby(rows, key=lambda row: row[0])}


async def _publish_all_shards(services: Services, session: AsyncSession, channel: Channel,
                              subdir: str) -> dict[str, bytes]:
    """Build and store every shard of the subdir from its rows, a fetch at a time; {name: digest}.

    Rows come ordered by name; a name's rows that straddle two fetches wait for the next one.
    Each fetch's shards are stored (one flush for all) before the caller writes an index naming them.
    """
    assert channel.id is not None
    query = (select(col(PackageFile.name), col(PackageFile.filename), col(PackageFile.packed),
                    RECORD_IF_UNPACKED, col(PackageFile.v3))
             .where(col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == subdir)
             .order_by(col(PackageFile.name)))
    digests: dict[str, bytes] = {}
    pending: list[Row] = []

    async def flush(rows: list[Row]) -> None:
        shards = await run_in_threadpool(_build_shards, rows)
        made = {name: shard_digest(data) for name, data in shards.items()}
        await services.storage.put_many({layout.shard_key(channel.name, subdir, made[name].hex()): data
                                         for name, data in shards.items()})
        digests.update(made)

    result = await session.stream(query.execution_options(yield_per=STREAM_ROWS))
    async for part in result.partitions(STREAM_ROWS):
        rows = pending + [(name, fn, packed, record, bool(v3)) for name, fn, packed, record, v3 in part]
        last = rows[-1][0]
        cut = len(rows)
        while cut and rows[cut - 1][0] == last:
            cut -= 1
        pending = rows[cut:]  # the last name may go on in the next fetch
        if cut:
            await flush(rows[:cut])
    if pending:
        await flush(pending)
    return digests


async def republish_subdir(services: Services, channel_id: int, subdir: str) -> None:
    """Rebuild every shard, the shard index and the monolithic files of a subdir."""
    async with publish_lock(services.db, f"subdir:{channel_id}:{subdir}"):
        async with services.db.read() as session:
            channel = await session.get(Channel, channel_id)
            state = await session.get(SubdirState, (channel_id, subdir))
        if channel is None:
            return
        seen = state.generation if state else 0
        removed = list(state.removed or []) if state else []
        temps: list[Path] = []
        built: dict[str, bytes | Path | None] = {}
        digests: dict[str, bytes] = {}
        count = 0
        try:
            async def files() -> None:
                nonlocal built, count
                async with services.db.read() as session:
                    built, made, count = await stream_subdir_files(services, session, channel, subdir, removed)
                temps.extend(made)

            async def shards() -> None:
                nonlocal digests
                async with services.db.read() as session:
                    digests = await _publish_all_shards(services, session, channel, subdir)

            async with anyio.create_task_group() as group:
                group.start_soon(files)
                group.start_soon(shards)
            async with services.db.write() as session:
                generation = await lock_subdir(session, channel_id, subdir, services.now(), bump=True)
                changed = generation != seen + 1
                if changed:  # uploads landed meanwhile: build from what is committed now
                    digests = await _publish_all_shards(services, session, channel, subdir)
                await _store_shard_rows(services, session, channel_id, subdir, digests)
                await put_index(services, channel, subdir, digests)
            remember_index(services, IndexState(channel_id, subdir, generation, digests, channel.created_at))
            if not changed:
                await write_subdir_files(services, channel, subdir, built, generation)
                log.info("republished %s/%s (generation %d, %d records, %d shards)", channel.name, subdir,
                         generation, count, len(digests))
        finally:
            await run_in_threadpool(unlink_all, temps)
    if changed:
        await publish_subdir(services, channel_id, subdir)


async def _store_shard_rows(services: Services, session: AsyncSession, channel_id: int, subdir: str,
                            digests: dict[str, bytes]) -> None:
    """Replace the subdir's shard rows; digests no longer current become superseded."""
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
