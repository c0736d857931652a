"""services.jobs: triggering, dedupe, validation and permissions; bad input queues nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from graphconda.db.models import JobRun, JobSchedule
from graphconda.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from graphconda.services import jobs
from graphconda.services.authz import ANONYMOUS, SYSTEM, Role
from graphconda.services.context import Services
from tests.helpers.channels import add_member, make_channel, make_user
from tests.jobs import kinds  # noqa: F401 - registers the test kinds


async def _count(services: Services, model: type = JobRun) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_run_job_queues_once_per_kind_and_channel(services: Services) -> None:
    await make_channel(services, "main")
    await make_channel(services, "other")
    first = await jobs.run_job(services, SYSTEM, "test_channel_noop", channel="main")
    assert first.status == jobs.JobStatus.QUEUED and first.attempt == 0
    again = await jobs.run_job(services, SYSTEM, "test_channel_noop", channel="main")
    assert again.id == first.id
    other = await jobs.run_job(services, SYSTEM, "test_channel_noop", channel="other")
    assert other.id != first.id
    server = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 2})
    assert server.args == {"steps": 2, "delay": 0.05, "fail": "", "label": ""}
    assert await _count(services) == 3
    # Once the first is finished (cancelled here), a new trigger queues a new run.
    await jobs.cancel_job(services, SYSTEM, first.id)  # type: ignore[arg-type]
    fresh = await jobs.run_job(services, SYSTEM, "test_channel_noop", channel="main")
    assert fresh.id != first.id


async def test_kinds_of_one_group_queue_their_own_runs(services: Services) -> None:
    await make_channel(services, "copy", mirror=True)
    sync = await jobs.run_job(services, SYSTEM, "synchronize", channel="copy")
    # A repodata-only sync asked for while a full one is queued is its own run (it waits for
    # the full one to finish, see tests/jobs/test_runner.py), never the other kind handed back.
    repodata = await jobs.run_job(services, SYSTEM, "synchronize_repodata", channel="copy")
    assert repodata.id != sync.id and repodata.kind == "synchronize_repodata"
    assert (await jobs.run_job(services, SYSTEM, "synchronize_repodata", channel="copy")).id == repodata.id


@pytest.mark.parametrize(("kind", "channel", "args", "field"), [
    ("nope", None, None, "kind"),
    ("test_steps", None, {"steps": "3"}, "args.steps"),
    ("test_steps", None, {"steps": True}, "args.steps"),
    ("test_steps", None, {"delay": "fast"}, "args.delay"),
    ("test_steps", None, {"unknown": 1}, "args.unknown"),
    ("test_steps", "main", None, "channel"),
    ("test_channel_noop", None, None, "channel"),
    ("cleanup", None, {"dry_run": "yes"}, "args.dry_run"),
])
async def test_bad_input_is_a_typed_error_and_queues_nothing(
        services: Services, kind: str, channel: str | None, args: dict | None, field: str) -> None:
    await make_channel(services, "main")
    with pytest.raises(InvalidInputError) as info:
        await jobs.run_job(services, SYSTEM, kind, channel=channel, args=args)
    assert info.value.field == field
    assert await _count(services) == 0


async def test_permissions(services: Services) -> None:
    await make_channel(services, "public")
    await make_channel(services, "secret", private=True)
    staff = await make_user(services, "staff", Role.MAINTAINER)
    owner = await make_user(services, "chanowner")
    member = await make_user(services, "member")
    stranger = await make_user(services, "stranger")
    await add_member(services, "public", owner, Role.OWNER)
    await add_member(services, "secret", owner, Role.MAINTAINER)
    await add_member(services, "public", member, Role.MEMBER)

    with pytest.raises(AuthenticationError):
        await jobs.run_job(services, ANONYMOUS, "test_steps")
    for actor in (owner, member, stranger):
        with pytest.raises(PermissionDeniedError):
            await jobs.run_job(services, actor, "test_steps")
    for actor in (member, stranger):
        with pytest.raises(PermissionDeniedError):
            await jobs.run_job(services, actor, "test_channel_noop", channel="public")
    for actor in (member, stranger, ANONYMOUS):  # invisible: not found, not "forbidden"
        with pytest.raises(NotFoundError):
            await jobs.run_job(services, actor, "test_channel_noop", channel="secret")
    assert await _count(services) == 0

    secret_run = await jobs.run_job(services, owner, "test_channel_noop", channel="secret")
    assert secret_run.triggered_by_id == owner.user_id
    server_run = await jobs.run_job(services, staff, "test_steps")
    assert (await jobs.get_job(services, owner, secret_run.id)).id == secret_run.id  # type: ignore[arg-type]
    for actor in (member, stranger, ANONYMOUS):
        with pytest.raises(NotFoundError):
            await jobs.get_job(services, actor, secret_run.id)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError):
            await jobs.cancel_job(services, actor, secret_run.id)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await jobs.get_job(services, owner, server_run.id)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await jobs.get_job(services, staff, 99999)
    cancelled = await jobs.cancel_job(services, staff, secret_run.id)  # type: ignore[arg-type]
    assert cancelled.status == jobs.JobStatus.CANCELLED
    with pytest.raises(ConflictError):
        await jobs.cancel_job(services, staff, secret_run.id)  # type: ignore[arg-type]


async def test_set_schedule_validates_and_upserts(services: Services) -> None:
    await make_channel(services, "main")
    for interval, cron, field in [(None, None, "interval_seconds"), (-5, None, "interval_seconds"),
                                  (0, None, "interval_seconds"), (10, "* * * * *", "interval_seconds"),
                                  (None, "61 * * * *", "cron"), (None, "every day", "cron")]:
        with pytest.raises(InvalidInputError) as info:
            await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=interval,
                                    cron=cron, enabled=True)
        assert info.value.field == field, (interval, cron)
    with pytest.raises(InvalidInputError):
        await jobs.set_schedule(services, SYSTEM, "nope", channel=None, interval_seconds=5, cron=None, enabled=True)
    assert await _count(services, JobSchedule) == 0

    made = await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=60, cron=None,
                                   enabled=True)
    changed = await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=None,
                                      cron="*/5 * * * *", enabled=True)
    assert changed.id == made.id and changed.cron == "*/5 * * * *" and changed.interval_seconds is None
    disabled = await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=None,
                                       cron=None, enabled=False)
    assert disabled.id == made.id and not disabled.enabled and disabled.cron == "*/5 * * * *"
    await jobs.set_schedule(services, SYSTEM, "test_channel_noop", channel="main", interval_seconds=30, cron=None,
                            enabled=True)
    assert await _count(services, JobSchedule) == 2
    member = await make_user(services, "member")
    with pytest.raises(PermissionDeniedError):
        await jobs.set_schedule(services, member, "test_channel_noop", channel="main", interval_seconds=30,
                                cron=None, enabled=True)


def test_job_kinds_lists_the_builtins() -> None:
    assert {"reindex", "cleanup"} <= set(jobs.job_kinds())
