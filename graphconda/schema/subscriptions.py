"""The Subscription root: live job progress over graphql-transport-ws (the websocket at /graphql).

A run may execute in any server process, so updates come from the database through this
process's JobWatcher (services/job_watcher.py: one poll a second for all subscribers),
never from in-process events that other processes would not see.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import strawberry

from graphconda.db.models import JobRun
from graphconda.errors import NotFoundError
from graphconda.schema.context import Info
from graphconda.schema.types.job import Job
from graphconda.services import job_queries, jobs
from graphconda.services.job_watcher import job_watcher


async def _states(info: Info, first: JobRun) -> AsyncIterator[Job]:
    changes = job_watcher(info.context.services).watch(first)
    state: JobRun | None = first
    try:
        while state is not None:
            yield Job.from_model(state)
            # Asked for the next state: the last one is resolved and sent. Give back its read
            # session and loaders, so that a client waiting for a long job pins no pooled
            # connection (nor an old snapshot) meanwhile.
            await info.context.changed()
            state = await anext(changes, None)
    finally:
        await changes.aclose()


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The job run now, then again on every change of status or progress, until it finishes "
        "(the last message has SUCCEEDED, FAILED or CANCELLED). Checked at most once a second. "
        "A run you may not see is an error (NotFound) and sends no data."
    )
    async def job_updates(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
        job_id = job_queries.parse_job_id(id)
        if job_id is None:
            raise NotFoundError("job not found")
        first = await jobs.get_job(info.context.services, info.context.actor, job_id)
        async for state in _states(info, first):
            yield state
