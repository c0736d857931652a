"""Running queued jobs to their end in a test: a real Runner in this process, polled through the jobs service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from graphconda.db.models import JobRun
from graphconda.jobs.runner import Runner
from graphconda.services import jobs
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.services.jobs import JobStatus


@asynccontextmanager
async def running(services: Services) -> AsyncIterator[Runner]:
    """A Runner claiming and running queued jobs in this process while the block runs."""
    runner = Runner(services)
    runner.start()
    try:
        yield runner
    finally:
        await runner.aclose()


async def run_to_end(services: Services, run_id: int, *, seconds: float = 10) -> JobRun:
    """Run jobs with a Runner until `run_id` has finished, then stop the runner and return that run.

    After `seconds` it returns the run as it stands (not finished), so that the caller's own
    assertion on its status says what went wrong.
    """
    async with running(services):
        deadline = time.monotonic() + seconds
        while True:
            run = await jobs.get_job(services, SYSTEM, run_id)
            if JobStatus(run.status).finished or time.monotonic() >= deadline:
                return run
            await asyncio.sleep(0.05)
