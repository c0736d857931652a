"""A real client across a channel option change: shards switched off (updateChannel over HTTP), rattler installs
through repodata.json.zst; switched back on, through rebuilt shards."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx2
import pytest

from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.helpers.channels import make_channel
from tests.test_rattler_install import (  # noqa: F401 - uploader_key is a fixture
    assert_installed,
    build_packages,
    run_client,
    upload_all,
    uploader_key,
    wait_for_repodata,
)

pytestmark = pytest.mark.slow

SET_SHARDS = """mutation($on: Boolean!) {
  updateChannel(input: {name: "flip", publishShards: $on}) { __typename ... on Channel { publishing { shards } } }
}"""


def set_shards(server: LiveServer, key: str, on: bool) -> None:
    with httpx2.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=120) as http:
        result = http.post("/graphql", json={"query": SET_SHARDS, "variables": {"on": on}}).json()
        assert result["data"]["updateChannel"] == {"__typename": "Channel", "publishing": {"shards": on}}, result
        index = http.get("/get/flip/linux-64/repodata_shards.msgpack.zst")
        assert index.status_code == (200 if on else 404)


async def test_rattler_follows_the_shards_option(live_server: LiveServer, services: Services, uploader_key: str,  # noqa: F811
                                                 tmp_path: Path) -> None:
    await make_channel(services, "flip")
    paths = build_packages(tmp_path / "pkgs")
    await anyio.to_thread.run_sync(upload_all, live_server, "flip", uploader_key, paths)
    await anyio.to_thread.run_sync(wait_for_repodata, live_server, "flip", paths)
    channel_url = f"{live_server.url}/get/flip"

    await anyio.to_thread.run_sync(set_shards, live_server, uploader_key, False)
    cache = tmp_path / "cache-off"
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=True,
                              zstd=True, prefix=str(tmp_path / "env-off"), cache=str(cache))
    assert_installed(tmp_path / "env-off", solved, channel_url, paths)
    # It asked for the shard index, got 404 and fetched repodata.json.zst of both subdirs.
    urls = sorted(json.loads(p.read_text())["url"] for p in cache.glob("*.info.json"))
    assert urls == [f"{channel_url}/{s}/repodata.json.zst" for s in ("linux-64", "noarch")]

    await anyio.to_thread.run_sync(set_shards, live_server, uploader_key, True)
    cache = tmp_path / "cache-on"
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=True,
                              zstd=True, prefix=str(tmp_path / "env-on"), cache=str(cache))
    assert_installed(tmp_path / "env-on", solved, channel_url, paths)
    assert list(cache.glob("*.info.json")) == []  # shards only, no monolithic repodata
