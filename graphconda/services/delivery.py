"""Serving policy: for one file of a channel, where its bytes come from.

`locate` answers, for a channel file, a subdir file, a shard or a package file: a local
blob (with how long clients may cache it, and its Content-Encoding when it is the stored
gzip copy of repodata.json or current_repodata.json), a redirect (presigned storage URL, or an
upstream URL for proxylisted mirror packages), nothing, or "upstream failed". For proxy
channels the bytes are fetched from upstream first (services/proxy.py), so a route never
talks to an upstream itself; it only turns the answer into HTTP (http/conda.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from hashlib import sha256

from graphconda.conda.repodata import compress_zst, empty_repodata
from graphconda.conda.shards import build_shard_index
from graphconda.services import layout
from graphconda.services.context import Services
from graphconda.services.serving import CachedFile, ChannelInfo, is_known_subdir, serving_cache

# Files a subdir may serve besides packages and shards (the gzip copies only as an encoding of the file they copy).
SUBDIR_FILES = frozenset({*layout.SUBDIR_FILES, layout.SHARD_INDEX}) - set(layout.GZIP_COPIES.values())


@dataclass(frozen=True)
class LocalBlob:
    entry: CachedFile
    immutable: bool  # content-addressed (shards, package files): cache for a year
    encoding: str | None = None  # the bytes are this Content-Encoding of the file asked for
    vary: bool = False  # the file has other encodings: answers say `Vary: Accept-Encoding`


@dataclass(frozen=True)
class Redirect:
    url: str
    entry: CachedFile | None = None  # when known, a revalidation is answered 304 instead


@dataclass(frozen=True)
class Missing:
    detail: str = "not found"


@dataclass(frozen=True)
class Unavailable:
    """An upstream failed (502) or did not answer in time (504) and nothing is cached."""

    status: int
    detail: str


Delivery = LocalBlob | Redirect | Missing | Unavailable


async def locate(services: Services, info: ChannelInfo, subdir: str | None, name: str,
                 *, redirect_ok: bool = False, gzip_ok: bool = False) -> Delivery:
    """Where the bytes of `<channel>/[<subdir>/]<name>` come from (`name` may be `shards/<hex>.msgpack.zst`).

    Names are already checked by the caller (http/conda.py): subdir valid, name one a
    channel can serve. `redirect_ok`: the request may be answered with a redirect to
    presigned storage (full GETs of package files). `gzip_ok`: the client accepts gzip
    (and asked for no range), so the stored gzip copy may answer.
    """
    if info.mirror_mode == "proxy":
        from graphconda.services import proxy  # proxy builds on this module

        return await proxy.locate(services, info, subdir, name, redirect_ok=redirect_ok, gzip_ok=gzip_ok)
    if subdir is None:
        return await _published(services, layout.channel_file_key(info.name, name))
    if name.startswith("shards/"):
        return await _published(services, layout.shard_key(info.name, subdir, name[7:71]), immutable=True)
    if name.endswith((".conda", ".tar.bz2")):
        return await _package_file(services, info, subdir, name, redirect_ok)
    if name == layout.SHARD_INDEX and not info.publish.shards:
        return Missing("this channel does not publish sharded repodata")
    gzipped = layout.GZIP_COPIES.get(name)
    if gzipped is not None and gzip_ok:
        copy = await _published(services, layout.subdir_file_key(info.name, subdir, gzipped))
        if isinstance(copy, LocalBlob):  # else published before copies existed: the plain file
            return LocalBlob(copy.entry, immutable=False, encoding="gzip", vary=True)
    found = await _published(services, layout.subdir_file_key(info.name, subdir, name))
    if isinstance(found, Missing):
        empty = empty_file(subdir, name)
        return LocalBlob(empty.entry, immutable=False, vary=gzipped is not None) if empty is not None else found
    return LocalBlob(found.entry, immutable=False, vary=True) if gzipped is not None else found


async def _published(services: Services, key: str, *, immutable: bool = False) -> LocalBlob | Missing:
    entry = await serving_cache(services).file(key, immutable=immutable)
    return Missing() if entry is None else LocalBlob(entry, immutable)


@cache
def _empty_files(subdir: str) -> dict[str, CachedFile]:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    repodata = empty_repodata(subdir)
    files = {layout.REPODATA: repodata, layout.REPODATA_ZST: compress_zst(repodata),
             layout.SHARD_INDEX: build_shard_index(subdir, {}, epoch)}
    return {name: CachedFile(name, len(data), f'"empty-{sha256(data).hexdigest()[:16]}"', 946684800,
                             "Sat, 01 Jan 2000 00:00:00 GMT", data, float("inf"))
            for name, data in files.items()}


def empty_file(subdir: str, name: str) -> LocalBlob | None:
    """What a known subdir serves before anything was published there (noarch must always answer)."""
    entry = _empty_files(subdir).get(name) if is_known_subdir(subdir) else None
    return LocalBlob(entry, immutable=False) if entry is not None else None


async def _package_file(services: Services, info: ChannelInfo, subdir: str, filename: str,
                        redirect_ok: bool) -> Delivery:
    cache_ = serving_cache(services)
    ref = await cache_.package_file(info, subdir, filename)
    if ref is not None and ref.key is None and info.mirror_mode == "mirror" and info.upstream:
        # Proxylisted in a mirror: indexed here, downloaded from upstream (never with its credentials).
        from graphconda.services.upstream import join, split_auth

        return Redirect(join(split_auth(info.upstream)[0], f"{subdir}/{filename}"))
    if ref is None or ref.key is None:
        return Missing("package file not found")
    entry = await cache_.file(ref.key, immutable=True)
    if entry is None:
        cache_.forget_package_file(info, subdir, filename)
        return Missing("package file not found")
    return await stored_package(services, entry, redirect_ok)


def may_redirect(services: Services) -> bool:
    """Whether package GETs may be answered with a presigned storage URL (so the file must be stored first)."""
    return services.storage.backend == "s3" and services.settings.storage.s3.presign_downloads


async def stored_package(services: Services, entry: CachedFile, redirect_ok: bool) -> LocalBlob | Redirect:
    """A package file in storage: a presigned redirect where storage offers one (bytes bypass Python)."""
    s3 = services.settings.storage.s3
    if redirect_ok and may_redirect(services):
        url = await services.storage.presigned_url(entry.key, timedelta(seconds=s3.presign_expiry_seconds))
        if url:
            return Redirect(url, entry)
    return LocalBlob(entry, immutable=True)
