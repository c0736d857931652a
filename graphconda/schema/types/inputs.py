"""Input types of the mutations and of list filters."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from graphconda.schema.types.enums import JSON, MirrorMode, Role
from graphconda.schema.types.job import JobStatus


@strawberry.input(description="Narrows `channels`; every given condition must hold.")
class ChannelFilter:
    name_contains: str | None = None
    private: bool | None = None
    mirror_mode: MirrorMode | None = None


@strawberry.input
class CreateChannelInput:
    name: str = strawberry.field(description="Lowercase letters, digits, '.', '-', '_'; at most 64 characters.")
    description: str = ""
    private: bool = False
    mirror_mode: MirrorMode | None = strawberry.field(default=None, description="Server staff only.")
    mirror_channel_url: str | None = strawberry.field(
        default=None, description="The upstream channel URL; may carry `user:password@` or `/t/<token>/`, "
        "shown redacted to everyone but server staff."
    )
    includelist: list[str] = strawberry.field(default_factory=list, description="Server staff only.")
    excludelist: list[str] = strawberry.field(default_factory=list, description="Server staff only.")
    proxylist: list[str] = strawberry.field(default_factory=list, description="Server staff only.")
    ttl: int | None = strawberry.field(
        default=None, description="Proxy channels: seconds upstream index files are served before they are "
        "revalidated; null: the server default (mirror.ttl_seconds). Server staff only."
    )
    mirror_prune: bool = strawberry.field(
        default=False, description="Mirror channels: remove files that are gone upstream. Server staff only."
    )
    sync_now: bool = strawberry.field(
        default=True, description="Mirror channels: queue a first `synchronize` run at once (see `syncMirror`)."
    )
    publish_bz2: bool = strawberry.field(default=False, description="Also publish repodata.json.bz2 (deprecated).")
    publish_current_repodata: bool = strawberry.field(
        default=False, description="Also publish current_repodata.json (conda's classic solver)."
    )
    publish_shards: bool | None = strawberry.field(
        default=None, description="Publish sharded repodata (CEP 16); null: the server default."
    )
    register_with_upstream: bool = strawberry.field(
        default=False, description="Mirror channels: register this mirror at its upstream (Quetz's "
        "POST /api/channels/<channel>/mirrors, with `upstreamApiKey`), so the upstream can pull its download "
        "figures; if the upstream refuses, the channel is not created."
    )
    upstream_api_key: str | None = strawberry.field(
        default=None, description="An API key of the upstream server allowed to register mirrors of its channel "
        "(used once, never stored)."
    )


@strawberry.input(description="A downstream mirror of `channel` to pull download figures from.")
class RegisterMirrorInput:
    channel: str
    url: str = strawberry.field(description="The mirror channel's URL (absolute http(s)).")
    api_endpoint: str = strawberry.field(default="", description="The mirror's API URL for the channel.")
    metrics_endpoint: str = strawberry.field(
        description="The mirror's Quetz metrics URL for the channel (`.../metrics/channels/<channel>`); it must "
        "answer in Quetz's metrics shape when the mirror is registered."
    )


@strawberry.input(description="Changes to the channel `name`; omitted fields stay as they are.")
class UpdateChannelInput:
    name: str
    description: str | None = None
    private: bool | None = None
    mirror_channel_url: str | None = strawberry.field(default=None, description="Server staff only.")
    includelist: list[str] | None = strawberry.field(default=None, description="Server staff only.")
    excludelist: list[str] | None = strawberry.field(default=None, description="Server staff only.")
    proxylist: list[str] | None = strawberry.field(default=None, description="Server staff only.")
    ttl: int | None = strawberry.field(default=None, description="Proxy channels: see CreateChannelInput.ttl.")
    mirror_prune: bool | None = strawberry.field(default=None, description="Server staff only.")
    publish_bz2: bool | None = strawberry.field(
        default=None, description="Publish repodata.json.bz2; false deletes it from every subdir."
    )
    publish_current_repodata: bool | None = strawberry.field(
        default=None, description="Publish current_repodata.json; false deletes it from every subdir."
    )
    publish_shards: bool | None = strawberry.field(
        default=None,
        description="Publish sharded repodata; false removes every shard index (clients fall back to "
        "repodata.json.zst), true rebuilds every subdir's shards and index.",
    )


@strawberry.input(description="Restrict a key to `role` on `channel` (only `package`, when given).")
class ApiKeyScopeInput:
    channel: str
    role: Role
    package: str | None = None


@strawberry.input
class CreateApiKeyInput:
    description: str = ""
    expires_at: datetime | None = None
    scopes: list[ApiKeyScopeInput] = strawberry.field(
        default_factory=list, description="None: the key acts with your full rights."
    )
    username: str | None = strawberry.field(default=None, description="Whose key (server owners only); default you.")


@strawberry.input(description="Narrows `jobs`; every given condition must hold.")
class JobFilter:
    channel: str | None = strawberry.field(default=None, description="Only this channel's runs.")
    kind: str | None = None
    status: JobStatus | None = None


@strawberry.input(description="Start a job now. A run of the same kind and channel already queued or running is "
                  "returned instead of queueing a second one.")
class RunJobInput:
    kind: str = strawberry.field(description="A job kind, e.g. `reindex` (a channel's) or `cleanup` (server-wide).")
    channel: str | None = strawberry.field(default=None, description="The channel, for jobs of a channel.")
    args: JSON | None = strawberry.field(
        default=None, description='The job\'s arguments as an object, e.g. `{"dry_run": true}`.'
    )


@strawberry.input(description="Create or change the schedule of `kind` on `channel` (server-wide when omitted). "
                  "Give exactly one of `intervalSeconds` and `cron`.")
class SetScheduleInput:
    kind: str
    channel: str | None = None
    interval_seconds: int | None = strawberry.field(default=None, description="Run every this many seconds.")
    cron: str | None = strawberry.field(
        default=None, description="Five crontab fields in UTC, e.g. `*/15 * * * *`."
    )
    enabled: bool = True


@strawberry.enum(description="What a mirror sync checks.")
class SyncMode(Enum):
    SYNCHRONIZE = strawberry.enum_value(
        "synchronize", description="Download what is missing or changed and open each archive to check it.")
    SYNCHRONIZE_REPODATA = strawberry.enum_value(
        "synchronize_repodata", description="The same, trusting the upstream record once the checksums match.")


@strawberry.input
class SyncMirrorInput:
    channel: str
    mode: SyncMode = SyncMode.SYNCHRONIZE
