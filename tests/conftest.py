"""Layered fixtures: settings -> database -> services -> app -> client; each can be overridden.

Override one layer in a test module (e.g. `settings`) and the layers above follow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from graphconda.app import create_app
from graphconda.services.context import Services, open_services
from graphconda.settings import Settings, load_settings
from tests.fixtures.database import database_template, database_url  # noqa: F401
from tests.fixtures.seaweedfs import seaweedfs  # noqa: F401
from tests.fixtures.server import LiveServer, run_live_server


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra settings for one test module or test (override this fixture)."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, Any]) -> Settings:  # noqa: F811
    base: dict[str, Any] = {
        "server": {"data_dir": str(tmp_path / "data")},
        "database": {"url": database_url},
        "auth": {"session_secret": "test-session-secret"},
        "publish": {"debounce_seconds": 0},
    }
    for section, values in settings_overrides.items():
        base.setdefault(section, {}).update(values)
    return load_settings(environ={}, overrides=base)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    handle = await open_services(settings)
    try:
        yield handle.services
    finally:
        await handle.aclose()


@pytest.fixture
def app(settings: Settings, services: Services) -> Starlette:
    return create_app(settings, services=services)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client talking to the app in-process (same event loop as the test)."""
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app under uvicorn on a loopback port, with services of its own."""
    yield from run_live_server(create_app(settings))
