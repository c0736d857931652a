"""Browser session cookies made the way the server makes them (signed JSON), for tests that skip the login."""

from __future__ import annotations

import base64
import json
from typing import Any

import itsdangerous

from graphconda.services import sessions, users
from graphconda.services.context import Services
from graphconda.settings import Settings


def signed_cookie(settings: Settings, data: dict[str, Any]) -> str:
    """A `graphconda_session` value holding `data`, signed with the server's secret."""
    signer = itsdangerous.TimestampSigner(settings.auth.session_secret)
    return signer.sign(base64.b64encode(json.dumps(data).encode())).decode()


async def session_cookie(services: Services, username: str) -> str:
    """A cookie for a new live session of `username`, as a login would set it."""
    token = await sessions.start_session(services, await users.get_user(services, username))
    return signed_cookie(services.settings, {"sid": token})
