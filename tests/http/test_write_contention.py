"""Many uploads at once: writers queue for the database, none is refused for a lock another holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from tests.helpers.channels import owner_key_for_main, package_files, repodata
from tests.helpers.packages import build_package

UPLOADS = 48


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # A short lock wait, so that unfair waiting shows in seconds instead of after half a minute.
    return {"database": {"busy_timeout_ms": 1500}}


async def test_a_burst_of_uploads_all_succeed(client: httpx2.AsyncClient, services: Services,
                                              tmp_path: Path) -> None:
    key = await owner_key_for_main(services)
    paths = [build_package(tmp_path / "pkgs", f"pkg{i}", subdir=("noarch", "linux-64")[i % 2])
             for i in range(UPLOADS)]

    async def upload(name: str, body: bytes) -> httpx2.Response:
        return await client.post(f"/api/channels/main/upload/{name}", content=body, headers={"X-API-Key": key})

    answers = await asyncio.gather(*(upload(path.name, path.read_bytes()) for path in paths))
    refused = [(r.status_code, r.text) for r in answers if r.status_code != 201]
    assert refused == []
    await wait_published(services)
    assert len(await package_files(services)) == UPLOADS
    for subdir in ("noarch", "linux-64"):
        published = await repodata(services, "main", subdir)
        assert published is not None and len(published["packages.conda"]) == UPLOADS // 2
