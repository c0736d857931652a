"""Blob storage: the BlobStore protocol and `open_store`, which picks the configured backend.

Backends are imported lazily so that a local deployment never imports minio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphconda.storage.base import CHUNK_SIZE, BlobStat, BlobStore, check_key, check_prefix

if TYPE_CHECKING:
    from graphconda.settings import Settings

__all__ = ["CHUNK_SIZE", "BlobStat", "BlobStore", "check_key", "check_prefix", "open_store"]


def open_store(settings: Settings) -> BlobStore:
    """The store `settings.storage` describes; no I/O yet (call `check()` for that)."""
    if settings.storage.backend == "s3":
        from graphconda.storage.s3 import S3BlobStore

        return S3BlobStore(settings.storage.s3)
    from graphconda.storage.local import LocalBlobStore

    return LocalBlobStore(settings.storage_path)
