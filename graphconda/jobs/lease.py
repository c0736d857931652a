"""The scheduler lease: one row in `scheduler_leases` says which process schedules, until when.

A process takes the lease when it is free or expired, and keeps it by renewing it well
before it expires (the scheduler renews every third of `jobs.lease_seconds`). Taking and
renewing are one conditional UPDATE (or the INSERT of the first row, which the primary key
lets only one process win), so two processes never both believe they hold it, as long as
their clocks agree to well within the lease time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from graphconda.db.models import SchedulerLease
from graphconda.services.context import Services

SCHEDULER = "scheduler"


async def acquire(services: Services, holder: str, seconds: float, name: str = SCHEDULER) -> datetime | None:
    """Take or renew the lease for `holder`; its new expiry, or None when another process holds it."""
    now = services.now()
    expires = now + timedelta(seconds=seconds)
    async with services.db.write() as session:
        result = await session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == name,  # type: ignore[arg-type]
                   or_(SchedulerLease.holder == holder, SchedulerLease.expires_at < now))  # type: ignore[arg-type]
            .values(holder=holder, expires_at=expires).execution_options(synchronize_session=False))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return expires
        if await session.scalar(select(col(SchedulerLease.name)).where(col(SchedulerLease.name) == name)) is not None:
            return None
    try:
        async with services.db.write() as session:
            session.add(SchedulerLease(name=name, holder=holder, expires_at=expires))
    except IntegrityError:  # another process inserted it first
        return None
    return expires


async def release(services: Services, holder: str, name: str = SCHEDULER) -> None:
    """Give the lease up (on shutdown), so another process takes over at its next try."""
    async with services.db.write() as session:
        await session.execute(
            update(SchedulerLease).where(SchedulerLease.name == name, SchedulerLease.holder == holder)  # type: ignore[arg-type]
            .values(expires_at=services.now()).execution_options(synchronize_session=False))


async def current(services: Services, name: str = SCHEDULER) -> SchedulerLease | None:
    async with services.db.read() as session:
        return await session.get(SchedulerLease, name)
