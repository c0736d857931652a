"""The hot path of conda serving, as a pure ASGI middleware in front of everything else.

Clients revalidate repodata and fetch shards far more often than they do anything else,
and most of them anonymously from public channels. When a request is exactly that (GET or
HEAD under /get/, no credentials, no Range) and this process already holds a fresh answer
(the channel's visibility and the file, in memory, from services/serving.py), it is
answered here without the routing, session and identity layers. Anything else (first
request, private channel, credentials, ranges, big or expired files) goes down the normal
path in graphconda/http/conda.py, which fills the caches this path reads. Content
negotiation is the same as there (http/encoding.py): a client accepting gzip gets the gzip
copy if it is cached, or goes down the normal path.
"""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from graphconda.http.conditional import etag_matches
from graphconda.http.encoding import VARY, accepts_gzip
from graphconda.services import layout
from graphconda.services.serving import CachedFile, ServingCache, serving_cache

_CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"cookie", b"range"})
_PUBLISHED = frozenset({layout.REPODATA, layout.REPODATA_ZST, layout.REPODATA_BZ2, layout.CURRENT_REPODATA,
                        layout.CURRENT_REPODATA_ZST, layout.RUN_EXPORTS, layout.SHARD_INDEX})
_TYPES = {".json": b"application/json", ".zst": b"application/zstd", ".bz2": b"application/x-bzip2",
          ".gz": b"application/json"}  # the only .gz blobs served are gzip copies of JSON files
_GZIP_KEYS = tuple(f"/{name}" for name in layout.GZIP_COPIES.values())
_VARIED_KEYS = tuple(f"/{name}" for name in (*layout.GZIP_COPIES, *layout.GZIP_COPIES.values()))
_VARY = (b"vary", VARY.encode())
_CHUNK = 4 * 1024 * 1024
IMMUTABLE = b"public, max-age=31536000, immutable"
_EMPTY_BODY = {"type": "http.response.body", "body": b""}


class FastStarlette(Starlette):
    """Starlette with the fast path ahead of its middleware stack (which costs a third of a 304)."""

    _fast: tuple[object, ServingCache] | None = None  # (services, its serving cache), looked up once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/get/") and scope["method"] in ("GET", "HEAD"):
            services = self.state._state.get("services")  # the plain dict behind app.state: no __getattr__
            fast = self._fast
            if fast is None or fast[0] is not services:
                fast = self._fast = (services, serving_cache(services)) if services is not None else None
            if fast is not None and await serve_fast(fast[1], scope, send):
                return
        await super().__call__(scope, receive, send)


async def serve_fast(cache: ServingCache, scope: Scope, send: Send) -> bool:
    """Answer the request if it is an anonymous hit on fresh cached data; False to pass it on."""
    inm = ims = accept = None
    for name, value in scope["headers"]:
        if name in _CREDENTIALS:
            return False
        if name == b"if-none-match":
            inm = value
        elif name == b"if-modified-since":
            ims = value
        elif name == b"accept-encoding":
            accept = value
    if ims is not None and inm is None:
        return False  # date comparisons: the normal path (with both, If-None-Match decides)
    parts = scope["path"][5:].split("/")
    now = time.monotonic()
    channel = cache.peek_channel(parts[0], now)
    if channel is None or not channel.fast or len(parts) not in (3, 4):
        return False
    if len(parts) == 3:
        name = parts[2]
        if name not in _PUBLISHED or (name == layout.SHARD_INDEX and not channel.publish.shards):
            return False
        if name in layout.GZIP_COPIES and accepts_gzip(accept):
            name = layout.GZIP_COPIES[name]  # not cached: the normal path decides (it may have no copy)
        entry = cache.peek_file(layout.subdir_file_key(channel.name, parts[1], name), now)
        control = cache.public_max_age
    else:
        if parts[2] != "shards" or len(parts[3]) != 76 or not parts[3].endswith(".msgpack.zst"):
            return False
        entry = cache.peek_file(layout.shard_key(channel.name, parts[1], parts[3][:64]), now)
        control = IMMUTABLE
    if entry is None:
        return False
    answers = entry.answers.get(control)
    if answers is None:
        answers = entry.answers[control] = _answers(entry, control)
    if inm is not None and (inm == entry.etag_bytes or etag_matches(inm.decode("latin-1"), entry.etag)):
        await send(answers[0])
        await send(_EMPTY_BODY)
        return True
    if entry.data is None:
        return False  # too big to hold in memory: streamed by the normal path
    await send(answers[1])
    await _send_body(scope, send, entry.data)
    return True


def _answers(entry: CachedFile, control: bytes) -> tuple[dict[str, object], dict[str, object]]:
    """The 304 and 200 response starts for a cached file, built once per entry (uvicorn only reads them)."""
    headers = [*entry.headers, (b"cache-control", control)]
    if entry.key.endswith(_VARIED_KEYS):
        headers.append(_VARY)
    ok = [*headers, (b"accept-ranges", b"bytes"), (b"content-length", str(entry.size).encode()),
          (b"content-type", _TYPES.get(entry.key[entry.key.rfind("."):], b"application/octet-stream"))]
    if entry.key.endswith(_GZIP_KEYS):
        ok.append((b"content-encoding", b"gzip"))
    return ({"type": "http.response.start", "status": 304, "headers": headers},
            {"type": "http.response.start", "status": 200, "headers": ok})


async def _send_body(scope: Scope, send: Send, data: bytes) -> None:
    if scope["method"] == "HEAD" or len(data) <= _CHUNK:
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})
        return
    for start in range(0, len(data), _CHUNK):  # in pieces, so the transport's buffer stays small
        await send({"type": "http.response.body", "body": data[start:start + _CHUNK],
                    "more_body": start + _CHUNK < len(data)})
