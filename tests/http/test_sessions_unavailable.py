"""A database outage while a session cookie is checked: 503, and the cookie is kept (nobody is signed out)."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from graphconda.settings import Settings
from tests.fixtures.server import free_port
from tests.helpers.sessions import signed_cookie


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"database": {"url": f"postgresql+asyncpg://graphconda@127.0.0.1:{free_port()}/graphconda",
                         "connect_timeout_seconds": 1.0}}


async def test_a_database_outage_signs_nobody_out(client: httpx2.AsyncClient, settings: Settings) -> None:
    client.cookies.set("graphconda_session", signed_cookie(settings, {"sid": "A" * 43}), domain="testserver.local")
    for path in ("/auth/me", "/get/main/noarch/repodata.json"):
        response = await client.get(path)
        assert response.status_code == 503, response.text
        assert "graphconda_session" not in response.headers.get("set-cookie", "")
