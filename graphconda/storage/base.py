"""The BlobStore protocol: the handful of operations graphconda needs from a storage backend.

Storage knows nothing of the database or of conda; keys are relative '/'-separated paths.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from graphconda.errors import InvalidNameError

CHUNK_SIZE = 1024 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._+=@,-]+$")


@dataclass(frozen=True)
class BlobStat:
    key: str
    size: int
    mtime: float  # seconds since the epoch, UTC
    etag: str  # opaque and quoted (usable as an HTTP ETag), changes when the content changes


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root or confuse a backend.

    Segments may not start with '.': hidden names are left to the backends' own
    bookkeeping (the local store's `.tmp/`), so no key can ever collide with it.
    """
    if not key or len(key) > 1024 or key.startswith("/") or key.endswith("/"):
        raise InvalidNameError(f"invalid storage key {key!r}")
    for part in key.split("/"):
        if part.startswith(".") or not _SEGMENT.match(part):
            raise InvalidNameError(f"invalid storage key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key, or a key followed by '/'."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@runtime_checkable
class BlobStore(Protocol):
    backend: str  # "local" | "s3"

    async def put(self, key: str, data: bytes | AsyncIterable[bytes]) -> BlobStat:
        """Store bytes or a stream of unknown length; readers never see a partial blob."""

    async def put_file(self, key: str, path: Path) -> BlobStat:
        """Store a local file (consumed: it may be moved into place)."""

    async def put_many(self, items: Mapping[str, bytes | Path]) -> list[BlobStat]:
        """Store several blobs, each atomically, cheaper than one `put` each (one flush for all).

        A Path value is a local file, consumed as by `put_file` (big files never pass through memory).

        Every key is checked before anything is written. When it returns, every blob is
        durable, so an index naming them may be written next. On failure some may have
        been stored, none partially. Stats come back in the order of `items`.
        """

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a blob, clipped to its size (empty past the end).

        An invalid key raises at once; a missing blob raises BlobNotFoundError when
        iteration starts (no I/O happens before that).
        """

    async def read(self, key: str) -> bytes:
        """A whole (small) blob; raises BlobNotFoundError."""

    async def stat(self, key: str) -> BlobStat | None: ...

    async def delete(self, key: str) -> None:
        """Remove a blob; a missing key is not an error."""

    def list(self, prefix: str = "") -> AsyncIterator[BlobStat]:
        """Blobs whose key starts with `prefix`, in no promised order (S3 servers differ)."""

    async def presigned_url(self, key: str, expires: timedelta) -> str | None:
        """A URL that serves the blob without us, or None where the backend has none."""

    def local_path(self, key: str) -> Path | None:
        """The file behind a key where the backend is a filesystem (lets us sendfile)."""

    async def check(self) -> None:
        """Raise StorageError with a reason if the store is not usable."""

    async def close(self) -> None: ...
