"""The Database handle: async engines and short-lived sessions for units of work.

SQLite gets WAL mode and a busy timeout so concurrent writers wait instead of failing,
and write transactions start with BEGIN IMMEDIATE: a deferred transaction that reads
and then writes can fail at once with SQLITE_BUSY when another writer committed in
between, and the busy timeout does not help there. The writers of one process also queue
in order (an asyncio lock) before they BEGIN, for as long as it takes: SQLite's busy
handler is not fair (a waiter sleeps and polls, and writers arriving meanwhile overtake
it), and upload transactions hold the lock across the fsyncs of a shard and the shard
index, so under a burst of uploads a writer used to wait out the whole busy timeout and
fail ("database is locked") while others went through. The busy timeout now only bounds
waiting for writers of other processes.

A database that is down answers within bounded time: connections give up after
`connect_timeout_seconds` (and a free pooled connection is waited for at most twice
that), PostgreSQL statements after `statement_timeout_seconds`. Refused connections,
timeouts, lost connections and a lock held past the wait become DatabaseUnavailableError
(HTTP 503 with Retry-After), a full disk under SQLite StorageFullError (507); nothing of
the driver's own exception types leaks past this module.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from graphconda.errors import DatabaseError, DatabaseUnavailableError, StorageFullError

# PostgreSQL SQLSTATEs that mean "not now" rather than "wrong": query canceled (statement
# timeout), admin shutdown, crash shutdown, cannot connect now, too many connections.
_PG_TRANSIENT = frozenset({"57014", "57P01", "57P02", "57P03", "53300"})
_IN_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("graphconda_in_sqlite_write", default=False)


def backend_name(url: str | URL) -> str:
    """'sqlite' or 'postgresql' (or whatever the URL names)."""
    return make_url(url).get_backend_name()


def redact(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _one_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


def _translated(exc: BaseException, connect_timeout: float) -> Exception | None:
    """Our error for a driver exception that means "the database cannot answer now", else None."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc.__cause__, TimeoutError | OSError):  # the driver adapter's wrapping
        exc = exc.__cause__
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailableError(f"the database did not answer within {connect_timeout:g} s")
    if isinstance(exc, OSError):
        return DatabaseUnavailableError(f"cannot reach the database: {_one_line(exc)}")
    message = _one_line(exc)
    if "database is locked" in message or "database table is locked" in message:
        return DatabaseUnavailableError("the database stayed locked by other writers; try again")
    if "database or disk is full" in message:
        return StorageFullError("the database's disk is full")
    if "unable to open database file" in message or "disk I/O error" in message:
        return DatabaseUnavailableError(f"the database file cannot be used: {message}")
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if sqlstate in _PG_TRANSIENT or (isinstance(sqlstate, str) and sqlstate.startswith("08")):
        return DatabaseUnavailableError(f"the database cannot answer now: {message}")
    if type(exc).__name__ in ("ConnectionDoesNotExistError", "ConnectionFailureError"):
        return DatabaseUnavailableError(f"the database connection failed: {message}")
    return None


def _guard(engine: AsyncEngine, connect_timeout: float, sqlite_file: str | None = None) -> None:
    """Turn connection failures and timeouts into DatabaseUnavailableError, at their source."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if sqlite_file and not os.path.isdir(os.path.dirname(os.path.abspath(sqlite_file))):
            # Its volume is gone: say so without starting (and leaking) a driver thread per attempt.
            raise DatabaseUnavailableError(f"the database file cannot be opened: {sqlite_file} (no such directory)")
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            raise _translated(exc, connect_timeout) or DatabaseUnavailableError(
                f"cannot connect to the database: {_one_line(exc)}") from exc

    @event.listens_for(engine.sync_engine, "handle_error")
    def _execute(context: ExceptionContext) -> None:
        if context.is_disconnect:
            raise DatabaseUnavailableError("the database connection was lost") from context.original_exception
        translated = _translated(context.original_exception, connect_timeout)
        if translated is not None:
            raise translated from context.original_exception


def _sqlite_engine(url: URL, *, immediate: bool, busy_timeout_ms: int, echo: bool) -> AsyncEngine:
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000})
    database = url.database if url.database and url.database != ":memory:" else None
    _guard(engine, busy_timeout_ms / 1000, database)

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

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10, busy_timeout_ms: int = 30_000,
                 connect_timeout: float = 5.0, statement_timeout: float = 30.0):
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()
        self.busy_timeout = busy_timeout_ms / 1000
        self._writers = asyncio.Lock()  # SQLite: this process's writers, in arrival order
        if self.backend == "sqlite":
            self.read_engine = _sqlite_engine(self.url, immediate=False, busy_timeout_ms=busy_timeout_ms, echo=echo)
            self.write_engine = _sqlite_engine(self.url, immediate=True, busy_timeout_ms=busy_timeout_ms, echo=echo)
        else:
            connect_args: dict[str, Any] = {"timeout": connect_timeout}
            if statement_timeout:
                # The server cancels a statement running too long; the client stops waiting a little
                # later, for a server that stopped answering altogether.
                connect_args["server_settings"] = {"statement_timeout": str(int(statement_timeout * 1000))}
                connect_args["command_timeout"] = statement_timeout + connect_timeout
            self.read_engine = create_async_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                pool_timeout=2 * connect_timeout, connect_args=connect_args,
            )
            _guard(self.read_engine, connect_timeout)
            self.write_engine = self.read_engine
        self._read = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with _pool_wait(), self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends without error."""
        if self.backend != "sqlite" or _IN_WRITE.get():
            async with _pool_wait(), self._write() as session, session.begin():
                yield session
            return
        # No time limit here: every writer ahead in the queue holds the lock for one short
        # transaction, and a burst of uploads must wait its turn rather than be refused.
        await self._writers.acquire()
        token = _IN_WRITE.set(True)  # a write opened inside this one must not queue behind it
        try:
            async with self._write() as session, session.begin():
                yield session
        finally:
            _IN_WRITE.reset(token)
            self._writers.release()

    async def check(self) -> None:
        try:
            async with _pool_wait(), self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            raise DatabaseError(f"database {redact(self.url)} unreachable: {_one_line(exc)}") from exc

    async def close(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


@asynccontextmanager
async def _pool_wait() -> AsyncIterator[None]:
    """No free pooled connection in time: the database is too slow or gone, not a bug (503, not 500)."""
    try:
        yield
    except sa_exc.TimeoutError as exc:
        raise DatabaseUnavailableError(f"no database connection became free in time: {_one_line(exc)}") from exc
