"""What routes read from a request: the services and the calling actor."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from graphconda.services.authz import ANONYMOUS, Actor
from graphconda.services.context import Services


def services_of(conn: HTTPConnection) -> Services:
    return conn.app.state.services


def actor_of(conn: HTTPConnection) -> Actor:
    """The actor the identity middleware resolved (anonymous when none)."""
    return getattr(conn.state, "actor", None) or ANONYMOUS
