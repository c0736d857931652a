"""The scheduler: periodic jobs from config and from `job_schedules`, fired by one process per deployment.

Only the holder of the database lease (graphconda/jobs/lease.py) schedules. Every
renewal (a third of `jobs.lease_seconds`) it also re-reads the schedules, so changes take
effect within one renewal; when a renewal fails, or the lease would expire before the next
one can happen, it stops scheduling at once.

Firing a schedule is `services.jobs.run_job(..., scheduled=True)`: a queued run that any
process's runner picks up, deduplicated per (kind, channel) like every other trigger.

Two parts, so that the timing logic is testable with the injected clock:
- `ScheduleBook` decides what is due at a given time (next fire time per schedule from its
  APScheduler trigger; missed ticks coalesce into one firing; changes and removals).
- `Scheduler` wakes up through APScheduler's `AsyncIOScheduler` (one job per schedule, with
  the same trigger) and asks the book, with `services.now()`, what to fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Select, select
from sqlmodel import col

from graphconda.db.models import Channel, JobSchedule, RegisteredMirror
from graphconda.jobs import lease, registry
from graphconda.jobs.cron import cron_trigger
from graphconda.jobs.runner import process_id
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.settings import Settings

log = logging.getLogger("graphconda.scheduler")


@dataclass(frozen=True)
class ScheduleSpec:
    """One periodic job: `kind` on `channel` (None: server-wide) every `interval_seconds` or by `cron`."""

    kind: str
    channel: str | None = None
    interval_seconds: float | None = None
    cron: str | None = None
    source: str = "config"  # config | database

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.channel or ''}"

    @property
    def when(self) -> str:
        return f"every {self.interval_seconds:g}s" if self.interval_seconds else f"cron {self.cron}"

    def trigger(self, start: datetime) -> BaseTrigger:
        """The APScheduler trigger; an interval's first tick is one interval after `start`."""
        if self.interval_seconds:
            first = start + timedelta(seconds=self.interval_seconds)
            return IntervalTrigger(seconds=self.interval_seconds, start_date=first, timezone=UTC)
        assert self.cron is not None
        return cron_trigger(self.cron)


# Built-in periodic jobs: kind -> its interval from settings (0 = off). Kinds of later issues
# (mirror sync, metrics) add theirs here; a kind that is not registered is skipped.
BUILTIN_INTERVALS: dict[str, Callable[[Settings], float]] = {
    "cleanup": lambda s: s.jobs.cleanup_interval_seconds,
    "publish_sweep": lambda s: s.publish.sweep_interval_seconds,
    "aggregate_metrics": lambda s: s.jobs.metrics_interval_seconds,
}

# Built-in periodic jobs of channels: kind -> (interval from settings, the names of the channels it runs for).
BUILTIN_CHANNEL_INTERVALS: dict[str, tuple[Callable[[Settings], float], Callable[[], Select[str]]]] = {
    "synchronize": (lambda s: s.jobs.mirror_sync_interval_seconds,
                    lambda: select(col(Channel.name)).where(col(Channel.mirror_mode) == "mirror")),
    # Channels with registered mirrors pull the mirrors' download counts.
    "synchronize_metrics": (lambda s: s.jobs.mirror_metrics_interval_seconds,
                            lambda: select(col(Channel.name)).where(
                                col(Channel.id).in_(select(col(RegisteredMirror.channel_id))))),
}


async def schedule_specs(services: Services) -> list[ScheduleSpec]:
    """What should run periodically now: the built-ins from config, overridden by stored schedules."""
    registry.load_modules(services.settings.jobs.modules)
    specs: dict[str, ScheduleSpec] = {}
    for kind, interval in BUILTIN_INTERVALS.items():
        seconds = interval(services.settings)
        if seconds and registry.get_kind(kind) is not None:
            spec = ScheduleSpec(kind, interval_seconds=seconds)
            specs[spec.key] = spec
    async with services.db.read() as session:
        # A stored schedule of a channel's own (same kind, same key) overrides its built-in one or,
        # disabled, switches it off.
        for kind, (channel_interval, names) in BUILTIN_CHANNEL_INTERVALS.items():
            seconds = channel_interval(services.settings)
            if seconds and registry.get_kind(kind) is not None:
                for name in await session.scalars(names()):
                    spec = ScheduleSpec(kind, name, interval_seconds=seconds)
                    specs[spec.key] = spec
        rows = (await session.execute(select(JobSchedule, col(Channel.name))
                                      .outerjoin(Channel, Channel.id == JobSchedule.channel_id)  # type: ignore[arg-type]
                                      .order_by(col(JobSchedule.id)))).all()
    for row, channel_name in rows:
        if registry.get_kind(row.kind) is None or (row.channel_id is not None and channel_name is None):
            continue
        spec = ScheduleSpec(row.kind, channel_name, row.interval_seconds, row.cron, source="database")
        if not row.enabled:
            specs.pop(spec.key, None)  # a disabled stored schedule switches a built-in off too
            continue
        try:
            spec.trigger(services.now())
        except ValueError:
            log.warning("schedule %s has an invalid trigger (%s); skipped", spec.key, spec.when)
            continue
        specs[spec.key] = spec
    return list(specs.values())


@dataclass
class _Entry:
    spec: ScheduleSpec
    trigger: BaseTrigger
    next_fire: datetime | None


@dataclass
class ScheduleBook:
    """What is due when: pure, driven by the times it is given."""

    entries: dict[str, _Entry] = field(default_factory=dict)

    def sync(self, specs: Iterable[ScheduleSpec], now: datetime) -> tuple[list[str], list[str]]:
        """Make the book hold exactly `specs`; unchanged ones keep their next fire time. (added, removed) keys."""
        wanted = {spec.key: spec for spec in specs}
        removed = [key for key in self.entries if key not in wanted]
        for key in removed:
            del self.entries[key]
        added = []
        for key, spec in wanted.items():
            entry = self.entries.get(key)
            if entry is not None and entry.spec == spec:
                continue
            trigger = spec.trigger(now)
            self.entries[key] = _Entry(spec, trigger, trigger.get_next_fire_time(None, now))
            added.append(key)
        return added, removed

    def due(self, now: datetime, keys: Iterable[str] | None = None) -> list[ScheduleSpec]:
        """Schedules due at `now`, once each however many ticks were missed; advances their next fire time."""
        fired = []
        for key in list(self.entries) if keys is None else keys:
            entry = self.entries.get(key)
            if entry is None or entry.next_fire is None or entry.next_fire > now:
                continue
            fired.append(entry.spec)
            following = entry.next_fire
            while following is not None and following <= now:  # coalesce: skip every missed tick
                following = entry.trigger.get_next_fire_time(following, now)
            entry.next_fire = following
        return fired

    def next_fire(self, key: str) -> datetime | None:
        entry = self.entries.get(key)
        return entry.next_fire if entry else None


class Scheduler:
    """Holds (or waits for) the lease; while holding it, fires due schedules as queued job runs."""

    def __init__(self, services: Services, *, holder: str | None = None) -> None:
        self.services = services
        self.holder = holder or process_id()
        self.book = ScheduleBook()
        self.lease_until: datetime | None = None
        self._aps: AsyncIOScheduler | None = None
        self._task: asyncio.Task[None] | None = None
        self.fired: list[tuple[str, datetime]] = []  # what this process fired (logs, tests)

    @property
    def active(self) -> bool:
        """Whether this process holds the lease (and so schedules) right now."""
        if self.lease_until is None:
            return False
        # Stop a renewal interval before the expiry: by then a healthy holder has renewed.
        margin = timedelta(seconds=self.services.settings.jobs.lease_seconds / 3)
        return self.services.now() < self.lease_until - margin

    def start(self) -> None:
        if self._task is None:
            self._aps = AsyncIOScheduler(timezone=UTC, job_defaults={
                "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
            self._aps.start()
            self._task = asyncio.get_running_loop().create_task(self._lease_loop(), name="graphconda-scheduler")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        was_active = self.lease_until is not None
        self._stop_scheduling()
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        if was_active:
            try:
                await lease.release(self.services, self.holder)
            except Exception:
                log.exception("releasing the scheduler lease failed; it expires by itself")

    async def _lease_loop(self) -> None:
        seconds = self.services.settings.jobs.lease_seconds
        while True:
            await self.renew()
            await asyncio.sleep(seconds / 3)

    async def renew(self) -> None:
        """One lease round: take or keep the lease, then re-read the schedules (or stop scheduling)."""
        seconds = self.services.settings.jobs.lease_seconds
        try:
            until = await lease.acquire(self.services, self.holder, seconds)
        except Exception:
            log.exception("renewing the scheduler lease failed")
            until = None
        # Keep scheduling only while the lease lasts past the next renewal: a holder that cannot
        # renew stops before another process may take over.
        if until is None:
            if self.lease_until is not None:
                log.warning("scheduler lease lost (%s); stopped scheduling", self.holder)
            self._stop_scheduling()
            return
        if self.lease_until is None:
            log.info("scheduler lease taken by %s", self.holder)
        self.lease_until = until
        try:
            await self.sync()
        except Exception:
            log.exception("reading the job schedules failed; keeping the previous ones")

    async def sync(self) -> None:
        """Bring the book and APScheduler's jobs in line with the schedules now configured."""
        now = self.services.now()
        specs = await schedule_specs(self.services)
        added, removed = self.book.sync(specs, now)
        if self._aps is None:
            return
        for key in removed:
            with contextlib.suppress(Exception):
                self._aps.remove_job(key)
        for key in added:
            entry = self.book.entries[key]
            log.info("schedule %s: %s %s", key, entry.spec.kind, entry.spec.when)
            self._aps.add_job(self._on_tick, entry.trigger, args=[key], id=key, name=key, replace_existing=True,
                              next_run_time=entry.next_fire)

    def _stop_scheduling(self) -> None:
        self.lease_until = None
        self.book = ScheduleBook()
        if self._aps is not None:
            self._aps.remove_all_jobs()

    async def _on_tick(self, key: str) -> None:
        await self.fire_due([key])

    async def fire_due(self, keys: Iterable[str] | None = None) -> list[ScheduleSpec]:
        """Queue a run for every due schedule (all, or those of `keys`), if this process holds the lease."""
        if not self.active:
            return []
        from graphconda.services.jobs import run_job

        now = self.services.now()
        specs = self.book.due(now, keys)
        for spec in specs:
            try:
                run = await run_job(self.services, SYSTEM, spec.kind, channel=spec.channel, scheduled=True)
                self.fired.append((spec.key, now))
                log.info("scheduled %s: run %s", spec.key, run.id)
            except Exception:
                log.exception("queueing scheduled job %s failed", spec.key)
        return specs

