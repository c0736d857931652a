"""Proxy channels: upstream index files and package files fetched on request and kept in storage.

Nothing is prefetched. An index file (repodata, the shard index, current_repodata,
run_exports, channeldata) is fetched on first request, stored under the channel's usual
keys (so it is served like any published file, fast path included) and described by a
`ProxyEntry` row every process shares. Within the channel's TTL it is served as stored;
after it, one process revalidates it with a conditional request while the others wait
on the same lock and then use its answer. When upstream fails or is slow the stored copy
is served (stale-if-error) and the failure logged; 502/504 only when nothing is stored.

Every encoding of `repodata.json` comes from one upstream snapshot: upstream's `.zst`
when it has one, else its `.json` (compressed here), stored together; the gzip copy
(`Content-Encoding: gzip`) and `repodata.json.bz2` (when the channel's `bz2` option is on)
are made here from the stored snapshot on first request and remade when it changes, as
normal channels publish them. `current_repodata.json` is handled the same way when
upstream has one. When one of a subdir's indexes changes, the others are revalidated at
their next request, so the shard index and repodata.json (which package files are
checked against) do not drift apart for a whole TTL. Absolute `base_url` /
`shards_base_url` values are rewritten so clients keep coming here, and remembered so
package files and shards are fetched from where upstream says.

Package files and shards are fetched on first request under a cross-process lock (one
upstream download however many clients and processes ask at once), verified (package
files: size and sha256 of the upstream record, or its md5 when it has no sha256; shards:
the sha256 their name is) and only then stored. A mismatch is never stored and answers 502.
A file small enough for the serving cache is answered from memory as soon as it is verified,
while it is stored (the lock held until it is, so other processes then find it there).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import anyio
import msgpack
import zstandard
from sqlalchemy import update
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from graphconda.conda.repodata import compress_bz2, compress_gzip, compress_zst
from graphconda.db.models import ProxyEntry
from graphconda.errors import BlobNotFoundError, UpstreamError, UpstreamMismatchError
from graphconda.services import layout
from graphconda.services.context import Services
from graphconda.services.delivery import (
    Delivery,
    LocalBlob,
    Missing,
    Unavailable,
    empty_file,
    may_redirect,
    stored_package,
)
from graphconda.services.locks import insert_ignore, publish_lock
from graphconda.services.serving import CachedFile, ChannelInfo, serving_cache
from graphconda.services.temp_files import TEMP_DIR, temp_file
from graphconda.services.upstream import join, redact, upstream_client
from graphconda.storage.base import BlobStat

log = logging.getLogger("graphconda.proxy")

# Index files fetched as one snapshot with their .zst: each served name -> the family's .json.
FAMILIES = {layout.REPODATA: layout.REPODATA, layout.REPODATA_ZST: layout.REPODATA,
            layout.REPODATA_BZ2: layout.REPODATA,
            layout.CURRENT_REPODATA: layout.CURRENT_REPODATA, layout.CURRENT_REPODATA_ZST: layout.CURRENT_REPODATA}
_ZST = {layout.REPODATA: layout.REPODATA_ZST, layout.CURRENT_REPODATA: layout.CURRENT_REPODATA_ZST}
# Encodings made here from a stored snapshot, on first request: name -> (the file it encodes, how).
DERIVED: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    layout.REPODATA_GZ: (layout.REPODATA, compress_gzip),
    layout.CURRENT_REPODATA_GZ: (layout.CURRENT_REPODATA, compress_gzip),
    layout.REPODATA_BZ2: (layout.REPODATA, compress_bz2),
}
# A subdir's upstream indexes (ProxyEntry paths): when one changes, the others are revalidated.
SUBDIR_INDEXES = (layout.REPODATA, layout.CURRENT_REPODATA, layout.SHARD_INDEX, layout.RUN_EXPORTS)
_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class _Records:
    """sha256, md5 and size of every file in one stored repodata snapshot (by its storage ETag)."""

    etag: str
    files: dict[str, tuple[str | None, str | None, int | None]]


class ProxyState:
    """Per process: which entries were found fresh (saves a query per request), their upstream
    base URLs (saves one per package file fetched) and parsed records."""

    def __init__(self, services: Services) -> None:
        self.fresh: dict[tuple[int, str], float] = {}  # (channel id, path) -> monotonic time it goes stale
        self.bases: dict[tuple[int, str], str] = {}  # (channel id, path) -> its entry's base_url, while fresh
        self.records: dict[tuple[int, str], _Records] = {}
        self.derived: dict[tuple[int, str], str] = {}  # (channel id, path) -> ETag of the file it was made from
        self.fetching: set[asyncio.Task[None]] = set()  # downloads and stores under way (_fetch)
        self.answers: dict[str, asyncio.Future[Any]] = {}  # storage key -> the answer of its fetch under way
        self.probed: dict[tuple[int, str], datetime] = {}  # (channel id, subdir) -> when an unknown file last asked

    async def aclose(self) -> None:
        """Let the downloads and stores under way finish (they may outlive the requests that began them)."""
        while self.fetching:
            await asyncio.gather(*self.fetching, return_exceptions=True)


def _state(services: Services) -> ProxyState:
    return services.proxy


async def locate(services: Services, info: ChannelInfo, subdir: str | None, name: str,
                 *, redirect_ok: bool = False, gzip_ok: bool = False) -> Delivery:
    """The proxy channel's answer for a file: stored (fetched first if need be), missing or unavailable.

    `gzip_ok`: the client accepts gzip and asked for no range (the gzip copy may answer).
    """
    if not info.upstream:
        return Missing()
    if subdir is None:
        return await _index_file(services, info, name, layout.channel_file_key(info.name, name))
    if name.startswith("shards/"):
        return await _shard(services, info, subdir, name[7:71])
    if name.endswith((".conda", ".tar.bz2")):
        return await _package_file(services, info, subdir, name, redirect_ok)
    if name in FAMILIES:
        return await _family_file(services, info, subdir, name, gzip_ok)
    if name == layout.SHARD_INDEX and not info.publish.shards:
        return Missing("this channel does not publish sharded repodata")
    if name in (layout.SHARD_INDEX, layout.RUN_EXPORTS):
        return await _index_file(services, info, f"{subdir}/{name}", layout.subdir_file_key(info.name, subdir, name))
    return Missing()  # what normal channels never serve either (repodata_from_packages.json, ...)


async def _family_file(services: Services, info: ChannelInfo, subdir: str, name: str,
                       gzip_ok: bool) -> LocalBlob | Missing | Unavailable:
    """One encoding of repodata.json or current_repodata.json, all from the stored snapshot."""
    family = FAMILIES[name]
    if name == layout.REPODATA_BZ2 and not info.publish.bz2:
        return Missing("this channel does not publish repodata.json.bz2")
    found = await _snapshot(services, info, subdir, family)
    if isinstance(found, Missing):
        # noarch/repodata.json always answers (an upstream without noarch is still a channel);
        # never an empty shard index, though: clients would take it for an empty channel.
        empty = empty_file(subdir, name) if family == layout.REPODATA else None
        return LocalBlob(empty.entry, immutable=False, vary=name == family) if empty is not None else found
    if isinstance(found, Unavailable):
        return found
    if name == family:
        gzipped = layout.GZIP_COPIES[family]
        copy = await _derived(services, info, subdir, gzipped, found.entry) if gzip_ok else None
        if copy is not None:
            return LocalBlob(copy, immutable=False, encoding="gzip", vary=True)
        return LocalBlob(found.entry, immutable=False, vary=True)
    if name == layout.REPODATA_BZ2:
        made = await _derived(services, info, subdir, name, found.entry)
        return LocalBlob(made, immutable=False) if made is not None else Missing()
    cached = await serving_cache(services).file(layout.subdir_file_key(info.name, subdir, name))
    return LocalBlob(cached, immutable=False) if cached is not None else Missing()


# --- freshness --------------------------------------------------------------------------


async def _entry(services: Services, channel_id: int, path: str) -> ProxyEntry | None:
    async with services.db.read() as session:
        return await session.get(ProxyEntry, (channel_id, path))


def _is_fresh(services: Services, info: ChannelInfo, entry: ProxyEntry | None) -> bool:
    if entry is None:
        return False
    seconds = info.ttl if entry.status != 404 else min(info.ttl, services.settings.mirror.negative_cache_seconds)
    return entry.checked_at + timedelta(seconds=seconds) > services.now()


async def _save_entry(services: Services, values: dict[str, Any]) -> None:
    async with services.db.write() as session:
        await session.execute(insert_ignore(session, ProxyEntry, values, ["channel_id", "path"]))
        row = await session.get(ProxyEntry, (values["channel_id"], values["path"]))
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)


async def _refreshed(services: Services, info: ChannelInfo, path: str, keys: list[str],
                     refresh: Any) -> LocalBlob | Missing | Unavailable:
    """The stored copy of `path` (its first key answered), revalidated upstream when past the TTL.

    `refresh(entry)` asks upstream and returns the new entry values and blobs to store
    ({} blobs: not modified), or raises UpstreamError.
    """
    state = _state(services)
    marker = (info.id, path)
    now = time.monotonic()
    entry: ProxyEntry | None = None
    if state.fresh.get(marker, 0.0) <= now:
        entry = await _entry(services, info.id, path)
        if not _is_fresh(services, info, entry):
            async with publish_lock(services.db, f"proxy:{info.id}:{path}"):
                entry = await _entry(services, info.id, path)  # another process may have just refreshed it
                if not _is_fresh(services, info, entry):
                    try:
                        values, blobs = await refresh(entry)
                    except UpstreamError as exc:
                        return await _stale(services, info, path, keys[0], entry, exc)
                    if blobs:
                        await services.storage.put_many(blobs)
                        serving_cache(services).invalidate({*blobs, *keys})  # and copies made from them
                        if entry is not None and entry.status == 200:  # a stored index changed upstream
                            await _expire_siblings(services, info, path)
                    elif values.get("status") == 404:
                        for key in keys:  # gone upstream: so it is here
                            await services.storage.delete(key)
                        serving_cache(services).invalidate(keys)
                    values.update(channel_id=info.id, path=path, checked_at=services.now())
                    await _save_entry(services, values)
                    entry = await _entry(services, info.id, path)
        if info.ttl > 0:
            state.fresh[marker] = now + min(info.ttl, services.settings.publish.serve_cache_seconds)
            state.bases[marker] = entry.base_url if entry is not None else ""
        if entry is not None and entry.status == 404:
            state.fresh[marker] = now + min(info.ttl, services.settings.mirror.negative_cache_seconds)
            return Missing()
    cached = await serving_cache(services).file(keys[0])
    if cached is None:
        state.fresh.pop(marker, None)
        return Missing()
    return LocalBlob(cached, immutable=False)


async def _expire_siblings(services: Services, info: ChannelInfo, path: str) -> None:
    """`path` changed upstream: have the subdir's other indexes revalidated at their next request.

    The shard index, repodata.json (which package files are checked against) and the rest
    then agree as soon as they are asked for, rather than after each one's own TTL.
    """
    subdir, _, name = path.rpartition("/")
    if not subdir or name not in SUBDIR_INDEXES:
        return
    others = [f"{subdir}/{other}" for other in SUBDIR_INDEXES if other != name]
    async with services.db.write() as session:
        await session.execute(update(ProxyEntry).where(
            col(ProxyEntry.channel_id) == info.id, col(ProxyEntry.path).in_(others), col(ProxyEntry.status) == 200,
        ).values(checked_at=_LONG_AGO))
    for other in others:
        _state(services).fresh.pop((info.id, other), None)


async def _stale(services: Services, info: ChannelInfo, path: str, key: str, entry: ProxyEntry | None,
                 exc: UpstreamError) -> LocalBlob | Missing | Unavailable:
    """Upstream failed: the stored copy if there is one (stale-if-error), else 502/504."""
    if entry is not None and entry.status == 404:
        return Missing()
    cached = await serving_cache(services).file(key) if entry is not None else None
    if cached is not None:
        log.warning("proxy %s: serving the stored %s (upstream failed: %s)", info.name, path, exc)
        return LocalBlob(cached, immutable=False)
    return Unavailable(exc.status_code, f"upstream channel unavailable and {path} not cached")


async def _base_url(services: Services, info: ChannelInfo, path: str) -> str:
    """Where upstream keeps the files `path` (an index) names ('' for beside it): known while `path` is fresh."""
    state = _state(services)
    marker = (info.id, path)
    if state.fresh.get(marker, 0.0) > time.monotonic() and marker in state.bases:
        return state.bases[marker]
    entry = await _entry(services, info.id, path)
    return entry.base_url if entry is not None else ""


def _upstream_subdir(info: ChannelInfo, subdir: str) -> str:
    assert info.upstream is not None
    return join(info.upstream, f"{subdir}/")


def _rebase(base: str, relative_to: str) -> str:
    """An upstream base URL made absolute; '' when it means the subdir itself."""
    if base in ("", "./", "."):
        return ""
    return urljoin(relative_to, base)


# --- index files ------------------------------------------------------------------------


async def _index_file(services: Services, info: ChannelInfo, path: str, key: str) -> LocalBlob | Missing | Unavailable:
    assert info.upstream is not None
    url = join(info.upstream, path)
    client = upstream_client(services)
    is_shard_index = path.endswith(layout.SHARD_INDEX)

    async def refresh(entry: ProxyEntry | None) -> tuple[dict[str, Any], dict[str, bytes]]:
        stored = entry is not None and entry.status == 200
        got = await client.fetch(url, etag=entry.etag if stored and entry else "",
                                 last_modified=entry.last_modified if stored and entry else "")
        if got.status == 304:
            return {}, {}
        if got.status == 404:
            return {"status": 404, "etag": "", "last_modified": "", "base_url": "", "source": ""}, {}
        body, base = got.body, ""
        if is_shard_index:
            body, base = await run_in_threadpool(_rewrite_shard_index, body, url)
        return ({"status": 200, "etag": got.etag, "last_modified": got.last_modified, "base_url": base,
                 "source": path.rsplit("/", 1)[-1]}, {key: body})

    return await _refreshed(services, info, path, [key], refresh)


def _rewrite_shard_index(data: bytes, url: str) -> tuple[bytes, str]:
    """Point the shard index's URLs back at us; return it and where upstream keeps the shards."""
    try:
        index = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30), raw=False)
        info = index["info"]
    except Exception as exc:
        raise UpstreamError(f"upstream {redact(url)} is not a sharded repodata index") from exc
    shards_base = _rebase(str(info.get("shards_base_url") or "./shards/"), url)
    package_base = _rebase(str(info.get("base_url") or ""), url)
    if not package_base and shards_base == urljoin(url, "./shards/"):
        return data, ""  # nothing to rewrite: keep upstream's bytes
    info["base_url"] = ""
    info["shards_base_url"] = "./shards/"
    return compress_zst(msgpack.packb(index, use_bin_type=True)), shards_base


async def _repodata(services: Services, info: ChannelInfo, subdir: str, name: str) -> LocalBlob | Missing | Unavailable:
    """The stored repodata.json (or .zst) snapshot, fetched or revalidated first if need be."""
    found = await _snapshot(services, info, subdir, layout.REPODATA)
    if isinstance(found, LocalBlob) and name == layout.REPODATA_ZST:
        cached = await serving_cache(services).file(layout.subdir_file_key(info.name, subdir, name))
        return LocalBlob(cached, immutable=False) if cached is not None else Missing()
    return found


async def _snapshot(services: Services, info: ChannelInfo, subdir: str,
                    family: str) -> LocalBlob | Missing | Unavailable:
    """`family` (repodata.json or current_repodata.json) and its .zst, stored from one upstream
    snapshot (upstream's .zst if it has one, else its .json); answers the stored .json."""
    base = _upstream_subdir(info, subdir)
    client = upstream_client(services)
    zst_name = _ZST[family]
    json_key = layout.subdir_file_key(info.name, subdir, family)
    zst_key = layout.subdir_file_key(info.name, subdir, zst_name)
    # Made from the snapshot: deleted with it when upstream no longer has it.
    derived = [layout.subdir_file_key(info.name, subdir, name) for name, (of, _) in DERIVED.items() if of == family]
    level = services.settings.publish.zstd_level

    async def refresh(entry: ProxyEntry | None) -> tuple[dict[str, Any], dict[str, bytes]]:
        stored = entry is not None and entry.status == 200
        sources = [zst_name, family]
        if stored and entry is not None and entry.source == family:
            sources.reverse()  # revalidate what we have first
        for source in sources:
            same = stored and entry is not None and entry.source == source
            got = await client.fetch(join(base, source), etag=entry.etag if same and entry else "",
                                     last_modified=entry.last_modified if same and entry else "")
            if got.status == 304:
                return {}, {}
            if got.status == 200:
                plain, zst, package_base = await run_in_threadpool(_decode, got.body, source, base, level)
                return ({"status": 200, "etag": got.etag, "last_modified": got.last_modified,
                         "base_url": package_base, "source": source}, {json_key: plain, zst_key: zst})
        return {"status": 404, "etag": "", "last_modified": "", "base_url": "", "source": ""}, {}

    return await _refreshed(services, info, f"{subdir}/{family}", [json_key, zst_key, *derived], refresh)


def _decode(body: bytes, source: str, base: str, level: int) -> tuple[bytes, bytes, str]:
    """(the .json, its .zst, upstream package base URL) from one upstream file (.json or .json.zst)."""
    zst: bytes | None = None
    if source.endswith(".zst"):
        zst = body
        try:
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 31)
        except zstandard.ZstdError as exc:
            raise UpstreamError(f"upstream {redact(base)}{source} is not zstd") from exc
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("info", {}), dict):
            raise ValueError("not a repodata object")
    except ValueError as exc:
        raise UpstreamError(f"upstream {redact(base)}{source} is not a conda repodata file") from exc
    info = doc.get("info") or {}
    package_base = _rebase(str(info.get("base_url") or ""), base)
    if info.get("base_url") not in (None, "", "./"):
        info.pop("base_url", None)  # downloads come through us; we remember where upstream has them
        doc["info"] = info
        body, zst = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode(), None
    return body, zst if zst is not None else compress_zst(body, level), package_base


async def _derived(services: Services, info: ChannelInfo, subdir: str, name: str,
                   source: CachedFile) -> CachedFile | None:
    """`name` (a gzip or bz2 copy) of the stored snapshot `source`: made once per snapshot, in
    whichever process asks first, and remembered (ProxyEntry: the ETag of what it was made from)."""
    state = _state(services)
    path = f"{subdir}/{name}"
    key = layout.subdir_file_key(info.name, subdir, name)
    marker = (info.id, path)
    if state.derived.get(marker) != source.etag:
        entry = await _entry(services, info.id, path)
        if entry is None or entry.etag != source.etag:
            async with publish_lock(services.db, f"proxy:{info.id}:{path}"):
                entry = await _entry(services, info.id, path)
                if entry is None or entry.etag != source.etag:
                    try:
                        data = source.data if source.data is not None else await services.storage.read(source.key)
                    except BlobNotFoundError:
                        return None  # gone upstream meanwhile
                    made, etag = await run_in_threadpool(_encode, DERIVED[name][1], data)
                    await services.storage.put(key, made)
                    serving_cache(services).invalidate([key])
                    # The ETag of the bytes it was made from (which may be newer than `source`).
                    await _save_entry(services, {"channel_id": info.id, "path": path, "status": 200, "etag": etag,
                                                 "last_modified": "", "base_url": "", "source": DERIVED[name][0],
                                                 "checked_at": services.now()})
                    entry = await _entry(services, info.id, path)
        if entry is not None:
            state.derived[marker] = entry.etag
    return await serving_cache(services).file(key)


def _encode(compress: Callable[[bytes], bytes], data: bytes) -> tuple[bytes, str]:
    """`data` compressed, and the ETag serving gives `data` (services/serving.py: its sha256)."""
    return compress(data), f'"{hashlib.sha256(data).hexdigest()}"'


# --- package files and shards -----------------------------------------------------------


def _temp_path(services: Services) -> Path:
    # Named after this process (services/temp_files.py), so a later process removes it if this one dies.
    fd, path = temp_file(services.settings.data_dir / TEMP_DIR, "upstream")
    os.close(fd)
    return path


async def _records(services: Services, info: ChannelInfo, subdir: str, repodata: CachedFile) -> _Records | None:
    """The upstream records of the stored repodata snapshot `repodata` (parsed once per snapshot and process)."""
    state = _state(services)
    cached = state.records.get((info.id, subdir))
    if cached is not None and cached.etag == repodata.version:
        return cached
    try:
        data = repodata.data if repodata.data is not None else await services.storage.read(repodata.key)
    except BlobNotFoundError:
        return None
    files = await run_in_threadpool(_checksums, data)
    records = state.records[(info.id, subdir)] = _Records(repodata.version, files)
    return records


def _checksums(data: bytes) -> dict[str, tuple[str | None, str | None, int | None]]:
    doc = json.loads(data)
    out: dict[str, tuple[str | None, str | None, int | None]] = {}
    for group in ("packages", "packages.conda"):
        for filename, record in (doc.get(group) or {}).items():
            if isinstance(record, dict):
                out[filename] = (record.get("sha256"), record.get("md5"), record.get("size"))
    for group in (doc.get("v3") or {}).values():
        for filename, record in (group or {}).items():
            if isinstance(record, dict):
                out[filename] = (record.get("sha256"), record.get("md5"), record.get("size"))
    return out


async def _package_file(services: Services, info: ChannelInfo, subdir: str, filename: str,
                        redirect_ok: bool) -> Delivery:
    found = await _repodata(services, info, subdir, layout.REPODATA)
    if not isinstance(found, LocalBlob):
        return found if isinstance(found, Unavailable) else Missing("package file not found")
    records = await _records(services, info, subdir, found.entry)
    record = records.files.get(filename) if records is not None else None
    if record is None and await _expire_for_unknown_file(services, info, subdir):
        # Perhaps newer upstream than our snapshot (a client that saw it in a fresher shard
        # index, or elsewhere): revalidate now rather than answer 404 for the rest of the TTL.
        found = await _repodata(services, info, subdir, layout.REPODATA)
        if not isinstance(found, LocalBlob):
            return found if isinstance(found, Unavailable) else Missing("package file not found")
        records = await _records(services, info, subdir, found.entry)
        record = records.files.get(filename) if records is not None else None
    if record is None:
        return Missing("package file not found")
    sha256, md5, size = record
    if not sha256 and not md5:
        return Unavailable(502, f"the upstream record of {filename} has no checksum to verify it against")
    # Stored under its content (sha256; md5 padded for old records without one), as uploads are:
    # a file upstream replaced is a new key, never the old bytes under the new record.
    key = layout.package_key(info.name, subdir, (sha256 or md5 or "").lower().ljust(64, "0")[:64], filename)
    cached = await serving_cache(services).file(key, immutable=True)
    if cached is None:
        base = await _base_url(services, info, f"{subdir}/{layout.REPODATA}") or _upstream_subdir(info, subdir)
        got = await _fetch(services, key, join(base, filename), filename, Missing("package file not found upstream"),
                           size=size, sha256=sha256, md5=md5)
        if not isinstance(got, CachedFile):
            return got
        cached = got
    return await stored_package(services, cached, redirect_ok)


async def _expire_for_unknown_file(services: Services, info: ChannelInfo, subdir: str) -> bool:
    """Mark the subdir's repodata snapshot for revalidation, unless it was checked within
    `mirror.negative_cache_seconds`: a client probing for files upstream lacks costs at most one
    (conditional) upstream request per that time, across processes. True when marked."""
    path = f"{subdir}/{layout.REPODATA}"
    state, now = _state(services), services.now()
    recent = now - timedelta(seconds=services.settings.mirror.negative_cache_seconds)
    if state.probed.get((info.id, subdir), _LONG_AGO) > recent:
        return False  # asked within the window from this process: not even a write
    state.probed[(info.id, subdir)] = now
    async with services.db.write() as session:
        result = await session.execute(update(ProxyEntry).where(
            col(ProxyEntry.channel_id) == info.id, col(ProxyEntry.path) == path, col(ProxyEntry.status) == 200,
            col(ProxyEntry.checked_at) < recent,
        ).values(checked_at=_LONG_AGO))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    state.fresh.pop((info.id, path), None)
    return True


async def _shard(services: Services, info: ChannelInfo, subdir: str, digest: str) -> Delivery:
    """A shard, fetched once: content-addressed, so it is verified by its own name and never revalidated."""
    key = layout.shard_key(info.name, subdir, digest)
    cached = await serving_cache(services).file(key, immutable=True)
    if cached is None:
        base = (await _base_url(services, info, f"{subdir}/{layout.SHARD_INDEX}")
                or join(_upstream_subdir(info, subdir), "shards/"))
        got = await _fetch(services, key, join(base, f"{digest}.msgpack.zst"), "shard", Missing(),
                           size=None, sha256=digest, limit=services.settings.mirror.max_index_bytes)
        if not isinstance(got, CachedFile):
            return got
        cached = got
    return LocalBlob(cached, immutable=True)


async def _fetch(services: Services, key: str, url: str, what: str, absent: Missing, *, size: int | None,
                 sha256: str | None, md5: str | None = None,
                 limit: int | None = None) -> CachedFile | Missing | Unavailable:
    """Download `url` into storage under `key`, verified, once however many processes ask at once.

    Runs as a task of its own (`_fetch_locked`): the caller gets its answer as soon as the bytes
    are verified and goes on while the file is made durable, a client hanging up does not abort
    a download other clients wait for, and this process's requests for the file meanwhile share
    the answer.
    """
    state = _state(services)
    answer = state.answers.get(key)  # this process is fetching it already: one answer for all waiting
    if answer is None or answer.done():
        answer = state.answers[key] = asyncio.get_running_loop().create_future()

        def answered(done: asyncio.Future[Any]) -> None:
            if state.answers.get(key) is done:
                del state.answers[key]  # later requests look again (a failure is not for them)
            if not done.cancelled():
                done.exception()  # retrieved: no warning when no one waited

        answer.add_done_callback(answered)
        task = asyncio.create_task(_fetch_locked(services, key, url, what, absent, answer,
                                                 size=size, sha256=sha256, md5=md5, limit=limit))
        state.fetching.add(task)
        task.add_done_callback(state.fetching.discard)
    return await asyncio.shield(answer)


async def _fetch_locked(services: Services, key: str, url: str, what: str, absent: Missing,
                        answer: asyncio.Future[CachedFile | Missing | Unavailable], *, size: int | None,
                        sha256: str | None, md5: str | None, limit: int | None) -> None:
    """`_fetch`'s work, under the lock that makes other processes wait and then find the file stored.

    A file the serving cache may hold in memory (or of unknown size with a `limit`: shards)
    is downloaded into memory and answered from there once verified, before it is stored,
    unless answers may redirect to storage (presigned URLs): those wait for the file to be
    there. If storing then fails, the client has its verified file, nothing is stored and the
    next request downloads again. A bigger file goes to a temp file, which becomes the stored
    one (moved into place on local storage), and is answered once stored.
    """
    cache = serving_cache(services)
    early = stored = False
    try:
        async with publish_lock(services.db, f"proxyfile:{key}"):
            if await services.storage.stat(key) is not None:  # another process stored it meanwhile
                cache.invalidate([key])
                answer.set_result(await cache.file(key, immutable=True) or Missing())
                return
            in_memory = size <= cache.max_file if size is not None else limit is not None
            path = None if in_memory else await run_in_threadpool(_temp_path, services)
            try:
                try:
                    done = await upstream_client(services).download(url, path, size=size, sha256=sha256, md5=md5,
                                                                    keep_md5=False, limit=limit)
                except UpstreamMismatchError:
                    answer.set_result(Unavailable(502, f"upstream sent a corrupt {what} (checksum mismatch); "
                                                       "not cached"))
                    return
                except UpstreamError as exc:
                    answer.set_result(Unavailable(exc.status_code,
                                                  f"upstream channel unavailable and {what} not cached"))
                    return
                if done is None:
                    answer.set_result(absent)
                    return
                if done.data is not None and len(done.data) <= cache.max_file and not may_redirect(services):
                    verified = BlobStat(key=key, size=done.size, mtime=time.time(), etag="")  # not stored yet
                    answer.set_result(cache.stored(key, verified, done.data, sha256=done.sha256, immutable=True))
                    early = True
                if done.data is not None:
                    stat = await services.storage.put(key, done.data)
                else:
                    assert path is not None
                    stat = await services.storage.put_file(key, path)
                    path = None  # taken
            finally:
                if path is not None:
                    with anyio.CancelScope(shield=True):
                        await run_in_threadpool(path.unlink, True)
            entry = cache.stored(key, stat, done.data, sha256=done.sha256, immutable=True)
            stored = True
            log.info("proxy: cached %s", key)
            if not early:
                answer.set_result(entry)
    except Exception as exc:
        if not answer.done():
            answer.set_exception(exc)  # the caller's error, as if it had done the work itself
        else:
            log.error("proxy: storing %s failed after it was served: %s", key, exc)
    finally:
        if early and not stored:
            cache.invalidate([key])  # answered, but not stored: nothing may claim it is
        if not answer.done():
            answer.cancel()  # cancelled itself (the loop is closing): so are the requests waiting
