"""A database that refuses connections or never answers: every request answers 503 with Retry-After, promptly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fixtures.server import free_port
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


@pytest.fixture(params=["refusing", "silent", "sqlite-gone"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Overrides the test database: one that cannot be used at all."""
    if request.param == "refusing":
        return f"postgresql+asyncpg://graphconda@127.0.0.1:{free_port()}/graphconda"  # nothing listens there
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
