"""Services: the handles every unit of work needs (settings, database, storage, clock, upstream client).

HTTP routes, GraphQL resolvers, CLI commands and jobs all build or receive one of these
and call the verbs in graphconda.services.* with it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx2

from graphconda.db import Database
from graphconda.settings import Settings
from graphconda.storage.base import BlobStore

if TYPE_CHECKING:
    from graphconda.jobs.runner import Runner
    from graphconda.jobs.scheduler import Scheduler
    from graphconda.services.downloads import DownloadCounter
    from graphconda.services.job_watcher import JobWatcher
    from graphconda.services.proxy import ProxyState
    from graphconda.services.publisher import Publisher
    from graphconda.services.publishing import IndexState
    from graphconda.services.serving import ServingCache
    from graphconda.services.upstream import UpstreamClient


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: BlobStore
    http: httpx2.AsyncClient  # OAuth and registered mirrors (upstream channels: services/upstream.py); injectable
    clock: Callable[[], datetime] = utcnow
    # Per-process components: made by open_services, closed by its exit stack (newest first).
    publisher: Publisher = field(init=False)
    downloads: DownloadCounter = field(init=False)
    serving_cache: ServingCache = field(init=False)
    upstream: UpstreamClient = field(init=False)  # negative cache and circuit breakers for upstream channels
    proxy: ProxyState = field(init=False)  # what proxy channels found fresh, parsed records
    job_watcher: JobWatcher = field(init=False)  # polls watched job runs for jobUpdates subscriptions
    # Shard index state this process last committed, per (channel id, subdir) (see publishing.remember_index).
    shard_index_cache: dict[tuple[int, str], IndexState] = field(init=False, default_factory=dict)
    # Called with the keys of blobs this process rewrote (the serving cache drops them).
    publish_listeners: list[Callable[[list[str]], None]] = field(init=False, default_factory=list)
    # This process's job runner and scheduler, when it runs them (serve, `graphconda scheduler`).
    runner: Runner | None = field(init=False, default=None)
    scheduler: Scheduler | None = field(init=False, default=None)

    def now(self) -> datetime:
        return self.clock()


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
    runner: bool = False,
    scheduler: bool = False,
) -> ServicesHandle:
    """Open the database, storage and HTTP client named by `settings`, and this process's components.

    `runner` starts a job runner, `scheduler` the lease-guarded scheduler (serve and
    `graphconda scheduler` do; the CLI's one-shot commands and most tests do not).
    """
    from graphconda.jobs.runner import Runner
    from graphconda.jobs.scheduler import Scheduler
    from graphconda.services.downloads import DownloadCounter
    from graphconda.services.job_watcher import JobWatcher
    from graphconda.services.proxy import ProxyState
    from graphconda.services.publisher import Publisher
    from graphconda.services.serving import ServingCache
    from graphconda.services.upstream import UpstreamClient
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
        if settings.metrics.prometheus:  # before anything connects: pool listeners are not thread-safe to add
            from graphconda.services import ops_metrics

            ops_metrics.enable()
            ops_metrics.watch_database(db)
        storage = open_store(settings)
        stack.push_async_callback(storage.close)
        if http is None:
            http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, connect=10.0), follow_redirects=True)
            stack.push_async_callback(http.aclose)
        services = Services(settings=settings, db=db, storage=storage, http=http, clock=clock)
        # Closed in reverse: the scheduler and runner stop first (jobs may still publish and
        # count), then pending publishes and download counts are flushed while db/storage are open.
        services.downloads = DownloadCounter(services)
        stack.push_async_callback(services.downloads.aclose)
        services.publisher = Publisher(services)
        stack.push_async_callback(services.publisher.aclose)
        services.serving_cache = ServingCache(services)
        services.publish_listeners.append(services.serving_cache.invalidate)
        services.upstream = UpstreamClient(services)
        stack.callback(services.upstream.close)
        services.proxy = ProxyState(services)
        stack.push_async_callback(services.proxy.aclose)  # before what its downloads store with
        services.job_watcher = JobWatcher(services)
        stack.push_async_callback(services.job_watcher.aclose)
        if runner:
            services.runner = Runner(services)
            services.runner.start()
            stack.push_async_callback(services.runner.aclose)
        if scheduler:
            services.scheduler = Scheduler(services)
            services.scheduler.start()
            stack.push_async_callback(services.scheduler.aclose)
    except BaseException:
        await stack.aclose()
        raise
    return ServicesHandle(services, stack)
