"""py-rattler installs through a proxy channel whose upstream is a second graphconda server.

Upstream A runs under uvicorn with its own SQLite database and files; the proxy is the
server under test (SQLite or PostgreSQL, per the test database). rattler runs in a
subprocess, once through sharded repodata and once through repodata.json.zst.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from graphconda.services import channels
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.fixtures.upstreams import graphconda_upstream
from tests.test_rattler_install import assert_installed, build_packages, run_client

pytestmark = pytest.mark.slow


@pytest.fixture
async def upstream_a(tmp_path: Path) -> AsyncIterator[tuple[LiveServer, list[Path]]]:
    """A graphconda server with channel `origin` holding the rattler test packages."""
    paths = build_packages(tmp_path / "pkgs")
    async with graphconda_upstream(tmp_path / "upstream-a", "origin", paths) as server:
        yield server, paths


@pytest.mark.parametrize("sharded", [True, False], ids=["shards", "repodata.json.zst"])
async def test_rattler_installs_through_a_proxy(upstream_a: tuple[LiveServer, list[Path]], live_server: LiveServer,
                                                services: Services, tmp_path: Path, sharded: bool) -> None:
    upstream, paths = upstream_a
    await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name="px", mirror_mode="proxy", mirror_channel_url=f"{upstream.url}/get/origin"))
    channel_url = f"{live_server.url}/get/px"
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=sharded,
                              zstd=True, prefix=str(tmp_path / "env"), cache=str(tmp_path / "cache"))
    assert_installed(tmp_path / "env", solved, channel_url, paths)


async def test_rattler_installs_from_a_mirror(upstream_a: tuple[LiveServer, list[Path]], live_server: LiveServer,
                                              services: Services, tmp_path: Path) -> None:
    from graphconda.services.mirroring import sync_mirror
    from graphconda.services.publisher import wait_published

    upstream, paths = upstream_a
    channel = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name="mir", mirror_mode="mirror", mirror_channel_url=f"{upstream.url}/get/origin", sync_now=False))
    report = await sync_mirror(services, channel)
    assert report.failures == [] and report.downloaded == len(paths)
    await wait_published(services)
    channel_url = f"{live_server.url}/get/mir"
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=True,
                              zstd=True, prefix=str(tmp_path / "env"), cache=str(tmp_path / "cache"))
    assert_installed(tmp_path / "env", solved, channel_url, paths)
    # Nothing changed upstream: the next sync downloads nothing.
    again = await sync_mirror(services, channel)
    assert again.downloaded == 0 and again.failures == []
