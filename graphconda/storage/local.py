"""The local filesystem BlobStore: one file per key under a root directory.

Writes land in `root/.tmp/`, are fsync'd and renamed into place, so readers see the old
blob or the new one, never a mix. `put_many` writes a batch of temp files, flushes the
filesystem once (syncfs) instead of once per file, then renames them all and fsyncs each
directory once. Every blocking call runs in a worker thread. A full filesystem (ENOSPC, or
a quota) raises StorageFullError, other write failures StorageError; a failed write leaves
no temp file and never replaces the previous blob.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import stat as stat_mode
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from starlette.concurrency import run_in_threadpool

from graphconda.errors import BlobNotFoundError, InvalidNameError, StorageError, StorageFullError
from graphconda.storage.base import CHUNK_SIZE, BlobStat, check_key, check_prefix

TMP_DIR = ".tmp"  # check_key refuses dot-names, so no key can land here
STALE_TMP_SECONDS = 24 * 3600
_LIST_BATCH = 500
_Batch = list[BlobStat]  # `list` is a method name in the class body
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_DIR_FSYNCS = 4  # past this many directories in one put_many, one syncfs instead
PROBE_BYTES = 64 * 1024  # what check() writes: a store that cannot take this cannot take an upload


@contextmanager
def _writing(what: str) -> Iterator[None]:
    """OS errors of a write as storage errors: full is its own kind (HTTP 507, readiness says so)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StorageFullError(f"no space left on the storage filesystem to store {what}") from exc
        raise StorageError(f"cannot store {what}: {exc}") from exc


def _stat_of(key: str, st: os.stat_result) -> BlobStat:
    return BlobStat(key=key, size=st.st_size, mtime=st.st_mtime_ns / 1e9, etag=f'"{st.st_size:x}-{st.st_mtime_ns:x}"')


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> list[Path]:
    """`mkdir -p`, returning the parents of the directories it made (outermost first): their
    entries are durable only once those parents are fsynced, like a renamed file's."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with suppress(FileExistsError):
            directory.mkdir()
    return [directory.parent for directory in reversed(missing)]


def _seal(fd: int, *, sync: bool = True) -> os.stat_result:
    """Stamp a fresh mtime (coarse kernel timestamps could repeat an etag), make it durable."""
    now = time.time_ns()
    os.utime(fd, ns=(now, now))
    os.fchmod(fd, 0o644)
    if sync:
        os.fsync(fd)
    return os.fstat(fd)


def _libc(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True), name)
    except (OSError, AttributeError):
        return None


_SYNCFS = _libc("syncfs")
_SYNC_FILE_RANGE = _libc("sync_file_range")
if _SYNC_FILE_RANGE is not None:
    _SYNC_FILE_RANGE.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Have the kernel start writing the file's dirty pages to disk now, without waiting for them
    (Linux `sync_file_range`; elsewhere nothing). A file that will be made durable later (a sync
    stores a batch with one syncfs) then costs that flush little: its bytes went to disk while
    other downloads ran (100 files of 1 MiB: a syncfs right after took 50 ms, 2-20 ms like this)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # a hint: its failure changes nothing


def _sync_filesystem(path: Path) -> None:
    """Make every written file on `path`'s filesystem durable: one journal flush for a whole batch."""
    if _SYNCFS is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()  # no syncfs (not Linux): flush everything


def _discard(f: BinaryIO, tmp: Path) -> None:
    f.close()
    tmp.unlink(missing_ok=True)


class LocalBlobStore:
    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._tmp = self.root / TMP_DIR

    # -- paths ---------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """The file for a key; cheap and lexical, so async code may call it."""
        return self.root / check_key(key)

    def _inside(self, path: Path, key: str) -> Path:
        """Refuse paths that leave the root through a symlink planted in the tree (touches disk)."""
        if not path.resolve().is_relative_to(self.root):
            raise InvalidNameError(f"invalid storage key {key!r}")
        return path

    def local_path(self, key: str) -> Path | None:
        try:
            return self._inside(self._path(key), key)
        except InvalidNameError:
            return None

    def _temp_file(self) -> tuple[int, Path]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        return fd, Path(name)

    def _install(self, tmp: Path, key: str, dest: Path) -> None:
        try:
            self._inside(dest, key)
            made = _make_dirs(dest.parent)
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageError(f"cannot store {key!r}: {exc}") from exc
        for directory in (*made, dest.parent):
            _fsync_dir(directory)

    # -- writing -------------------------------------------------------------------------

    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> BlobStat:
        dest = self._path(key)
        what = repr(key)
        if isinstance(data, bytes | bytearray | memoryview):
            with _writing(what):
                return await run_in_threadpool(self._put_bytes, key, dest, bytes(data))
        with _writing(what):
            fd, tmp = await run_in_threadpool(self._temp_file)
        f = os.fdopen(fd, "wb")
        try:
            async for chunk in data:  # the source's own errors pass through as they are
                with _writing(what):
                    await run_in_threadpool(f.write, chunk)
            with _writing(what):
                return await run_in_threadpool(self._finish, f, tmp, key, dest)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_discard, f, tmp)
            raise

    def _finish(self, f: BinaryIO, tmp: Path, key: str, dest: Path) -> BlobStat:
        """Make a written temp file durable and rename it over `dest`."""
        with f:
            f.flush()
            st = _seal(f.fileno())
        self._install(tmp, key, dest)
        return _stat_of(key, st)

    def _put_bytes(self, key: str, dest: Path, data: bytes) -> BlobStat:
        fd, tmp = self._temp_file()
        f = os.fdopen(fd, "wb")
        try:
            f.write(data)
            return self._finish(f, tmp, key, dest)
        except BaseException:
            _discard(f, tmp)
            raise

    async def put_many(self, items: Mapping[str, bytes | Path]) -> list[BlobStat]:
        dests = {key: self._path(key) for key in items}  # every key checked before anything is written
        with _writing(f"{len(items)} blobs"):
            return await run_in_threadpool(self._put_many, items, dests)

    def _put_many(self, items: Mapping[str, bytes | Path], dests: dict[str, Path]) -> list[BlobStat]:
        pending: list[tuple[str, Path, os.stat_result | None]] = []  # files not yet renamed: ours to delete
        stats: list[BlobStat] = []
        parents: set[Path] = set()
        device: int | None = None
        try:
            for key, data in items.items():
                if isinstance(data, Path):
                    if device is None:
                        self.root.mkdir(parents=True, exist_ok=True)
                        device = os.stat(self.root).st_dev
                    if os.stat(data).st_dev == device:
                        # Sealed where it is and renamed from there: on the same filesystem the syncfs
                        # covers it, and a mirror's batch saves a temp file and a rename per file.
                        pending.append((key, data, None))
                        fd = os.open(data, os.O_RDONLY)
                        try:
                            pending[-1] = (key, data, _seal(fd, sync=False))
                        finally:
                            os.close(fd)
                        continue
                fd, tmp = self._temp_file()
                pending.append((key, tmp, None))
                if isinstance(data, Path):  # another filesystem: copied into ours
                    os.close(fd)
                    self._adopt(data, tmp)
                    fd = os.open(tmp, os.O_RDWR)
                with os.fdopen(fd, "r+b" if isinstance(data, Path) else "wb") as f:
                    if not isinstance(data, Path):
                        f.write(data)
                        f.flush()
                    pending[-1] = (key, tmp, _seal(f.fileno(), sync=False))
            # Durable before any becomes visible under its key, and so before the caller goes on
            # to write anything (an index) that names them.
            _sync_filesystem(self.root)
            for done, (key, tmp, st) in enumerate(pending):
                dest = dests[key]
                try:
                    self._inside(dest, key)
                    if dest.parent not in parents:
                        parents.update(_make_dirs(dest.parent))
                        parents.add(dest.parent)
                    st = self._rename(tmp, dest) or st
                except OSError as exc:
                    pending = pending[done:]
                    raise StorageError(f"cannot store {key!r}: {exc}") from exc
                except BaseException:
                    pending = pending[done:]
                    raise
                assert st is not None
                stats.append(_stat_of(key, st))
            pending = []
        finally:
            for _, tmp, _ in pending:
                tmp.unlink(missing_ok=True)
        # Make the renames (and the directories made for them) durable. A batch spread over many
        # directories (a mirror's: one per package file) gets one flush of the filesystem: an fsync
        # per directory is a journal commit each on ext4 (100 took 0.3-0.5 s, one syncfs 0.03 s).
        if len(parents) > _DIR_FSYNCS:
            _sync_filesystem(self.root)
        else:
            for parent in parents:
                _fsync_dir(parent)
        return stats

    def _rename(self, src: Path, dest: Path) -> os.stat_result | None:
        """Rename a sealed file into place; across mounts of one filesystem (a bind mount, same
        device) by a durable copy into our temp dir first (its stat returned: a new file)."""
        try:
            os.replace(src, dest)
            return None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            fd, tmp = self._temp_file()
            try:
                with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(f, out, CHUNK_SIZE)
                    out.flush()
                    st = _seal(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            src.unlink()
            return st

    @staticmethod
    def _adopt(src: Path, tmp: Path) -> None:
        """Move a caller's file over our temp file `tmp` (copy it from another filesystem)."""
        try:
            os.replace(src, tmp)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with open(src, "rb") as f, open(tmp, "wb") as out:
                shutil.copyfileobj(f, out, CHUNK_SIZE)
            src.unlink()

    async def put_file(self, key: str, path: Path) -> BlobStat:
        dest = self._path(key)
        with _writing(repr(key)):
            return await run_in_threadpool(self._put_file, key, dest, Path(path))

    def _put_file(self, key: str, dest: Path, src: Path) -> BlobStat:
        self._inside(dest, key)
        with open(src, "r+b") as f:
            st = _seal(f.fileno())
        try:
            made = _make_dirs(dest.parent)
            os.replace(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise StorageError(f"cannot store {key!r}: {exc}") from exc
            # Another filesystem: copy into our tmp dir so the final rename stays atomic.
            fd, tmp = self._temp_file()
            out = os.fdopen(fd, "wb")
            try:
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out, CHUNK_SIZE)
                stat = self._finish(out, tmp, key, dest)
            except BaseException:
                _discard(out, tmp)
                raise
            src.unlink()
            return stat
        for directory in (*made, dest.parent):
            _fsync_dir(directory)
        return _stat_of(key, st)

    async def delete(self, key: str) -> None:
        await run_in_threadpool(self._delete, key, self._path(key))

    def _delete(self, key: str, path: Path) -> None:
        try:
            self._inside(path, key).unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            pass  # not a blob, so nothing to delete
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < 0):
            raise ValueError("byte range bounds must be >= 0")
        return self._stream(key, self._path(key), start, end)

    def _open_file(self, key: str, path: Path, start: int) -> BinaryIO:
        try:
            f = open(self._inside(path, key), "rb")  # noqa: SIM115 - closed by _stream
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFoundError(f"blob {key!r} does not exist") from None
        f.seek(start)
        return f

    async def _stream(self, key: str, path: Path, start: int, end: int | None) -> AsyncIterator[bytes]:
        f = await run_in_threadpool(self._open_file, key, path, start)
        try:
            remaining = None if end is None else max(end - start, 0)
            while remaining is None or remaining > 0:
                size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await run_in_threadpool(f.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            # Closing a read-only file does no I/O worth a thread, and this must also work
            # when the generator is finalised outside a running event loop.
            f.close()

    async def read(self, key: str) -> bytes:
        return await run_in_threadpool(self._read, key, self._path(key))

    def _read(self, key: str, path: Path) -> bytes:
        with self._open_file(key, path, 0) as f:
            return f.read()

    async def stat(self, key: str) -> BlobStat | None:
        return await run_in_threadpool(self._stat, key, self._path(key))

    def _stat(self, key: str, path: Path) -> BlobStat | None:
        try:
            st = os.stat(self._inside(path, key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _stat_of(key, st) if stat_mode.S_ISREG(st.st_mode) else None

    async def list(self, prefix: str = "") -> AsyncIterator[BlobStat]:
        base, _, partial = check_prefix(prefix).rpartition("/")
        batches = self._walk(base, partial)
        while (batch := await run_in_threadpool(next, batches, None)) is not None:
            for item in batch:
                yield item

    def _walk(self, base: str, partial: str) -> Iterator[_Batch]:
        """Batches of blobs under directory `base` whose first name there starts with `partial`."""
        batch: _Batch = []
        for key, st in self._entries(self.root / base, base, partial):
            batch.append(_stat_of(key, st))
            if len(batch) >= _LIST_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _entries(self, top: Path, base: str, partial: str = "") -> Iterator[tuple[str, os.stat_result]]:
        """(key, stat) of regular files under `top`, in key order, skipping symlinks and dot-names."""
        try:
            with os.scandir(top) as it:
                entries = [e for e in it if e.name.startswith(partial) and not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return
        entries = [e for e in entries if not e.is_symlink()]
        # Sort as full keys would sort: a directory "a" holds keys "a/...", which follow "a.txt".
        entries.sort(key=lambda e: e.name + "/" if e.is_dir() else e.name)
        for entry in entries:
            key = f"{base}/{entry.name}" if base else entry.name
            if entry.is_dir():
                yield from self._entries(Path(entry.path), key)
            elif entry.is_file():
                with suppress(FileNotFoundError):  # deleted meanwhile
                    yield key, entry.stat()

    async def presigned_url(self, key: str, expires: timedelta) -> str | None:
        check_key(key)
        return None

    # -- lifecycle -----------------------------------------------------------------------

    async def check(self) -> None:
        await run_in_threadpool(self._check)

    def _check(self) -> None:
        probe = None
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            fd, probe = self._temp_file()
            with os.fdopen(fd, "wb") as f:  # real bytes: an empty file fits on a full disk
                f.write(bytes(PROBE_BYTES))  # space is reserved at write time: no fsync needed to see ENOSPC
        except OSError as exc:
            if exc.errno in _FULL:
                raise StorageFullError(f"storage path {self.root} is full: {exc}") from exc
            raise StorageError(f"storage path {self.root} is not writable: {exc}") from exc
        finally:
            if probe is not None:
                probe.unlink(missing_ok=True)
        # Leftovers of writers that died mid-put.
        cutoff = time.time() - STALE_TMP_SECONDS
        with os.scandir(self._tmp) as it:
            for entry in it:
                with suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    async def close(self) -> None:
        return None
