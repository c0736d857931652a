"""The read side of jobs: which job runs and schedules an actor may list, as SELECTs to page and count.

Writes (run, cancel, schedule) live in services/jobs.py; the live view of one run is
services/job_watcher.py. Every statement here carries `authz.visible_jobs_clause`, so a
caller never lists, counts or pages through a run it may not see.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlmodel import col

from graphconda.db.models import Channel, JobRun, JobSchedule
from graphconda.services import authz
from graphconda.services.access import could_be_channel_name
from graphconda.services.authz import Actor


def _channel_id(name: str) -> Any:
    """The id of the channel called `name`, as a subquery (no row: matches nothing)."""
    return select(col(Channel.id)).where(col(Channel.name) == name).scalar_subquery()


def visible_jobs(
    actor: Actor,
    *,
    channel: str | None = None,
    channel_ids: list[int] | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> Select[JobRun]:
    """SELECT of the runs `actor` may see, filtered by channel name (or ids), kind and status."""
    stmt = select(JobRun).where(authz.visible_jobs_clause(actor))
    if channel is not None:
        if not could_be_channel_name(channel):  # text no database takes never reaches it
            return stmt.where(col(JobRun.id).is_(None))
        stmt = stmt.where(col(JobRun.channel_id) == _channel_id(channel))
    if channel_ids is not None:
        stmt = stmt.where(col(JobRun.channel_id).in_(channel_ids))
    if kind is not None:
        stmt = stmt.where(col(JobRun.kind) == kind)
    if status is not None:
        stmt = stmt.where(col(JobRun.status) == status)
    return stmt


def visible_job(actor: Actor, job_id: int) -> Select[JobRun]:
    """SELECT of run `job_id` if `actor` may see it (no row otherwise)."""
    return select(JobRun).where(col(JobRun.id) == job_id, authz.visible_jobs_clause(actor))


def visible_schedules(actor: Actor, *, channel_ids: list[int] | None = None) -> Select[JobSchedule]:
    """SELECT of the schedules `actor` may see: server-wide first, then by channel and kind."""
    channel_id = col(JobSchedule.channel_id)
    stmt = select(JobSchedule).where(authz.visible_jobs_clause(actor, channel_id))
    if channel_ids is not None:
        stmt = stmt.where(channel_id.in_(channel_ids))
    return stmt.order_by(channel_id.is_not(None), channel_id, col(JobSchedule.kind))


def parse_job_id(value: object) -> int | None:
    """A job id from a GraphQL ID or CLI argument; None when it cannot be one (so: not found)."""
    text = str(value)
    return int(text) if text.isdigit() and len(text) < 19 else None
