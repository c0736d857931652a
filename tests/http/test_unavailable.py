"""A database that refuses connections or never answers: every request answers 503 with Retry-After, promptly."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import make_url

from graphconda.app import create_app
from graphconda.services.context import open_services
from graphconda.settings import load_settings
from tests.fixtures.database import PG_ENV
from tests.helpers.channels import make_channel
from tests.helpers.packages import build_package

CONNECT_TIMEOUT = 1.0
# Generous: the point is "seconds, not a minute" (the driver's default connect timeout is 60 s).
PROMPTLY = 10.0


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A loopback TCP server that accepts connections and never sends a byte (a hung database host)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so no other test can take it), never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(params=["refusing", "silent", "sqlite-gone"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Overrides the test database: one that cannot be used at all."""
    if request.param == "refusing":
        return f"postgresql+asyncpg://graphconda@127.0.0.1:{request.getfixturevalue('refusing_port')}/graphconda"
    if request.param == "silent":
        return f"postgresql+asyncpg://graphconda@127.0.0.1:{request.getfixturevalue('silent_server')}/graphconda"
    return f"sqlite+aiosqlite:///{tmp_path}/unmounted-volume/graphconda.db"  # its directory is gone


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"database": {"connect_timeout_seconds": CONNECT_TIMEOUT}}


async def timed(call: Any) -> tuple[httpx2.Response, float]:
    start = time.monotonic()
    response = await call
    return response, time.monotonic() - start


def assert_unavailable(response: httpx2.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.json() == {"detail": "the database is temporarily unavailable; try again later"}
    assert took < PROMPTLY


async def test_serving_and_uploads_answer_503_promptly(client: httpx2.AsyncClient, tmp_path: Path) -> None:
    package = build_package(tmp_path, "alpha").read_bytes()
    requests = [
        client.get("/get/main/noarch/repodata.json"),
        client.get("/get/main/noarch/repodata.json.zst"),
        client.get("/get/main/noarch/alpha-1.0-0.conda"),
        client.head("/get/main/noarch/alpha-1.0-0.conda"),
        client.post("/api/channels/main/upload/alpha-1.0-0.conda", content=package,
                    headers={"X-API-Key": "gc-not-checked-while-the-database-is-down"}),
        client.post("/api/channels/main/upload/alpha-1.0-0.conda", content=package),
        client.post("/api/v1/upload/main", content=package, headers={"X-File-Name": "alpha-1.0-0.conda"}),
        client.post("/api/channels/main/files", files={"files": ("alpha-1.0-0.conda", package)}),
    ]
    for request in requests:
        response, took = await timed(request)
        if response.request.method == "HEAD":
            assert response.status_code == 503 and took < PROMPTLY
            continue
        assert_unavailable(response, took)


async def test_concurrent_requests_all_answer_promptly(client: httpx2.AsyncClient) -> None:
    start = time.monotonic()
    answers = await asyncio.gather(*(client.get(f"/get/ch{i % 5}/noarch/repodata.json") for i in range(40)))
    assert [r.status_code for r in answers] == [503] * 40
    assert time.monotonic() - start < 2 * PROMPTLY


async def test_readyz_says_why(client: httpx2.AsyncClient) -> None:
    response, took = await timed(client.get("/readyz"))
    assert response.status_code == 503 and took < PROMPTLY and response.headers["retry-after"]
    body = response.json()
    assert body["status"] == "unavailable" and body["checks"]["database"]["ok"] is False
    assert body["checks"]["storage"] == {"ok": True}
    detail = body["checks"]["database"]["detail"]
    assert "127.0.0.1" in detail or "unmounted-volume" in detail  # a loopback caller may see where


class Switch:
    """A loopback TCP forwarder to the real test database that can drop every connection and refuse new ones
    (a database restart or failover, as clients see it)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.close()
        for writer in self.links:
            writer.close()
        self.links.clear()
        await server.wait_closed()


@pytest.fixture
def server_database(request: pytest.FixtureRequest) -> str:
    """The migrated PostgreSQL test database (set up outside the test's event loop); skips on SQLite."""
    if not os.environ.get(PG_ENV):
        pytest.skip("needs a database server to switch off and on (GRAPHCONDA_TEST_DATABASE_URL)")
    return str(request.getfixturevalue("database_template"))


async def test_serving_recovers_when_the_database_comes_back(server_database: str, tmp_path: Path) -> None:
    """The real test database (PostgreSQL) behind a switch: 503 while it is away, 200 once it is back."""
    real = make_url(server_database)
    switch = Switch(real.host or "127.0.0.1", real.port or 5432)
    await switch.up()
    url = real.set(host="127.0.0.1", port=switch.port).render_as_string(hide_password=False)
    settings = load_settings(environ={}, overrides={
        "server": {"data_dir": str(tmp_path / "data")}, "database": {"url": url, "connect_timeout_seconds": 1},
        "auth": {"session_secret": "s"}, "publish": {"debounce_seconds": 0}})
    name = f"switched-{uuid.uuid4().hex[:8]}"
    handle = await open_services(settings)
    try:
        await make_channel(handle.services, name)
        app = create_app(settings, services=handle.services)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
                path = f"/get/{name}/noarch/repodata.json"
                assert (await client.get(path)).status_code == 200
                await switch.down()
                await asyncio.sleep(settings.publish.serve_cache_seconds + 0.5)  # past the serving cache
                response, took = await timed(client.get(path))
                assert_unavailable(response, took)
                await switch.up()
                assert (await client.get(path)).status_code == 200
    finally:
        await handle.aclose()
        await switch.down()
