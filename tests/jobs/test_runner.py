"""The runner in one process (SQLite or PostgreSQL): claim, progress, cancel, failures, retries, requeue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from graphconda.db.models import JobRun
from graphconda.jobs.runner import Runner
from graphconda.services import jobs
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.services.jobs import JobStatus
from tests.helpers.channels import make_channel
from tests.helpers.jobs import running
from tests.jobs import kinds  # also registers the test kinds


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"jobs": {"heartbeat_seconds": 0.2, "stale_seconds": 1.0, "poll_seconds": 0.1, "max_attempts": 2,
                     "retry_backoff_seconds": 0.2, "shutdown_grace_seconds": 2}}


async def wait_for(services: Services, job_id: int, check: Callable[[JobRun], bool]) -> JobRun:
    deadline = time.monotonic() + 20
    while True:
        run = await jobs.get_job(services, SYSTEM, job_id)
        if check(run):
            return run
        assert time.monotonic() < deadline, f"job {job_id} stuck: {run}"
        await asyncio.sleep(0.05)


def finished(run: JobRun) -> bool:
    return JobStatus(run.status).finished


async def test_run_succeeds_with_progress_and_log(services: Services) -> None:
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 12, "delay": 0.1})
    assert run.id is not None
    async with running(services):
        seen = await wait_for(services, run.id, lambda r: r.status == "running" and 0 < r.progress_done < 12)
        assert seen.progress_total == 12 and seen.message.startswith("step ")  # live, while it runs
        done = await wait_for(services, run.id, finished)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.progress_done, done.progress_total, done.message) == (12, 12, "done")
    assert done.log_tail.splitlines()[-1] == "step 11"
    assert done.attempt == 1 and done.error == ""
    assert done.started_at is not None and done.finished_at is not None and done.finished_at >= done.started_at
    # Finished: a new trigger queues a new run.
    assert (await jobs.run_job(services, SYSTEM, "test_steps")).id != run.id


async def test_cancel_a_running_job(services: Services) -> None:
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 1000, "delay": 0.02})
    assert run.id is not None
    async with running(services):
        await wait_for(services, run.id, lambda r: r.status == "running")
        await jobs.cancel_job(services, SYSTEM, run.id)
        done = await wait_for(services, run.id, finished)
    assert done.status == JobStatus.CANCELLED
    assert done.progress_done < 1000


async def test_failure_is_recorded(services: Services) -> None:
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 1, "fail": "error"})
    assert run.id is not None
    async with running(services):
        done = await wait_for(services, run.id, finished)
    assert done.status == JobStatus.FAILED
    assert done.error == "RuntimeError: boom"
    assert "boom" in done.log_tail  # the traceback's end


async def test_transient_failure_retries_with_backoff_then_gives_up(services: Services) -> None:
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 1, "delay": 0, "fail": "transient"})
    assert run.id is not None
    async with running(services):
        retry = await wait_for(services, run.id, lambda r: r.attempt == 1 and r.status == "queued")
        assert retry.run_after is not None and retry.error == "upstream unavailable"
        assert retry.message.startswith("requeued: retrying in")
        done = await wait_for(services, run.id, finished)
    assert done.status == JobStatus.FAILED and done.attempt == 2
    assert done.error == "gave up after 2 attempts: upstream unavailable"


async def test_dead_process_run_is_requeued_then_failed_after_max_attempts(services: Services) -> None:
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 2, "delay": 0})
    assert run.id is not None
    dead = Runner(services, holder="dead-process")
    claimed = await dead.claim()  # claimed, then the process "dies": no heartbeat ever
    assert claimed is not None and claimed.id == run.id and claimed.holder == "dead-process"
    assert await dead.claim() is None  # nothing else queued: claimed once
    survivor = Runner(services, holder="survivor")
    survivor.start()
    try:
        done = await wait_for(services, run.id, finished)
    finally:
        await survivor.aclose()
    assert done.status == JobStatus.SUCCEEDED and done.attempt == 2 and done.holder == "survivor"

    # Dies on every attempt: failed after max_attempts (2), with a message saying why.
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 2, "delay": 0})
    assert run.id is not None
    assert await dead.claim() is not None
    from graphconda.jobs.runner import requeue_stale

    await wait_for(services, run.id, lambda r: r.heartbeat_at is not None)
    await asyncio.sleep(1.1)
    assert await requeue_stale(services) == 1
    assert (await jobs.get_job(services, SYSTEM, run.id)).status == "queued"
    assert await dead.claim() is not None
    await asyncio.sleep(1.1)
    assert await requeue_stale(services) == 1
    done = await jobs.get_job(services, SYSTEM, run.id)
    assert done.status == JobStatus.FAILED
    assert done.error == "gave up after 2 attempts: the process running it (dead-process) stopped sending heartbeats"


async def test_shutdown_requeues_running_jobs_for_another_process(services: Services) -> None:
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 40, "delay": 0.05})
    assert run.id is not None
    first = Runner(services, holder="first")
    first.start()
    await wait_for(services, run.id, lambda r: r.status == "running" and r.progress_done > 0)
    await first.aclose()  # SIGTERM: the job stops at its next check and goes back to the queue
    back = await jobs.get_job(services, SYSTEM, run.id)
    assert back.status == JobStatus.QUEUED and back.attempt == 0 and back.holder is None
    assert back.message == "requeued: the process running it stopped"
    second = Runner(services, holder="second")
    second.start()
    try:
        done = await wait_for(services, run.id, finished)
    finally:
        await second.aclose()
    assert done.status == JobStatus.SUCCEEDED and done.holder == "second" and done.attempt == 1


async def test_concurrent_runners_claim_each_run_once(services: Services) -> None:
    ids = []
    for i in range(8):
        await make_channel(services, f"c{i}")
        ids.append((await jobs.run_job(services, SYSTEM, "test_channel_noop", channel=f"c{i}")).id)
    runners = [Runner(services, holder=f"r{i}") for i in range(3)]
    claims = await asyncio.gather(*(r.claim() for r in runners * 4))
    claimed = [c.id for c in claims if c is not None]
    assert len(claimed) == len(set(claimed)) == 8
    for runner in runners:
        runner.start()
    try:
        # They were claimed above by runners that never ran them: stale, requeued, run by someone.
        for job_id in ids:
            assert job_id is not None
            done = await wait_for(services, job_id, finished)
            assert done.status == JobStatus.SUCCEEDED and done.attempt == 2
    finally:
        for runner in runners:
            await runner.aclose()


async def test_kinds_of_one_group_run_one_at_a_time_per_channel(services: Services) -> None:
    kinds.RUNS.clear()
    for name in ("one", "two"):
        await make_channel(services, name)
    ids = [(await jobs.run_job(services, SYSTEM, kind, channel=channel)).id
           for kind, channel in (("test_grouped_a", "one"), ("test_grouped_b", "one"), ("test_grouped_a", "two"))]
    async with running(services):  # jobs.concurrency > 1: all three could start at once
        for job_id in ids:
            assert job_id is not None
            assert (await wait_for(services, job_id, finished)).status == JobStatus.SUCCEEDED
    spans = {(kind, channel): (start, end) for kind, channel, start, end in kinds.RUNS}
    a_one, b_one, a_two = spans["test_grouped_a", "one"], spans["test_grouped_b", "one"], spans["test_grouped_a", "two"]
    assert b_one[0] >= a_one[1]  # on one channel the second waited for the first
    assert a_two[0] < a_one[1]  # another channel did not wait
    async with services.db.read() as session:
        assert (await session.scalars(select(JobRun.running_key))).all() == [None, None, None]


async def test_a_scheduled_sweep_with_nothing_to_do_leaves_no_run_but_a_triggered_one_is_kept(
        services: Services) -> None:
    scheduled = await jobs.run_job(services, SYSTEM, "publish_sweep", scheduled=True)
    async with running(services):
        deadline = time.monotonic() + 20
        while True:
            async with services.db.read() as session:
                if await session.get(JobRun, scheduled.id) is None:
                    break
            assert time.monotonic() < deadline, "the idle scheduled sweep's run was kept"
            await asyncio.sleep(0.05)
        triggered = await jobs.run_job(services, SYSTEM, "publish_sweep")
        run = await wait_for(services, triggered.id, finished)  # type: ignore[arg-type]
    assert run.status == JobStatus.SUCCEEDED.value and run.message == "all published"
