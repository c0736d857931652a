"""Operations metrics for Prometheus (`[metrics] prometheus`): what they are, the hooks that feed them, the exposition.

Every metric of the process lives in one `OpsMetrics`, made by `enable()` when an app is
created with `metrics.prometheus = true`; until then `active` is None and every hook below
is a global read and a comparison, and prometheus_client is not even imported. The HTTP
side (per-request counts and latency, the /metrics route) is graphconda/http/prometheus.py;
uploads, publishing, jobs, the upstream client and the database pool call the hooks here.

Several worker processes (`graphconda serve --workers N`) use prometheus_client's
multiprocess mode: `serve` gives its workers a fresh directory in PROMETHEUS_MULTIPROC_DIR
(`multiprocess_dir`), each worker's values are memory-mapped files there, any worker's
/metrics sums them all, and a worker that shuts down marks itself dead so that its live
gauges (connections in use) stop counting. Counters of a worker that is gone keep counting
in the sums, as Prometheus expects of counters. Job queue depth is read from the database
at scrape time: it is the same for every process, not a sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import weakref
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func, select
from sqlmodel import col

from graphconda.db.models import JobRun

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from graphconda.db import Database
    from graphconda.services.context import Services

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How often a process moves its request tally into the metrics: with several workers, a scrape
# sees the other workers' latest requests after at most this long.
FLUSH_SECONDS = 1.0
# Latency buckets for HTTP requests: a cached 304 takes well under a millisecond, uploads seconds.
_HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class OpsMetrics:
    """The process's metrics, registered in a registry of their own (not prometheus_client's global one)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "graphconda_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=registry)
        self.http_duration = Histogram(
            "graphconda_http_request_duration_seconds", "Time from a request's arrival to its last response byte",
            ["route", "method"], buckets=_HTTP_BUCKETS, registry=registry)
        self.http_received = Counter("graphconda_http_received_bytes", "Request body bytes received",
                                     registry=registry)
        self.http_sent = Counter("graphconda_http_sent_bytes", "Response body bytes sent", registry=registry)
        self.uploads = Counter("graphconda_uploads", "Package files stored by uploads", registry=registry)
        self.upload_bytes = Counter("graphconda_upload_bytes", "Bytes of package files stored by uploads",
                                    registry=registry)
        self.publish_duration = Histogram(
            "graphconda_publish_duration_seconds",
            "Publishing: shards and shard index within an upload (shards), a subdir's monolithic repodata "
            "rebuild (repodata), a channel's channeldata.json (channeldata)",
            ["step"], buckets=_SLOW_BUCKETS, registry=registry)
        self.job_runs = Counter("graphconda_job_runs", "Job runs this process ended, by kind and outcome "
                                "(succeeded, failed, cancelled, requeued)", ["kind", "status"], registry=registry)
        self.job_duration = Histogram("graphconda_job_duration_seconds", "Time job runs took in this process",
                                      ["kind"], buckets=_SLOW_BUCKETS, registry=registry)
        self.upstream_errors = Counter(
            "graphconda_upstream_errors",
            "Failed requests to upstream channels (proxy and mirror channels), by reason",
            ["reason"], registry=registry)
        self.db_in_use = Gauge("graphconda_db_connections_in_use", "Database connections checked out of the pools",
                               multiprocess_mode="livesum", registry=registry)
        self.db_open = Gauge("graphconda_db_connections_open", "Database connections the pools hold open",
                             multiprocess_mode="livesum", registry=registry)
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.tally = RequestTally()

    def flush(self) -> None:
        """Move the request tally into the metrics (in multiprocess mode: into this process's files)."""
        rows, sent, received = self.tally.take()
        for (route, method, status), row in rows.items():
            count, latency = self._request_children(route, method, status)
            count.inc(row[0])
            # Histogram.observe() would cost a call per request; its bucket values are added to
            # directly instead (prometheus-client keeps one per upper bound, +Inf last, as here).
            latency._sum.inc(row[1])
            for i, n in enumerate(row[2:]):
                if n:
                    latency._buckets[i].inc(n)
        if sent:
            self.http_sent.inc(sent)
        if received:
            self.http_received.inc(received)

    def _request_children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        found = self._requests.get(key)
        if found is None:
            found = self._requests[key] = (self.http_requests.labels(route, method, str(status)),
                                           self.http_duration.labels(route, method))
        return found


class RequestTally:
    """Per-request counts in plain Python, folded into the metrics every FLUSH_SECONDS and at each scrape.

    prometheus-client takes a lock per value update (and in multiprocess mode writes a memory-mapped
    file): a counter and a histogram per request cost about 10 us, more than the serving fast path
    itself. Adding to a list here costs well under one.
    """

    __slots__ = ("received", "rows", "sent")

    def __init__(self) -> None:
        # (route, method, status) -> [count, latency sum, one count per latency bucket, +Inf last]
        self.rows: dict[tuple[str, str, int], list[Any]] = {}
        self.sent = 0
        self.received = 0

    def add(self, route: str, method: str, status: int, seconds: float, sent: int, received: int) -> None:
        row = self.rows.get((route, method, status))
        if row is None:
            row = self.rows[(route, method, status)] = [0, 0.0, *([0] * (len(_HTTP_BUCKETS) + 1))]
        row[0] += 1
        row[1] += seconds
        row[2 + bisect_left(_HTTP_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        self.sent += sent
        self.received += received

    def take(self) -> tuple[dict[tuple[str, str, int], list[Any]], int, int]:
        taken = (self.rows, self.sent, self.received)
        self.rows, self.sent, self.received = {}, 0, 0
        return taken


active: OpsMetrics | None = None


def enable() -> OpsMetrics:
    """Start collecting in this process (idempotent)."""
    global active
    if active is None:
        active = OpsMetrics()
    return active


# --- hooks (cheap no-ops while disabled) ---------------------------------------------------


def count_upload(size: int) -> None:
    m = active
    if m is not None:
        m.uploads.inc()
        m.upload_bytes.inc(size)


def observe_publish(step: str, seconds: float) -> None:
    m = active
    if m is not None:
        m.publish_duration.labels(step).observe(seconds)


def count_job(kind: str, status: str, seconds: float) -> None:
    m = active
    if m is not None:
        m.job_runs.labels(kind, "requeued" if status == "queued" else status).inc()
        m.job_duration.labels(kind).observe(seconds)


def count_upstream_error(reason: str) -> None:
    m = active
    if m is not None:
        m.upstream_errors.labels(reason).inc()


_watched: weakref.WeakSet[Database] = weakref.WeakSet()


def watch_database(db: Database) -> None:
    """Follow the database pools' connections (pool events; nothing happens per statement)."""
    m = active
    if m is None or db in _watched:
        return
    _watched.add(db)
    in_use, opened = m.db_in_use, m.db_open
    engines = {id(e): e for e in (db.read_engine, db.write_engine)}.values()
    for engine in engines:
        event.listen(engine.sync_engine, "checkout", lambda *_: in_use.inc())
        event.listen(engine.sync_engine, "checkin", lambda *_: in_use.dec())
        event.listen(engine.sync_engine, "connect", lambda *_: opened.inc())
        event.listen(engine.sync_engine.pool, "close", lambda *_: opened.dec())
        event.listen(engine.sync_engine.pool, "close_detached", lambda *_: opened.dec())


@asynccontextmanager
async def collecting(db: Database) -> AsyncIterator[None]:
    """While an app serves with metrics on: follow its database pool, flush the tally every FLUSH_SECONDS.

    On the way out the tally is flushed a last time and, with several workers, the process marked dead.
    """
    m = enable()
    watch_database(db)  # done already when its services were opened with metrics on

    async def flush_often() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            m.flush()

    task = asyncio.get_running_loop().create_task(flush_often(), name="graphconda-metrics-flush")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        m.flush()
        process_exiting()


# --- exposition ----------------------------------------------------------------------------


async def exposition(services: Services) -> bytes:
    """The /metrics body: this process's metrics (all workers' in multiprocess mode) and the job queue."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector

    m = enable()
    m.flush()
    if m.multiprocess:
        registry: CollectorRegistry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = m.registry
    async with services.db.read() as session:
        queued = (await session.execute(select(col(JobRun.kind), func.count()).where(col(JobRun.status) == "queued")
                                        .group_by(col(JobRun.kind)))).all()
        running = await session.scalar(select(func.count()).select_from(JobRun)
                                       .where(col(JobRun.status) == "running"))
    depth = GaugeMetricFamily("graphconda_jobs_queued", "Job runs waiting in the queue, by kind", labels=["kind"])
    for kind, count in sorted(queued):
        depth.add_metric([kind], count)
    busy = GaugeMetricFamily("graphconda_jobs_running", "Job runs running now, in all processes",
                             value=running or 0)
    queue = CollectorRegistry(auto_describe=False)
    queue.register(_Fixed([depth, busy]))
    return generate_latest(registry) + generate_latest(queue)


class _Fixed:
    """A collector that yields families computed beforehand."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        return iter(self.families)


# --- several worker processes ----------------------------------------------------------------


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """Set PROMETHEUS_MULTIPROC_DIR for worker processes about to be started: empty at start.

    An operator's own directory (the variable already set) is emptied and kept; otherwise a
    fresh one of this run is made and removed at exit.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):  # values of an earlier run would be summed into this one's
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        yield given
        return
    path = tempfile.mkdtemp(prefix="graphconda-prometheus-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def process_exiting() -> None:
    """A worker shutting down: its live gauges stop counting (its counters stay in the sums)."""
    m = active
    if m is not None and m.multiprocess:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
