"""Serving conda channels: GET|HEAD /get/<channel>/[<subdir>/]<file>, with HTTP caching, ranges and indexes.

Everything a conda client reads is a blob written by the publisher (or a package file),
served with ETag, Last-Modified and Cache-Control, 304 on If-None-Match/If-Modified-Since,
single byte ranges (206/416), HEAD, and never Content-Encoding (`.zst` files are opaque
bytes). `noarch` and the other known subdirs serve an empty repodata before anything was
published there. Private channels answer 404 to callers without a role on them; the
identity middleware has already resolved `/t/<key>/get/...` and the other credentials.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from functools import cache

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from graphconda.conda.names import EXTENSIONS, validate_subdir
from graphconda.conda.repodata import compress_zst, empty_repodata
from graphconda.conda.shards import build_shard_index
from graphconda.errors import BlobNotFoundError, InvalidNameError, NotFoundError
from graphconda.http.deps import actor_of, services_of
from graphconda.services import layout, packages, publishing
from graphconda.services.access import could_be_channel_name
from graphconda.services.downloads import record_download
from graphconda.services.serving import CachedFile, ChannelInfo, is_known_subdir, serving_cache

SUBDIR_FILES = frozenset({*layout.SUBDIR_FILES, layout.SHARD_INDEX})
_SHARD = re.compile(r"[0-9a-f]{64}\.msgpack\.zst")
_DIGITS = re.compile(r"[0-9]+")
_CONTENT_TYPES = {".json": "application/json", ".zst": "application/zstd", ".bz2": "application/x-bzip2",
                  ".conda": "application/octet-stream"}


def _content_type(name: str) -> str:
    return _CONTENT_TYPES.get(name[name.rfind("."):], "application/octet-stream")


def _cache_control(info: ChannelInfo, max_age: int) -> str:
    # Responses of private channels must never sit in a shared cache.
    return f"{'private' if info.private else 'public'}, max-age={max_age}"


def _immutable(info: ChannelInfo) -> str:
    return f"{'private' if info.private else 'public'}, max-age=31536000, immutable"


def _not_found(request: Request, detail: str = "not found") -> Response:
    """A 404 clients may cache briefly (so they notice when an optional file appears)."""
    max_age = min(request.app.state.settings.publish.repodata_max_age_seconds, 60)
    return JSONResponse({"detail": detail}, status_code=404, headers={"cache-control": f"public, max-age={max_age}"})


def _no_channel() -> Response:
    # The channel may exist and be private: no shared cache may keep this for a caller with a key.
    return JSONResponse({"detail": "channel not found"}, status_code=404,
                        headers={"cache-control": "private, no-cache"})


# --- conditional requests and ranges -----------------------------------------------------


def _strip_weak(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def not_modified(request: Request, etag: str, mtime: int | None) -> bool:
    """RFC 9110: If-None-Match (weak comparison) wins over If-Modified-Since."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        ours = _strip_weak(etag)
        return any(_strip_weak(tag.strip()) == ours for tag in inm.split(","))
    ims = request.headers.get("if-modified-since")
    if ims is None or mtime is None:
        return False
    try:
        return mtime <= int(parsedate_to_datetime(ims).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def byte_range(request: Request, size: int, etag: str, last_modified: str | None) -> tuple[int, int] | bool | None:
    """(start, end) of a satisfiable single range, None to send everything, False for 416."""
    value = request.headers.get("range")
    if value is None:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        return None
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units and multiple ranges: answer with the whole file (RFC 9110 allows it)
    first, dash, last = (part.strip() for part in spec.partition("-"))
    if not dash or (first and not _DIGITS.fullmatch(first)) or (last and not _DIGITS.fullmatch(last)):
        return None
    if not first:
        if not last or int(last) == 0:
            return False if last else None
        return (max(size - int(last), 0), size) if size else False
    start = int(first)
    end = int(last) + 1 if last else max(size, start + 1)
    if end <= start:
        return None  # last before first: not a valid range, so it is ignored
    if start >= size:
        return False
    return start, min(end, size)


async def _primed(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Start reading before the status line goes out, so a vanished blob is still a clean 404."""
    first = await anext(stream, b"")

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for chunk in stream:
            yield chunk

    return rest()


async def send_blob(request: Request, entry: CachedFile, *, cache_control: str, content_type: str) -> Response:
    headers = {"etag": entry.etag, "last-modified": entry.last_modified, "cache-control": cache_control}
    if not_modified(request, entry.etag, entry.mtime):
        return Response(status_code=304, headers=headers)
    headers["accept-ranges"] = "bytes"
    rng = byte_range(request, entry.size, entry.etag, entry.last_modified)
    if rng is False:
        headers["content-range"] = f"bytes */{entry.size}"
        return Response(status_code=416, headers=headers)
    start, end = rng if isinstance(rng, tuple) else (0, entry.size)
    status = 206 if isinstance(rng, tuple) else 200
    if status == 206:
        headers["content-range"] = f"bytes {start}-{end - 1}/{entry.size}"
    headers["content-length"] = str(end - start)
    headers["content-type"] = content_type
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if entry.data is not None:
        return Response(entry.data if status == 200 else entry.data[start:end], status_code=status, headers=headers)
    storage = services_of(request).storage
    return StreamingResponse(await _primed(storage.open(entry.key, start, end)), status_code=status,
                             headers=headers)


# --- what a URL names ----------------------------------------------------------------


async def serve(request: Request) -> Response:
    services = services_of(request)
    parts = request.path_params["path"].split("/")
    if not could_be_channel_name(parts[0]) or not all(map(_plain_text, parts)):
        return _no_channel()  # text no channel or file can have never reaches the database
    try:
        info = await serving_cache(services).channel(actor_of(request), parts[0])
    except NotFoundError:
        return _no_channel()
    rest = parts[1:]
    try:
        if not rest:
            return RedirectResponse(f"{parts[0]}/", status_code=301)
        if len(rest) == 1:
            return await _channel_file(request, info, rest[0])
        subdir = validate_subdir(rest[0])
        if len(rest) == 2:
            return await _subdir_file(request, info, subdir, rest[1])
        if len(rest) == 3 and rest[1] == "shards" and _SHARD.fullmatch(rest[2]):
            return await _published(request, info, layout.shard_key(info.name, subdir, rest[2][:64]), immutable=True)
    except (InvalidNameError, BlobNotFoundError):
        pass
    return _not_found(request)


def _plain_text(part: str) -> bool:
    """No NUL, control characters or lone surrogates (from a percent-encoded URL)."""
    return part.isprintable() and not any("\ud800" <= c <= "\udfff" for c in part)


async def _channel_file(request: Request, info: ChannelInfo, name: str) -> Response:
    if name in ("", "index.html"):
        return await _channel_index(request, info)
    if name == layout.CHANNELDATA:
        return await _published(request, info, layout.channel_file_key(info.name, name))
    validate_subdir(name)
    return RedirectResponse(f"{name}/", status_code=301)


async def _subdir_file(request: Request, info: ChannelInfo, subdir: str, name: str) -> Response:
    if name.endswith(EXTENSIONS):
        return await _package_file(request, info, subdir, name)
    if name in ("", "index.html"):
        return await _subdir_index(request, info, subdir)
    if name not in SUBDIR_FILES:
        return _not_found(request)
    if name == layout.SHARD_INDEX and not info.publish.shards:
        return _not_found(request, "this channel does not publish sharded repodata")
    response = await _published(request, info, layout.subdir_file_key(info.name, subdir, name), missing_ok=True)
    if response is None:
        return await _empty(request, info, subdir, name)
    return response


async def _published(request: Request, info: ChannelInfo, key: str, *, immutable: bool = False,
                     missing_ok: bool = False) -> Response:
    entry = await serving_cache(services_of(request)).file(key, immutable=immutable)
    if entry is None:
        if missing_ok:
            return None  # type: ignore[return-value]
        return _not_found(request)
    if immutable:
        control = _immutable(info)
    else:
        control = _cache_control(info, request.app.state.settings.publish.repodata_max_age_seconds)
    return await send_blob(request, entry, cache_control=control, content_type=_content_type(key))


@cache
def _empty_files(subdir: str) -> dict[str, CachedFile]:
    """What a known subdir serves before anything was published there."""
    from datetime import UTC, datetime
    from hashlib import sha256

    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    repodata = empty_repodata(subdir)
    files = {layout.REPODATA: repodata, layout.REPODATA_ZST: compress_zst(repodata),
             layout.SHARD_INDEX: build_shard_index(subdir, {}, epoch)}
    return {name: CachedFile(name, len(data), f'"empty-{sha256(data).hexdigest()[:16]}"', 946684800,
                             "Sat, 01 Jan 2000 00:00:00 GMT", data, float("inf"))
            for name, data in files.items()}


async def _empty(request: Request, info: ChannelInfo, subdir: str, name: str) -> Response:
    entry = _empty_files(subdir).get(name) if is_known_subdir(subdir) else None
    if entry is None:
        return _not_found(request)
    # The same max-age as the real file that replaces it (clients treat a missing max-age as stale).
    control = _cache_control(info, request.app.state.settings.publish.repodata_max_age_seconds)
    return await send_blob(request, entry, cache_control=control, content_type=_content_type(name))


async def _package_file(request: Request, info: ChannelInfo, subdir: str, filename: str) -> Response:
    services = services_of(request)
    cache_ = serving_cache(services)
    ref = await cache_.package_file(info, subdir, filename)
    if ref is None or ref.key is None:
        return _not_found(request, "package file not found")
    entry = await cache_.file(ref.key, immutable=True)
    if entry is None:
        cache_.forget_package_file(info, subdir, filename)
        return _not_found(request, "package file not found")
    full_get = request.method == "GET" and "range" not in request.headers
    s3 = services.settings.storage.s3
    if services.storage.backend == "s3" and s3.presign_downloads and request.method == "GET":
        url = await services.storage.presigned_url(ref.key, timedelta(seconds=s3.presign_expiry_seconds))
        if url:
            if full_get and not not_modified(request, entry.etag, entry.mtime):
                record_download(services, ref.id)
            return RedirectResponse(url, status_code=302, headers={"cache-control": "no-store"})
    response = await send_blob(request, entry, cache_control=_immutable(info), content_type=_content_type(filename))
    if full_get and response.status_code == 200:
        record_download(services, ref.id)
    return response


# --- browsable indexes -----------------------------------------------------------------


def _page(title: str, rows: list[tuple[str, str, str]]) -> str:
    body = "\n".join(
        f'<tr><td><a href="{html.escape(href)}">{html.escape(text)}</a></td><td>{html.escape(extra)}</td></tr>'
        for href, text, extra in rows
    )
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><table>\n{body}\n</table></body></html>\n")


async def _channel_index(request: Request, info: ChannelInfo) -> Response:
    subdirs = await publishing.channel_subdirs(services_of(request), info.id)
    rows = [(f"{s}/", f"{s}/", "") for s in sorted({*subdirs, "noarch"})]
    rows.append((layout.CHANNELDATA, layout.CHANNELDATA, ""))
    control = _cache_control(info, request.app.state.settings.publish.repodata_max_age_seconds)
    return HTMLResponse(_page(f"channel {info.name}", rows), headers={"cache-control": control})


async def _subdir_index(request: Request, info: ChannelInfo, subdir: str) -> Response:
    services = services_of(request)
    files = await packages.list_package_files(services, actor_of(request), info.name, subdir=subdir)
    rows = []
    for name in sorted(SUBDIR_FILES):
        entry = await serving_cache(services).file(layout.subdir_file_key(info.name, subdir, name))
        if entry is not None and (name != layout.SHARD_INDEX or info.publish.shards):
            rows.append((name, name, f"{entry.size} bytes, {entry.last_modified}"))
    rows += [(f.filename, f.filename, f"{f.size} bytes, {f.uploaded_at:%Y-%m-%d %H:%M}") for f in files]
    control = _cache_control(info, request.app.state.settings.publish.repodata_max_age_seconds)
    return HTMLResponse(_page(f"{info.name}/{subdir}", rows), headers={"cache-control": control})


routes = [Route("/get/{path:path}", serve, methods=["GET", "HEAD"])]
