"""Many processes on PostgreSQL: three `graphconda serve` and one `graphconda scheduler`, as a deployment runs.

A 1-second schedule runs once per tick across all of them; killing the lease holder
(kill -9) hands scheduling to another process within the lease time plus a tick; killing
the process running a job gets the run requeued and finished elsewhere. A job triggered
over GraphQL on one process is read, with its progress, from another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from graphconda.db.models import JobRun
from graphconda.jobs import lease
from graphconda.services import api_keys, jobs
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.fixtures.database import PG_ENV
from tests.fixtures.server import free_port, process_env
from tests.helpers.channels import make_user
from tests.jobs import kinds  # noqa: F401 - registers the test kinds

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.environ.get(PG_ENV), reason="needs PostgreSQL (GRAPHCONDA_TEST_DATABASE_URL)")]

ROOT = Path(__file__).resolve().parents[2]
LEASE = 2.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str | None
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


@pytest.fixture
def deployment(settings: Settings, tmp_path: Path) -> Iterator[list[Proc]]:
    env = process_env(settings, {
        "GRAPHCONDA_JOBS__MODULES": '["tests.jobs.kinds"]',
        "GRAPHCONDA_JOBS__LEASE_SECONDS": str(LEASE),
        "GRAPHCONDA_JOBS__HEARTBEAT_SECONDS": "0.3",
        "GRAPHCONDA_JOBS__STALE_SECONDS": "2",
        "GRAPHCONDA_JOBS__POLL_SECONDS": "0.2",
        "GRAPHCONDA_JOBS__SHUTDOWN_GRACE_SECONDS": "1",
        "GRAPHCONDA_JOBS__CLEANUP_INTERVAL_SECONDS": "0",
        "GRAPHCONDA_PUBLISH__SWEEP_INTERVAL_SECONDS": "3600",
    })
    procs: list[Proc] = []
    for i in range(3):
        port = free_port()
        log = tmp_path / f"serve{i}.log"
        with log.open("w") as out:
            popen = subprocess.Popen([sys.executable, "-m", "graphconda", "serve", "--port", str(port)], cwd=ROOT,
                                     env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(Proc(f"serve{i}", popen, f"http://127.0.0.1:{port}", log))
    log = tmp_path / "scheduler.log"
    with log.open("w") as out:
        popen = subprocess.Popen([sys.executable, "-m", "graphconda", "scheduler"], cwd=ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
    procs.append(Proc("scheduler", popen, None, log))
    try:
        deadline = time.monotonic() + 60
        for proc in procs:
            while True:
                assert proc.popen.poll() is None, proc.log.read_text()
                ready = False
                if proc.url is None:
                    ready = "scheduler running" in proc.log.read_text()
                else:
                    with contextlib.suppress(httpx2.HTTPError):
                        ready = httpx2.get(f"{proc.url}/healthz", timeout=2).status_code == 200
                if ready:
                    break
                assert time.monotonic() < deadline, f"{proc.name} did not start: {proc.log.read_text()}"
                time.sleep(0.2)
        yield procs
    finally:
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()


def owner_of(procs: list[Proc], holder: str | None) -> Proc:
    assert holder is not None
    pid = int(holder.split(":")[1])
    return next(p for p in procs if p.pid == pid)


async def runs_of(services: Services, kind: str) -> list[JobRun]:
    async with services.db.read() as session:
        return list((await session.scalars(select(JobRun).where(JobRun.kind == kind).order_by(JobRun.id))).all())


async def eventually(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        await asyncio.sleep(0.1)


async def gql(url: str, key: str, query: str, **variables: Any) -> dict[str, Any]:
    async with httpx2.AsyncClient(timeout=20) as http:
        response = await http.post(f"{url}/graphql", json={"query": query, "variables": variables},
                                   headers={"X-API-Key": key})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def test_one_schedule_many_processes(deployment: list[Proc], services: Services) -> None:
    procs = deployment
    await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=1, cron=None,
                            enabled=True)
    # Picked up within one lease renewal (LEASE / 3), first tick one second later.
    first = await eventually(lambda: runs_of(services, "test_steps"), LEASE + 5, "the first scheduled run")
    start = first[0].created_at
    await asyncio.sleep(10)
    runs = [r for r in await runs_of(services, "test_steps") if (r.created_at - start).total_seconds() < 9.5]
    created = [r.created_at for r in runs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(created)]
    assert 9 <= len(runs) <= 10, gaps  # ticks at start + 0..9 s
    assert min(gaps) > 0.5, gaps  # never twice for one tick, whichever processes were asked
    assert all(r.scheduled for r in runs)
    assert {r.status for r in runs} <= {"succeeded", "running"}

    # kill -9 the lease holder: another process schedules within the lease time plus a tick.
    holder = await lease.current(services)
    assert holder is not None
    victim = owner_of(procs, holder.holder)
    victim.popen.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()

    async def new_holder() -> Any:
        now = await lease.current(services)
        return now is not None and now.holder != holder.holder and now.expires_at > services.now()

    await eventually(new_holder, LEASE + 1 + 2, "another process takes the lease")  # +2: slow machines
    assert time.monotonic() - killed_at <= LEASE + 1 + 2
    successor = owner_of(procs, (await lease.current(services)).holder)  # type: ignore[union-attr]
    assert successor is not victim and successor.popen.poll() is None
    count = len(await runs_of(services, "test_steps"))
    await eventually(lambda: _more(services, count), LEASE + 6, "scheduling continues under the new holder")

    # A job triggered over GraphQL on one process, progress read from another; kill -9 whichever runs it.
    await jobs.set_schedule(services, SYSTEM, "test_steps", channel=None, interval_seconds=None, cron=None,
                            enabled=False)
    staff = await make_user(services, "staff", Role.OWNER)
    _, key = await api_keys.create_api_key(services, staff)
    alive = [p for p in procs if p.url and p.popen.poll() is None]
    assert len(alive) >= 2
    started = await gql(alive[0].url, key, """mutation { runJob(input: {kind: "test_slow",
        args: {steps: 50, delay: 0.1}}) { ... on Job { id status } } }""")  # type: ignore[arg-type]
    job_id = started["runJob"]["id"]

    async def progressing() -> Any:
        data = await gql(alive[1].url, key, "query($id: ID!) { job(id: $id) { status attempt progress { done } } }",  # type: ignore[arg-type]
                         id=job_id)
        job = data["job"]
        return job if job["status"] == "RUNNING" and job["progress"]["done"] >= 3 else None

    seen = await eventually(progressing, 20, "progress visible from another process")
    assert seen["attempt"] == 1
    running = await jobs.get_job(services, SYSTEM, int(job_id))
    runner = owner_of(procs, running.holder)
    runner.popen.send_signal(signal.SIGKILL)

    async def finished() -> Any:
        run = await jobs.get_job(services, SYSTEM, int(job_id))
        return run if run.status in ("succeeded", "failed", "cancelled") else None

    done = await eventually(finished, 40, "the killed process's run finished elsewhere")
    assert done.status == "succeeded" and done.attempt == 2
    assert owner_of(procs, done.holder) is not runner
    assert done.progress_done == 50


async def _more(services: Services, count: int) -> bool:
    return len(await runs_of(services, "test_steps")) > count
