"""Registered mirrors with two graphconda servers on loopback: a primary (the server under test, SQLite or
PostgreSQL) and a mirror of its channel (a second server with its own SQLite database and files).

The mirror channel is created over GraphQL with "register with upstream": it registers itself at
the primary. Clients download from the mirror; `synchronize_metrics` on the primary, run twice,
merges the mirror's downloads exactly once (and later downloads once more); a mirror whose
metrics endpoint fails is reported while the others still merge.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import select

from graphconda.app import create_app
from graphconda.db.migrate import upgrade_sync
from graphconda.db.models import Channel, RegisteredMirror
from graphconda.services import api_keys, jobs, packages
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services, open_services
from graphconda.services.metrics import aggregate
from graphconda.services.mirror_metrics import synchronize_metrics
from graphconda.services.mirroring import sync_mirror
from graphconda.services.publisher import wait_published
from graphconda.settings import Settings, load_settings
from tests.fixtures.server import LiveServer, run_live_server
from tests.helpers.channels import chunks, make_channel, make_user
from tests.helpers.jobs import run_to_end
from tests.helpers.packages import build_package

pytestmark = pytest.mark.slow

FIGURES = """query($name: String!) { channel(name: $name) { downloadCount
  registeredMirrors { id url apiEndpoint metricsEndpoint lastSynchronised lastError }
  package(name: "alpha") { downloadCount latestFiles { filename downloadCount } } } }"""


@dataclass
class Mirror:
    server: LiveServer
    settings: Settings
    key: str


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"metrics": {"flush_seconds": 0.1}}


@pytest.fixture
async def primary_key(services: Services, tmp_path: Path) -> str:
    owner = await make_user(services, "owner", Role.OWNER)
    await make_channel(services, "main")
    path = build_package(tmp_path / "built", "alpha", "1.0", "0")
    await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    await wait_published(services)
    return (await api_keys.create_api_key(services, owner))[1]


@pytest.fixture
async def mirror(tmp_path: Path) -> AsyncIterator[Mirror]:
    """A second graphconda server (own SQLite database and files) with a staff API key."""
    data = tmp_path / "mirror-server"
    data.mkdir()
    url = f"sqlite+aiosqlite:///{data / 'mirror.db'}"
    await anyio.to_thread.run_sync(upgrade_sync, url)
    settings = load_settings(environ={}, overrides={
        "server": {"data_dir": str(data)}, "database": {"url": url}, "auth": {"session_secret": "mirror"},
        "metrics": {"flush_seconds": 0.1}, "jobs": {"embedded_runner": False}})
    handle = await open_services(settings)
    try:
        owner = await make_user(handle.services, "mirror-owner", Role.OWNER)
        _, key = await api_keys.create_api_key(handle.services, owner)
    finally:
        await handle.aclose()
    servers = run_live_server(create_app(settings))
    server = await anyio.to_thread.run_sync(next, servers)
    try:
        yield Mirror(server, settings, key)
    finally:
        await anyio.to_thread.run_sync(lambda: next(servers, None))


async def gql(url: str, key: str | None, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{url}/graphql", json={"query": query, "variables": variables},
                                   headers={"X-API-Key": key} if key else {})
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body["data"]  # type: ignore[no-any-return]


async def fold_all(services: Services, expected: int) -> None:
    """Aggregate on `services`' database until `expected` downloads (flushed by a live server) are folded."""
    total = 0
    for _ in range(200):
        total += (await aggregate(services)).downloads
        if total >= expected:
            assert total == expected
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {total} of {expected} downloads were folded")


async def download(url: str, times: int) -> None:
    async with httpx2.AsyncClient() as http:
        for _ in range(times):
            assert (await http.get(url)).status_code == 200


CREATE = """mutation($upstream: String!, $key: String!) { createChannel(input: {name: "copy", mirrorMode: MIRROR,
  mirrorChannelUrl: $upstream, syncNow: false, registerWithUpstream: true, upstreamApiKey: $key}) {
  __typename ... on Channel { name } ... on InvalidInput { field message } ... on Error { message } } }"""


async def test_a_mirrors_downloads_merge_exactly_once(live_server: LiveServer, services: Services, primary_key: str,
                                                      mirror: Mirror) -> None:
    # A wrong upstream key: the upstream refuses, and no channel is left on the mirror.
    refused = (await gql(mirror.server.url, mirror.key, CREATE,
                         {"upstream": f"{live_server.url}/get/main", "key": "gc-wrong"}))["createChannel"]
    assert refused["__typename"] == "InvalidInput" and refused["field"] == "input.registerWithUpstream"
    assert (await gql(mirror.server.url, mirror.key, '{ channel(name: "copy") { name } }', {}))["channel"] is None

    created = (await gql(mirror.server.url, mirror.key, CREATE,
                         {"upstream": f"{live_server.url}/get/main", "key": primary_key}))["createChannel"]
    assert created == {"__typename": "Channel", "name": "copy"}
    registered = (await gql(live_server.url, None, FIGURES, {"name": "main"}))["channel"]["registeredMirrors"]
    assert [(r["url"], r["metricsEndpoint"], r["lastSynchronised"]) for r in registered] == [
        (f"{mirror.server.url}/get/copy", f"{mirror.server.url}/metrics/channels/copy", None)]

    # The mirror copies the channel (one download on the primary), then clients download from the mirror.
    mirror_handle = await open_services(mirror.settings)
    try:
        async with mirror_handle.services.db.read() as session:
            copy = await session.scalar(select(Channel).where(Channel.name == "copy"))
        assert copy is not None
        assert (await sync_mirror(mirror_handle.services, copy)).failures == []
        await wait_published(mirror_handle.services)
        await download(f"{mirror.server.url}/get/copy/noarch/alpha-1.0-0.conda", 3)
        await fold_all(mirror_handle.services, 3)
        await fold_all(services, 1)  # the primary's own: the mirror's sync

        async with services.db.read() as session:
            channel = await session.scalar(select(Channel).where(Channel.name == "main"))
        assert channel is not None
        first = await synchronize_metrics(services, channel)
        again = await synchronize_metrics(services, channel)
        assert list(first.merged.values()) == [3] and list(again.merged.values()) == [0]
        figures = (await gql(live_server.url, None, FIGURES, {"name": "main"}))["channel"]
        assert figures["downloadCount"] == 4 and figures["package"]["downloadCount"] == 4
        assert figures["package"]["latestFiles"] == [{"filename": "alpha-1.0-0.conda", "downloadCount": 4}]
        assert figures["registeredMirrors"][0]["lastSynchronised"] is not None
        assert figures["registeredMirrors"][0]["lastError"] is None

        # Two more downloads on the mirror: the next pull adds those two, and only those.
        await download(f"{mirror.server.url}/get/copy/noarch/alpha-1.0-0.conda", 2)
        await fold_all(mirror_handle.services, 2)
    finally:
        await mirror_handle.aclose()

    # A second mirror whose metrics endpoint now fails: reported, while the first still merges.
    async with services.db.write() as session:
        session.add(RegisteredMirror(channel_id=channel.id, url="http://127.0.0.1:9/get/gone",
                                     metrics_endpoint="http://127.0.0.1:9/metrics/channels/gone"))
    run = await jobs.run_job(services, SYSTEM, "synchronize_metrics", channel="main")
    assert run.id is not None
    done = await run_to_end(services, run.id)
    assert done.status == "failed" and "127.0.0.1:9" in (done.error or "")
    assert f"{mirror.server.url}/get/copy: 2 downloads added" in done.log_tail
    figures = (await gql(live_server.url, None, FIGURES, {"name": "main"}))["channel"]
    assert figures["downloadCount"] == 6
    gone = next(r for r in figures["registeredMirrors"] if "gone" in r["url"])
    assert gone["lastError"] and gone["lastSynchronised"] is None
    await synchronize_metrics(services, channel)
    assert (await gql(live_server.url, None, FIGURES, {"name": "main"}))["channel"]["downloadCount"] == 6


REGISTER = """mutation($input: RegisterMirrorInput!) { registerMirror(input: $input) {
  __typename ... on RegisteredMirror { id url } ... on InvalidInput { field message } ... on Error { message } } }"""


async def test_register_and_unregister_over_graphql(live_server: LiveServer, services: Services, primary_key: str,
                                                    mirror: Mirror) -> None:
    stranger = await make_user(services, "stranger")
    _, stranger_key = await api_keys.create_api_key(services, stranger)
    good = {"channel": "main", "url": f"{mirror.server.url}/get/x", "apiEndpoint": "",
            "metricsEndpoint": f"{live_server.url}/metrics/channels/main"}  # any channel metrics endpoint answers

    async def register(key: str, **changes: str) -> dict[str, Any]:
        return (await gql(live_server.url, key, REGISTER, {"input": {**good, **changes}}))["registerMirror"]

    assert (await register(stranger_key))["__typename"] == "PermissionDenied"
    assert (await register(primary_key, url="ftp://x/get/x"))["field"] == "input.url"
    assert (await register(primary_key, metricsEndpoint="/metrics/channels/main"))["field"] == "input.metricsEndpoint"
    not_metrics = await register(primary_key, metricsEndpoint=f"{live_server.url}/get/main/noarch/repodata.json")
    assert not_metrics["__typename"] == "InvalidInput" and not_metrics["field"] == "input.metricsEndpoint"
    assert (await register(primary_key, channel="nothing"))["__typename"] == "NotFound"
    async with services.db.read() as session:
        assert (await session.scalars(select(RegisteredMirror))).all() == []
    made = await register(primary_key)
    assert made["__typename"] == "RegisteredMirror"
    unregister = """mutation($id: ID!) { unregisterMirror(id: $id) { __typename } }"""
    assert (await gql(live_server.url, stranger_key, unregister, {"id": made["id"]}))["unregisterMirror"] == {
        "__typename": "PermissionDenied"}
    assert (await gql(live_server.url, primary_key, unregister, {"id": made["id"]}))["unregisterMirror"] == {
        "__typename": "RegisteredMirror"}
    assert (await gql(live_server.url, None, FIGURES, {"name": "main"}))["channel"]["registeredMirrors"] == []
