"""What only the S3 backend does: buckets, prefixes, endpoint errors, connection hygiene."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import urllib3
from minio import Minio

from graphconda.errors import ConfigError, StorageError
from graphconda.settings import S3Settings, Settings
from graphconda.storage import open_store
from graphconda.storage.s3 import S3BlobStore
from tests.fixtures.seaweedfs import SeaweedFS, free_ports

pytestmark = pytest.mark.s3


def test_open_store_picks_s3() -> None:
    settings = Settings.model_validate({"storage": {"backend": "s3", "s3": {"endpoint": "127.0.0.1:9"}}})
    assert isinstance(open_store(settings), S3BlobStore)


@pytest.mark.parametrize(
    ("values", "key"),
    [({"bucket": "No_Such-Bucket!"}, "bucket"), ({"prefix": "../up"}, "prefix"), ({"endpoint": "a/b/c"}, "endpoint")],
)
def test_bad_settings_are_config_errors(values: dict[str, str], key: str) -> None:
    settings = Settings.model_validate({"storage": {"backend": "s3", "s3": {"endpoint": "127.0.0.1:9", **values}}})
    with pytest.raises(ConfigError, match=f"storage.s3.{key}"):
        open_store(settings)


async def test_check_creates_the_bucket(seaweedfs: SeaweedFS) -> None:
    bucket = f"fresh-{uuid.uuid4().hex[:8]}"
    store = S3BlobStore(seaweedfs.s3_settings(bucket=bucket))
    try:
        await store.check()
        await store.check()  # idempotent
        await store.put("k", b"v")
        assert await store.read("k") == b"v"
    finally:
        await store.close()


async def test_first_use_creates_the_bucket(seaweedfs: SeaweedFS) -> None:
    store = S3BlobStore(seaweedfs.s3_settings(bucket=f"lazy-{uuid.uuid4().hex[:8]}"))
    try:
        assert await store.stat("k") is None
    finally:
        await store.close()


async def test_prefix_is_prepended_and_isolates(seaweedfs: SeaweedFS) -> None:
    bucket = f"prefixed-{uuid.uuid4().hex[:8]}"
    one = S3BlobStore(seaweedfs.s3_settings(bucket=bucket, prefix="/one/"))
    two = S3BlobStore(seaweedfs.s3_settings(bucket=bucket, prefix="two"))
    pool = urllib3.PoolManager()
    raw = Minio(
        endpoint=seaweedfs.endpoint,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
        secure=False,
        http_client=pool,
    )
    try:
        await one.put("ch/a", b"1")
        await two.put("ch/b", b"2")
        assert [s.key async for s in one.list("")] == ["ch/a"]
        assert [s.key async for s in two.list("ch/")] == ["ch/b"]
        assert await two.stat("ch/a") is None
        names = sorted(o.object_name for o in raw.list_objects(bucket_name=bucket, recursive=True))
        assert names == ["one/ch/a", "two/ch/b"]
    finally:
        await one.close()
        await two.close()
        pool.clear()


async def test_endpoint_may_be_a_url(seaweedfs: SeaweedFS) -> None:
    store = S3BlobStore(seaweedfs.s3_settings(endpoint=seaweedfs.url, secure=True, bucket="contract"))
    try:
        await store.check()  # "http://" won over secure=True
    finally:
        await store.close()


async def test_unreachable_endpoint_fails_fast() -> None:
    port = free_ports(3)[0]  # nothing listens there
    store = S3BlobStore(S3Settings.model_validate({"endpoint": f"127.0.0.1:{port}", "secure": False}))
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            await store.check()
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert message.startswith(f"S3 endpoint 127.0.0.1:{port} unreachable: ")
        assert "Connection refused" in message and "\n" not in message
        with pytest.raises(StorageError, match="unreachable"):
            await store.stat("k")
    finally:
        await store.close()


async def test_wrong_credentials_are_reported(seaweedfs: SeaweedFS) -> None:
    store = S3BlobStore(seaweedfs.s3_settings(secret_key="wrong-secret", bucket="contract"))
    try:
        with pytest.raises(StorageError, match=r"^S3 bucket check failed on .*: (SignatureDoesNotMatch|AccessDenied)"):
            await store.check()
    finally:
        await store.close()


async def test_abandoned_download_releases_its_connection(s3_store: S3BlobStore) -> None:
    """A reader that stops early must not leave an unclosed response behind (warnings are errors)."""
    await s3_store.put("big", b"x" * (3 * 1024 * 1024))
    for _ in range(12):  # more than fit in the pool if connections leaked
        stream = s3_store.open("big")
        assert await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
    assert await s3_store.read("big") == b"x" * (3 * 1024 * 1024)


async def test_put_file_sends_multipart_and_consumes(s3_store: S3BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "big.conda"
    source.write_bytes(bytes(range(256)) * 50_000)  # 12.8 MB: three parts
    stat = await s3_store.put_file("ch/big.conda", source)
    assert not source.exists()
    again = await s3_store.stat("ch/big.conda")
    assert again is not None and (again.size, again.etag) == (12_800_000, stat.etag)
    assert stat.etag.endswith('-3"')  # multipart etags count the parts
