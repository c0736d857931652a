"""Schedules: what is due when (injected clock, no sleeping), the lease, and the embedded scheduler for real."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from graphconda.db.models import JobRun, RegisteredMirror
from graphconda.errors import InvalidInputError
from graphconda.jobs import lease
from graphconda.jobs.scheduler import ScheduleBook, Scheduler, ScheduleSpec, schedule_specs
from graphconda.services import jobs
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services, open_services
from graphconda.settings import Settings
from tests.helpers.channels import make_channel
from tests.helpers.clock import Clock
from tests.jobs import kinds  # noqa: F401 - registers the test kinds

T0 = datetime(2026, 3, 1, 10, 7, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def clocked(settings: Settings, clock: Clock) -> AsyncIterator[Services]:
    handle = await open_services(settings, clock=clock)
    try:
        yield handle.services
    finally:
        await handle.aclose()


def test_interval_fires_once_per_tick_and_coalesces_missed_ticks() -> None:
    book = ScheduleBook()
    spec = ScheduleSpec("cleanup", interval_seconds=60)
    book.sync([spec], T0)
    assert book.next_fire(spec.key) == T0 + timedelta(seconds=60)
    assert book.due(T0 + timedelta(seconds=59)) == []
    assert book.due(T0 + timedelta(seconds=60)) == [spec]
    assert book.due(T0 + timedelta(seconds=61)) == []  # that tick is done
    # Five ticks missed (process paused, lease just taken over): one firing, not five.
    assert book.due(T0 + timedelta(seconds=60 + 5 * 60 + 10)) == [spec]
    assert book.next_fire(spec.key) == T0 + timedelta(seconds=7 * 60)
    assert book.due(T0 + timedelta(seconds=7 * 60)) == [spec]


def test_cron_schedules_fire_at_crontab_times() -> None:
    book = ScheduleBook()
    spec = ScheduleSpec("cleanup", cron="*/15 * * * *")
    book.sync([spec], T0)  # 10:07
    assert book.next_fire(spec.key) == T0.replace(minute=15)
    assert book.due(T0.replace(minute=14, second=59)) == []
    assert book.due(T0.replace(minute=15)) == [spec]
    assert book.next_fire(spec.key) == T0.replace(minute=30)
    nightly = ScheduleSpec("reindex", "main", cron="30 2 * * 1-5")  # 02:30 on weekdays
    book.sync([nightly], T0)  # 2026-03-01 is a Sunday
    assert book.next_fire(nightly.key) == datetime(2026, 3, 2, 2, 30, tzinfo=UTC)
    assert list(book.entries) == [nightly.key]  # the other schedule is gone


def test_unchanged_schedules_keep_their_next_fire_time_changed_ones_restart() -> None:
    book = ScheduleBook()
    spec = ScheduleSpec("cleanup", interval_seconds=60)
    book.sync([spec], T0)
    assert book.sync([spec], T0 + timedelta(seconds=30)) == ([], [])
    assert book.next_fire(spec.key) == T0 + timedelta(seconds=60)
    faster = ScheduleSpec("cleanup", interval_seconds=10)
    assert book.sync([faster], T0 + timedelta(seconds=30)) == ([faster.key], [])
    assert book.next_fire(spec.key) == T0 + timedelta(seconds=40)


async def test_stored_schedules_enable_disable_and_override_builtins(clocked: Services) -> None:
    await make_channel(clocked, "main")
    specs = {s.key: s for s in await schedule_specs(clocked)}
    assert specs["cleanup:"].interval_seconds == 3600 and specs["publish_sweep:"].interval_seconds == 30
    assert specs["aggregate_metrics:"].interval_seconds == 300
    await jobs.set_schedule(clocked, SYSTEM, "test_channel_noop", channel="main", interval_seconds=None,
                            cron="0 * * * *", enabled=True)
    await jobs.set_schedule(clocked, SYSTEM, "cleanup", channel=None, interval_seconds=600, cron=None, enabled=True)
    specs = {s.key: s for s in await schedule_specs(clocked)}
    assert specs["test_channel_noop:main"].cron == "0 * * * *"
    assert specs["cleanup:"].interval_seconds == 600
    await jobs.set_schedule(clocked, SYSTEM, "test_channel_noop", channel="main", interval_seconds=None, cron=None,
                            enabled=False)
    await jobs.set_schedule(clocked, SYSTEM, "cleanup", channel=None, interval_seconds=None, cron=None, enabled=False)
    assert {s.key for s in await schedule_specs(clocked)} == {"publish_sweep:", "aggregate_metrics:"}


@pytest.mark.parametrize("settings_overrides", [{"jobs": {"lease_seconds": 30}}])
async def test_one_lease_holder_schedules_and_another_takes_over_after_expiry(clocked: Services,
                                                                              clock: Clock) -> None:
    await jobs.set_schedule(clocked, SYSTEM, "test_steps", channel=None, interval_seconds=10, cron=None, enabled=True)
    first, second = Scheduler(clocked, holder="first"), Scheduler(clocked, holder="second")
    await first.renew()
    await second.renew()
    assert first.active and not second.active
    assert (await lease.current(clocked)).holder == "first"  # type: ignore[union-attr]
    clock.advance(10)
    assert [s.key for s in await first.fire_due()] == ["test_steps:"]
    assert await second.fire_due() == []  # a non-holder never fires
    async with clocked.db.read() as session:
        runs = (await session.scalars(select(JobRun).where(JobRun.kind == "test_steps"))).all()
    assert len(runs) == 1 and runs[0].scheduled and runs[0].status == "queued"

    # A schedule change is picked up at the next renewal.
    await jobs.set_schedule(clocked, SYSTEM, "test_steps", channel=None, interval_seconds=None, cron=None,
                            enabled=False)
    clock.advance(10)
    await first.renew()
    assert "test_steps:" not in first.book.entries

    # The holder stops renewing (hung): it stops scheduling before the lease expires, and the
    # other process takes over once it has expired, not before.
    clock.advance(21)
    assert not first.active
    await second.renew()
    assert not second.active
    clock.advance(10)
    await second.renew()
    assert second.active
    await first.renew()  # the old holder comes back: the lease is gone, it stays passive
    assert not first.active
    await second.aclose()  # releases the lease: the next try of anyone takes it at once
    clock.advance(0.001)
    await first.renew()
    assert first.active


@pytest.mark.parametrize("settings_overrides", [{"jobs": {"lease_seconds": 1.5, "poll_seconds": 0.1,
                                                          "heartbeat_seconds": 0.2, "stale_seconds": 2}}])
async def test_embedded_scheduler_and_runner_run_a_schedule_every_tick(settings: Settings) -> None:
    handle = await open_services(settings, runner=True, scheduler=True)
    services = handle.services
    try:
        await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=1, cron=None,
                                enabled=True)
        started = time.monotonic()
        while time.monotonic() - started < 6:
            async with services.db.read() as session:
                done = (await session.scalars(select(JobRun).where(JobRun.kind == "test_steps",
                                                                   JobRun.status == "succeeded"))).all()
            if len(done) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await handle.aclose()
    assert len(done) >= 3 and all(run.scheduled for run in done)
    created = sorted(run.created_at for run in done)
    assert all((b - a).total_seconds() > 0.5 for a, b in itertools.pairwise(created))
    assert (await _lease(settings)) is not None


async def _lease(settings: Settings) -> Any:
    handle = await open_services(settings)
    try:
        return await lease.current(handle.services)
    finally:
        await handle.aclose()


@pytest.mark.parametrize(("field", "days"), [
    ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"), ("5-7", "sun,fri,sat"), ("*/2", "sun,tue,thu,sat"),
    ("sat,sun", "sun,sat"), ("MON-wed", "mon,tue,wed"), ("*", "*"), ("1/3", "sun,mon,thu"),
])
def test_crontab_weekdays_count_from_sunday(field: str, days: str) -> None:
    from graphconda.jobs.cron import crontab_weekdays

    assert crontab_weekdays(field) == days


async def test_mirror_channels_sync_on_the_configured_interval(clocked: Services) -> None:
    await make_channel(clocked, "upstream-copy", mirror=True)
    await make_channel(clocked, "local")
    specs = {s.key: s for s in await schedule_specs(clocked)}
    assert specs["synchronize:upstream-copy"].interval_seconds == clocked.settings.jobs.mirror_sync_interval_seconds
    assert "synchronize:local" not in specs
    await jobs.set_schedule(clocked, SYSTEM, "synchronize", channel="upstream-copy", interval_seconds=None,
                            cron="0 3 * * *", enabled=True)
    specs = {s.key: s for s in await schedule_specs(clocked)}
    assert specs["synchronize:upstream-copy"].cron == "0 3 * * *"


async def test_channels_with_registered_mirrors_pull_their_metrics_on_the_configured_interval(
        clocked: Services) -> None:
    primary = await make_channel(clocked, "primary")
    await make_channel(clocked, "lonely")
    async with clocked.db.write() as session:
        session.add(RegisteredMirror(channel_id=primary.id, url="http://127.0.0.1:9/get/primary"))
    specs = {s.key: s for s in await schedule_specs(clocked)}
    interval = clocked.settings.jobs.mirror_metrics_interval_seconds
    assert specs["synchronize_metrics:primary"].interval_seconds == interval
    assert "synchronize_metrics:lonely" not in specs
    # Switched off without a trigger of its own: the built-in one stops.
    await jobs.set_schedule(clocked, SYSTEM, "synchronize_metrics", channel="primary", interval_seconds=None,
                            cron=None, enabled=False)
    assert "synchronize_metrics:primary" not in {s.key for s in await schedule_specs(clocked)}
    with pytest.raises(InvalidInputError, match="interval in seconds or a cron"):
        await jobs.set_schedule(clocked, SYSTEM, "synchronize_metrics", channel="primary", interval_seconds=None,
                                cron=None, enabled=True)
