"""The BlobStore contract: every test here runs against every backend (local and S3)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import tracemalloc
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.errors import BlobNotFoundError, InvalidNameError
from graphconda.storage import CHUNK_SIZE, BlobStore

MiB = 1024 * 1024


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(stream: AsyncIterable[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def test_put_bytes_round_trip(store: BlobStore) -> None:
    stat = await store.put("ch/linux-64/pkg-1.0-0.conda", b"hello")
    assert (stat.key, stat.size) == ("ch/linux-64/pkg-1.0-0.conda", 5)
    assert stat.etag.startswith('"') and stat.etag.endswith('"')
    again = await store.stat("ch/linux-64/pkg-1.0-0.conda")
    assert again is not None
    assert (again.size, again.etag) == (stat.size, stat.etag)
    assert abs(again.mtime - stat.mtime) < 5
    assert await store.read("ch/linux-64/pkg-1.0-0.conda") == b"hello"
    assert await collect(store.open("ch/linux-64/pkg-1.0-0.conda")) == b"hello"


async def test_put_stream_round_trip(store: BlobStore) -> None:
    data = blob(3 * MiB + 123)
    parts = [data[:100], b"", data[100 : 2 * MiB], data[2 * MiB :]]
    stat = await store.put("stream/blob", chunks(*parts))
    assert stat.size == len(data)
    again = await store.stat("stream/blob")
    assert again is not None and (again.size, again.etag) == (stat.size, stat.etag)
    assert await store.read("stream/blob") == data
    streamed = [chunk async for chunk in store.open("stream/blob")]
    assert b"".join(streamed) == data
    assert max(len(chunk) for chunk in streamed) <= CHUNK_SIZE


async def test_failed_stream_keeps_the_old_blob(store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    await store.put("k", b"old")
    with pytest.raises(ConnectionError):
        await store.put("k", broken())
    with pytest.raises(ConnectionError):
        await store.put("new", broken())
    assert await store.read("k") == b"old"
    assert await store.stat("new") is None


async def test_empty_blob(store: BlobStore) -> None:
    assert (await store.put("empty", b"")).size == 0
    assert (await store.put("empty-stream", chunks())).size == 0
    for key in ("empty", "empty-stream"):
        assert await store.read(key) == b""
        assert await collect(store.open(key)) == b""
        stat = await store.stat(key)
        assert stat is not None and stat.size == 0


async def test_put_file_round_trip(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.tmp"
    data = blob(MiB + 7, seed=1)
    source.write_bytes(data)
    stat = await store.put_file("files/upload.conda", source)
    assert stat.size == len(data)
    assert not source.exists()  # consumed
    assert await store.read("files/upload.conda") == data
    again = await store.stat("files/upload.conda")
    assert again is not None and again.etag == stat.etag


RANGE_SIZE = 2 * MiB + 500


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, slice(0, None)),
        (10, None, slice(10, None)),
        (0, 10, slice(0, 10)),
        (MiB - 5, MiB + 5, slice(MiB - 5, MiB + 5)),  # across a chunk boundary
        (RANGE_SIZE - 1, None, slice(RANGE_SIZE - 1, None)),
        (0, RANGE_SIZE, slice(0, None)),  # exact end
        (10, RANGE_SIZE + 1000, slice(10, None)),  # end clipped to the size
        (RANGE_SIZE, None, slice(0, 0)),  # start at the end
        (RANGE_SIZE + 100, None, slice(0, 0)),  # start beyond
        (RANGE_SIZE + 100, RANGE_SIZE + 200, slice(0, 0)),
        (20, 20, slice(0, 0)),
        (20, 10, slice(0, 0)),
    ],
)
async def test_open_ranges(store: BlobStore, start: int, end: int | None, expected: slice) -> None:
    data = blob(RANGE_SIZE, seed=2)
    await store.put("ranged", data)
    assert await collect(store.open("ranged", start, end)) == data[expected]


async def test_missing_blob(store: BlobStore) -> None:
    assert await store.stat("no/such/blob") is None
    with pytest.raises(BlobNotFoundError):
        await store.read("no/such/blob")
    with pytest.raises(BlobNotFoundError):
        await collect(store.open("no/such/blob"))
    for start, end in [(5, None), (0, 0), (10, 20)]:
        with pytest.raises(BlobNotFoundError):
            await collect(store.open("no/such/blob", start, end))


async def test_etag_changes_on_overwrite(store: BlobStore) -> None:
    first = await store.put("k", b"aaaa")
    assert (await store.stat("k")) == (await store.stat("k"))  # stable while unchanged
    same_size = await store.put("k", b"bbbb")
    other_size = await store.put("k", b"cc")
    assert len({first.etag, same_size.etag, other_size.etag}) == 3
    stat = await store.stat("k")
    assert stat is not None and (stat.size, stat.etag) == (2, other_size.etag)
    assert await store.read("k") == b"cc"


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await store.put("d/x", b"1")
    await store.delete("d/x")
    assert await store.stat("d/x") is None
    await store.delete("d/x")
    await store.delete("never/existed")


async def test_list_by_prefix(store: BlobStore) -> None:
    keys = ["a/x.txt", "a/b/c", "a/bc", "a.txt", "ab", "b/y"]
    for i, key in enumerate(keys):
        await store.put(key, b"x" * (i + 1))

    async def listed(prefix: str) -> list[str]:
        return sorted([s.key async for s in store.list(prefix)])  # SeaweedFS lists "a/..." before "a.txt"

    assert await listed("") == sorted(keys)
    assert await listed("a/") == ["a/b/c", "a/bc", "a/x.txt"]
    assert await listed("a/b") == ["a/b/c", "a/bc"]
    assert await listed("a") == ["a.txt", "a/b/c", "a/bc", "a/x.txt", "ab"]
    assert await listed("a/b/") == ["a/b/c"]
    assert await listed("zzz/") == []
    assert await listed("a/b/c") == ["a/b/c"]
    stats = {s.key: s async for s in store.list("")}
    for i, key in enumerate(keys):
        assert stats[key].size == i + 1
        assert stats[key].etag == (await store.stat(key)).etag  # type: ignore[union-attr]


async def test_list_stops_early_without_leaking(store: BlobStore) -> None:
    for i in range(5):
        await store.put(f"many/{i}", b"x")
    async for first in store.list("many/"):
        assert first.key.startswith("many/")
        break
    stream = store.open("many/0")
    assert await anext(stream) == b"x"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_put_many_stores_each_blob(store: BlobStore) -> None:
    await store.put("batch/b", b"old")
    old = await store.stat("batch/b")
    items = {f"batch/{name}": blob(size, seed) for seed, (name, size) in enumerate([("a", 10), ("b", 0), ("c", 3000)])}
    stats = await store.put_many(items)
    assert [(s.key, s.size) for s in stats] == [(key, len(data)) for key, data in items.items()]
    for key, data in items.items():
        assert await store.read(key) == data
        found = await store.stat(key)
        assert found is not None and found.etag == stats[list(items).index(key)].etag
    assert old is not None and stats[1].etag != old.etag  # overwritten
    assert sorted([s.key async for s in store.list("batch/")]) == sorted(items)
    assert await store.put_many({}) == []


async def test_put_many_takes_local_files_and_consumes_them(store: BlobStore, tmp_path: Path) -> None:
    """A publish stores its big files (a 100 MB repodata.json) from disk, never holding them in memory."""
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(blob(3 * MiB + 5, 1))
    small.write_bytes(b"")
    stats = await store.put_many({"files/big": big, "files/bytes": b"abc", "files/small": small})
    assert [(s.key, s.size) for s in stats] == [("files/big", 3 * MiB + 5), ("files/bytes", 3), ("files/small", 0)]
    assert await store.read("files/big") == blob(3 * MiB + 5, 1)
    assert await store.read("files/small") == b""
    assert not big.exists() and not small.exists()


@pytest.mark.parametrize("key", ["../x", "a//b", ".hidden"])
async def test_put_many_refuses_the_whole_batch_for_one_bad_key(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidNameError):
        await store.put_many({"good/1": b"x", key: b"y", "good/2": b"z"})
    assert [s async for s in store.list("good/")] == []


BAD_KEYS = ["", "../x", "/abs", "a//b", "a/../b", "a/./b", "a\\b", "a\x00b", "a/", "a b", ".hidden", "a/.tmp/x"]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_are_refused(store: BlobStore, key: str, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    operations: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.put(key, b"x"),
        lambda: store.put(key, chunks(b"x")),
        lambda: store.put_file(key, source),
        lambda: store.read(key),
        lambda: collect(store.open(key)),
        lambda: store.stat(key),
        lambda: store.delete(key),
        lambda: store.presigned_url(key, timedelta(minutes=5)),
    ]
    for operation in operations:
        with pytest.raises(InvalidNameError):
            await operation()
    assert source.exists()
    assert store.local_path(key) is None


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//", "a/../", "a\\"])
async def test_invalid_list_prefixes_are_refused(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidNameError):
        [s async for s in store.list(prefix)]


async def test_presigned_url(store: BlobStore) -> None:
    await store.put("p/file.conda", b"presigned bytes")
    url = await store.presigned_url("p/file.conda", timedelta(minutes=5))
    if store.backend == "local":
        assert url is None
        return
    assert url is not None
    async with httpx2.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == b"presigned bytes"


async def test_concurrent_writers_never_mix(store: BlobStore) -> None:
    """Many writers race on one key; readers and the final state see one value, whole."""
    size = 300_000
    values = [bytes([i]) * size for i in range(12)]

    async def write(i: int) -> None:
        value = values[i]
        if i % 2:
            await store.put("race", chunks(value[: size // 3], value[size // 3 :]))
        else:
            await store.put("race", value)

    async def read_while_racing() -> list[bytes]:
        seen = []
        for _ in range(10):
            with contextlib.suppress(BlobNotFoundError):  # no writer finished yet
                seen.append(await store.read("race"))
            await asyncio.sleep(0)
        return seen

    reader = asyncio.create_task(read_while_racing())
    await asyncio.gather(*(write(i) for i in range(len(values))))
    seen = await reader
    for value in [*seen, await store.read("race")]:
        assert value in values


def _generated(total: int, chunk: int, digest: Any) -> AsyncIterator[bytes]:
    async def generate() -> AsyncIterator[bytes]:
        rng = random.Random(42)
        remaining = total
        while remaining:
            part = rng.randbytes(min(chunk, remaining))
            digest.update(part)
            remaining -= len(part)
            yield part

    return generate()


@pytest.mark.slow
async def test_big_blob_streams_without_buffering(store: BlobStore) -> None:
    """200 MB in and out: Python memory stays a few chunks, never the blob."""
    total, limit = 200 * 1000 * 1000, 32 * MiB
    sent, received = hashlib.sha256(), hashlib.sha256()
    tracemalloc.start()
    try:
        stat = await store.put("big/blob.bin", _generated(total, CHUNK_SIZE, sent))
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        size = 0
        async for chunk in store.open("big/blob.bin"):
            received.update(chunk)
            size += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stat.size == size == total
    assert received.hexdigest() == sent.hexdigest()
    assert put_peak < limit, f"put peaked at {put_peak / MiB:.1f} MiB"
    assert read_peak < limit, f"read peaked at {read_peak / MiB:.1f} MiB"
    await store.delete("big/blob.bin")
