"""Spooling streamed bodies to files: written and hashed by a few worker threads, fed from the event loop.

The event loop only hands over what it received (a queue put per 512 KiB: no thread hop, no
await); a worker joins those network reads into one block, writes it and feeds sha256 (and
md5) with it. hashlib lets go of the GIL for blocks this size, so hashing runs beside the
downloads instead of after each, and a body is verified moments after its last byte.

Few threads, on purpose: every hashlib call and write gives the GIL away and takes it back,
and each time the event loop may have to wait for it (measured in a sync: 0.2-0.3 ms per
`recv`, 1.3 ms per `send`). A thread per download (8 at once) put the download path at
0.72-0.80x of plain httpx2 downloads; one shared worker at 0.97x (BENCHMARKS.md). One worker
hashes ~480 MB/s (md5 675, sha256 1660 here), so `WORKERS` of them, each body pinned to one
so that its blocks stay in order. The queue is bounded in bytes per body: a slow disk holds the
download back instead of filling memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
import itertools
import queue
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import anyio

WORKERS = 2
GROUP = 512 * 1024  # network reads handed over together, joined into one block by the worker
BACKLOG = 4 * 1024 * 1024  # bytes of one body handed over and not yet written before its download waits

_Item = tuple["HashingWriter", list[bytes] | None]  # a block to write, or None: the body is complete


class Spooler:
    """The worker threads (per process; `close` stops them). Bodies are spooled with `writer`."""

    def __init__(self, workers: int = WORKERS) -> None:
        self._workers = workers
        self._queues: list[queue.SimpleQueue[_Item | None]] = []
        self._next: Iterator[queue.SimpleQueue[_Item | None]] = iter(())

    def writer(self, path: Path, *, md5: bool, sha256: bool = True, writeback: bool = False) -> HashingWriter:
        if not self._queues:  # the threads start with the first body
            self._queues = [queue.SimpleQueue() for _ in range(self._workers)]
            for n, q in enumerate(self._queues):
                threading.Thread(target=_work, args=(q,), name=f"graphconda-spool-{n}", daemon=True).start()
            self._next = itertools.cycle(self._queues)
        return HashingWriter(path, next(self._next), md5=md5, sha256=sha256, writeback=writeback)

    def close(self) -> None:
        """Stop the threads once they have done what they were given."""
        for q in self._queues:
            q.put(None)
        self._queues = []


def _work(items: queue.SimpleQueue[_Item | None]) -> None:
    while (item := items.get()) is not None:
        writer, group = item
        writer._take(group)


class HashingWriter:
    """`await write(chunk)` for each chunk, then `await close()` (or `await abort()` on any failure).

    After `close`, `size`, `sha256` and `md5` (None unless asked for) describe what was
    written. A failed write (disk full) is raised by the next `write` or by `close`.
    `writeback`: the file's writing to disk starts once it is complete (see `start_writeback`).
    """

    def __init__(self, path: Path, worker: queue.SimpleQueue[_Item | None], *, md5: bool, sha256: bool = True,
                 writeback: bool = False) -> None:
        self.sha256: Any = hashlib.sha256() if sha256 else None
        self.md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self.size = 0
        self._path = path
        self._worker = worker
        self._writeback = writeback
        self._group: list[bytes] = []  # network reads not yet handed over
        self._group_size = 0
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()  # the worker closed the file
        self._ended = False  # the end was handed over
        # Worker side.
        self._file: IO[bytes] | None = None
        self._error: BaseException | None = None
        self._aborted = False
        self._lock = threading.Lock()
        self._queued = 0  # bytes handed over and not yet written; guarded by _lock
        self._waiter: asyncio.Future[None] | None = None  # the download waiting for room; guarded by _lock
        self._stopped = False  # failed or closed: nothing more is written; guarded by _lock

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._group.append(chunk)
        self._group_size += len(chunk)
        if self._group_size >= GROUP:
            await self._hand_over()

    async def _hand_over(self) -> None:
        group, size = self._group, self._group_size
        self._group, self._group_size = [], 0
        waiter: asyncio.Future[None] | None = None
        with self._lock:
            if self._stopped:  # the worker failed: nothing will be written
                waiter = self._done
            else:
                self._queued += size
                if self._queued > BACKLOG:
                    waiter = self._waiter = self._loop.create_future()
        self._worker.put((self, group))
        if waiter is not None:
            await waiter

    async def close(self) -> None:
        """Everything is written: wait until the worker has written, hashed and closed the file."""
        if self._group:
            await self._hand_over()
        self._end()
        await self._done

    async def abort(self) -> None:
        """Stop (what is queued is dropped) and wait until the file is closed: the caller may delete it."""
        self._aborted = True
        self._end()
        with anyio.CancelScope(shield=True):
            await asyncio.wait([self._done])
        if not self._done.cancelled():
            self._done.exception()  # retrieved: the caller is failing already

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._worker.put((self, None))

    # --- in the worker thread ------------------------------------------------------------

    def _take(self, group: list[bytes] | None) -> None:
        if group is None:
            self._finish()
            return
        block = group[0] if len(group) == 1 else b"".join(group)
        if self._error is None and not self._aborted:
            try:
                if self._file is None:
                    self._file = open(self._path, "wb")  # noqa: SIM115 - closed by _finish or _fail
                if self.sha256 is not None:
                    self.sha256.update(block)
                if self.md5 is not None:
                    self.md5.update(block)
                self._file.write(block)
            except Exception as exc:
                self._fail(exc)
        self._written(len(block))

    def _finish(self) -> None:
        if self._error is not None:
            return  # settled when it failed
        try:
            if self._file is None:
                self._file = open(self._path, "wb")  # noqa: SIM115 - an empty body
            if self._writeback and not self._aborted:
                self._file.flush()
                start_writeback(self._file.fileno())
            self._file.close()
        except Exception as exc:
            self._fail(exc)
            return
        self._stop(None)

    def _fail(self, exc: Exception) -> None:
        """Close the file at once and tell the download, which may still be sending blocks (dropped)."""
        self._error = exc
        if self._file is not None:
            with suppress(OSError):
                self._file.close()
        self._stop(exc)

    def _stop(self, error: BaseException | None) -> None:
        with self._lock:
            self._stopped = True
            waiter, self._waiter = self._waiter, None
        with suppress(RuntimeError):  # the loop is closed: nobody waits any more
            if waiter is not None:
                self._loop.call_soon_threadsafe(_settle, waiter, None)
            self._loop.call_soon_threadsafe(_settle, self._done, error)

    def _written(self, size: int) -> None:
        with self._lock:
            self._queued -= size
            waiter = self._waiter
            if waiter is None or self._queued > BACKLOG // 2:
                return
            self._waiter = None
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, waiter, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(None)


def _libc_sync_file_range() -> Any:
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return function


_SYNC_FILE_RANGE = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Have the kernel start writing the file's dirty pages to disk now, without waiting for them
    (Linux `sync_file_range`; elsewhere nothing). A file that will be made durable later (a sync
    stores a batch with one syncfs) then costs that flush little: its bytes went to disk while
    other downloads ran (100 files of 1 MiB: a syncfs right after took 50 ms, 2-20 ms like this)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # a hint: its failure changes nothing
