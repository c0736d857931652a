"""The per-request GraphQL context: services, the calling actor, DataLoaders and one read session.

Every read of one request goes through one session, opened on first use and closed when
the operation ends (see `RequestSession`): a page costs one BEGIN on SQLite instead of
one per DataLoader batch, and all fields see the same snapshot. Loader batches run as
separate tasks, so the session is handed out under a lock: it is shared, never used
concurrently. Mutations call `changed()` after writing, so later fields read fresh data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types import Info as _Info

from graphconda.http.identity import recheck_actor
from graphconda.services.authz import Actor
from graphconda.services.context import Services

L = TypeVar("L")


@dataclass
class Context:
    services: Services
    actor: Actor
    request: Request | WebSocket | None = None
    response: Any = None
    # DataLoaders, created lazily per request (see schema/loaders.py).
    loaders: dict[str, Any] = field(default_factory=dict)
    _session: AsyncSession | None = None
    _stack: AsyncExitStack | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def loader(self, name: str, factory: Callable[[Context], L]) -> L:
        if name not in self.loaders:
            self.loaders[name] = factory(self)
        return self.loaders[name]

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """The request's read session, for one query at a time."""
        async with self._lock:
            if self._session is None:
                self._stack = AsyncExitStack()
                self._session = await self._stack.enter_async_context(self.services.db.read())
            yield self._session

    async def close(self) -> None:
        async with self._lock:
            stack, self._stack, self._session = self._stack, None, None
            if stack is not None:
                await stack.aclose()

    async def changed(self) -> None:
        """After a write: drop cached loads and the snapshot so following fields see the change."""
        self.loaders.clear()
        await self.close()

    @property
    def base_url(self) -> str:
        """Where clients reach us: the configured public URL, else the request's own."""
        public = self.services.settings.server.public_url
        if public:
            return public.rstrip("/")
        if self.request is not None:
            return str(self.request.base_url).rstrip("/")
        return f"http://{self.services.settings.server.host}:{self.services.settings.server.port}"


class RequestSession(SchemaExtension):
    """Ends the operation's read session and loader caches when it ends.

    Over HTTP a context lives for one operation; over a websocket it lives for the
    connection, and each operation must still see fresh data.
    """

    async def on_operation(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context = self.execution_context.context
            if isinstance(context, Context):
                await context.changed()


class WebsocketActor(SchemaExtension):
    """Over a websocket the context, and the actor in it, live as long as the connection: each
    operation (query, mutation or subscription) first resolves the actor again from the
    credentials the socket was opened with, so a revoked API key or session, or a disabled
    account, acts no more (AuthenticationError) and a changed role applies at once."""

    async def on_execute(self) -> AsyncIterator[None]:
        # Here rather than in on_operation: Strawberry reports errors raised at this step.
        context = self.execution_context.context
        if isinstance(context, Context) and isinstance(context.request, WebSocket):
            context.actor = await recheck_actor(context.request.scope)
        yield


Info = _Info[Context, None]
