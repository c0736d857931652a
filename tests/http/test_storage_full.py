"""A full disk under the data directory: uploads answer 507, /readyz says so, and repodata.json catches up.

The data directory (upload spool and local storage) is a small tmpfs filled with a ballast
file, so the kernel itself answers ENOSPC; the database lives outside it. Mounting needs
root (as in CI's container); elsewhere these tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import msgpack
import pytest
import zstandard
from sqlalchemy import select

from graphconda.db.models import Channel
from graphconda.services.context import Services
from graphconda.services.locks import publish_lock
from graphconda.services.publisher import wait_published
from tests.helpers.channels import leftover_temp_files, owner_key_for_main, package_files
from tests.helpers.packages import build_package

SIZE_MB = 16


@pytest.fixture
def data_mount(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(data)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


@pytest.fixture
def settings_overrides(data_mount: Path) -> dict[str, Any]:
    return {"server": {"data_dir": str(data_mount)}}


class Ballast:
    """A file that takes every free byte of the data filesystem until removed."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "ballast"

    def fill(self) -> None:
        with open(self.path, "ab", buffering=0) as f:  # unbuffered: closing must not fail for space
            for size in (1024 * 1024, 64 * 1024, 1024, 1):
                with contextlib.suppress(OSError):
                    while f.write(bytes(size)):
                        pass

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def ballast(data_mount: Path) -> Iterator[Ballast]:
    ballast = Ballast(data_mount)
    yield ballast
    ballast.remove()


@pytest.fixture
async def key(services: Services) -> str:
    return await owner_key_for_main(services)


def upload(client: httpx2.AsyncClient, key: str, path: Path) -> Any:
    return client.post(f"/api/channels/main/upload/{path.name}", content=path.read_bytes(),
                       headers={"X-API-Key": key})


async def test_uploads_on_a_full_disk_answer_507_and_leave_nothing(
    client: httpx2.AsyncClient, services: Services, key: str, tmp_path: Path, ballast: Ballast,
) -> None:
    first = build_package(tmp_path / "pkgs", "alpha")
    assert (await upload(client, key, first)).status_code == 201
    await wait_published(services)
    await asyncio.to_thread(ballast.fill)
    second = build_package(tmp_path / "pkgs", "beta")
    for attempt in (
        upload(client, key, second),
        client.post("/api/channels/main/files", files={"files": (second.name, second.read_bytes())},
                    headers={"X-API-Key": key}),
        client.post("/api/v1/upload/main", content=second.read_bytes(),
                    headers={"X-API-Key": key, "X-File-Name": second.name}),
    ):
        response = await attempt
        assert response.status_code == 507, response.text
        assert response.json() == {"detail": "the server's storage is full; nothing was stored, try again later"}
        assert int(response.headers["retry-after"]) > 0
    assert [f.filename for f in await package_files(services)] == [first.name]
    assert leftover_temp_files(services) == []
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["storage"]["ok"] is False
    assert "full" in ready.json()["checks"]["storage"]["detail"]
    # What is stored is still served.
    assert (await client.get(f"/get/main/noarch/{first.name}")).content == first.read_bytes()
    ballast.remove()
    assert (await upload(client, key, second)).status_code == 201
    assert await ready_soon(client)


async def ready_soon(client: httpx2.AsyncClient) -> bool:
    for _ in range(100):
        if (await client.get("/readyz")).status_code == 200:
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def publishing_held(services: Services, channel: str, subdir: str) -> AsyncIterator[None]:
    """Hold the subdir's publish lock, as a slow rebuild in another process would."""
    async with services.db.read() as session:
        channel_id = await session.scalar(select(Channel.id).where(Channel.name == channel))
    async with publish_lock(services.db, f"subdir:{channel_id}:{subdir}"):
        yield


async def published_names(client: httpx2.AsyncClient) -> set[str]:
    return set((await client.get("/get/main/noarch/repodata.json")).json()["packages.conda"])


async def test_a_rebuild_that_finds_the_disk_full_is_retried_and_readyz_says_so(
    client: httpx2.AsyncClient, services: Services, key: str, tmp_path: Path, ballast: Ballast,
) -> None:
    base = build_package(tmp_path / "pkgs", "base")
    assert (await upload(client, key, base)).status_code == 201
    late = [build_package(tmp_path / "pkgs", name) for name in ("one", "two", "three")]
    async with publishing_held(services, "main", "noarch"):
        for path in late:
            assert (await upload(client, key, path)).status_code == 201
        await asyncio.to_thread(ballast.fill)
    # The rebuild of repodata.json now fails for space: the server must say it is behind.
    for _ in range(100):
        ready = await client.get("/readyz")
        if not ready.json()["checks"]["publishing"]["ok"]:
            break
        await asyncio.sleep(0.1)
    assert ready.status_code == 503, ready.text
    assert "lag behind" in ready.json()["checks"]["publishing"]["detail"]
    assert await published_names(client) == {base.name}
    # Acknowledged means installable: the shard index written before each 201 names them all.
    index = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(
        (await client.get("/get/main/noarch/repodata_shards.msgpack.zst")).content))
    assert set(index["shards"]) == {"base", "one", "two", "three"}
    ballast.remove()
    # Retried on its own (no new upload needed), then ready again.
    assert await ready_soon(client)
    expected = {p.name for p in [base, *late]}
    assert await published_names(client) == expected
    async with client.stream("GET", "/get/main/noarch/repodata.json", headers={"Accept-Encoding": "gzip"}) as gz:
        raw = b"".join([chunk async for chunk in gz.aiter_raw()])
    assert set(json.loads(gzip.decompress(raw))["packages.conda"]) == expected
