"""The upstream client: every request graphconda makes to an upstream conda channel goes through here.

Requests run on urllib3 in a pool of threads, bodies read a MiB at a time: a blocking read
of that size costs less than sixteen 64 KiB reads awaited on the event loop, and hashing
and writing in the same thread run beside the event loop (hashlib and file writes let go
of the GIL). 300 real-size package files (303 MB, 8 at once, loopback nginx) downloaded,
sha256'd, md5'd and written in 0.9 s, where plain async httpx2 with sha256 alone took
1.5 s; a small file costs what it does through httpx2 (0.56 ms against 0.60; `requests`
took 1.06). TLS trust and proxies are httpx2's: its certificate store (SSL_CERT_FILE /
SSL_CERT_DIR honoured) and HTTP(S)_PROXY / ALL_PROXY / NO_PROXY from the environment.

It adds what talking to someone else's server needs: a timeout per request
(`mirror.upstream_timeout_seconds`: a stalled upstream fails instead of holding a client),
retries with exponential backoff that honour `Retry-After`, conditional requests (ETag /
Last-Modified), downloads streamed to a file and verified (size, sha256, md5) before anyone
may store them, a negative cache of 404s, and a circuit breaker per upstream origin (after
`circuit_failures` consecutive failures it is not asked for `circuit_open_seconds`, as
Nexus's auto-block).

Upstream URLs may carry credentials (`https://user:secret@host/...` or a conda token
`/t/<token>/`); user info is sent as Basic auth. They never appear in logs or in
error messages: everything printed goes through `redact`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import anyio
import httpx2
import urllib3
import urllib3.exceptions

from graphconda import __version__
from graphconda.errors import UpstreamError, UpstreamMismatchError, UpstreamTimeoutError
from graphconda.services import authz, ops_metrics
from graphconda.services.authz import Actor
from graphconda.services.context import Services
from graphconda.settings import MirrorSettings
from graphconda.storage.local import start_writeback

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


def split_auth(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without user info, and that user info as Basic auth (so no URL we request carries a password)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), (unquote(user),
                                                                                       unquote(password))


class _RedactingFilter(logging.Filter):
    """urllib3 logs every request path at DEBUG (and retries at WARNING): a conda token in a path
    must not reach the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(str(a)) if "/t/" in str(a) or "@" in str(a) else a for a in record.args)
        return True


_FILTER = _RedactingFilter()


def join(base: str, path: str) -> str:
    """`path` under the channel URL `base` (with or without a trailing slash)."""
    return base.rstrip("/") + "/" + path


def origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
    except ValueError:  # not a URL (channels validate theirs; one stored before that may not be)
        raise UpstreamError(f"the upstream URL {redact(url)} is not a valid http(s) URL") from None


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
    """An attempt failed in a way worth another (5xx, 429, connection refused or reset, truncated body)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _Stalled(Exception):
    """No connection or no next bytes within the timeout: not retried (the client waiting on us has waited)."""


class _Looped(Exception):
    """Too many redirects."""


class _Stopped(Exception):
    """The caller was cancelled."""


class _Call:
    """One attempt, seen from both sides: the thread reading it and the caller that may cancel it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._response: urllib3.BaseHTTPResponse | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def reading(self, response: urllib3.BaseHTTPResponse) -> None:
        """The thread has the response: from now on a stop shuts its socket."""
        with self._lock:
            self._response = response
            stopped = self._stopped
        if stopped:
            _interrupt(response)

    def stop(self) -> bool:
        """Stop the attempt; True when a response was being read (its socket is shut: the thread
        ends at once), False when it has not answered yet (the thread ends when it does, or at
        its timeout, having opened no file)."""
        with self._lock:
            self._stopped = True
            response = self._response
        if response is not None:
            _interrupt(response)
        return response is not None


def _interrupt(response: urllib3.BaseHTTPResponse) -> None:
    """Make a read blocked on the response's socket return at once (shutdown, unlike close, does)."""
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


T = TypeVar("T")
# Compressed transfer where upstream offers it (an index without a .zst: its .json gzipped on the
# wire, decoded as it is read), and a name upstream operators can tell apart.
_HEADERS = {**urllib3.make_headers(accept_encoding=True), "user-agent": f"graphconda/{__version__}"}
_CHUNK = 1 << 20  # bytes per blocking read (see the module docstring)
_THREADS = 64  # upstream requests at once per process; callers bound their own (mirror.concurrency)


@contextmanager
def _network() -> Iterator[None]:
    """Network failures as the retry loop knows them; anything else (a full disk) passes unchanged."""
    try:
        yield
    except urllib3.exceptions.LocationValueError:  # no host, an unknown scheme: asking again changes nothing
        raise UpstreamError("the upstream URL is not a valid http(s) URL") from None
    except urllib3.exceptions.HTTPError as exc:
        reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
        if isinstance(reason, urllib3.exceptions.ResponseError):  # redirects exhausted
            raise _Looped() from None
        if isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
                reason, urllib3.exceptions.NewConnectionError):  # refused is not a stall (a subclass, for history)
            raise _Stalled() from None
        raise _Retry(type(reason).__name__) from None


def _chunks(response: urllib3.BaseHTTPResponse, call: _Call) -> Iterator[bytes]:
    """The body (content-encoding undone), a MiB at a time; stops when the caller is cancelled."""
    stream = response.stream(_CHUNK, decode_content=True)
    while True:
        if call.stopped:
            raise _Stopped()
        with _network():
            chunk = next(stream, None)
        if chunk is None:
            return
        yield chunk


@dataclass(frozen=True)
class _Sink:
    """How a body is taken: into `path` (None: memory), at most `cap` bytes, hashed as asked."""

    path: Path | None
    cap: int | None
    too_large: Callable[[], Exception]
    sha256: bool = False
    md5: bool = False
    writeback: bool = False  # the file's writing to disk starts once it is complete (start_writeback)


def _take(response: urllib3.BaseHTTPResponse, sink: _Sink, call: _Call) -> Downloaded:
    """Write (or keep) and hash the body as it arrives; cancelled, remove the file."""
    if call.stopped:
        raise _Stopped()
    sha = hashlib.sha256() if sink.sha256 else None
    md5 = hashlib.md5(usedforsecurity=False) if sink.md5 else None
    parts: list[bytes] = []
    total = 0
    try:
        with open(sink.path, "wb") if sink.path is not None else _no_file() as f:
            for chunk in _chunks(response, call):
                total += len(chunk)
                if sink.cap is not None and total > sink.cap:
                    raise sink.too_large()
                if sha is not None:
                    sha.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                if f is not None:
                    f.write(chunk)
                else:
                    parts.append(chunk)
            if f is not None and sink.writeback:
                f.flush()
                start_writeback(f.fileno())
    finally:
        if call.stopped and sink.path is not None:
            sink.path.unlink(missing_ok=True)
    return Downloaded(sink.path, total, sha.hexdigest() if sha is not None else "",
                      md5.hexdigest() if md5 is not None else "", None if sink.path is not None else b"".join(parts))


@contextmanager
def _no_file() -> Iterator[None]:
    yield None


class UpstreamClient:
    """Per-process: the session and its threads, the negative cache and the circuit breakers."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings: MirrorSettings = services.settings.mirror
        self._missing: dict[str, float] = {}  # url -> monotonic time the 404 is forgotten
        self._failures: dict[str, int] = {}  # origin -> consecutive failures
        self._open_until: dict[str, float] = {}  # origin -> monotonic time it is asked again
        threads = max(_THREADS, 2 * self.settings.concurrency)
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="graphconda-upstream")
        timeout = self.settings.upstream_timeout_seconds
        # Our own retry loop decides about failures; urllib3 only follows redirects (20, as httpx2).
        self._pool_options: dict[str, Any] = {
            "maxsize": threads, "ssl_context": httpx2.create_ssl_context(),
            "timeout": urllib3.Timeout(connect=timeout, read=timeout),
            "retries": urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=20)}
        self._direct = urllib3.PoolManager(**self._pool_options)
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()
        for name in ("urllib3.connectionpool", "urllib3.poolmanager"):
            if _FILTER not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_FILTER)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._direct.clear()
        for pool in self._proxied.values():
            pool.clear()

    def _pool(self, url: str) -> urllib3.PoolManager:
        """Direct, or through the proxy the environment names for `url` (as httpx2 would)."""
        parts = urlsplit(url)
        proxies = getproxies()
        proxy = proxies.get(parts.scheme) or proxies.get("all")
        if not proxy or proxy_bypass(parts.hostname or ""):
            return self._direct
        with self._lock:
            pool = self._proxied.get(proxy)
            if pool is None:
                plain, auth = split_auth(proxy)
                headers = urllib3.make_headers(proxy_basic_auth=":".join(auth)) if auth else None
                pool = self._proxied[proxy] = urllib3.ProxyManager(plain, proxy_headers=headers, **self._pool_options)
        return pool

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

    def _retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
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

    async def _in_thread(self, attempt: Callable[[_Call], T]) -> T:
        """`attempt(call)` in an upstream thread. Cancelled while a body is read, the read is cut
        and the thread waited for (the caller may delete its file); while upstream has not
        answered yet, the thread is not waited for (that could take the whole timeout) and ends
        without writing anything."""
        call = _Call()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._threads, attempt, call)
        except RuntimeError as exc:  # shut down
            raise UpstreamError("the server is shutting down") from exc
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if call.stop():
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([future])
            future.add_done_callback(_retrieve)
            raise

    async def _attempts(self, url: str, attempt: Callable[[_Call], T]) -> T:
        """Run `attempt` with retries; map failures to UpstreamError / UpstreamTimeoutError."""
        self._check_circuit(url)
        last = "no attempt"
        timed_out = False
        for attempt_number in range(self.settings.retries + 1):
            try:
                result = await self._in_thread(attempt)
            except _Retry as retry:
                ops_metrics.count_upstream_error("http_status" if retry.reason.startswith("HTTP") else "connection")
                last, timed_out = retry.reason, False
                delay = self._delay(attempt_number, retry.delay)
                if retry.delay is not None and retry.delay > self.settings.max_backoff_seconds:
                    break  # told to come back later than we may wait
            except _Stalled:
                # A stalled upstream is not retried: the client waiting on us has waited long enough.
                ops_metrics.count_upstream_error("timeout")
                last, timed_out = f"no answer within {self.settings.upstream_timeout_seconds:g} s", True
                break
            except _Looped:
                ops_metrics.count_upstream_error("redirects")
                last, timed_out = "too many redirects (a redirect loop?)", False
                break
            except UpstreamError:
                # Refused in a way retrying cannot fix (another 4xx, too large, not what the record says).
                ops_metrics.count_upstream_error("refused")
                raise
            else:
                self._succeeded(url)
                return result
            if attempt_number < self.settings.retries:
                log.info("upstream %s: %s; retrying in %.1f s", redact(url), last, delay)
                await asyncio.sleep(delay)
        self._failed(url)
        message = f"upstream {redact(url)} failed: {last}"
        log.warning(message)
        raise (UpstreamTimeoutError if timed_out else UpstreamError)(message)

    @contextmanager
    def _request(self, method: str, url: str, call: _Call,
                 headers: dict[str, str] | None = None) -> Iterator[urllib3.BaseHTTPResponse]:
        """The response (body not read yet) to `method url`, redirects followed (user info sent as
        Basic auth, and dropped on a redirect to another host). Its connection goes back to the
        pool when the body was read to the end, else it is closed."""
        plain, auth = split_auth(url)
        headers = {**_HEADERS, **(headers or {})}
        if auth is not None:
            headers.update(urllib3.make_headers(basic_auth=":".join(auth)))
        with _network():
            response = self._pool(plain).request(method, plain, headers=headers, preload_content=False,
                                                 decode_content=True)
        try:
            call.reading(response)
            yield response
        finally:
            if not response.closed:
                response.close()
            response.release_conn()

    def _retry_if_transient(self, response: urllib3.BaseHTTPResponse) -> None:
        """A status worth asking again for (after Retry-After, when upstream gives one)."""
        if response.status in _RETRY_STATUS:
            raise _Retry(f"HTTP {response.status}", self._retry_after(response))

    def _expect_200(self, url: str, response: urllib3.BaseHTTPResponse) -> None:
        self._retry_if_transient(response)
        if response.status != 200:
            raise UpstreamError(f"upstream {redact(url)} answered HTTP {response.status}")

    async def fetch(self, url: str, *, etag: str = "", last_modified: str = "",
                    max_bytes: int | None = None) -> Fetched:
        """GET an index file; 304 when the validators still match, 404 (remembered a while) when absent."""
        return await self._get_index(url, etag, last_modified, None, max_bytes or self.settings.max_index_bytes)

    async def fetch_to_file(self, url: str, path: Path, *, etag: str = "", last_modified: str = "") -> Fetched:
        """Like `fetch`, the body streamed into `path` instead of memory (`body` stays empty)."""
        return await self._get_index(url, etag, last_modified, path, self.settings.max_index_bytes)

    async def _get_index(self, url: str, etag: str, last_modified: str, path: Path | None, limit: int) -> Fetched:
        """The conditional GET (with retries) behind `fetch` and `fetch_to_file`."""
        if self.known_missing(url):
            return Fetched(404)
        headers = {}
        if etag:
            headers["if-none-match"] = etag
        if last_modified:
            headers["if-modified-since"] = last_modified
        sink = _Sink(path, limit, lambda: _too_large(url, limit))

        def attempt(call: _Call) -> Fetched:
            with self._request("GET", url, call, headers) as response:
                if response.status in (404, 410):
                    return Fetched(404)
                if response.status == 304:
                    return Fetched(304, b"", response.headers.get("etag", etag),
                                   response.headers.get("last-modified", last_modified))
                self._expect_200(url, response)
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise _too_large(url, limit)
                body = _take(response, sink, call)
                return Fetched(200, body.data or b"", response.headers.get("etag", ""),
                               response.headers.get("last-modified", ""))

        fetched: Fetched = await self._attempts(url, attempt)
        if fetched.status == 404:
            self._remember_missing(url)
        return fetched

    async def exists(self, url: str) -> bool:
        """Whether upstream has the file (a HEAD request; 404s remembered like fetch's)."""
        if self.known_missing(url):
            return False

        def attempt(call: _Call) -> bool:
            with self._request("HEAD", url, call) as response:
                if response.status in (404, 410):
                    return False
                self._retry_if_transient(response)
                return response.status < 400

        found: bool = await self._attempts(url, attempt)
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
        if size is not None:
            sink = _Sink(path, size, lambda: UpstreamMismatchError(
                f"upstream {redact(url)} sent more than the {size} bytes of its record"), True, with_md5, True)
        else:
            sink = _Sink(path, limit if path is None else None, lambda: _too_large(url, limit or 0), True, with_md5,
                         True)

        def attempt(call: _Call) -> Downloaded | None:
            with self._request("GET", url, call) as response:
                if response.status in (404, 410):
                    return None
                self._expect_200(url, response)
                return _take(response, sink, call)

        done: Downloaded | None = await self._attempts(url, attempt)
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


def _retrieve(future: Any) -> None:
    """A cancelled caller's attempt ended: its outcome is nobody's (retrieved so asyncio does not log it)."""
    if not future.cancelled():
        future.exception()


def _too_large(url: str, limit: int) -> UpstreamError:
    return UpstreamError(f"upstream {redact(url)} is larger than {limit} bytes")


def upstream_client(services: Services) -> UpstreamClient:
    return services.upstream
