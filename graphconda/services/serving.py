"""What serving a channel's files needs, cached per process: channel visibility, file metadata, small files.

Conda clients revalidate repodata constantly, so the common request (a 304, a shard, the
shard index of a public channel) must not cost a database query or a storage round trip.
Each process keeps what it looked up for `publish.serve_cache_seconds`; writes made by
this process's publisher invalidate at once (open_services makes it a publish listener), writes of other
processes show up within that time. Files up to `publish.serve_memory_file_bytes` are
held in memory (LRU, `serve_memory_total_bytes` in all); shards, being content-addressed,
never change, so they are cached for long.

ETags come from content, not from storage metadata: a package file's from the sha256 in
its key, any other file's from the sha256 of its bytes (hashed once per change and
process). A byte-identical file written again (a forced re-upload, a republish) keeps its
ETag, so clients keep their cached copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from sqlalchemy import select
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from graphconda.conda.names import KNOWN_SUBDIRS
from graphconda.db.models import Channel
from graphconda.errors import BlobNotFoundError, NotFoundError
from graphconda.services import authz, layout, publishing
from graphconda.services.access import channel_access
from graphconda.services.authz import Actor
from graphconda.services.context import Services
from graphconda.services.packages import FileRef, find_file
from graphconda.services.publishing import PublishOptions
from graphconda.storage.base import BlobStat

IMMUTABLE_SECONDS = 3600.0


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    name: str
    private: bool
    mirror_mode: str | None
    publish: PublishOptions
    upstream: str | None = None  # mirror and proxy channels: the upstream channel URL (may hold credentials)
    ttl: float = 0.0  # proxy channels: seconds an upstream index is served before revalidation
    # Whether the fast path (http/fastpath.py) may answer from memory: public, and not a proxy
    # that must revalidate more often than this process's cache expires.
    fast: bool = False


@dataclass
class CachedFile:
    """A blob's metadata (and, when small, its bytes) as last seen in storage."""

    key: str
    size: int
    etag: str  # from the content: equal bytes, equal ETag
    mtime: int  # seconds, what If-Modified-Since compares against
    last_modified: str  # HTTP date
    data: bytes | None
    expires: float
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # etag and last-modified, ready to send
    etag_bytes: bytes = b""
    # Response starts the fast path (http/fastpath.py) built for this entry, by Cache-Control value.
    answers: dict[bytes, Any] = field(default_factory=dict)
    version: str = ""  # the storage's own etag: tells when the blob must be looked at again

    def __post_init__(self) -> None:
        self.etag_bytes = self.etag.encode()
        self.headers = [(b"etag", self.etag_bytes), (b"last-modified", self.last_modified.encode())]


class ServingCache:
    def __init__(self, services: Services) -> None:
        self.services = services
        publish = services.settings.publish
        self.ttl = publish.serve_cache_seconds
        self.max_file = publish.serve_memory_file_bytes
        self.max_total = publish.serve_memory_total_bytes
        self.public_max_age = f"public, max-age={publish.repodata_max_age_seconds}".encode()
        self._channels: dict[str, tuple[float, ChannelInfo | None]] = {}
        self._access: dict[tuple[int, Actor], tuple[float, bool]] = {}
        self._files: OrderedDict[str, CachedFile | tuple[float, None]] = OrderedDict()
        self._held = 0  # bytes of file data in memory
        self._refs: dict[tuple[str, str, str], tuple[float, FileRef | None]] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[Any]] = {}

    async def _once(self, key: tuple[str, str], load: Callable[[], Awaitable[Any]]) -> Any:
        """Run `load` once for all concurrent callers: when an entry expires under load, the
        requests that find it stale together cost one query or stat, not one each."""
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.ensure_future(load())
            task.add_done_callback(lambda done: self._loading.pop(key) if self._loading.get(key) is done else None)
        return await asyncio.shield(task)

    # --- channels ---------------------------------------------------------------------

    async def channel(self, actor: Actor, name: str) -> ChannelInfo:
        """The channel if `actor` may read it; NotFoundError (naming nothing) otherwise."""
        now = time.monotonic()
        cached = self._channels.get(name)
        if cached is None or cached[0] <= now:
            info = await self._once(("channel", name), lambda: self._load_channel(name))
            self._channels[name] = (now + self.ttl, info)
            if len(self._channels) > 10_000:
                self._channels.clear()
        else:
            info = cached[1]
        if info is None or (info.private and not await self._may_read(actor, info, now)):
            raise NotFoundError("channel not found")
        return info

    def peek_channel(self, name: str, now: float) -> ChannelInfo | None:
        """The cached channel if still fresh, without any I/O (None: unknown, absent or stale)."""
        cached = self._channels.get(name)
        return cached[1] if cached is not None and cached[0] > now else None

    def peek_file(self, key: str, now: float) -> CachedFile | None:
        """The cached blob if still fresh, without any I/O."""
        cached = self._files.get(key)
        return cached if isinstance(cached, CachedFile) and cached.expires > now else None

    async def _load_channel(self, name: str) -> ChannelInfo | None:
        async with self.services.db.read() as session:
            channel = await session.scalar(select(Channel).where(col(Channel.name) == name))
        if channel is None:
            return None
        assert channel.id is not None
        options = publishing.options_of(self.services.settings, channel.options)
        ttl = channel.mirror_ttl if channel.mirror_ttl is not None else self.services.settings.mirror.ttl_seconds
        fast = not channel.private and (channel.mirror_mode != "proxy" or ttl >= self.ttl)
        return ChannelInfo(channel.id, channel.name, channel.private, channel.mirror_mode, options,
                           channel.mirror_channel_url, float(ttl), fast)

    async def _may_read(self, actor: Actor, info: ChannelInfo, now: float) -> bool:
        if not actor.authenticated:
            return False
        cached = self._access.get((info.id, actor))
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.services.db.read() as session:
            channel = await session.get(Channel, info.id)
            allowed = channel is not None and authz.can_read_channel(actor, await channel_access(session, actor,
                                                                                                  channel))
        if len(self._access) > 10_000:
            self._access.clear()
        self._access[(info.id, actor)] = (now + self.ttl, allowed)
        return allowed

    def forget_channel(self, name: str) -> None:
        self._channels.pop(name, None)
        self._loading.pop(("channel", name), None)
        self._access.clear()

    # --- files --------------------------------------------------------------------------

    async def file(self, key: str, *, immutable: bool = False) -> CachedFile | None:
        """Metadata (and small bytes) of a published blob, None if it does not exist."""
        now = time.monotonic()
        cached = self._files.get(key)
        if isinstance(cached, CachedFile):
            if cached.expires > now:
                if cached.data is not None:
                    self._files.move_to_end(key)
                return cached
        elif cached is not None and cached[0] > now:
            return None
        return await self._once(("file", key), lambda: self._refresh(key, immutable))

    async def _refresh(self, key: str, immutable: bool) -> CachedFile | None:
        now = time.monotonic()
        cached = self._files.get(key)
        expires = now + (IMMUTABLE_SECONDS if immutable else self.ttl)
        stat = await self.services.storage.stat(key)
        if stat is None:
            self._store(key, (now + self.ttl, None))
            return None
        if isinstance(cached, CachedFile) and cached.version == stat.etag:
            cached.expires = expires
            return cached
        data = None
        if stat.size <= self.max_file:
            try:
                data = await self.services.storage.read(key)
            except BlobNotFoundError:
                self._store(key, (now + self.ttl, None))
                return None
        try:
            etag = await self._content_etag(key, data)
        except BlobNotFoundError:
            self._store(key, (now + self.ttl, None))
            return None
        entry = CachedFile(key, len(data) if data is not None else stat.size, etag, int(stat.mtime),
                           formatdate(stat.mtime, usegmt=True), data, expires, version=stat.etag)
        self._store(key, entry)
        return entry

    def stored(self, key: str, stat: BlobStat, data: bytes | None, *, sha256: str, immutable: bool) -> CachedFile:
        """Remember a blob this process has just written, `sha256` being its content's digest (and
        `data` its bytes, if at hand): the entry `file` would load, without reading it back."""
        parsed = layout.parse_package_key(key)
        etag = f'"{parsed[2]}"' if parsed is not None else f'"{sha256}"'
        expires = time.monotonic() + (IMMUTABLE_SECONDS if immutable else self.ttl)
        entry = CachedFile(key, stat.size, etag, int(stat.mtime), formatdate(stat.mtime, usegmt=True),
                           data if data is not None and len(data) <= self.max_file else None, expires,
                           version=stat.etag)
        self.invalidate([key])
        self._store(key, entry)
        return entry

    async def _content_etag(self, key: str, data: bytes | None) -> str:
        parsed = layout.parse_package_key(key)
        if parsed is not None:
            return f'"{parsed[2]}"'  # the key is content-addressed already (`stored` agrees)
        if data is not None:
            if len(data) < 1024 * 1024:
                return f'"{hashlib.sha256(data).hexdigest()}"'
            return f'"{await run_in_threadpool(lambda: hashlib.sha256(data).hexdigest())}"'
        digest = hashlib.sha256()  # too big to hold: hash it streaming, once per change
        async for chunk in self.services.storage.open(key):
            await run_in_threadpool(digest.update, chunk)
        return f'"{digest.hexdigest()}"'

    def _store(self, key: str, entry: CachedFile | tuple[float, None]) -> None:
        self._drop(key)
        self._files[key] = entry
        if isinstance(entry, CachedFile) and entry.data is not None:
            self._held += len(entry.data)
        while self._held > self.max_total or len(self._files) > 100_000:
            oldest = next(iter(self._files))
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        old = self._files.pop(key, None)
        if isinstance(old, CachedFile) and old.data is not None:
            self._held -= len(old.data)

    def invalidate(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._drop(key)
            self._loading.pop(("file", key), None)  # later requests look again, not at a load begun before
            parsed = layout.parse_package_key(key)
            if parsed is not None:
                self._refs.pop((parsed[0], parsed[1], parsed[3]), None)

    # --- package files ------------------------------------------------------------------

    async def package_file(self, channel: ChannelInfo, subdir: str, filename: str) -> FileRef | None:
        now = time.monotonic()
        cached = self._refs.get((channel.name, subdir, filename))
        if cached is not None and cached[0] > now:
            return cached[1]
        ref = await find_file(self.services, _channel_stub(channel), subdir, filename)
        if len(self._refs) > 100_000:
            self._refs.clear()
        self._refs[(channel.name, subdir, filename)] = (now + self.ttl, ref)
        return ref

    def forget_package_file(self, channel: ChannelInfo, subdir: str, filename: str) -> None:
        self._refs.pop((channel.name, subdir, filename), None)


def _channel_stub(info: ChannelInfo) -> Any:
    return Channel(id=info.id, name=info.name)


def serving_cache(services: Services) -> ServingCache:
    return services.serving_cache


def forget_channel(services: Services, name: str) -> None:
    """Call after a channel's visibility or options change, so this process sees it at once."""
    services.serving_cache.forget_channel(name)


def is_known_subdir(subdir: str) -> bool:
    """Subdirs that exist (empty) in every channel: clients probe them and must not get a 404."""
    return subdir in KNOWN_SUBDIRS
