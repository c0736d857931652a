"""The Subscription root: live job progress over graphql-transport-ws (the websocket at /graphql).

A run may execute in any server process, so updates come from the database through this
process's JobWatcher (services/job_watcher.py: one poll a second for all subscribers),
never from in-process events that other processes would not see. Each message is sent only
after the websocket's credentials were checked again (the first as the operation begins,
schema/context.py), so revoking the API key or session it was opened with (or disabling the
account) ends the stream at its next message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import strawberry
from starlette.websockets import WebSocket

from graphconda.db.models import JobRun
from graphconda.errors import NotFoundError
from graphconda.http.identity import recheck_actor
from graphconda.schema.context import Info
from graphconda.schema.types.job import Job
from graphconda.services import job_queries, jobs
from graphconda.services.job_watcher import job_watcher


async def _states(info: Info, first: JobRun) -> AsyncIterator[Job]:
    changes = job_watcher(info.context.services).watch(first)
    state: JobRun | None = first
    try:
        while state is not None:
            if state is not first:  # the first was checked as the operation began (context.WebsocketActor)
                await _still_allowed(info, state)
            yield Job.from_model(state)
            # Asked for the next state: the last one is resolved and sent. Give back its read
            # session and loaders, so that a client waiting for a long job pins no pooled
            # connection (nor an old snapshot) meanwhile.
            await info.context.changed()
            state = await anext(changes, None)
    finally:
        await changes.aclose()


async def _still_allowed(info: Info, run: JobRun) -> None:
    """Before each message: the websocket's credentials are checked again (its handshake may be
    long past). A revoked or expired API key or session, or a disabled account, ends the stream
    with an AuthenticationError; a changed role or scope must still see the run (else NotFound)."""
    socket = info.context.request
    if not isinstance(socket, WebSocket):
        return
    actor = await recheck_actor(socket.scope)
    if actor != info.context.actor:
        await jobs.get_job(info.context.services, actor, run.id)  # type: ignore[arg-type]
        info.context.actor = actor


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
