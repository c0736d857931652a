"""One typed Settings object: a TOML file plus GRAPHCONDA_<SECTION>__<KEY> environment overrides.

Loaded once at start (`load_settings`) and passed down; nothing else reads the environment.
Every key is documented, with its default, in config.example.toml.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphconda.errors import ConfigError

ENV_PREFIX = "GRAPHCONDA_"
DEFAULT_DATA_DIR = Path("graphconda-data")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    data_dir: Path = DEFAULT_DATA_DIR
    # Public URL clients reach us at (for absolute links); derived from the request when empty.
    public_url: str = ""
    dev: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # uvicorn's log line per request: off by default, it slows the hot serving path.
    access_log: bool = False


_DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")


class DatabaseSettings(_Section):
    # Empty: SQLite at DATA_DIR/graphconda.db. Otherwise an SQLAlchemy URL,
    # e.g. postgresql+asyncpg://user@host/db or sqlite+aiosqlite:///path.db
    url: str = ""
    echo: bool = False
    pool_size: int = Field(10, ge=1)
    # SQLite: how long a writer waits for another process's writer before failing (503); the
    # writers of one process queue in order without a limit.
    busy_timeout_ms: int = Field(30_000, ge=0)
    # How long to wait for a new database connection (PostgreSQL; a free pooled one: twice
    # this) before answering 503: a database that is down or hangs must not hang requests.
    connect_timeout_seconds: float = Field(5.0, gt=0)
    # PostgreSQL: the longest one statement may run (server-side statement_timeout); 0: no limit.
    statement_timeout_seconds: float = Field(30.0, ge=0)

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        # Caught here, the mistake is one line naming the key, not a traceback from Alembic.
        if not url:
            return url
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            driver = make_url(url).drivername
        except ArgumentError:
            driver = None
        if driver not in _DRIVERS:
            raise ValueError(f"use one of {', '.join(d + '://...' for d in _DRIVERS)}"
                             + (f", not {driver}://" if driver else " (this is not a database URL)"))
        return url


class S3Settings(_Section):
    endpoint: str = ""  # host[:port], e.g. 127.0.0.1:8333 or s3.amazonaws.com
    access_key: str = ""
    secret_key: str = ""
    bucket: str = "graphconda"
    region: str = ""
    secure: bool = True
    prefix: str = ""  # key prefix inside the bucket, e.g. "graphconda/"
    presign_downloads: bool = False  # redirect package downloads to presigned URLs
    presign_expiry_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)


class StorageSettings(_Section):
    backend: Literal["local", "s3"] = "local"
    # Local backend root; empty: DATA_DIR/files.
    path: Path | None = None
    s3: S3Settings = S3Settings()


_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"


class OAuthProvider(_Section):
    client_id: str
    client_secret: str
    # OIDC discovery URL (…/.well-known/openid-configuration); not used for GitHub,
    # defaults to Google's for kind = "google", required for kind = "oidc".
    server_metadata_url: str = ""
    # Empty: "read:user user:email" for GitHub, "openid email profile" otherwise.
    scope: str = ""
    kind: Literal["github", "google", "oidc"] = "oidc"
    # Shown on the login button; empty: the provider's name.
    display_name: str = ""
    # kind = "github" only: GitHub Enterprise Server's web and API URLs.
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"

    @model_validator(mode="after")
    def _oidc_needs_discovery(self) -> OAuthProvider:
        if self.kind == "oidc" and not self.server_metadata_url.startswith(("https://", "http://")):
            raise ValueError("an OIDC provider needs server_metadata_url (its .well-known/openid-configuration URL)")
        return self


class AuthSettings(_Section):
    # Signs session cookies; empty: a random secret stored in DATA_DIR/session-secret.
    session_secret: str = ""
    session_max_age_seconds: int = Field(14 * 24 * 3600, ge=60)
    cookie_secure: bool = False
    # "provider:login" entries granted the server role on first login.
    admins: list[str] = []
    maintainers: list[str] = []
    members: list[str] = []
    # Login providers by name; the name is the URL segment (/auth/<name>/login) and the
    # "provider" part of the role lists above.
    providers: dict[str, OAuthProvider] = {}
    # Browser origins trusted for cookie-authenticated writes besides our own.
    trusted_origins: list[str] = []

    @model_validator(mode="after")
    def _provider_names(self) -> AuthSettings:
        for name in self.providers:
            if not _PROVIDER_NAME.fullmatch(name) or name == "dev":
                raise ValueError(f"provider name {name!r} must be lowercase letters, digits, '-' or '_' (not 'dev')")
        return self


class JobsSettings(_Section):
    # Run the scheduler inside `graphconda serve` (guarded by a database lease).
    embedded_scheduler: bool = True
    # Run queued jobs inside `graphconda serve` (any number of processes may).
    embedded_runner: bool = True
    # Built-in periodic jobs, in seconds (0 = never).
    cleanup_interval_seconds: int = Field(3600, ge=0)
    mirror_sync_interval_seconds: int = Field(3600, ge=0)
    metrics_interval_seconds: int = Field(300, ge=0)
    # Pulling registered mirrors' download counts, per channel that has registered mirrors.
    mirror_metrics_interval_seconds: int = Field(3600, ge=0)
    # The scheduler lease: renewed every third of this; another process takes over after it.
    lease_seconds: float = Field(60, ge=1)
    # Jobs one process runs at once.
    concurrency: int = Field(2, ge=1)
    # An idle runner looks for queued runs this often (runs queued in the same process start at once).
    poll_seconds: float = Field(2.0, gt=0)
    # A running job's process writes its heartbeat (and progress) this often ...
    heartbeat_seconds: float = Field(5.0, gt=0)
    # ... and a run whose heartbeat is older than this is taken to be dead and requeued.
    stale_seconds: float = Field(30.0, gt=0)
    # On shutdown, running jobs get this long to stop at a check_cancelled() before they are interrupted;
    # either way they are requeued for another process.
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    # Claims of one run (first try, retries, requeues after a crash) before it is failed.
    max_attempts: int = Field(3, ge=1)
    # A transient failure is retried after this, doubled on every further attempt.
    retry_backoff_seconds: float = Field(10.0, ge=0)
    # Finished runs are deleted by the cleanup job after this long.
    run_retention_seconds: int = Field(30 * 24 * 3600, ge=0)
    # The most characters of log kept per run (the newest lines).
    log_tail_chars: int = Field(8000, ge=0)
    # API keys revoked or expired longer ago than this are deleted by the cleanup job.
    api_key_retention_seconds: int = Field(90 * 24 * 3600, ge=0)
    # Blobs no row references are deleted by the cleanup job once they are this old.
    orphan_blob_grace_seconds: int = Field(7 * 24 * 3600, ge=0)
    # Extra modules to import that register job kinds (graphconda.jobs.registry.job_kind).
    modules: list[str] = []

    @model_validator(mode="after")
    def _stale_after_heartbeat(self) -> JobsSettings:
        if self.stale_seconds <= self.heartbeat_seconds:
            raise ValueError("jobs.stale_seconds must be longer than jobs.heartbeat_seconds")
        return self


class MirrorSettings(_Section):
    # An upstream request that has not answered (connect or next bytes) in this long fails.
    upstream_timeout_seconds: float = Field(10.0, gt=0)
    # Retries of a failed upstream request (5xx, 429, connection errors), with exponential
    # backoff from `backoff_seconds` (a Retry-After header, up to `max_backoff_seconds`, wins).
    retries: int = Field(2, ge=0)
    backoff_seconds: float = Field(0.5, ge=0)
    max_backoff_seconds: float = Field(30.0, ge=0)
    # Proxy channels: how long an upstream index file is served before it is revalidated
    # (per channel: `ttl`).
    ttl_seconds: int = Field(300, ge=0)
    # How long an upstream 404 is remembered (no upstream request for that file meanwhile).
    negative_cache_seconds: float = Field(60.0, ge=0)
    # After this many consecutive failures an upstream is not asked for `circuit_open_seconds`:
    # clients get the cached copy (or 502) at once instead of waiting for a timeout.
    circuit_failures: int = Field(3, ge=1)
    circuit_open_seconds: float = Field(30.0, ge=0)
    # Upstream index files larger than this are refused.
    max_index_bytes: int = Field(1024**3, ge=1)
    # Mirror channels: package files one sync run downloads at once.
    concurrency: int = Field(8, ge=1, le=256)


class MetricsSettings(_Section):
    # Downloads are counted in memory and written to the database this often (and at shutdown):
    # a process killed without shutting down loses at most this many seconds of counts.
    flush_seconds: float = Field(5.0, gt=0)
    # Download events the aggregate_metrics job folds per transaction.
    aggregate_batch: int = Field(5000, ge=1)
    # GET /metrics in Prometheus text format (off: 404). See graphconda/services/ops_metrics.py.
    prometheus: bool = False
    # When set, /metrics answers only requests with `Authorization: Bearer <this>` (others: 401).
    prometheus_token: str = ""


class LimitsSettings(_Section):
    max_upload_bytes: int = Field(4 * 1024**3, ge=1)
    graphql_max_depth: int = Field(12, ge=1)
    graphql_max_tokens: int = Field(5000, ge=1)
    graphql_max_aliases: int = Field(30, ge=1)
    graphql_max_page_size: int = Field(100, ge=1)
    # The most objects one operation may return, estimated before it runs (see graphconda/schema/cost.py).
    graphql_max_cost: int = Field(50_000, ge=1)
    # Reading an uploaded package (listed, never extracted; see graphconda/conda/listing.py): past its
    # first 16 MiB and 5,000 members it may expand to max_expansion_ratio times its size and hold one
    # member per min_bytes_per_member bytes of it; max_unpacked_bytes and max_package_members cap all.
    max_unpacked_bytes: int = Field(16 * 1024**3, ge=1)
    max_expansion_ratio: int = Field(200, ge=1)
    max_package_members: int = Field(200_000, ge=1)
    min_bytes_per_member: int = Field(64, ge=1)
    # Channels that accept members outside the install prefix (absolute paths, '..', symlinks out).
    allow_unsafe_paths_channels: list[str] = []


class PublishSettings(_Section):
    # Cache-Control max-age for repodata and the shard index.
    repodata_max_age_seconds: int = Field(60, ge=0)
    # How long superseded shards stay downloadable.
    shard_retention_seconds: int = Field(7 * 24 * 3600, ge=0)
    zstd_level: int = Field(16, ge=1, le=22)
    # Coalesce bursts of uploads into one rebuild of the monolithic files.
    debounce_seconds: float = Field(0.2, ge=0)
    # Publish sharded repodata (CEP 16) for channels whose options do not say otherwise.
    shards: bool = True
    # How often each server process looks for changes left unpublished (by a process that
    # died mid-way) and deletes superseded shards past their retention.
    sweep_interval_seconds: float = Field(30.0, gt=0)
    # How long a process reuses what it looked up to serve a file (channel visibility, file
    # metadata); other processes' publishes show up after at most this long.
    serve_cache_seconds: float = Field(1.0, ge=0)
    # Published files up to this size are kept in memory per process for serving.
    serve_memory_file_bytes: int = Field(32 * 1024 * 1024, ge=0)
    serve_memory_total_bytes: int = Field(256 * 1024 * 1024, ge=0)


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    auth: AuthSettings = AuthSettings()
    jobs: JobsSettings = JobsSettings()
    limits: LimitsSettings = LimitsSettings()
    mirror: MirrorSettings = MirrorSettings()
    metrics: MetricsSettings = MetricsSettings()
    publish: PublishSettings = PublishSettings()

    @model_validator(mode="after")
    def _s3_needs_endpoint(self) -> Settings:
        if self.storage.backend == "s3" and not self.storage.s3.endpoint:
            raise ValueError("storage.s3.endpoint is required when storage.backend = 's3'")
        return self

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{(self.data_dir / 'graphconda.db').resolve()}"

    @property
    def storage_path(self) -> Path:
        return self.storage.path or (self.data_dir / "files")


def _parse_env_value(raw: str) -> Any:
    """Read an override as a TOML value (numbers, booleans, lists), else as a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "GRAPHCONDA_CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _parse_env_value(raw)
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "config"
    if first["type"] == "extra_forbidden":
        return f"unknown setting '{key}' (see config.example.toml for the valid keys)"
    return f"invalid setting '{key}': {first['msg'].removeprefix('Value error, ')}"


def load_settings(
    config_file: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from a TOML file, then environment, then explicit (CLI) overrides.

    Raises ConfigError with a one-line message naming the offending key or file.
    """
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("GRAPHCONDA_CONFIG") or None
    data: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(environ))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
