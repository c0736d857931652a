"""The job runner: claims queued runs from the database and runs them, in any number of processes.

A run is claimed atomically (PostgreSQL `FOR UPDATE SKIP LOCKED`, then on every database
an UPDATE that only succeeds while the row is still queued), so each run executes once.
While it runs, one loop per process writes progress (at most once a second), a heartbeat
(every `jobs.heartbeat_seconds`) and reads `cancel_requested`. Every update names this
runner as holder, so a runner that was presumed dead and replaced cannot overwrite the
new holder's row.

    queued --claim--> running --+--> succeeded | failed | cancelled
       ^                        |
       +------------------------+  transient failure (after backoff), process stopping,
                                   or heartbeat older than jobs.stale_seconds (any runner
                                   requeues it; after jobs.max_attempts claims it fails)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, not_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import Channel, JobRun
from graphconda.errors import PublicError
from graphconda.jobs import registry
from graphconda.jobs.registry import JobCancelled, JobContext, JobInterrupted, TransientJobError
from graphconda.services import ops_metrics
from graphconda.services.context import Services
from graphconda.services.jobs import JobStatus, running_key

log = logging.getLogger("graphconda.jobs")

PROGRESS_FLUSH_SECONDS = 1.0  # live progress: at most one write per run per second


async def _not_held(session: AsyncSession) -> list[ColumnElement[bool]]:
    """Conditions that leave out queued runs whose group already runs on their channel."""
    held = (await session.scalars(select(col(JobRun.running_key)).where(
        col(JobRun.running_key).is_not(None)))).all()
    conditions = []
    for key in held:
        group, _, channel = (key or "").partition(":")
        kinds = [kind.name for kind in registry.all_kinds() if kind.group == group]
        same_channel = col(JobRun.channel_id).is_(None) if not channel else col(JobRun.channel_id) == int(channel)
        conditions.append(not_(and_(col(JobRun.kind).in_(kinds), same_channel)))
    return conditions


def process_id() -> str:
    """This process's name as a run holder: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Active:
    run_id: int
    ctx: JobContext
    task: asyncio.Task[None]
    last_flush: float = 0.0
    last_heartbeat: float = 0.0
    cancel_seen_at: float | None = None


def _running_mine(run_id: int, holder: str) -> Any:
    return and_(col(JobRun.id) == run_id, col(JobRun.holder) == holder, col(JobRun.status) == JobStatus.RUNNING.value)


class Runner:
    """Runs queued jobs in this process; `start()` begins polling, `aclose()` stops and requeues."""

    def __init__(self, services: Services, *, holder: str | None = None,
                 only_ids: Collection[int] | None = None) -> None:
        self.services = services
        self.settings = services.settings.jobs
        self.holder = holder or process_id()
        self.only_ids = set(only_ids) if only_ids is not None else None  # `jobs run --wait`: just that run
        self._active: dict[int, _Active] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_stale_check = -1e9

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        registry.load_modules(self.services.settings.jobs.modules)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="graphconda-job-runner")

    def wake(self) -> None:
        """Look for queued runs now (run_job calls this for runs queued in this process)."""
        self._wake.set()

    async def aclose(self) -> None:
        """Stop: running jobs are asked to stop (check_cancelled raises) and requeued for another process."""
        self._stopping = True
        self._wake.set()
        for active in self._active.values():
            active.ctx.stopping = True
        tasks = [a.task for a in self._active.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
            for task in pending:  # a job that never checks: interrupted where it waits
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> list[int]:
        return sorted(self._active)

    # --- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(PROGRESS_FLUSH_SECONDS, self.settings.heartbeat_seconds, self.settings.poll_seconds)
        next_poll = 0.0
        while not self._stopping:
            try:
                now = loop.time()
                if self._active:
                    await self._report(now)
                if now - self._last_stale_check >= self.settings.heartbeat_seconds:
                    self._last_stale_check = now
                    await requeue_stale(self.services)
                if now >= next_poll or self._wake.is_set():
                    self._wake.clear()
                    next_poll = now + self.settings.poll_seconds
                    while len(self._active) < self.settings.concurrency and not self._stopping:
                        run = await self.claim()
                        if run is None:
                            break
                        self._launch(run)
            except Exception:  # the database may be briefly unreachable: keep going
                log.exception("job runner loop failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)

    async def claim(self) -> JobRun | None:
        """Atomically take the oldest claimable queued run, or None."""
        services = self.services
        now = services.now()
        claimable = and_(col(JobRun.status) == JobStatus.QUEUED.value,
                         or_(col(JobRun.run_after).is_(None), col(JobRun.run_after) <= now))
        if self.only_ids is not None:
            claimable = and_(claimable, col(JobRun.id).in_(self.only_ids))
        try:
            async with services.db.write() as session:
                claimable = and_(claimable, *await _not_held(session))
                # SKIP LOCKED: concurrent runners on PostgreSQL each get a different row without
                # waiting. SQLite has no row locks (BEGIN IMMEDIATE serialises writers); the
                # conditional UPDATE below is what makes the claim atomic there.
                candidate = (await session.execute(
                    select(col(JobRun.id), col(JobRun.kind), col(JobRun.channel_id)).where(claimable)
                    .order_by(col(JobRun.id)).limit(1).with_for_update(skip_locked=True))).first()
                if candidate is None:
                    return None
                run_id, kind_name, channel_id = candidate
                kind = registry.get_kind(kind_name)
                result = await session.execute(
                    update(JobRun).where(JobRun.id == run_id, JobRun.status == JobStatus.QUEUED.value)  # type: ignore[arg-type]
                    .values(status=JobStatus.RUNNING.value, holder=self.holder, attempt=JobRun.attempt + 1,
                            started_at=now, heartbeat_at=now, run_after=None, finished_at=None,
                            running_key=None if kind is None else running_key(kind, channel_id))
                    .execution_options(synchronize_session=False))
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    return None
                return await session.get(JobRun, run_id, populate_existing=True)
        except IntegrityError:  # another runner just started a run of the same group there
            return None

    def _launch(self, run: JobRun) -> None:
        assert run.id is not None
        ctx = JobContext(self.services, run.id, None, dict(run.args or {}), log_chars=self.settings.log_tail_chars)
        if run.log_tail:  # a retried run keeps what it logged before
            for line in run.log_tail.splitlines():
                ctx.log(line)
        ctx.dirty = False
        task = asyncio.get_running_loop().create_task(self._execute(run, ctx), name=f"graphconda-job-{run.id}")
        now = asyncio.get_running_loop().time()
        self._active[run.id] = _Active(run.id, ctx, task, last_flush=now, last_heartbeat=now)

    # --- one run ----------------------------------------------------------------------

    async def _execute(self, run: JobRun, ctx: JobContext) -> None:
        assert run.id is not None
        kind = registry.get_kind(run.kind)
        outcome: dict[str, Any]
        started = time.perf_counter()
        try:
            if kind is None:
                raise RuntimeError(f"unknown job kind {run.kind!r} in this process")
            if run.channel_id is not None:
                async with self.services.db.read() as session:
                    ctx.channel = await session.get(Channel, run.channel_id)
                if ctx.channel is None:
                    raise RuntimeError("the channel was deleted")
            log.info("job %d (%s) started, attempt %d", run.id, run.kind, run.attempt)
            await kind.func(ctx)
            outcome = self._final(JobStatus.SUCCEEDED, ctx)
            if ctx.idle and run.scheduled:
                outcome["forget"] = True
        except (JobCancelled, asyncio.CancelledError) as exc:
            if ctx.stopping and not ctx.cancel_requested:
                outcome = self._requeue(ctx, "the process running it stopped")
            else:
                if not isinstance(exc, JobCancelled):
                    ctx.log("cancelled: the job did not stop by itself and was interrupted")
                outcome = self._final(JobStatus.CANCELLED, ctx, message="cancelled")
        except JobInterrupted:
            outcome = self._requeue(ctx, "the process running it stopped")
        except TransientJobError as exc:
            if run.attempt < self.settings.max_attempts:
                delay = self.settings.retry_backoff_seconds * 2 ** (run.attempt - 1)
                ctx.log(f"attempt {run.attempt} failed: {exc}; retrying in {delay:g}s")
                outcome = self._requeue(ctx, f"retrying in {delay:g}s", error=str(exc), keep_attempt=True)
                outcome["run_after"] = self.services.now() + timedelta(seconds=delay)
            else:
                outcome = self._final(JobStatus.FAILED, ctx, error=f"gave up after {run.attempt} attempts: {exc}")
        except Exception as exc:
            text = str(exc) if isinstance(exc, PublicError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, PublicError):
                for line in traceback.format_exception(exc)[-6:]:
                    ctx.log(line.rstrip())
                log.exception("job %d (%s) failed", run.id, run.kind)
            outcome = self._final(JobStatus.FAILED, ctx, error=text)
        ops_metrics.count_job(run.kind, outcome["status"], time.perf_counter() - started)
        try:
            await self._store_outcome(run.id, outcome)
        finally:
            self._active.pop(run.id, None)
            if not self._stopping:
                self._wake.set()  # a slot is free

    def _progress_values(self, ctx: JobContext) -> dict[str, Any]:
        return {"progress_done": ctx.done, "progress_total": ctx.total, "message": ctx.message,
                "log_tail": ctx.log_tail}

    def _final(self, status: JobStatus, ctx: JobContext, *, error: str = "",
               message: str | None = None) -> dict[str, Any]:
        values = self._progress_values(ctx)
        if message is not None:
            values["message"] = message
        values.update(status=status.value, error=error, finished_at=self.services.now(), active_key=None,
                      running_key=None, heartbeat_at=None)
        return values

    def _requeue(self, ctx: JobContext, why: str, *, error: str = "", keep_attempt: bool = False) -> dict[str, Any]:
        values = self._progress_values(ctx)
        values.update(status=JobStatus.QUEUED.value, holder=None, heartbeat_at=None, message=f"requeued: {why}",
                      error=error, run_after=None, running_key=None)
        if not keep_attempt:  # an interruption (shutdown) does not use up an attempt
            values["attempt"] = JobRun.attempt - 1
        return values

    async def _store_outcome(self, run_id: int, values: dict[str, Any]) -> None:
        forget = values.pop("forget", False)
        async with self.services.db.write() as session:
            statement = (delete(JobRun) if forget else update(JobRun).values(**values)).where(
                _running_mine(run_id, self.holder))
            result = await session.execute(statement.execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            log.warning("job %d: this process no longer holds it (presumed dead and requeued); result dropped", run_id)
        else:
            log.info("job %d: %s", run_id, values["status"])

    # --- progress, heartbeat, cancel -------------------------------------------------------

    async def _report(self, now: float) -> None:
        """Write dirty progress (throttled) and heartbeats; pick up cancel requests."""
        due = [a for a in self._active.values()
               if (a.ctx.dirty and now - a.last_flush >= PROGRESS_FLUSH_SECONDS)
               or now - a.last_heartbeat >= self.settings.heartbeat_seconds]
        async with self.services.db.write() as session:
            for active in due:
                values: dict[str, Any] = {"heartbeat_at": self.services.now()}
                if active.ctx.dirty:
                    values.update(self._progress_values(active.ctx))
                    active.ctx.dirty = False
                    active.last_flush = now
                result = await session.execute(update(JobRun).where(_running_mine(active.run_id, self.holder))
                                               .values(**values).execution_options(synchronize_session=False))
                active.last_heartbeat = now
                if result.rowcount != 1 and not active.task.done():  # type: ignore[attr-defined]
                    log.warning("job %d was taken from this process (presumed dead); stopping it", active.run_id)
                    active.task.cancel()
            ids = list(self._active)
            cancelled = set((await session.scalars(select(col(JobRun.id)).where(
                col(JobRun.id).in_(ids), col(JobRun.cancel_requested).is_(True)))).all()) if ids else set()
        for run_id in cancelled:
            if run_id is None or (found := self._active.get(run_id)) is None:
                continue
            active = found
            active.ctx.cancel_requested = True
            if active.cancel_seen_at is None:
                active.cancel_seen_at = now
            elif now - active.cancel_seen_at >= self.settings.heartbeat_seconds and not active.task.done():
                active.task.cancel()  # it did not check in time


async def requeue_stale(services: Services) -> int:
    """Requeue running runs whose heartbeat stopped (their process died); fail them after max_attempts."""
    settings = services.settings.jobs
    now = services.now()
    stale = and_(col(JobRun.status) == JobStatus.RUNNING.value,
                 or_(col(JobRun.heartbeat_at).is_(None),
                     col(JobRun.heartbeat_at) < now - timedelta(seconds=settings.stale_seconds)))
    async with services.db.write() as session:
        runs = (await session.scalars(select(JobRun).where(stale).with_for_update(skip_locked=True))).all()
        for run in runs:
            who, run.running_key = run.holder or "unknown", None
            if run.cancel_requested:
                run.status, run.message = JobStatus.CANCELLED.value, "cancelled (its process stopped)"
            elif run.attempt >= settings.max_attempts:
                run.status = JobStatus.FAILED.value
                run.error = (f"gave up after {run.attempt} attempts: the process running it ({who}) stopped "
                             f"sending heartbeats")
            else:
                run.status, run.holder, run.heartbeat_at = JobStatus.QUEUED.value, None, None
                run.message = f"requeued: the process running it ({who}) stopped sending heartbeats"
                log.warning("job %d (%s): %s", run.id, run.kind, run.message)
                continue
            run.finished_at, run.active_key, run.heartbeat_at = now, None, None
    return len(runs)
