"""Job and Schedule: runs of background jobs with their live progress, and the periodic schedules behind them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graphconda.db import models
from graphconda.schema import loaders
from graphconda.schema.context import Info
from graphconda.schema.types.enums import JSON

if TYPE_CHECKING:
    from graphconda.schema.types.channel import Channel
    from graphconda.schema.types.user import User

ChannelRef = Annotated["Channel", strawberry.lazy("graphconda.schema.types.channel")]
UserRef = Annotated["User", strawberry.lazy("graphconda.schema.types.user")]


@strawberry.enum(description="Where a job run is in its life: QUEUED, RUNNING, then one of the three final states.")
class JobStatus(Enum):
    QUEUED = strawberry.enum_value("queued", description="Waiting for a runner (also while waiting to retry).")
    RUNNING = strawberry.enum_value("running", description="A runner in some server process is executing it.")
    SUCCEEDED = strawberry.enum_value("succeeded", description="Finished without error.")
    FAILED = strawberry.enum_value("failed", description="Finished with `error` (after its retries).")
    CANCELLED = strawberry.enum_value("cancelled", description="Stopped by `cancelJob` (or cancelled before it ran).")


@strawberry.type(description="How far a run got: `done` of `total` steps (null while unknown), and what it is doing.")
class JobProgress:
    done: int
    total: int | None
    message: str


@strawberry.type(description="One run of a background job (a channel's, or server-wide when `channel` is null).")
class Job:
    id: strawberry.ID
    kind: str = strawberry.field(description="The job kind, e.g. `reindex` or `cleanup`.")
    status: JobStatus
    progress: JobProgress
    log_tail: str = strawberry.field(description="The last lines the job logged (bounded).")
    error: str | None = strawberry.field(description="Why it failed; null unless it failed or is retrying.")
    attempt: int = strawberry.field(description="How many times a runner started it (more after a crash or retry).")
    scheduled: bool = strawberry.field(description="Started by a schedule rather than by a person.")
    args: JSON = strawberry.field(description="The job's arguments, defaults filled in.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    channel_id: strawberry.Private[int | None]
    triggered_by_id: strawberry.Private[int | None]

    @classmethod
    def from_model(cls, run: models.JobRun) -> Job:
        assert run.id is not None
        return cls(
            id=strawberry.ID(str(run.id)),
            kind=run.kind,
            status=JobStatus(run.status),
            progress=JobProgress(done=run.progress_done, total=run.progress_total, message=run.message),
            log_tail=run.log_tail,
            error=run.error or None,
            attempt=run.attempt,
            scheduled=run.scheduled,
            args=JSON(dict(run.args or {})),
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            channel_id=run.channel_id,
            triggered_by_id=run.triggered_by_id,
        )

    @strawberry.field(description="The channel it works on; null for a server-wide job.")
    async def channel(self, info: Info) -> ChannelRef | None:
        return await _channel(info, self.channel_id)

    @strawberry.field(description="Who started it; null for scheduled runs and deleted users.")
    async def triggered_by(self, info: Info) -> UserRef | None:
        from graphconda.schema.types.user import User

        if self.triggered_by_id is None:
            return None
        user = await loaders.user_by_id(info.context).load(self.triggered_by_id)
        return User.from_model(user) if user is not None else None


@strawberry.type(description="A periodic job: every `intervalSeconds`, or at the times of `cron` (UTC).")
class Schedule:
    id: strawberry.ID
    kind: str
    interval_seconds: int | None = strawberry.field(
        description="Null when `cron` is set, and on a disabled schedule that only switches a built-in one off.")
    cron: str | None = strawberry.field(description="Five crontab fields (minute hour day month weekday); or null.")
    enabled: bool
    created_at: datetime
    updated_at: datetime
    channel_id: strawberry.Private[int | None]

    @classmethod
    def from_model(cls, schedule: models.JobSchedule) -> Schedule:
        assert schedule.id is not None
        return cls(
            id=strawberry.ID(str(schedule.id)),
            kind=schedule.kind,
            interval_seconds=schedule.interval_seconds,
            cron=schedule.cron,
            enabled=schedule.enabled,
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
            channel_id=schedule.channel_id,
        )

    @strawberry.field(description="The channel it runs for; null for a server-wide schedule.")
    async def channel(self, info: Info) -> ChannelRef | None:
        return await _channel(info, self.channel_id)


async def _channel(info: Info, channel_id: int | None) -> Any:
    from graphconda.schema.types.channel import Channel

    if channel_id is None:
        return None
    found = await loaders.channel_by_id(info.context).load(channel_id)
    return Channel.from_model(found) if found is not None else None
