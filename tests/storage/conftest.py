"""Storage fixtures: `store` runs a test once per backend (local, and S3 on SeaweedFS).

The `seaweedfs` fixture itself is registered by tests/conftest.py (tests/fixtures/seaweedfs.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from graphconda.storage import BlobStore
from graphconda.storage.local import LocalBlobStore
from graphconda.storage.s3 import S3BlobStore
from tests.fixtures.seaweedfs import SeaweedFS

CONTRACT_BUCKET = "contract"


@pytest.fixture
async def local_store(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.check()
    yield store
    await store.close()


@pytest.fixture
async def s3_store(seaweedfs: SeaweedFS) -> AsyncIterator[S3BlobStore]:
    """An S3 store in a shared bucket, under a prefix of its own so tests never see each other."""
    store = S3BlobStore(seaweedfs.s3_settings(bucket=CONTRACT_BUCKET, prefix=f"t-{uuid.uuid4().hex[:12]}/"))
    await store.check()
    yield store
    await store.close()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest) -> BlobStore:
    backend: BlobStore = request.getfixturevalue(f"{request.param}_store")
    return backend
