"""Proxy channels on S3 storage (SeaweedFS): the same behaviour, package files streamed or presigned."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.services.context import Services
from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.upstreams import StaticChannel
from tests.http.test_proxy import make_proxy, packages, sha, upstream  # noqa: F401 - fixtures

pytestmark = [pytest.mark.s3]


@pytest.fixture(params=[False, True], ids=["streamed", "presigned"])
def presign(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def settings_overrides(seaweedfs: SeaweedFS, presign: bool) -> dict[str, Any]:
    s3 = seaweedfs.s3_settings(bucket="proxies", prefix=f"t-{uuid.uuid4().hex[:12]}/", presign_downloads=presign)
    return {"storage": {"backend": "s3", "s3": s3.model_dump()},
            "mirror": {"upstream_timeout_seconds": 1.0, "backoff_seconds": 0.05}}


async def fetch(client: httpx2.AsyncClient, url: str) -> httpx2.Response:
    """GET through the proxy, following a presigned redirect to S3 with a real client."""
    response = await client.get(url)
    if response.status_code == 302:
        async with httpx2.AsyncClient() as http:
            response = await http.get(response.headers["location"])
    return response


async def test_proxy_on_s3(client: httpx2.AsyncClient, services: Services, upstream: StaticChannel,  # noqa: F811
                           packages: list[Path], presign: bool) -> None:  # noqa: F811
    await make_proxy(services, "px", upstream.url)
    doc = (await client.get("/get/px/noarch/repodata.json")).json()
    assert set(doc["packages.conda"]) == {packages[0].name}
    first = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert first.status_code == (302 if presign else 200)
    response = await fetch(client, f"/get/px/noarch/{packages[0].name}")
    assert response.status_code == 200 and sha(response.content) == sha(packages[0].read_bytes())
    assert upstream.count(packages[0].name) == 1


async def test_checksum_mismatch_on_s3(client: httpx2.AsyncClient, services: Services,
                                       upstream: StaticChannel, packages: list[Path]) -> None:  # noqa: F811
    await make_proxy(services, "px", upstream.url)
    upstream.fail(packages[0].name, "corrupt")
    bad = await client.get(f"/get/px/noarch/{packages[0].name}")
    assert bad.status_code == 502 and "checksum" in bad.json()["detail"]
    good = await fetch(client, f"/get/px/noarch/{packages[0].name}")
    assert good.status_code == 200 and good.content == packages[0].read_bytes()
    assert upstream.count(packages[0].name) == 2
