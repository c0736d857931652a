"""The Database handle: async engines and short-lived sessions for units of work.

SQLite gets WAL mode and a busy timeout so concurrent writers wait instead of failing,
and write transactions start with BEGIN IMMEDIATE: a deferred transaction that reads
and then writes can fail at once with SQLITE_BUSY when another writer committed in
between, and the busy timeout does not help there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from graphconda.errors import DatabaseError


def backend_name(url: str | URL) -> str:
    """'sqlite' or 'postgresql' (or whatever the URL names)."""
    return make_url(url).get_backend_name()


def redact(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_engine(url: URL, *, immediate: bool, busy_timeout_ms: int, echo: bool) -> AsyncEngine:
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # WAL is a property of the file, set when it is created (migrations); switching a file
        # that other connections have open needs an exclusive lock, so only do it when needed.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Engines plus session factories; `read()` for queries, `write()` for changes."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10, busy_timeout_ms: int = 30_000):
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()
        if self.backend == "sqlite":
            self.read_engine = _sqlite_engine(self.url, immediate=False, busy_timeout_ms=busy_timeout_ms, echo=echo)
            self.write_engine = _sqlite_engine(self.url, immediate=True, busy_timeout_ms=busy_timeout_ms, echo=echo)
        else:
            self.read_engine = create_async_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self.write_engine = self.read_engine
        self._read = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without error."""
        async with self._write() as session, session.begin():
            yield session

    async def check(self) -> None:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise DatabaseError(f"database {redact(self.url)} unreachable: {_one_line(exc)}") from exc

    async def close(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


def _one_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__
