"""Serving conda channels: GET|HEAD /get/<channel>/[<subdir>/]<file>, with HTTP caching, ranges and indexes.

Everything a conda client reads is a blob written by the publisher (or a package file),
served with ETag, Last-Modified and Cache-Control, 304 on If-None-Match/If-Modified-Since,
single byte ranges (206/416), HEAD. `.zst` and `.bz2` files are opaque bytes, never a
Content-Encoding; repodata.json and current_repodata.json go out as their stored gzip copy
to clients that accept gzip (http/encoding.py). `noarch` and the other known subdirs serve
an empty repodata before anything was published there. Private channels answer 404 to
callers without a role on them; the identity middleware has already resolved
`/t/<key>/get/...` and the other credentials.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from graphconda.conda.names import EXTENSIONS, validate_subdir
from graphconda.errors import BlobNotFoundError, InvalidNameError, NotFoundError
from graphconda.http import conditional
from graphconda.http.deps import actor_of, services_of
from graphconda.http.encoding import VARY, accepts_gzip
from graphconda.services import delivery, layout, packages, publishing
from graphconda.services.access import could_be_channel_name
from graphconda.services.delivery import SUBDIR_FILES
from graphconda.services.downloads import record_download
from graphconda.services.serving import CachedFile, ChannelInfo, serving_cache

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


def not_modified(request: Request, etag: str, mtime: int | None) -> bool:
    return conditional.not_modified(request.headers.get("if-none-match"), request.headers.get("if-modified-since"),
                                    etag, mtime)


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


async def send_blob(request: Request, entry: CachedFile, *, cache_control: str, content_type: str,
                    encoding: str | None = None, vary: bool = False) -> Response:
    """`encoding`: the stored bytes are this Content-Encoding of the resource; `vary`: it has other encodings."""
    headers = {"etag": entry.etag, "last-modified": entry.last_modified, "cache-control": cache_control}
    if vary:
        headers["vary"] = VARY
    if not_modified(request, entry.etag, entry.mtime):
        return Response(status_code=304, headers=headers)
    if encoding is not None:
        headers["content-encoding"] = encoding
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
            return await _deliver(request, info, subdir, f"shards/{rest[2]}")
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
        return await _deliver(request, info, None, name)
    validate_subdir(name)
    return RedirectResponse(f"{name}/", status_code=301)


async def _subdir_file(request: Request, info: ChannelInfo, subdir: str, name: str) -> Response:
    if name in ("", "index.html"):
        return await _subdir_index(request, info, subdir)
    if not name.endswith(EXTENSIONS) and name not in SUBDIR_FILES:
        return _not_found(request)
    return await _deliver(request, info, subdir, name)


async def _deliver(request: Request, info: ChannelInfo, subdir: str | None, name: str) -> Response:
    """Turn the serving decision (services/delivery.py) into HTTP, counting package downloads."""
    services = services_of(request)
    gzip_ok = "range" not in request.headers and accepts_gzip(request.headers.get("accept-encoding"))
    found = await delivery.locate(services, info, subdir, name, redirect_ok=request.method == "GET", gzip_ok=gzip_ok)
    if isinstance(found, delivery.Missing):
        return _not_found(request, found.detail)
    if isinstance(found, delivery.Unavailable):
        return JSONResponse({"detail": found.detail}, status_code=found.status,
                            headers={"cache-control": "no-store"})
    package = subdir is not None and name.endswith(EXTENSIONS)
    if isinstance(found, delivery.Redirect):
        if found.entry is not None and not_modified(request, found.entry.etag, found.entry.mtime):
            # The client's copy is current: 304 here, rather than a redirect for storage to answer.
            return Response(status_code=304, headers={"etag": found.entry.etag, "cache-control": _immutable(info)})
        if package and subdir is not None and _whole_file_asked(request, found.entry):
            record_download(services, info.id, subdir, name)
        return RedirectResponse(found.url, status_code=302, headers={"cache-control": "no-store"})
    if found.immutable:
        control = _immutable(info)
    else:
        control = _cache_control(info, request.app.state.settings.publish.repodata_max_age_seconds)
    response = await send_blob(request, found.entry, cache_control=control, content_type=_content_type(name),
                               encoding=found.encoding, vary=found.vary)
    if package and subdir is not None and request.method == "GET" and _whole_body(request, response, found.entry.size):
        record_download(services, info.id, subdir, name)
    return response


def _whole_body(request: Request, response: Response, size: int) -> bool:
    """What counts as a download among answers: the full body, as a 200 or as a range from byte 0 to the last.

    A suffix range (`bytes=-N`) never counts, even when N covers a small file: it is how
    rattler reads a .conda's metadata before (maybe) downloading it.
    """
    if response.status_code == 200:
        return True
    return (response.status_code == 206 and _from_byte_zero(request)
            and response.headers.get("content-range") == f"bytes 0-{size - 1}/{size}")


def _from_byte_zero(request: Request) -> bool:
    return request.headers.get("range", "").partition("=")[2].strip().startswith("0")


def _whole_file_asked(request: Request, entry: CachedFile | None) -> bool:
    """For a redirect (the bytes come from elsewhere): a GET of the whole file, or of a range of all of it."""
    if request.method != "GET":
        return False
    if "range" not in request.headers:
        return True
    if entry is None:
        return False  # an upstream file of unknown size: only whole-file GETs count
    rng = byte_range(request, entry.size, entry.etag, entry.last_modified)
    return rng is None or (rng == (0, entry.size) and _from_byte_zero(request))


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
