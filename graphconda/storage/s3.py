"""The S3 BlobStore: any S3-compatible server through the synchronous minio client.

minio blocks, so every call to it happens here and inside a worker thread (principle 3).
Uploads of unknown length are spooled to a temporary file first: minio then knows the size,
sends small blobs in one PUT and large ones in bounded multipart chunks, never the whole
blob in memory.
"""

from __future__ import annotations

import asyncio
import io
import math
import tempfile
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import anyio
import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import check_bucket_name
from starlette.concurrency import run_in_threadpool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError

from graphconda.errors import BlobNotFoundError, ConfigError, InvalidNameError, StorageError, StorageFullError
from graphconda.settings import S3Settings
from graphconda.storage.base import CHUNK_SIZE, BlobStat, check_key, check_prefix

# minio keeps up to 2 * PARALLEL_PARTS parts alive during a multipart upload (each worker
# thread holds on to its last part until it takes the next), so this bounds memory at 20 MiB.
PART_SIZE = 5 * 1024 * 1024  # the S3 minimum
PARALLEL_PARTS = 2
PUT_MANY_CONCURRENCY = 16  # below the connection pool's size
_MAX_PARTS = 10_000
_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"})
# Out of space or over a quota, as S3-compatible servers say it (MinIO, Ceph RGW, others send HTTP 507).
_FULL = frozenset({"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "QuotaExceeded", "InsufficientStorage"})
_LIST_BATCH = 500
_Batch = list[BlobStat]  # `list` is a method name in the class body


def _pool(*, connect: float, read: float, retries: int) -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect, read=read),
        retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        maxsize=32,  # one per concurrent worker thread, so connections are reused, not dropped
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
    )


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept "host:port" as documented, and forgive a URL with a scheme."""
    for scheme, is_secure in (("https://", True), ("http://", False)):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme) :].rstrip("/"), is_secure
    return endpoint, secure


def _reason(exc: Exception) -> str:
    """One line out of urllib3's nested connection errors."""
    inner = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    text = str(inner)
    if text.startswith("HTTP") and "): " in text:  # "HTTPConnection(host=..., port=...): why"
        text = text.split("): ", 1)[1]
    return " ".join(text.split())


def _quote(etag: str | None) -> str:
    return f'"{(etag or "").strip(chr(34))}"'


class S3BlobStore:
    backend = "s3"

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.endpoint, secure = _split_endpoint(settings.endpoint, settings.secure)
        prefix = settings.prefix.strip("/")
        if prefix:
            try:
                check_key(prefix)
            except InvalidNameError as exc:
                raise ConfigError(f"invalid setting 'storage.s3.prefix': {exc}") from None
        self._prefix = f"{prefix}/" if prefix else ""
        try:
            check_bucket_name(self.bucket, strict=True)
        except ValueError as exc:
            raise ConfigError(f"invalid setting 'storage.s3.bucket': {exc}") from None
        # Normal operations may be slow (big parts); check() must fail fast.
        self._pools = [_pool(connect=5, read=60, retries=3), _pool(connect=2, read=10, retries=1)]
        try:
            self._client, self._probe = (self._make_client(secure, pool) for pool in self._pools)
        except ValueError as exc:
            raise ConfigError(f"invalid setting 'storage.s3.endpoint': {exc}") from None
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def _make_client(self, secure: bool, pool: urllib3.PoolManager) -> Minio:
        return Minio(
            endpoint=self.endpoint,
            access_key=self.settings.access_key or None,
            secret_key=self.settings.secret_key or None,
            secure=secure,
            region=self.settings.region or None,
            http_client=pool,
        )

    def _name(self, key: str) -> str:
        return self._prefix + check_key(key)

    # -- blocking helpers, only ever run in worker threads --------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except S3Error as exc:
            status = getattr(exc.response, "status", None)
            if exc.code in _FULL or status == 507:
                raise StorageFullError(f"S3 {what} refused for lack of space on {self.endpoint}/{self.bucket}: "
                                       f"{exc.code}") from exc
            raise StorageError(f"S3 {what} failed on {self.endpoint}/{self.bucket}: {exc.code}: {exc.message}") from exc
        except MinioException as exc:
            raise StorageError(f"S3 {what} failed on {self.endpoint}/{self.bucket}: {_reason(exc)}") from exc
        except HTTPError as exc:
            inner = exc.reason if isinstance(exc, MaxRetryError) else exc
            if isinstance(inner, ConnectTimeoutError):  # also refused and unresolvable
                raise StorageError(f"S3 endpoint {self.endpoint} unreachable: {_reason(exc)}") from exc
            raise StorageError(f"S3 {what} failed on {self.endpoint}/{self.bucket}: {_reason(exc)}") from exc

    def _ensure_bucket(self, client: Minio | None = None, *, force: bool = False) -> None:
        if self._bucket_ready and not force:
            return
        client = client or self._client
        with self._bucket_lock, self._errors("bucket check"):
            if not client.bucket_exists(bucket_name=self.bucket):
                try:
                    client.make_bucket(bucket_name=self.bucket, location=self.settings.region or None)
                except S3Error as exc:  # another process won the race
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._bucket_ready = True

    def _upload(self, key: str, stream: BinaryIO, size: int) -> BlobStat:
        self._ensure_bucket()
        part_size = max(PART_SIZE, math.ceil(size / _MAX_PARTS / 2**20) * 2**20)
        with self._errors(f"upload of {key!r}"):
            result = self._client.put_object(
                bucket_name=self.bucket,
                object_name=self._name(key),
                data=stream,
                length=size,
                part_size=part_size,
                num_parallel_uploads=PARALLEL_PARTS,
            )
        return BlobStat(key=key, size=size, mtime=time.time(), etag=_quote(result.etag))

    def _upload_file(self, key: str, path: Path) -> BlobStat:
        with open(path, "rb") as f:
            stat = self._upload(key, f, path.stat().st_size)
        path.unlink()
        return stat

    def _stat(self, key: str) -> BlobStat | None:
        self._ensure_bucket()
        try:
            with self._errors(f"stat of {key!r}"):
                obj = self._client.stat_object(bucket_name=self.bucket, object_name=self._name(key))
        except StorageError as exc:
            if isinstance(exc.__cause__, S3Error) and exc.__cause__.code in _MISSING:
                return None
            raise
        mtime = obj.last_modified.timestamp() if obj.last_modified else 0.0
        return BlobStat(key=key, size=obj.size or 0, mtime=mtime, etag=_quote(obj.etag))

    def _get(self, key: str, start: int, end: int | None) -> urllib3.BaseHTTPResponse | None:
        """The response for a range, or None when the range is empty."""
        self._ensure_bucket()
        if end is not None and end <= start:
            if self._stat(key) is None:
                raise BlobNotFoundError(f"blob {key!r} does not exist")
            return None
        try:
            with self._errors(f"read of {key!r}"):
                return self._client.get_object(
                    bucket_name=self.bucket,
                    object_name=self._name(key),
                    offset=start,
                    length=0 if end is None else end - start,  # 0: to the end
                )
        except StorageError as exc:
            code = exc.__cause__.code if isinstance(exc.__cause__, S3Error) else None
            if code in _MISSING:
                raise BlobNotFoundError(f"blob {key!r} does not exist") from None
            if code == "InvalidRange":  # starts at or past the end
                if self._stat(key) is None:
                    raise BlobNotFoundError(f"blob {key!r} does not exist") from None
                return None
            raise

    def _next_chunk(self, key: str, chunks: Iterator[bytes]) -> bytes | None:
        with self._errors(f"read of {key!r}"):
            return next(chunks, None)

    def _read(self, key: str) -> bytes:
        response = self._get(key, 0, None)
        if response is None:
            return b""
        try:
            with self._errors(f"read of {key!r}"):
                return response.read(decode_content=False)
        finally:
            response.close()
            response.release_conn()

    def _delete(self, key: str) -> None:
        self._ensure_bucket()
        with self._errors(f"delete of {key!r}"):
            self._client.remove_object(bucket_name=self.bucket, object_name=self._name(key))

    def _list(self, prefix: str) -> Iterator[_Batch]:
        self._ensure_bucket()
        batch: _Batch = []
        with self._errors("list"):
            objects = self._client.list_objects(bucket_name=self.bucket, prefix=self._prefix + prefix, recursive=True)
            for obj in objects:
                name = obj.object_name or ""
                if obj.is_dir or name.endswith("/"):
                    continue
                mtime = obj.last_modified.timestamp() if obj.last_modified else 0.0
                batch.append(BlobStat(name[len(self._prefix) :], obj.size or 0, mtime, _quote(obj.etag)))
                if len(batch) >= _LIST_BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _presign(self, key: str, expires: timedelta) -> str:
        with self._errors(f"presigning {key!r}"):
            return self._client.presigned_get_object(
                bucket_name=self.bucket, object_name=self._name(key), expires=expires
            )

    # -- the BlobStore protocol -----------------------------------------------------------

    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> BlobStat:
        check_key(key)
        if isinstance(data, bytes | bytearray | memoryview):
            blob = bytes(data)
            return await run_in_threadpool(self._upload, key, io.BytesIO(blob), len(blob))
        spool = await run_in_threadpool(tempfile.TemporaryFile)
        try:
            size = 0
            async for chunk in data:
                await run_in_threadpool(spool.write, chunk)
                size += len(chunk)
            await run_in_threadpool(spool.seek, 0)
            return await run_in_threadpool(self._upload, key, spool, size)
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(spool.close)

    async def put_many(self, items: Mapping[str, bytes | Path]) -> list[BlobStat]:
        for key in items:
            check_key(key)
        # A PUT is durable when it returns; the batch only saves round-trip time by overlapping them.
        limit = anyio.Semaphore(PUT_MANY_CONCURRENCY)

        async def one(key: str, blob: bytes | Path) -> BlobStat:
            async with limit:
                if isinstance(blob, Path):
                    return await run_in_threadpool(self._upload_file, key, blob)
                return await run_in_threadpool(self._upload, key, io.BytesIO(blob), len(blob))

        tasks = [asyncio.ensure_future(one(key, blob if isinstance(blob, Path) else bytes(blob)))
                 for key, blob in items.items()]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def put_file(self, key: str, path: Path) -> BlobStat:
        check_key(key)
        return await run_in_threadpool(self._upload_file, key, Path(path))

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if start < 0 or (end is not None and end < 0):
            raise ValueError("byte range bounds must be >= 0")
        return self._stream(check_key(key), start, end)

    async def _stream(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        response = await run_in_threadpool(self._get, key, start, end)
        if response is None:
            return
        finished = False
        try:
            chunks = response.stream(CHUNK_SIZE, decode_content=False)  # the stored bytes, as stored
            while (chunk := await run_in_threadpool(self._next_chunk, key, chunks)) is not None:
                yield chunk
            finished = True
        finally:
            # Cheap socket calls, done inline so they also run when the generator is
            # finalised outside the loop. An unfinished body poisons the connection: close it.
            if not finished:
                response.close()
            response.release_conn()

    async def read(self, key: str) -> bytes:
        return await run_in_threadpool(self._read, check_key(key))

    async def stat(self, key: str) -> BlobStat | None:
        return await run_in_threadpool(self._stat, check_key(key))

    async def delete(self, key: str) -> None:
        await run_in_threadpool(self._delete, check_key(key))

    async def list(self, prefix: str = "") -> AsyncIterator[BlobStat]:
        batches = self._list(check_prefix(prefix))
        while (batch := await run_in_threadpool(next, batches, None)) is not None:
            for item in batch:
                yield item

    async def presigned_url(self, key: str, expires: timedelta) -> str | None:
        return await run_in_threadpool(self._presign, check_key(key), expires)

    def local_path(self, key: str) -> Path | None:
        return None

    async def check(self) -> None:
        await run_in_threadpool(self._ensure_bucket, self._probe, force=True)

    async def close(self) -> None:
        for pool in self._pools:
            pool.clear()
