"""The database tables of the whole domain (tables only: logic lives in services/).

Relationships are not declared: services load what they need with explicit queries
(and GraphQL through DataLoaders), so no lazy load can happen behind anyone's back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from graphconda.db.types import UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE", index: bool = True) -> Any:
    return Field(
        default=None,
        sa_column_args=[ForeignKey(target, ondelete=ondelete)],
        sa_type=Integer,
        nullable=nullable,
        index=index,
    )


# --- identity ---------------------------------------------------------------


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    display_name: str = Field(default="", max_length=256)
    email: str = Field(default="", max_length=320)
    avatar_url: str = Field(default="", max_length=1024)
    server_role: str | None = Field(default=None, max_length=16)  # owner | maintainer | member
    disabled: bool = False
    created_at: datetime = _ts()


class Identity(SQLModel, table=True):
    """A login at an identity provider linked to a user (provider + subject is unique)."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id")
    provider: str = Field(max_length=64)
    subject: str = Field(max_length=256)
    login: str = Field(default="", max_length=256)  # the provider's username or email
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key; only a hash of the secret is stored."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id")
    key_hash: str = Field(max_length=128, unique=True, index=True)
    description: str = Field(default="", max_length=512)
    # A scoped key whose scopes are all gone (channel deleted) must not fall back to full rights.
    scoped: bool = False
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)
    last_used_at: datetime | None = _ts(nullable=True)


class UserSession(SQLModel, table=True):
    """A browser login; the signed cookie carries its token, only a hash is stored, so it can be ended."""

    __tablename__ = "user_sessions"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = _fk("users.id")
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)


class ApiKeyScope(SQLModel, table=True):
    """Restricts a key to a role on one channel (and optionally one package)."""

    __tablename__ = "api_key_scopes"
    id: int | None = Field(default=None, primary_key=True)
    api_key_id: int = _fk("api_keys.id")
    channel_id: int = _fk("channels.id")
    package_name: str | None = Field(default=None, max_length=64)
    role: str = Field(max_length=16)


# --- channels and packages --------------------------------------------------


class Channel(SQLModel, table=True):
    __tablename__ = "channels"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    description: str = Field(default="", sa_type=Text)
    private: bool = False
    mirror_mode: str | None = Field(default=None, max_length=16)  # None | proxy | mirror
    mirror_channel_url: str | None = Field(default=None, max_length=2048)
    includelist: list[str] = Field(default_factory=list, sa_type=JSON)
    excludelist: list[str] = Field(default_factory=list, sa_type=JSON)
    proxylist: list[str] = Field(default_factory=list, sa_type=JSON)
    # Proxy channels: seconds an upstream index stays fresh before revalidation (None: mirror.ttl_seconds).
    mirror_ttl: int | None = Field(default=None, nullable=True)
    # Mirror channels: remove files that are gone upstream (never after a failed or partial read).
    mirror_prune: bool = False
    # Publishing options: {"bz2": bool, "current_repodata": bool, "shards": bool}
    options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    size: int = Field(default=0, sa_type=BigInteger)  # bytes of package files
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ProxyEntry(SQLModel, table=True):
    """What a proxy channel last heard from upstream about one index file (the bytes are in storage).

    Shared by every server process: `checked_at` + the channel's TTL says whether to
    revalidate, `etag` / `last_modified` make that revalidation a conditional request.
    """

    __tablename__ = "proxy_entries"
    channel_id: int = Field(sa_column_args=[ForeignKey("channels.id", ondelete="CASCADE")], primary_key=True)
    path: str = Field(max_length=512, primary_key=True)  # "<subdir>/<file>" or "<file>"
    status: int = 200  # 200: stored; 404: upstream has none
    source: str = Field(default="", max_length=64)  # the upstream file the stored bytes came from
    etag: str = Field(default="", max_length=512)
    last_modified: str = Field(default="", max_length=64)
    # Where upstream says its package files are (an absolute info.base_url), before we rewrote it.
    base_url: str = Field(default="", max_length=2048)
    checked_at: datetime = _ts()


class ChannelMember(SQLModel, table=True):
    __tablename__ = "channel_members"
    channel_id: int = Field(sa_column_args=[ForeignKey("channels.id", ondelete="CASCADE")], primary_key=True)
    user_id: int = Field(sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")], primary_key=True, index=True)
    role: str = Field(max_length=16)


class Package(SQLModel, table=True):
    """A package name in a channel, with the about.json of its latest upload."""

    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("channel_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = _fk("channels.id")
    name: str = Field(max_length=64, index=True)
    summary: str = Field(default="", sa_type=Text)
    description: str = Field(default="", sa_type=Text)
    license: str = Field(default="", max_length=256)
    home: str = Field(default="", max_length=2048)
    dev_url: str = Field(default="", max_length=2048)
    doc_url: str = Field(default="", max_length=2048)
    latest_version: str = Field(default="", max_length=256)
    # about.json fields channeldata.json publishes (conda.repodata.ABOUT_FIELDS), from the latest version.
    about: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class PackageMember(SQLModel, table=True):
    __tablename__ = "package_members"
    package_id: int = Field(sa_column_args=[ForeignKey("packages.id", ondelete="CASCADE")], primary_key=True)
    user_id: int = Field(sa_column_args=[ForeignKey("users.id", ondelete="CASCADE")], primary_key=True, index=True)
    role: str = Field(max_length=16)


class PackageFile(SQLModel, table=True):
    """One artifact (.conda or .tar.bz2) with its repodata record, ready to serialise."""

    __tablename__ = "package_files"
    __table_args__ = (
        UniqueConstraint("channel_id", "subdir", "filename"),
        Index("ix_package_files_channel_subdir_name", "channel_id", "subdir", "name"),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = _fk("channels.id", index=False)
    package_id: int = _fk("packages.id")
    subdir: str = Field(max_length=32)
    filename: str = Field(max_length=211)
    name: str = Field(max_length=64)
    version: str = Field(max_length=256)
    build: str = Field(max_length=256)
    build_number: int = Field(default=0, sa_type=BigInteger)  # 64-bit on every database
    size: int = Field(default=0, sa_type=BigInteger)
    md5: str = Field(max_length=32)
    sha256: str = Field(max_length=64)
    # The repodata record as compact JSON with sorted keys: publishing joins these strings.
    record: str = Field(sa_type=Text)
    # The same record as it sits inside a shard (conda.shards.pack_record): shards are assembled
    # from these bytes without decoding JSON. Written together with `record`; NULL means "pack it".
    packed: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)
    v3: bool = False  # schema_version >= 3: published under the "v3" key (CEP 48)
    timestamp: int | None = Field(default=None, sa_type=BigInteger)  # ms, from index.json
    # Files of proxylist packages are not stored; downloads redirect upstream.
    stored: bool = True
    # CEP 38 traits that are true for this file ("post_link", "text_prefix", ...), for channeldata.json.
    traits: list[str] = Field(default_factory=list, sa_type=JSON)
    uploader_id: int | None = _fk("users.id", nullable=True, ondelete="SET NULL")
    uploaded_at: datetime = _ts()


class SubdirState(SQLModel, table=True):
    """Publishing state of one channel subdir: a change counter and what was published."""

    __tablename__ = "subdir_states"
    channel_id: int = Field(sa_column_args=[ForeignKey("channels.id", ondelete="CASCADE")], primary_key=True)
    subdir: str = Field(max_length=32, primary_key=True)
    generation: int = 0  # bumped by every change to the subdir's records
    published_generation: int = 0  # generation the monolithic files were built from
    removed: list[str] = Field(default_factory=list, sa_type=JSON)
    updated_at: datetime = _ts()
    published_at: datetime | None = _ts(nullable=True)


class Shard(SQLModel, table=True):
    """The current shard (CEP 16) of one package name in one channel subdir."""

    __tablename__ = "shards"
    channel_id: int = Field(sa_column_args=[ForeignKey("channels.id", ondelete="CASCADE")], primary_key=True)
    subdir: str = Field(max_length=32, primary_key=True)
    name: str = Field(max_length=64, primary_key=True)
    digest: str = Field(max_length=64)  # sha256 hex of the compressed shard
    updated_at: datetime = _ts()


class SupersededShard(SQLModel, table=True):
    """A shard no index points to any more; deleted from storage after the retention time."""

    __tablename__ = "superseded_shards"
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = _fk("channels.id")
    subdir: str = Field(max_length=32)
    digest: str = Field(max_length=64)
    superseded_at: datetime = _ts()


# --- mirrors, metrics, jobs -------------------------------------------------


class RegisteredMirror(SQLModel, table=True):
    """A mirror of one of our channels, registered so we can pull its download counts."""

    __tablename__ = "registered_mirrors"
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = _fk("channels.id")
    url: str = Field(max_length=2048)
    api_endpoint: str = Field(default="", max_length=2048)
    metrics_endpoint: str = Field(default="", max_length=2048)
    last_synced_at: datetime | None = _ts(nullable=True)
    last_error: str = Field(default="", sa_type=Text)  # why the last metrics pull failed ("" = it worked)


class DownloadEvent(SQLModel, table=True):
    """Downloads of one file in one hour, flushed by a server process, waiting to be folded
    into DownloadCount by the `aggregate_metrics` job (which deletes them as it folds them).

    Keyed by channel, subdir and filename rather than by package file row, so a file deleted
    before the job ran still counts in its channel's and package's history.
    """

    __tablename__ = "download_events"
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = _fk("channels.id")
    subdir: str = Field(max_length=32)
    filename: str = Field(max_length=211)
    at: datetime = _ts()  # the start of the UTC hour the downloads happened in
    count: int = Field(default=1, sa_type=BigInteger)


class DownloadCount(SQLModel, table=True):
    """Downloads of one file (channel, subdir, filename) in one UTC bucket of a period.

    period: hour | day | month | year | total (bucket 1970-01-01). `source` is "" for this
    server's own downloads and a registered mirror's key (services.metrics.mirror_source) for
    the counts pulled from it, which are replaced, not added, on every pull. Rows name the
    file rather than reference its row: deleting a file keeps its channel's and package's history.
    """

    __tablename__ = "download_counts"
    __table_args__ = (
        UniqueConstraint("channel_id", "subdir", "filename", "period", "bucket", "source",
                         name="uq_download_counts_file_bucket"),
        Index("ix_download_counts_package", "channel_id", "package_name", "period", "bucket"),
        Index("ix_download_counts_channel", "channel_id", "period", "bucket"),
    )
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = _fk("channels.id", index=False)
    source: str = Field(default="", max_length=64)
    package_name: str = Field(max_length=64)
    subdir: str = Field(max_length=32)
    filename: str = Field(max_length=211)
    period: str = Field(max_length=8)
    bucket: datetime = _ts()
    count: int = Field(default=0, sa_type=BigInteger)


class JobRun(SQLModel, table=True):
    """One run of a job (scheduled or triggered), visible to every process and client.

    Lifecycle (graphconda/jobs/runner.py): queued -> running -> succeeded | failed | cancelled,
    back to queued when its process died or stopped (up to jobs.max_attempts) or a transient
    failure waits `run_after` for a retry.
    """

    __tablename__ = "job_runs"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64, index=True)  # reindex | cleanup | synchronize | ...
    channel_id: int | None = _fk("channels.id", nullable=True)
    status: str = Field(default="queued", max_length=16, index=True)  # queued|running|succeeded|failed|cancelled
    args: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # "kind:channel_id" while queued or running, NULL once finished: the unique constraint keeps
    # at most one active run per (kind, channel) on every database, without a race.
    active_key: str | None = Field(default=None, max_length=96, unique=True, index=True, nullable=True)
    # "group:channel_id" while a run of a grouped kind (JobKind.group) is running, NULL otherwise:
    # unique, so two kinds that rewrite the same records never run at once on a channel.
    running_key: str | None = Field(default=None, max_length=96, unique=True, index=True, nullable=True)
    attempt: int = 0  # how many times a runner claimed it
    holder: str | None = Field(default=None, max_length=256)  # the process running it
    heartbeat_at: datetime | None = _ts(nullable=True)
    run_after: datetime | None = _ts(nullable=True)  # not claimable before (retry backoff)
    cancel_requested: bool = False
    progress_done: int = 0
    progress_total: int | None = None
    message: str = Field(default="", sa_type=Text)
    log_tail: str = Field(default="", sa_type=Text)
    error: str = Field(default="", sa_type=Text)
    triggered_by_id: int | None = _fk("users.id", nullable=True, ondelete="SET NULL")
    scheduled: bool = False
    created_at: datetime = _ts()
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class JobSchedule(SQLModel, table=True):
    """A periodic job of one channel (or server-wide when channel_id is NULL): interval or cron."""

    __tablename__ = "job_schedules"
    __table_args__ = (UniqueConstraint("kind", "channel_id"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64)
    channel_id: int | None = _fk("channels.id", nullable=True)
    interval_seconds: int | None = None
    cron: str | None = Field(default=None, max_length=128)  # five fields, as crontab(5)
    enabled: bool = True
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SchedulerLease(SQLModel, table=True):
    """Which process runs the periodic scheduler, until when."""

    __tablename__ = "scheduler_leases"
    name: str = Field(max_length=64, primary_key=True)
    holder: str = Field(max_length=256)
    expires_at: datetime = _ts()
