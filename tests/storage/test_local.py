"""What only the local backend does: files on disk, atomic renames, symlink and path safety."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from graphconda.errors import InvalidNameError, StorageError
from graphconda.settings import Settings
from graphconda.storage import local as local_module
from graphconda.storage import open_store
from graphconda.storage.local import STALE_TMP_SECONDS, TMP_DIR, LocalBlobStore


def test_open_store_picks_local(tmp_path: Path) -> None:
    store = open_store(Settings.model_validate({"storage": {"path": str(tmp_path / "files")}}))
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "files").resolve()


async def test_blob_is_a_plain_file(local_store: LocalBlobStore) -> None:
    await local_store.put("ch/noarch/repodata.json", b"{}")
    path = local_store.local_path("ch/noarch/repodata.json")
    assert path == local_store.root / "ch" / "noarch" / "repodata.json"
    assert path.read_bytes() == b"{}"
    assert list((local_store.root / TMP_DIR).iterdir()) == []
    assert local_store.local_path("../etc/passwd") is None


async def test_put_file_moves_the_file(local_store: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "upload"
    source.write_bytes(b"package")
    inode = source.stat().st_ino
    await local_store.put_file("ch/pkg.conda", source)
    assert not source.exists()
    assert (local_store.root / "ch" / "pkg.conda").stat().st_ino == inode


async def test_put_file_across_filesystems_copies(
    local_store: LocalBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if TMP_DIR not in Path(src).parts:  # only the direct move "crosses a device"
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    source = tmp_path / "upload"
    source.write_bytes(b"x" * 3_000_000)
    stat = await local_store.put_file("ch/pkg.conda", source)
    assert stat.size == 3_000_000
    assert not source.exists()
    assert await local_store.read("ch/pkg.conda") == b"x" * 3_000_000
    assert list((local_store.root / TMP_DIR).iterdir()) == []


async def test_failed_or_cancelled_stream_leaves_no_temp_file(local_store: LocalBlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    async def stalled() -> AsyncIterator[bytes]:
        yield b"partial"
        await asyncio.sleep(3600)
        yield b"never"

    with pytest.raises(ConnectionError):
        await local_store.put("k", broken())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await local_store.put("k", stalled())
    assert list((local_store.root / TMP_DIR).iterdir()) == []
    assert await local_store.stat("k") is None


async def test_symlinks_cannot_escape_the_root(local_store: LocalBlobStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    local_store.root.mkdir(exist_ok=True)
    (local_store.root / "evil").symlink_to(outside)
    for operation in (
        lambda: local_store.read("evil/secret"),
        lambda: local_store.stat("evil/secret"),
        lambda: local_store.put("evil/new", b"x"),
        lambda: local_store.delete("evil/secret"),
    ):
        with pytest.raises(InvalidNameError):
            await operation()
    assert local_store.local_path("evil/secret") is None
    assert [s.key async for s in local_store.list("")] == []  # symlinks are not listed
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


async def test_a_directory_is_not_a_blob(local_store: LocalBlobStore) -> None:
    await local_store.put("dir/file", b"x")
    assert await local_store.stat("dir") is None
    await local_store.delete("dir")
    assert await local_store.read("dir/file") == b"x"


async def test_check_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store = LocalBlobStore(tmp_path / "file" / "blobs")
    with pytest.raises(StorageError, match=r"storage path .*/file/blobs is not writable: .*Not a directory"):
        await store.check()


async def test_check_creates_the_root_and_sweeps_stale_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "new" / "root")
    await store.check()
    stale, fresh = store.root / TMP_DIR / "put-stale", store.root / TMP_DIR / "put-fresh"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    old = time.time() - STALE_TMP_SECONDS - 60
    os.utime(stale, (old, old))
    await store.check()
    assert not stale.exists()
    assert fresh.exists()


async def test_put_many_flushes_once_before_any_blob_appears(local_store: LocalBlobStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_replace, real_sync = os.replace, local_module._sync_filesystem

    def replace(src: Any, dst: Any) -> None:
        events.append("rename")
        real_replace(src, dst)

    def sync(path: Path) -> None:
        events.append("sync")
        real_sync(path)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(local_module, "_sync_filesystem", sync)
    await local_store.put_many({f"shards/{i}": bytes([i]) * 100 for i in range(5)})
    # The data of every blob is durable before the first becomes visible: an index written
    # after put_many returns can never name a blob a crash would lose.
    assert events == ["sync"] + ["rename"] * 5
    assert [await local_store.read(f"shards/{i}") for i in range(5)] == [bytes([i]) * 100 for i in range(5)]
    assert list((local_store.root / TMP_DIR).iterdir()) == []


async def test_put_many_moves_local_files_into_place_only_after_the_flush(
        local_store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    events: list[str] = []
    real_replace, real_sync = os.replace, local_module._sync_filesystem
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append("rename"), real_replace(src, dst)))
    monkeypatch.setattr(local_module, "_sync_filesystem", lambda path: (events.append("sync"), real_sync(path)))
    files = {}
    for i in range(3):
        (tmp_path / f"download-{i}").write_bytes(bytes([i]) * 100)
        files[f"pkgs/{i}/f.conda"] = tmp_path / f"download-{i}"
    stats = await local_store.put_many(files)
    # A download on the store's filesystem is renamed straight into place (no copy), but only
    # once its bytes are durable.
    assert events[:4] == ["sync", "rename", "rename", "rename"]
    assert [await local_store.read(f"pkgs/{i}/f.conda") for i in range(3)] == [bytes([i]) * 100 for i in range(3)]
    assert [s.size for s in stats] == [100, 100, 100]
    assert not any(path.exists() for path in files.values())
    assert stats[0] == await local_store.stat("pkgs/0/f.conda")


@pytest.mark.parametrize("how", ["put", "put_file", "put_many"])
async def test_new_directories_are_made_durable(local_store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, how: str) -> None:
    synced: list[Path] = []
    real_fsync_dir = local_module._fsync_dir
    monkeypatch.setattr(local_module, "_fsync_dir", lambda path: (synced.append(path), real_fsync_dir(path)))
    key = "chan/linux-64/a-1-0.conda"
    if how == "put":
        await local_store.put(key, b"x")
    elif how == "put_file":
        (tmp_path / "upload").write_bytes(b"x")
        await local_store.put_file(key, tmp_path / "upload")
    else:
        await local_store.put_many({key: b"x"})
    # A crash right after must not lose the file with a directory made for it: each new
    # directory's entry is fsynced in its parent, and the file's entry in its directory.
    root = local_store.root
    assert {root, root / "chan", root / "chan/linux-64"} <= set(synced)
    assert await local_store.read(key) == b"x"


async def test_put_many_that_fails_midway_leaves_no_temp_file(local_store: LocalBlobStore) -> None:
    (local_store.root / "d" / "taken").mkdir(parents=True)  # a directory where a blob should go
    (local_store.root / "d" / "taken" / "x").write_bytes(b"")
    with pytest.raises(StorageError):
        await local_store.put_many({"d/a": b"1", "d/taken": b"2", "d/c": b"3"})
    assert list((local_store.root / TMP_DIR).iterdir()) == []
    assert await local_store.stat("d/c") is None
