"""Every request of ../shared/QUETZ-API.md (Quetz's README and mirroring docs) as a real shell `curl`.

The server under test runs under uvicorn (SQLite or PostgreSQL, per the test database) with
its job runner; the upstream the docs point at (conda.anaconda.org/btel) is a second
graphconda server on loopback with a channel `btel`. Commands run through bash with
QUETZ_HOST and QUETZ_API_KEY set, as the docs have them (single quotes included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import select

from graphconda.conda.names import parse_filename
from graphconda.db.models import Channel
from graphconda.services import api_keys, layout
from graphconda.services.authz import Role
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.fixtures.server import LiveServer
from tests.fixtures.upstreams import graphconda_upstream
from tests.helpers.channels import make_user
from tests.helpers.packages import build_package
from tests.test_rattler_install import run_client

pytestmark = pytest.mark.slow


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"jobs": {"poll_seconds": 0.2}}


@pytest.fixture
async def btel(tmp_path: Path) -> AsyncIterator[tuple[LiveServer, list[Path]]]:
    """The upstream: a graphconda server with channel `btel` (nrnpython, cudnn)."""
    paths = [build_package(tmp_path / "btel-pkgs", "nrnpython", "8.0", "0", about={"summary": "NEURON"}),
             build_package(tmp_path / "btel-pkgs", "cudnn", "8.1", "0")]
    async with graphconda_upstream(tmp_path / "upstream", "btel", paths) as server:
        yield server, paths


class Shell:
    """Runs documented commands with QUETZ_HOST / QUETZ_API_KEY; answers (status, parsed body)."""

    def __init__(self, host: str, key: str, tmp: Path) -> None:
        self.env = {**os.environ, "QUETZ_HOST": host, "QUETZ_API_KEY": key}
        self.out = tmp / "curl-body"

    def run(self, command: str, **env: str) -> tuple[int, Any]:
        full = f'{command} -s -o "{self.out}" -w "%{{http_code}}"'
        done = subprocess.run(["bash", "-c", full], env={**self.env, **env}, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        text = self.out.read_text() if self.out.exists() else ""
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        return int(done.stdout), body


def wait_for(check: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def shell(live_server: LiveServer, tmp_path: Path, admin_key: str) -> Iterator[Shell]:
    yield Shell(live_server.url, admin_key, tmp_path)


@pytest.fixture
async def admin_key(services: Services) -> str:
    admin = await make_user(services, "admin", Role.OWNER)
    return (await api_keys.create_api_key(services, admin))[1]


def jobs_of(sh: Shell, channel: str) -> list[dict[str, Any]]:
    status, body = sh.run('curl "${QUETZ_HOST}/api/jobs?status=pending&status=running&status=success'
                          '&status=failed&limit=-1" -H "X-API-Key: ${QUETZ_API_KEY}"')
    assert status == 200
    return [j for j in body["result"] if j["items_spec"] == f"channel={channel}"]


async def test_quetz_readme_setup(shell: Shell, tmp_path: Path, services: Services, settings: Settings) -> None:
    sh = shell
    # 1. Create a channel: the caller owns it.
    status, body = await anyio.to_thread.run_sync(sh.run, '''curl -X POST "${QUETZ_HOST}/api/channels" \
        -H "accept: application/json" -H "Content-Type: application/json" -H "X-API-Key: ${QUETZ_API_KEY}" \
        -d '{"name": "my-channel", "description": "Description for my-channel", "private": false}' ''')
    assert (status, body) == (201, None)
    status, members = await anyio.to_thread.run_sync(sh.run, 'curl "${QUETZ_HOST}/api/channels/my-channel/members"')
    assert [(m["user"]["username"], m["role"]) for m in members] == [("admin", "owner")]
    # 2. A key with a role on the channel; the secret only in the POST answer.
    status, created = await anyio.to_thread.run_sync(sh.run, '''curl -X POST "${QUETZ_HOST}/api/api-keys" \
        -H "accept: application/json" -H "Content-Type: application/json" -H "X-API-Key: ${QUETZ_API_KEY}" \
        -d '{"description": "my-test-token", "roles": [{"role": "owner", "channel": "my-channel"}]}' ''')
    assert status == 201 and created["key"] and created["description"] == "my-test-token"
    status, listed = await anyio.to_thread.run_sync(sh.run, 'curl "${QUETZ_HOST}/api/api-keys" '
                                                            '-H "X-API-Key: ${QUETZ_API_KEY}"')
    assert status == 200 and "my-test-token" in [k["description"] for k in listed]
    assert all(k["key"] is None for k in listed)
    # 3. quetz-client's command line uploads with that key.
    await anyio.to_thread.run_sync(sh.run, '''curl -X POST "${QUETZ_HOST}/api/channels" \
        -H "Content-Type: application/json" -H "X-API-Key: ${QUETZ_API_KEY}" \
        -d '{"name": "channel0", "private": false}' ''')
    package = build_package(tmp_path / "pkgs", "xtensor", "0.24.0", "0", about={"summary": "tensors"})
    client = str(Path(sys.executable).parent / "quetz-client")
    # The new key is scoped to my-channel: it may not upload to channel0.
    done = await anyio.run_process([client, "post_file_to_channel", "channel0", str(package)], check=False,
                                   env={**sh.env, "QUETZ_SERVER_URL": sh.env["QUETZ_HOST"],
                                        "QUETZ_API_KEY": created["key"]})
    assert done.returncode != 0 and b"403" in done.stderr
    done = await anyio.run_process([client, "post_file_to_channel", "channel0", str(package)], check=False,
                                   env={**sh.env, "QUETZ_SERVER_URL": sh.env["QUETZ_HOST"]})
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    # 4. Install from $QUETZ_HOST/get/channel0 (py-rattler stands in for mamba).
    solved = await run_client(tmp_path, command="install", channel=f"{sh.env['QUETZ_HOST']}/get/channel0",
                              specs=["xtensor"], sharded=True, zstd=True, prefix=str(tmp_path / "env"),
                              cache=str(tmp_path / "cache"))
    assert solved["xtensor"]["version"] == "0.24.0"


async def test_quetz_mirroring_docs(shell: Shell, btel: tuple[LiveServer, list[Path]], services: Services,
                                    tmp_path: Path) -> None:
    sh = shell
    upstream = f"{btel[0].url}/get/btel"
    run = anyio.to_thread.run_sync

    def post_channel(body: str, *, content_type: bool = True, query: str = "") -> tuple[int, Any]:
        ct = '-H "Content-Type: application/json" ' if content_type else ""
        return sh.run(f'curl -X POST "${{QUETZ_HOST}}/api/channels{query}" {ct}-H "X-API-Key: ${{QUETZ_API_KEY}}" '
                      f"-d '{body}'")

    # 1. A proxy channel.
    assert await run(lambda: post_channel(json.dumps({"name": "proxy-channel", "private": False,
                                                       "mirror_channel_url": upstream, "mirror_mode": "proxy"}))) \
        == (201, None)
    status, info = await run(sh.run, 'curl "${QUETZ_HOST}/api/channels/proxy-channel"')
    assert status == 200 and info["mirror_mode"] == "proxy" and info["mirror_channel_url"] == upstream
    # 2. The /channels/<c> form of the channel URL works like /get/<c>: install through it.
    solved = await run_client(tmp_path, command="install", channel=f"{sh.env['QUETZ_HOST']}/channels/proxy-channel",
                              specs=["nrnpython"], sharded=False, zstd=True, prefix=str(tmp_path / "env"),
                              cache=str(tmp_path / "cache"))
    assert solved["nrnpython"]["version"] == "8.0"
    assert "/channels/proxy-channel/noarch/" in solved["nrnpython"]["url"]
    # 3. A mirror channel: a first sync is queued, and runs.
    assert await run(lambda: post_channel(json.dumps({"name": "mirror-channel", "private": False,
                                                       "mirror_channel_url": upstream, "mirror_mode": "mirror"}))) \
        == (201, None)
    first = await run(lambda: wait_for(lambda: jobs_of(sh, "mirror-channel"), "the first sync"))
    assert first[0]["manifest"] == "synchronize_repodata"

    # 4. Anonymous: the mirrored packages.
    def mirrored() -> list[str]:
        status, body = sh.run('curl "${QUETZ_HOST}/api/channels/mirror-channel/packages"')
        assert status == 200
        return sorted(p["name"] for p in body)

    assert await run(lambda: wait_for(lambda: mirrored() == ["cudnn", "nrnpython"], "the mirrored packages"))
    # 5. `actions: []`: no sync queued.
    assert await run(lambda: post_channel(json.dumps({"name": "quiet-mirror", "private": False,
                                                       "mirror_channel_url": upstream, "mirror_mode": "mirror",
                                                       "actions": []}))) == (201, None)
    assert await run(jobs_of, sh, "quiet-mirror") == []
    # 6, 7. Actions with no content type answer jobs; synchronize only for channel owners/maintainers.
    for action in ("synchronize_repodata", "synchronize"):
        status, job = await run(sh.run, 'curl -X PUT "${QUETZ_HOST}/api/channels/mirror-channel/actions" '
                                        f'-H "X-API-Key: ${{QUETZ_API_KEY}}" -d \'{{"action": "{action}"}}\'')
        assert status == 200 and job["manifest"] == action and job["items_spec"] == "channel=mirror-channel"
    stranger = await make_user(services, "stranger")
    _, stranger_key = await api_keys.create_api_key(services, stranger)
    status, _ = await run(lambda: sh.run('curl -X PUT "${QUETZ_HOST}/api/channels/mirror-channel/actions" '
                                         '-H "X-API-Key: ${QUETZ_API_KEY}" -d \'{"action": "synchronize"}\'',
                                         QUETZ_API_KEY=stranger_key))
    assert status == 403
    # 8. The lists of a channel.
    status, _ = await run(sh.run, '''curl -X PATCH "${QUETZ_HOST}/api/channels/mirror-channel" \
        -H "Content-Type: application/json" -H "X-API-Key: ${QUETZ_API_KEY}" \
        -d '{"metadata": {"excludelist": [], "includelist": [], "proxylist": ["cudatoolkit","cudnn","cutensor","cusparselt","msmpi","msms","nvcc"]}}' ''')  # noqa: E501
    assert status == 200
    async with services.db.read() as session:
        channel = await session.scalar(select(Channel).where(Channel.name == "mirror-channel"))
    assert channel is not None and channel.proxylist[:2] == ["cudatoolkit", "cudnn"] and channel.excludelist == []
    # 9. A mirror created with `actions: ["reindex"]` over files already in storage (a mirror's files
    # kept when its database was lost): they are indexed, nothing is downloaded.
    old, new = layout.channel_prefix("mirror-channel"), layout.channel_prefix("reindexed-mirror")
    kept = [blob.key async for blob in services.storage.list(old)
            if layout.parse_package_key(blob.key) is not None]
    assert kept
    for key in kept:
        await services.storage.put(new + key.removeprefix(old), await services.storage.read(key))
    assert await run(lambda: post_channel(json.dumps({"name": "reindexed-mirror", "private": False,
                                                       "mirror_channel_url": upstream, "mirror_mode": "mirror",
                                                       "actions": ["reindex"]}))) == (201, None)
    jobs = await run(lambda: wait_for(lambda: [j for j in jobs_of(sh, "reindexed-mirror")
                                               if j["status"] == "success"], "the reindex"))
    assert [j["manifest"] for j in jobs_of(sh, "reindexed-mirror")] == ["reindex"] and jobs
    status, packages = await run(sh.run, 'curl "${QUETZ_HOST}/api/channels/reindexed-mirror/packages"')
    stored_names = {parse_filename(layout.parse_package_key(key)[3]).name for key in kept}  # type: ignore[index]
    assert status == 200 and {p["name"] for p in packages} == stored_names
    # A URL that is not absolute http(s) (a shell that kept ${QUETZ_HOST} literally): 422 naming the field.
    status, body = await run(lambda: post_channel('{"name": "my-mirror-channel", "private": false, '
                                                  '"mirror_channel_url": "${QUETZ_HOST}/get/my-channel", '
                                                  '"mirror_mode": "mirror"}', content_type=False))
    assert status == 422 and body["field"] == "mirror_channel_url"


async def test_registered_mirrors_docs(shell: Shell) -> None:
    sh = shell
    run = anyio.to_thread.run_sync
    auth = '-H "X-API-Key: ${QUETZ_API_KEY}"'
    for name in ("my-channel", "mirror-channel"):
        status, _ = await run(sh.run, f'curl -X POST "${{QUETZ_HOST}}/api/channels" {auth} '
                                      f'-d \'{{"name": "{name}", "private": false}}\'')
        assert status == 201
    # 10. As the docs print it, in single quotes: the shell sends ${QUETZ_HOST} literally -> 422 naming the field.
    status, body = await run(sh.run, f'curl -X POST "${{QUETZ_HOST}}/api/channels/my-channel/mirrors" {auth} '
                                     '''-d '{"url": "${QUETZ_HOST}/get/mirror-channel", '''
                                     '''"api_endpoint": "${QUETZ_HOST}/api/channels/mirror-channel", '''
                                     '''"metrics_endpoint": "${QUETZ_HOST}/metrics/channels/mirror-channel"}' ''')
    assert status == 422 and body["field"] in ("url", "apiEndpoint", "metricsEndpoint"), body
    # The same with the host expanded: 201, registered.
    status, mirror = await run(sh.run, f'curl -X POST "${{QUETZ_HOST}}/api/channels/my-channel/mirrors" {auth} '
                                       '''-d "{\\"url\\": \\"${QUETZ_HOST}/get/mirror-channel\\", '''
                                       '''\\"api_endpoint\\": \\"${QUETZ_HOST}/api/channels/mirror-channel\\", '''
                                       '''\\"metrics_endpoint\\": '''
                                       '''\\"${QUETZ_HOST}/metrics/channels/mirror-channel\\"}"''')
    assert status == 201, mirror
    assert set(mirror) == {"id", "url", "api_endpoint", "metrics_endpoint"}
    # 11. A new mirror channel registers itself at its upstream (here: my-channel on this same server).
    status, body = await run(sh.run, 'curl -X POST "${QUETZ_HOST}/api/channels?register_mirror=true'
                                     f'&mirror_api_key=${{QUETZ_API_KEY}}" {auth} '
                                     '''-d "{\\"name\\": \\"my-mirror-channel\\", \\"private\\": false, '''
                                     '''\\"mirror_channel_url\\": \\"${QUETZ_HOST}/get/my-channel\\", '''
                                     '''\\"mirror_mode\\": \\"mirror\\"}"''')
    assert (status, body) == (201, None)
    # 12. The registered mirrors.
    status, mirrors = await run(sh.run, f'curl "${{QUETZ_HOST}}/api/channels/my-channel/mirrors" {auth}')
    host = sh.env["QUETZ_HOST"]
    assert status == 200
    assert sorted(m["url"] for m in mirrors) == [f"{host}/get/mirror-channel", f"{host}/get/my-mirror-channel"]
    assert all(set(m) == {"id", "url", "api_endpoint", "metrics_endpoint"} for m in mirrors)
    # 13. Pull the mirrors' download counts: a job.
    status, job = await run(sh.run, f'curl -X PUT "${{QUETZ_HOST}}/api/channels/my-channel/actions" {auth} '
                                    '-d \'{"action": "synchronize_metrics"}\'')
    assert status == 200 and job["manifest"] == "synchronize_metrics"
    # Unregister one; a refused registration (no key for the upstream) leaves no channel behind.
    status, _ = await run(sh.run, f'curl -X DELETE "${{QUETZ_HOST}}/api/channels/my-channel/mirrors/{mirror["id"]}" '
                                  f'{auth}')
    assert status == 200
    status, body = await run(sh.run, 'curl -X POST "${QUETZ_HOST}/api/channels?register_mirror=true" '
                                     f'{auth} -d "{{\\"name\\": \\"orphan\\", \\"private\\": false, '
                                     '''\\"mirror_channel_url\\": \\"${QUETZ_HOST}/get/my-channel\\", '''
                                     '''\\"mirror_mode\\": \\"mirror\\"}"''')
    assert status == 422
    status, _ = await run(sh.run, 'curl "${QUETZ_HOST}/api/channels/orphan"')
    assert status == 404
