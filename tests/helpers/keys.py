"""API keys as clients see them: conda's token URL pattern, and keys in the format issued before it was honoured."""

from __future__ import annotations

import re
import secrets

from graphconda.db.models import ApiKey
from graphconda.services import api_keys
from graphconda.services.authz import Actor
from graphconda.services.context import Services

# conda (conda/models/channel.py, conda/common/url.py) finds the token in a channel URL with this.
CONDA_TOKEN_IN_URL = re.compile(r"/t/([a-zA-Z0-9-]*)")


def token_conda_reads(key: str) -> str:
    """The token conda takes from `http://host/t/<key>/get/<channel>`."""
    found = CONDA_TOKEN_IN_URL.search(f"http://127.0.0.1:8000/t/{key}/get/team")
    assert found is not None
    return found.group(1)


def assert_conda_reads_the_whole_key(key: str) -> None:
    assert token_conda_reads(key) == key, f"conda would read the token of {key!r} as {token_conda_reads(key)!r}"


async def legacy_key(services: Services, user: Actor) -> str:
    """A key as issued before new keys avoided `_`: `gc_` + 43 URL-safe characters, stored as its hash."""
    secret = "gc_" + secrets.token_urlsafe(32)
    while "_" not in secret[3:] or "-" not in secret:  # the characters conda stops at, both kinds
        secret = "gc_" + secrets.token_urlsafe(32)
    assert user.user_id is not None
    async with services.db.write() as session:
        session.add(ApiKey(user_id=user.user_id, key_hash=api_keys.hash_secret(secret), created_at=services.now()))
    return secret
