"""The per-process job watcher: live status and progress of job runs, from the database, for subscriptions.

A run may execute in any process, so its live state is read where every process writes
it: the `job_runs` row. One watcher per process polls, for every run any subscriber of
this process is watching, with ONE query per tick (at most one tick a second), however
many subscribers there are, and hands each subscriber the latest row. Subscribers that
fall behind skip intermediate states rather than queueing them: they always get the
newest. The polling task runs only while something is watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from graphconda.db.models import JobRun
from graphconda.services.context import Services
from graphconda.services.jobs import JobStatus

log = logging.getLogger("graphconda.jobs.watcher")
FINISHED = frozenset(status.value for status in JobStatus if status.finished)

DEFAULT_INTERVAL_SECONDS = 1.0


def fingerprint(run: JobRun) -> tuple[Any, ...]:
    """What a subscriber sees change: status, progress, log, error, attempt, timings."""
    return (
        run.status,
        run.progress_done,
        run.progress_total,
        run.message,
        run.log_tail,
        run.error,
        run.attempt,
        run.started_at,
        run.finished_at,
    )


def finished(run: JobRun) -> bool:
    return run.status in FINISHED


@dataclass(eq=False)
class _Subscriber:
    latest: JobRun | None = None
    gone: bool = False  # the row was deleted (its channel was)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class JobWatcher:
    """One per process (`Services.job_watcher`, made by open_services); see the module docstring."""

    def __init__(self, services: Services, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.services = services
        self.interval = interval
        self._watched: dict[int, set[_Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def watched_ids(self) -> list[int]:
        return sorted(self._watched)

    async def watch(self, current: JobRun) -> AsyncGenerator[JobRun, None]:
        """The states of run `current` after this one, as they change, ending after a finished one.

        Ends without a value when the run disappears. The caller already has `current`
        (and decided the actor may see it).
        """
        assert current.id is not None
        if finished(current):
            return
        last = fingerprint(current)
        subscriber = _Subscriber()
        self._watched.setdefault(current.id, set()).add(subscriber)
        self._ensure_running()
        try:
            while True:
                await subscriber.changed.wait()
                subscriber.changed.clear()
                if subscriber.gone:
                    return
                run = subscriber.latest
                if run is None or fingerprint(run) == last:
                    continue
                last = fingerprint(run)
                yield run
                if finished(run):
                    return
        finally:
            subscribers = self._watched.get(current.id)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._watched[current.id]

    async def poll_once(self) -> None:
        """One query for every watched run; wake the subscribers of each."""
        ids = self.watched_ids
        if not ids:
            return
        async with self.services.db.read() as session:
            runs = {run.id: run for run in await session.scalars(select(JobRun).where(JobRun.id.in_(ids)))}  # type: ignore[union-attr]
        for job_id in ids:
            run = runs.get(job_id)
            for subscriber in list(self._watched.get(job_id, ())):
                if run is None:
                    subscriber.gone = True
                else:
                    subscriber.latest = run
                subscriber.changed.set()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="graphconda-job-watcher")

    async def _run(self) -> None:
        # Sleep first: a new subscriber already holds the run's current state.
        while self._watched:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except Exception:  # a database hiccup: subscribers keep waiting, the next tick retries
                log.exception("polling job runs failed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def job_watcher(services: Services) -> JobWatcher:
    """This process's watcher."""
    return services.job_watcher
