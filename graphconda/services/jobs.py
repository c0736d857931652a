"""Job runs and schedules as service verbs: trigger, cancel, look up, schedule.

Every trigger (a schedule, GraphQL, the CLI) ends in `run_job`, which checks the kind, its
arguments and the caller's rights, then inserts a queued row; runners in any process claim
it (graphconda/jobs/runner.py). At most one queued-or-running run exists per (kind,
channel): the `active_key` column is unique while a run is active, so a second trigger gets
the existing run back instead of a duplicate, on every database and without a race. Kinds of
one group (JobKind.group) are each queued on their own, and run one at a time per channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from graphconda.db.models import Channel, JobRun, JobSchedule
from graphconda.errors import ConflictError, InvalidInputError, NotFoundError
from graphconda.jobs.cron import cron_trigger
from graphconda.jobs.registry import JobKind, all_kinds, get_kind, load_modules, validate_args
from graphconda.services import authz
from graphconda.services.access import channel_access, gate
from graphconda.services.authz import Actor, ChannelAccess
from graphconda.services.context import Services


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def job_kinds() -> list[str]:
    return [kind.name for kind in all_kinds()]


def active_key(kind: JobKind, channel_id: int | None) -> str:
    return f"{kind.name}:{'' if channel_id is None else channel_id}"


def running_key(kind: JobKind, channel_id: int | None) -> str | None:
    """The key a run of a grouped kind holds while it runs (None: the kind runs beside anything)."""
    return f"{kind.group}:{'' if channel_id is None else channel_id}" if kind.group else None


def _kind(services: Services, name: str) -> JobKind:
    load_modules(services.settings.jobs.modules)
    kind = get_kind(name) if isinstance(name, str) else None
    if kind is None:
        raise InvalidInputError(f"unknown job kind {name!r} (kinds: {', '.join(job_kinds())})", field="kind")
    return kind


def _check_channel_arg(kind: JobKind, channel: str | None) -> None:
    if kind.channel and not channel:
        raise InvalidInputError(f"job {kind.name} runs on a channel: name one", field="channel")
    if not kind.channel and channel:
        raise InvalidInputError(f"job {kind.name} is server-wide: it takes no channel", field="channel")


async def _authorize(session: AsyncSession, actor: Actor, kind: JobKind,
                     channel: str | None) -> Channel | None:
    """The channel (None for server-wide kinds) after checking the actor may run `kind` there."""
    if channel is None:
        authz.require_run_job(actor, None)
        return None
    found, access = await gate(session, actor, channel)
    authz.require_run_job(actor, access)
    return found


async def run_job(services: Services, actor: Actor, kind: str, *, channel: str | None = None,
                  args: Mapping[str, Any] | None = None, scheduled: bool = False,
                  run_after: datetime | None = None) -> JobRun:
    """Queue a run of `kind` (or return the queued-or-running one of the same kind and channel).

    `run_after`: no runner claims it before then (Quetz's `start_at`).
    """
    spec = _kind(services, kind)
    _check_channel_arg(spec, channel)
    values = validate_args(spec, args)
    run: JobRun | None = None
    for _ in range(3):  # a concurrent trigger may win the unique key between our read and insert
        try:
            async with services.db.write() as session:
                target = await _authorize(session, actor, spec, channel)
                channel_id = target.id if target is not None else None
                key = active_key(spec, channel_id)
                run = await session.scalar(select(JobRun).where(col(JobRun.active_key) == key))
                if run is not None:
                    break
                run = JobRun(kind=spec.name, channel_id=channel_id, status=JobStatus.QUEUED.value, args=values,
                             active_key=key, triggered_by_id=actor.user_id, scheduled=scheduled,
                             created_at=services.now(), run_after=run_after)
                session.add(run)
            break
        except IntegrityError:
            run = None
    if run is None:
        raise ConflictError(f"could not queue job {spec.name}; try again")
    if services.runner is not None:
        services.runner.wake()  # this process's runner starts it without waiting for its poll
    return run


async def _job_access(session: AsyncSession, actor: Actor, run: JobRun) -> ChannelAccess | None:
    if run.channel_id is None:
        return None
    channel = await session.get(Channel, run.channel_id)
    if channel is None:
        raise NotFoundError("job not found")
    return await channel_access(session, actor, channel)


def _require_see(actor: Actor, access: ChannelAccess | None) -> None:
    # Job details are for those who may run the job; anyone else gets "not found", never a hint.
    if not authz.can_see_job(actor, access):
        raise NotFoundError("job not found")


async def get_job(services: Services, actor: Actor, job_id: int) -> JobRun:
    async with services.db.read() as session:
        run = await session.get(JobRun, job_id) if isinstance(job_id, int) else None
        if run is None:
            raise NotFoundError("job not found")
        _require_see(actor, await _job_access(session, actor, run))
        return run


async def cancel_job(services: Services, actor: Actor, job_id: int) -> JobRun:
    """Cancel a queued run at once, or ask a running one to stop (its runner finishes it as cancelled)."""
    async with services.db.write() as session:
        run = await session.get(JobRun, job_id, with_for_update=True) if isinstance(job_id, int) else None
        if run is None:
            raise NotFoundError("job not found")
        access = await _job_access(session, actor, run)
        _require_see(actor, access)
        authz.require_run_job(actor, access)
        if JobStatus(run.status).finished:
            raise ConflictError(f"job {job_id} already {run.status}")
        if run.status == JobStatus.QUEUED:
            run.status = JobStatus.CANCELLED.value
            run.active_key = None
            run.finished_at = services.now()
            run.message = "cancelled before it started"
        else:
            run.cancel_requested = True
    return run


# --- schedules -------------------------------------------------------------------------


def validate_trigger(interval_seconds: int | None, cron: str | None) -> None:
    """InvalidInputError unless exactly one of a positive interval or a valid crontab line is given."""
    if (interval_seconds is None) == (cron is None or cron == ""):
        raise InvalidInputError("give either an interval in seconds or a cron expression", field="interval_seconds")
    if interval_seconds is not None:
        if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, int) or interval_seconds <= 0:
            raise InvalidInputError("interval_seconds must be a positive number of seconds", field="interval_seconds")
        return
    assert cron is not None
    try:
        cron_trigger(cron)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"bad cron expression {cron!r}: {exc} (five fields: minute hour day month weekday)",
                                field="cron") from None


async def set_schedule(services: Services, actor: Actor, kind: str, *, channel: str | None,
                       interval_seconds: int | None, cron: str | None, enabled: bool) -> JobSchedule:
    """Create or change the schedule of `kind` on `channel` (server-wide without one).

    Disabling may omit the trigger (the stored one is kept); the active scheduler picks
    changes up within one lease renewal.
    """
    spec = _kind(services, kind)
    _check_channel_arg(spec, channel)
    cron = cron.strip() if isinstance(cron, str) and cron.strip() else None
    keep_trigger = not enabled and interval_seconds is None and cron is None
    if not keep_trigger:
        validate_trigger(interval_seconds, cron)
    now = services.now()
    async with services.db.write() as session:
        target = await _authorize(session, actor, spec, channel)
        channel_id = target.id if target is not None else None
        schedule = await session.scalar(select(JobSchedule).where(
            col(JobSchedule.kind) == spec.name,
            col(JobSchedule.channel_id).is_(None) if channel_id is None
            else col(JobSchedule.channel_id) == channel_id).with_for_update())
        if schedule is None:
            # Disabling with no trigger stores a disabled row: it switches off the built-in schedule.
            schedule = JobSchedule(kind=spec.name, channel_id=channel_id, created_at=now)
            session.add(schedule)
        if not keep_trigger:
            schedule.interval_seconds, schedule.cron = interval_seconds, cron
        schedule.enabled = bool(enabled)
        schedule.updated_at = now
    return schedule


async def list_schedules(services: Services) -> list[JobSchedule]:
    """Every stored schedule (the scheduler's view; no permission filter)."""
    async with services.db.read() as session:
        return list((await session.scalars(select(JobSchedule).order_by(col(JobSchedule.id)))).all())


def job_summary(run: JobRun, channel_name: str | None = None) -> dict[str, Any]:
    """A run as plain data (the CLI's --json)."""
    return {
        "id": run.id, "kind": run.kind, "channel": channel_name, "status": run.status, "args": run.args,
        "progress": {"done": run.progress_done, "total": run.progress_total, "message": run.message},
        "log_tail": run.log_tail, "error": run.error, "attempt": run.attempt, "scheduled": run.scheduled,
        "triggered_by_id": run.triggered_by_id,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


async def list_jobs(services: Services, actor: Actor, *, channel: str | None = None, kind: str | None = None,
                    status: str | None = None, limit: int = 50) -> list[tuple[JobRun, str | None]]:
    """The newest runs `actor` may see, with their channel's name (the CLI's `jobs list`)."""
    from graphconda.services.job_queries import visible_jobs

    if status is not None and status not in {s.value for s in JobStatus}:
        raise InvalidInputError(f"status must be one of {', '.join(s.value for s in JobStatus)}", field="status")
    async with services.db.read() as session:
        runs = list((await session.scalars(visible_jobs(actor, channel=channel, kind=kind, status=status)
                                           .order_by(JobRun.id.desc()).limit(limit))).all())  # type: ignore[union-attr]
        return [(run, await channel_name(session, run)) for run in runs]


async def channel_name(session: AsyncSession, run: JobRun) -> str | None:
    if run.channel_id is None:
        return None
    return await session.scalar(select(col(Channel.name)).where(col(Channel.id) == run.channel_id))


async def describe_job(services: Services, actor: Actor, job_id: int) -> dict[str, Any]:
    """`job_summary` of a run the actor may see (NotFoundError otherwise)."""
    run = await get_job(services, actor, job_id)
    async with services.db.read() as session:
        return job_summary(run, await channel_name(session, run))
