"""Channels on S3 storage (SeaweedFS): upload, serve (streamed or redirected to presigned URLs), rattler install."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from graphconda.services import api_keys
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.server import LiveServer
from tests.helpers.channels import make_channel, make_user, snapshot
from tests.helpers.packages import build_package, sha256_of
from tests.test_rattler_install import assert_installed, build_packages, run_client, upload_all, wait_for_repodata

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(params=[False, True], ids=["streamed", "presigned"])
def presign(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def settings_overrides(seaweedfs: SeaweedFS, presign: bool) -> dict[str, Any]:
    s3 = seaweedfs.s3_settings(bucket="channels", prefix=f"t-{uuid.uuid4().hex[:12]}/", presign_downloads=presign)
    return {"storage": {"backend": "s3", "s3": s3.model_dump()}}


@pytest.fixture
async def owner_key(services: Services) -> str:
    owner = await make_user(services, "owner", Role.OWNER)
    _, secret = await api_keys.create_api_key(services, owner)
    return secret


async def test_upload_serve_and_install_on_s3(live_server: LiveServer, services: Services, owner_key: str,
                                              tmp_path: Path, presign: bool) -> None:
    await make_channel(services, "main")
    paths = build_packages(tmp_path / "pkgs")
    await anyio.to_thread.run_sync(upload_all, live_server, "main", owner_key, paths)
    await anyio.to_thread.run_sync(wait_for_repodata, live_server, "main", paths)

    app = next(p for p in paths if p.name.startswith("app-"))
    url = f"/get/main/linux-64/{app.name}"
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        repodata = await http.get("/get/main/linux-64/repodata.json.zst")
        assert repodata.status_code == 200  # repodata is never redirected
        etag = repodata.headers["etag"]
        assert (await http.get("/get/main/linux-64/repodata.json.zst",
                               headers={"If-None-Match": etag})).status_code == 304
        head = await http.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(app.stat().st_size)
        response = await http.get(url)
        if presign:
            assert response.status_code == 302
            location = response.headers["location"]
            assert "X-Amz-Signature" in location and not location.startswith(live_server.url)
        else:
            assert response.status_code == 200 and response.content == app.read_bytes()
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        followed = await http.get(url, follow_redirects=True)
        assert followed.content == app.read_bytes()
        tail = await http.get(url, headers={"Range": "bytes=-100"}, follow_redirects=True)
        assert tail.status_code == 206 and tail.content == app.read_bytes()[-100:]

    channel_url = f"{live_server.url}/get/main"
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=True,
                              zstd=True, prefix=str(tmp_path / "env"), cache=str(tmp_path / "cache"))
    assert_installed(tmp_path / "env", solved, channel_url, paths)


async def test_refused_upload_leaves_nothing_in_the_bucket(client: httpx2.AsyncClient, services: Services,
                                                           owner_key: str, tmp_path: Path) -> None:
    await make_channel(services, "main")
    good = build_package(tmp_path, "alpha")
    headers = {"X-API-Key": owner_key}
    assert (await client.post(f"/api/channels/main/upload/{good.name}", content=good.read_bytes(),
                              headers=headers)).status_code == 201
    before = await snapshot(services)
    other = build_package(tmp_path / "other", "beta")
    wrong = await client.post(f"/api/channels/main/upload/{other.name}?sha256={sha256_of(good)}",
                              content=other.read_bytes(), headers=headers)
    assert wrong.status_code == 422
    again = await client.post(f"/api/channels/main/upload/{good.name}", content=good.read_bytes(), headers=headers)
    assert again.status_code == 409
    assert await snapshot(services) == before
