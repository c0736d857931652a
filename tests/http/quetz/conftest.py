"""Fixtures for the Quetz-compatible REST API: users with keys of every kind, channels, an in-process client."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from graphconda.services import api_keys
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.helpers.channels import make_user


@dataclass
class Keys:
    admin: str  # server owner
    alice: str  # a plain user (owns what she creates)
    bob: str  # another plain user
    staff: str  # server maintainer

    def header(self, who: str) -> dict[str, str]:
        return {"X-API-Key": getattr(self, who)} if who != "anon" else {}


@pytest.fixture
async def keys(services: Services) -> Keys:
    made: dict[str, str] = {}
    for name, role in (("admin", Role.OWNER), ("alice", None), ("bob", None), ("staff", Role.MAINTAINER)):
        actor = await make_user(services, name, role)
        _, made[name] = await api_keys.create_api_key(services, actor)
    return Keys(**made)
