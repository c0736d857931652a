"""User: a person or bot; e-mail, memberships' roles and API keys only where the caller may see them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphconda.db import models
from graphconda.errors import PublicError
from graphconda.schema import loaders
from graphconda.schema.context import Info
from graphconda.schema.types.api_key import ApiKey
from graphconda.schema.types.enums import Role
from graphconda.services import authz

if TYPE_CHECKING:
    from graphconda.schema.types.channel import Channel


@strawberry.type(description="A user's role on a channel.")
class ChannelMembership:
    channel: Annotated[Channel, strawberry.lazy("graphconda.schema.types.channel")]
    role: Role


@strawberry.type(description="A graphconda user.")
class User:
    id: strawberry.Private[int]
    username: str
    display_name: str
    avatar_url: str
    server_role: Role | None = strawberry.field(description="Server-wide role; null for none.")
    created_at: datetime
    email_address: strawberry.Private[str]

    @classmethod
    def from_model(cls, user: models.User) -> User:
        assert user.id is not None
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            avatar_url=user.avatar_url,
            server_role=Role.of(user.server_role),
            created_at=user.created_at,
            email_address=user.email,
        )

    @strawberry.field(description="Only for the user themself and server staff; null otherwise.")
    def email(self, info: Info) -> str | None:
        return self.email_address if authz.can_read_user_private(info.context.actor, self.id) else None

    @strawberry.field(description="Channel roles, on the channels you may see.")
    async def memberships(self, info: Info) -> list[ChannelMembership]:
        from graphconda.schema.types.channel import Channel

        rows = await loaders.user_memberships(info.context).load(self.id)
        return [ChannelMembership(channel=Channel.from_model(channel), role=Role(role)) for channel, role in rows]

    @strawberry.field(description="The user's API keys, newest first; only for the user themself and server owners.")
    async def api_keys(self, info: Info) -> list[ApiKey] | None:
        try:
            authz.require_manage_api_keys(info.context.actor, self.id)
        except PublicError:
            return None
        return [ApiKey.from_model(key) for key in await loaders.user_api_keys(info.context).load(self.id)]
