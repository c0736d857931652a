"""The upstream client: every request graphconda makes to an upstream conda channel goes through here.

Built on the injected `services.http` (httpx2). It adds what talking to someone else's
server needs: a timeout per request (`mirror.upstream_timeout_seconds`: a stalled upstream
fails instead of holding a client), retries with exponential backoff that honour
`Retry-After`, conditional requests (ETag / Last-Modified), downloads streamed to a
file and verified (size, sha256, md5) before anyone may store them, a negative cache of
404s, and a circuit breaker per upstream origin (after `circuit_failures` consecutive
failures it is not asked for `circuit_open_seconds`, as Nexus's auto-block).

Upstream URLs may carry credentials (`https://user:secret@host/...` or a conda token
`/t/<token>/`); httpx sends user info as Basic auth. They never appear in logs or in
error messages: everything printed goes through `redact`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx2

from graphconda.errors import UpstreamError, UpstreamMismatchError, UpstreamTimeoutError
from graphconda.services import authz, ops_metrics
from graphconda.services.authz import Actor
from graphconda.services.context import Services
from graphconda.services.spool import Spooler
from graphconda.settings import MirrorSettings

log = logging.getLogger("graphconda.upstream")

_TOKEN = re.compile(r"/t/[^/]+/")
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def shown_url(actor: Actor, url: str) -> str:
    """An upstream URL as `actor` may see it: whole for server staff, redacted for everyone else."""
    return url if authz.can_see_upstream_credentials(actor) else redact(url)


def redact(url: str) -> str:
    """The URL without secrets: user info and conda tokens become `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, _TOKEN.sub("/t/***/", parts.path), parts.query and "***", ""))


def split_auth(url: str) -> tuple[str, httpx2.BasicAuth | None]:
    """The URL without user info, and that user info as Basic auth (so no URL we request carries a password)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), httpx2.BasicAuth(
        unquote(user), unquote(password))


class _RedactingFilter(logging.Filter):
    """httpx logs every request URL at INFO: a conda token in a path must not reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(str(a)) if "/t/" in str(a) or "@" in str(a) else a for a in record.args)
        return True


_FILTER = _RedactingFilter()


def join(base: str, path: str) -> str:
    """`path` under the channel URL `base` (with or without a trailing slash)."""
    return base.rstrip("/") + "/" + path


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"


@dataclass(frozen=True)
class Fetched:
    """An upstream answer to a (conditional) GET of an index file."""

    status: int  # 200, 304 (not modified: `body` empty) or 404
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True)
class Downloaded:
    path: Path | None  # None: downloaded into memory (`data`)
    size: int
    sha256: str
    md5: str  # "" when not computed (download(keep_md5=False) with a sha256 to check)
    data: bytes | None = None


class _Retry(Exception):
    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class UpstreamClient:
    """Per-process: holds the negative cache and the circuit breakers."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings: MirrorSettings = services.settings.mirror
        self._missing: dict[str, float] = {}  # url -> monotonic time the 404 is forgotten
        self._failures: dict[str, int] = {}  # origin -> consecutive failures
        self._open_until: dict[str, float] = {}  # origin -> monotonic time it is asked again
        self.spooler = Spooler()  # writes and hashes downloads (services/spool.py)
        for name in ("httpx2", "httpx"):
            if _FILTER not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_FILTER)

    def close(self) -> None:
        self.spooler.close()

    # --- bookkeeping ------------------------------------------------------------------

    def _check_circuit(self, url: str) -> None:
        until = self._open_until.get(origin(url))
        if until is not None and until > time.monotonic():
            ops_metrics.count_upstream_error("circuit_open")
            raise UpstreamError(f"upstream {redact(origin(url))} is failing; not asked again for a while")

    def _failed(self, url: str) -> None:
        key = origin(url)
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count >= self.settings.circuit_failures:
            self._open_until[key] = time.monotonic() + self.settings.circuit_open_seconds
            self._failures[key] = 0
            log.warning("upstream %s blocked for %.0f s after %d failures", redact(key),
                        self.settings.circuit_open_seconds, count)

    def _succeeded(self, url: str) -> None:
        key = origin(url)
        self._failures.pop(key, None)
        self._open_until.pop(key, None)

    def known_missing(self, url: str) -> bool:
        until = self._missing.get(url)
        return until is not None and until > time.monotonic()

    def _remember_missing(self, url: str) -> None:
        if len(self._missing) > 100_000:
            self._missing.clear()
        self._missing[url] = time.monotonic() + self.settings.negative_cache_seconds

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return min(self.settings.backoff_seconds * (2 ** attempt), self.settings.max_backoff_seconds)

    def _retry_after(self, response: httpx2.Response) -> float | None:
        value = response.headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
        return max(seconds, 0.0)

    # --- requests ---------------------------------------------------------------------

    async def _attempts(self, url: str, attempt_once: Any) -> Any:
        """Run `attempt_once()` with retries; map failures to UpstreamError / UpstreamTimeoutError."""
        self._check_circuit(url)
        last = "no attempt"
        timed_out = False
        for attempt in range(self.settings.retries + 1):
            try:
                result = await attempt_once()
            except _Retry as retry:
                ops_metrics.count_upstream_error("http_status")  # 5xx, 429: retried
                last, timed_out = retry.reason, False
                delay = self._delay(attempt, retry.delay)
                if retry.delay is not None and retry.delay > self.settings.max_backoff_seconds:
                    break  # told to come back later than we may wait
            except httpx2.TimeoutException:
                # A stalled upstream is not retried: the client waiting on us has waited long enough.
                ops_metrics.count_upstream_error("timeout")
                last, timed_out = f"no answer within {self.settings.upstream_timeout_seconds:g} s", True
                break
            except httpx2.TooManyRedirects:
                ops_metrics.count_upstream_error("redirects")
                last, timed_out = "too many redirects (a redirect loop?)", False
                break
            except UpstreamError:
                # Refused in a way retrying cannot fix (another 4xx, too large, not what the record says).
                ops_metrics.count_upstream_error("refused")
                raise
            except httpx2.RequestError as exc:  # connection refused or reset, truncated body, bad encoding
                ops_metrics.count_upstream_error("connection")
                last, timed_out = type(exc).__name__, False
                delay = self._delay(attempt, None)
            else:
                self._succeeded(url)
                return result
            if attempt < self.settings.retries:
                log.info("upstream %s: %s; retrying in %.1f s", redact(url), last, delay)
                await asyncio.sleep(delay)
        self._failed(url)
        message = f"upstream {redact(url)} failed: {last}"
        log.warning(message)
        raise (UpstreamTimeoutError if timed_out else UpstreamError)(message)

    def _timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.settings.upstream_timeout_seconds)

    async def fetch(self, url: str, *, etag: str = "", last_modified: str = "",
                    max_bytes: int | None = None) -> Fetched:
        """GET an index file; 304 when the validators still match, 404 (remembered a while) when absent."""
        limit = max_bytes or self.settings.max_index_bytes

        async def in_memory(response: httpx2.Response) -> bytes:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _too_large(url, limit)
            return bytes(body)

        return await self._get_index(url, etag, last_modified, limit, in_memory)

    async def fetch_to_file(self, url: str, path: Path, *, etag: str = "", last_modified: str = "") -> Fetched:
        """Like `fetch`, the body streamed into `path` instead of memory (`body` stays empty)."""
        limit = self.settings.max_index_bytes

        async def to_file(response: httpx2.Response) -> bytes:
            try:
                await _spool(response.aiter_bytes(), path, url, limit, self.spooler, md5=False, sha256=False)
            except UpstreamMismatchError:
                raise _too_large(url, limit) from None
            return b""

        return await self._get_index(url, etag, last_modified, limit, to_file)

    async def _get_index(self, url: str, etag: str, last_modified: str, limit: int,
                         take_body: Callable[[httpx2.Response], Awaitable[bytes]]) -> Fetched:
        """The conditional GET (with retries) behind `fetch` and `fetch_to_file`; `take_body` reads a 200's body."""
        if self.known_missing(url):
            return Fetched(404)
        headers = {}
        if etag:
            headers["if-none-match"] = etag
        if last_modified:
            headers["if-modified-since"] = last_modified
        plain, auth = split_auth(url)

        async def once() -> Fetched:
            async with self.services.http.stream("GET", plain, headers=headers, timeout=self._timeout(),
                                                 **_auth(auth)) as response:
                if response.status_code in (404, 410):
                    return Fetched(404)
                if response.status_code == 304:
                    return Fetched(304, b"", response.headers.get("etag", etag),
                                   response.headers.get("last-modified", last_modified))
                if response.status_code in _RETRY_STATUS:
                    raise _Retry(f"HTTP {response.status_code}", self._retry_after(response))
                if response.status_code != 200:
                    raise UpstreamError(f"upstream {redact(url)} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise _too_large(url, limit)
                body = await take_body(response)
                return Fetched(200, body, response.headers.get("etag", ""), response.headers.get("last-modified", ""))

        fetched: Fetched = await self._attempts(url, once)
        if fetched.status == 404:
            self._remember_missing(url)
        return fetched

    async def exists(self, url: str) -> bool:
        """Whether upstream has the file (a HEAD request; 404s remembered like fetch's)."""
        if self.known_missing(url):
            return False
        plain, auth = split_auth(url)

        async def once() -> bool:
            response = await self.services.http.head(plain, timeout=self._timeout(), **_auth(auth))
            if response.status_code in (404, 410):
                return False
            if response.status_code in _RETRY_STATUS:
                raise _Retry(f"HTTP {response.status_code}", self._retry_after(response))
            return response.status_code < 400

        found: bool = await self._attempts(url, once)
        if not found:
            self._remember_missing(url)
        return found

    async def download(self, url: str, path: Path | None, *, size: int | None, sha256: str | None,
                       md5: str | None = None, keep_md5: bool = True, limit: int | None = None) -> Downloaded | None:
        """Stream a package file into `path`, verified against the upstream record; None when upstream has none.

        UpstreamMismatchError when the bytes differ from what the record says (wrong size,
        sha256 or md5); the file at `path` is then left for the caller to delete. `path` None:
        the body is kept in memory instead (`Downloaded.data`; UpstreamError past `limit` bytes
        when the record has no size), hashed as it arrives. `keep_md5=False`: md5 is computed
        (and checked) only when there is no sha256 to check, for callers that do not record it.
        """
        with_md5 = keep_md5 or not sha256

        plain, auth = split_auth(url)

        async def once() -> Downloaded | None:
            async with self.services.http.stream("GET", plain, timeout=self._timeout(), **_auth(auth)) as response:
                if response.status_code in (404, 410):
                    return None
                if response.status_code in _RETRY_STATUS:
                    raise _Retry(f"HTTP {response.status_code}", self._retry_after(response))
                if response.status_code != 200:
                    raise UpstreamError(f"upstream {redact(url)} answered HTTP {response.status_code}")
                if path is None:
                    return await _collect(response.aiter_bytes(), url, size, limit, md5=with_md5)
                return await _spool(response.aiter_bytes(), path, url, size, self.spooler, md5=with_md5,
                                    writeback=True)

        done: Downloaded | None = await self._attempts(url, once)
        if done is None:
            return None
        wanted = {"size": size, "sha256": sha256 and sha256.lower(), "md5": md5.lower() if md5 and with_md5 else None}
        got = {"size": done.size, "sha256": done.sha256, "md5": done.md5}
        for name, value in wanted.items():
            if value is not None and value != got[name]:
                message = f"upstream {redact(url)} sent a file whose {name} is {got[name]}, its record says {value}"
                log.warning(message)
                raise UpstreamMismatchError(message)
        return done


def _too_large(url: str, limit: int) -> UpstreamError:
    return UpstreamError(f"upstream {redact(url)} is larger than {limit} bytes")


def _auth(auth: httpx2.BasicAuth | None) -> dict[str, Any]:
    return {"auth": auth} if auth is not None else {}


async def _spool(body: AsyncIterator[bytes], path: Path, url: str, size: int | None, spooler: Spooler, *,
                 md5: bool = True, sha256: bool = True, writeback: bool = False) -> Downloaded:
    """The body written to `path` and hashed by a worker thread as it arrives (services/spool.py)."""
    writer = spooler.writer(path, md5=md5, sha256=sha256, writeback=writeback)
    try:
        async for chunk in body:
            if size is not None and writer.size + len(chunk) > size:
                raise UpstreamMismatchError(f"upstream {redact(url)} sent more than the {size} bytes of its record")
            await writer.write(chunk)
        await writer.close()
    except BaseException:
        await writer.abort()
        raise
    return Downloaded(path, writer.size, writer.sha256.hexdigest() if writer.sha256 is not None else "",
                      writer.md5.hexdigest() if writer.md5 is not None else "")


async def _collect(body: AsyncIterator[bytes], url: str, size: int | None, limit: int | None, *,
                   md5: bool) -> Downloaded:
    """A body kept in memory, hashed network read by network read: done hashing when it has arrived."""
    sha = hashlib.sha256()
    md5_hash = hashlib.md5(usedforsecurity=False) if md5 else None
    cap = size if size is not None else limit
    parts: list[bytes] = []
    total = 0
    async for chunk in body:
        total += len(chunk)
        if cap is not None and total > cap:
            if size is not None:
                raise UpstreamMismatchError(f"upstream {redact(url)} sent more than the {size} bytes of its record")
            raise _too_large(url, cap)
        sha.update(chunk)  # hashlib lets go of the GIL for blocks this size: other threads go on
        if md5_hash is not None:
            md5_hash.update(chunk)
        parts.append(chunk)
    return Downloaded(None, total, sha.hexdigest(), md5_hash.hexdigest() if md5_hash is not None else "",
                      b"".join(parts))


def upstream_client(services: Services) -> UpstreamClient:
    return services.upstream
