"""Services: the handles every unit of work needs (settings, database, storage, clock, upstream client).

HTTP routes, GraphQL resolvers, CLI commands and jobs all build or receive one of these
and call the verbs in graphconda.services.* with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2

from graphconda.db import Database
from graphconda.settings import Settings
from graphconda.storage.base import BlobStore

if TYPE_CHECKING:
    from graphconda.jobs.runner import Runner

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: BlobStore
    http: httpx2.AsyncClient  # for upstream channels and OAuth; injected so tests can swap it
    clock: Callable[[], datetime] = utcnow
    # This process's job runner, when it runs one (serve, scheduler): run_job wakes it.
    runner: Runner | None = None
    # Per-process singletons other services hang here (publisher, event hubs, ...).
    extras: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    def singleton(self, key: str, factory: Callable[[Services], T]) -> T:
        """The per-process object stored under `key`, made by `factory(self)` on first use."""
        found = self.extras.get(key)
        if found is None:
            found = self.extras[key] = factory(self)
        return found  # type: ignore[no-any-return]

    async def aclose_extras(self) -> None:
        """Close the singletons hung on `extras` (newest first), e.g. flush the publisher."""
        while self.extras:
            _, extra = self.extras.popitem()
            aclose = getattr(extra, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # one failing extra must not keep the others open
                    logging.getLogger("graphconda").exception("closing %r failed", extra)


@dataclass
class ServicesHandle:
    """Owns the resources behind a Services; `aclose` releases them in reverse order."""

    services: Services
    stack: AsyncExitStack

    async def aclose(self) -> None:
        await self.stack.aclose()


async def open_services(
    settings: Settings,
    *,
    http: httpx2.AsyncClient | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> ServicesHandle:
    """Open the database, storage and HTTP client named by `settings`."""
    from graphconda.storage import open_store

    stack = AsyncExitStack()
    try:
        db = Database(
            settings.database_url,
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
            busy_timeout_ms=settings.database.busy_timeout_ms,
            connect_timeout=settings.database.connect_timeout_seconds,
            statement_timeout=settings.database.statement_timeout_seconds,
        )
        stack.push_async_callback(db.close)
        storage = open_store(settings)
        stack.push_async_callback(storage.close)
        if http is None:
            http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, connect=10.0), follow_redirects=True)
            stack.push_async_callback(http.aclose)
        services = Services(settings=settings, db=db, storage=storage, http=http, clock=clock)
        stack.push_async_callback(services.aclose_extras)  # first to run: extras still need db/storage
    except BaseException:
        await stack.aclose()
        raise
    return ServicesHandle(services, stack)
