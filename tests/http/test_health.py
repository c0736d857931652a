"""/healthz and /readyz: readiness reasons name infrastructure, so only staff and loopback callers see them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from graphconda.services import api_keys
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.helpers.channels import make_user

REMOTE = ("203.0.113.7", 40000)


@pytest.fixture
async def remote(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    """A client calling from another machine."""
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=REMOTE)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def broken_storage(services: Services) -> str:
    root = services.settings.storage_path
    root.mkdir(parents=True, exist_ok=True)
    root.rmdir()
    root.write_text("a file where the storage directory should be")
    return str(root)


async def key_of(services: Services, name: str, role: Role | None) -> dict[str, str]:
    _, secret = await api_keys.create_api_key(services, await make_user(services, name, role))
    return {"X-API-Key": secret}


def names_infrastructure(body: Any, services: Services) -> bool:
    text = str(body)
    url = services.db.url
    return any(part and str(part) in text for part in (url.drivername, url.database, url.host, url.username,
                                                       services.settings.storage_path))


async def test_ready_to_everyone(remote: httpx2.AsyncClient, client: httpx2.AsyncClient) -> None:
    answer = await remote.get("/readyz")
    assert answer.status_code == 200 and answer.json() == {"status": "ready"}
    local = await client.get("/readyz")
    assert local.status_code == 200
    assert local.json() == {"status": "ready", "checks": {"database": {"ok": True}, "storage": {"ok": True},
                                                          "publishing": {"ok": True}}}


async def test_anonymous_remote_callers_get_the_status_only(remote: httpx2.AsyncClient, services: Services,
                                                            broken_storage: str) -> None:
    member = await key_of(services, "member", None)
    for headers in ({}, member):
        answer = await remote.get("/readyz", headers=headers)
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert answer.json() == {"status": "unavailable"}
        assert not names_infrastructure(answer.json(), services)


async def test_staff_and_loopback_see_why(remote: httpx2.AsyncClient, client: httpx2.AsyncClient,
                                          services: Services, broken_storage: str) -> None:
    for role in (Role.OWNER, Role.MAINTAINER):
        answer = await remote.get("/readyz", headers=await key_of(services, f"staff-{role.value}", role))
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "unavailable" and broken_storage in body["reason"]
        assert body["checks"]["database"] == {"ok": True} and body["checks"]["storage"]["ok"] is False
    local = await client.get("/readyz")
    assert local.status_code == 503 and broken_storage in local.json()["reason"]
