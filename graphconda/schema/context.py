"""The per-request GraphQL context: services, the calling actor, and DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.types import Info as _Info

from graphconda.services.authz import Actor
from graphconda.services.context import Services


@dataclass
class Context:
    services: Services
    actor: Actor
    request: Request | WebSocket | None = None
    response: Any = None
    # DataLoaders, created lazily per request (see schema/loaders.py).
    loaders: dict[str, Any] = field(default_factory=dict)


Info = _Info[Context, None]
