"""The app factory: health probes, GraphiQL and serverInfo."""

from __future__ import annotations

import httpx2

import graphconda
from graphconda.services.context import Services


async def test_healthz(client: httpx2.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_database_and_storage_work(client: httpx2.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


async def test_readyz_reports_broken_storage(client: httpx2.AsyncClient, services: Services) -> None:
    root = services.settings.storage_path
    root.mkdir(parents=True, exist_ok=True)
    root.rmdir()
    root.write_text("a file where the storage directory should be")
    response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert str(root) in body["reason"]


async def test_graphiql_on_get(client: httpx2.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_server_info(client: httpx2.AsyncClient) -> None:
    query = "{ serverInfo { version storageBackend databaseBackend } }"
    response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    info = response.json()["data"]["serverInfo"]
    assert info["version"] == graphconda.__version__
    assert info["storageBackend"] == "local"
    assert info["databaseBackend"] in ("sqlite", "postgresql")
