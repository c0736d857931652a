"""Locks that serialise publishing across tasks and server processes, on SQLite and PostgreSQL.

Two kinds:
- the subdir lock: the write lock on a subdir's `SubdirState` row, taken first thing in a
  write transaction (bumping its generation when the subdir's records change). Uploads and
  deletions hold it while they write a shard and the shard index, so index writes never
  interleave and the index always matches the committed shard rows.
- the publish lock: a named mutex held while a subdir's monolithic files are rebuilt. It
  is not a database write lock (a rebuild of a big subdir takes a second or more, and on
  SQLite that would stall every writer): a PostgreSQL advisory lock, or on SQLite (one host
  by nature) an flock on a file beside the database.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db import Database
from graphconda.db.models import SubdirState

_POLL_SECONDS = 0.02
_PG_POLL_SECONDS = 0.05


def insert_ignore(session: AsyncSession, model: Any, values: Mapping[str, Any], keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING for the session's dialect."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)


def insert_ignore_many(session: AsyncSession, model: Any, keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, executed with a list of rows (executemany)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=keys)


def _where(channel_id: int, subdir: str) -> tuple[Any, ...]:
    return (SubdirState.channel_id == channel_id, SubdirState.subdir == subdir)


async def lock_subdir(session: AsyncSession, channel_id: int, subdir: str, now: datetime, *, bump: bool) -> int:
    """Lock the subdir's state row (creating it) for the rest of the transaction; return its generation.

    With `bump`, the generation is incremented first: the UPDATE is what takes the lock,
    so concurrent changers queue here before reading anything.
    """
    if bump:
        stmt: Any = (
            update(SubdirState)
            .where(*_where(channel_id, subdir))
            .values(generation=SubdirState.generation + 1, updated_at=now)
            .returning(col(SubdirState.generation))
        )
    else:
        stmt = select(col(SubdirState.generation)).where(*_where(channel_id, subdir)).with_for_update()
    generation = (await session.execute(stmt)).scalar_one_or_none()
    if generation is None:
        row = {"channel_id": channel_id, "subdir": subdir, "generation": 0, "published_generation": 0,
               "removed": [], "updated_at": now}
        await session.execute(insert_ignore(session, SubdirState, row, ["channel_id", "subdir"]))
        generation = (await session.execute(stmt)).scalar_one()
    return int(generation)


def _pg_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _lock_dir(db: Database) -> Path:
    database = db.url.database
    if not database or database == ":memory:":
        return Path(tempfile.gettempdir()) / "graphconda-locks"
    path = Path(database).resolve()
    return path.with_name(path.name + ".locks")


_LOCK_DIRS: set[Path] = set()  # made already


def _open_lock_file(directory: Path, name: str) -> int:
    """Open (creating) the lock file: a few microseconds beside a local database, so no thread hop for it."""
    path = directory / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")
    if directory in _LOCK_DIRS:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT)
        except FileNotFoundError:
            pass  # its directory was removed meanwhile
    directory.mkdir(parents=True, exist_ok=True)
    _LOCK_DIRS.add(directory)
    return os.open(path, os.O_RDWR | os.O_CREAT)


@asynccontextmanager
async def publish_lock(db: Database, name: str) -> AsyncIterator[None]:
    """Hold the named mutex (across processes) for the duration of the block."""
    if db.backend == "postgresql":
        async with db.write_engine.begin() as conn:
            # Transaction-scoped: released on commit or when the connection drops. Polled rather
            # than waited for in one statement: a rebuild elsewhere may outlast statement_timeout.
            query, key = text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _pg_key(name)}
            while True:  # another process's lock: nothing to wait on but time
                if await conn.scalar(query, key):
                    break
                await asyncio.sleep(_PG_POLL_SECONDS)
            yield
        return
    fd = _open_lock_file(_lock_dir(db), name)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never blocks the loop
                break
            except BlockingIOError:
                await asyncio.sleep(_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
