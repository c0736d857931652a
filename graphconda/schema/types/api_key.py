"""ApiKey: an API key as listed; its secret appears only in `NewApiKey`, once."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graphconda.db import models
from graphconda.schema import loaders
from graphconda.schema.context import Info
from graphconda.schema.types.enums import Role


@strawberry.type(description="What a scoped key may do: `role` on `channel` (only `package`, when set).")
class ApiKeyScope:
    channel: str | None = strawberry.field(description="Null when the channel is private and no longer visible to you.")
    package: str | None
    role: Role


@strawberry.type(description="An API key (never its secret). A key without scopes acts with its user's full rights.")
class ApiKey:
    id: strawberry.ID
    description: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = strawberry.field(description="Updated at most once a minute.")
    revoked_at: datetime | None
    key_id: strawberry.Private[int]
    scoped: strawberry.Private[bool]

    @classmethod
    def from_model(cls, key: models.ApiKey) -> ApiKey:
        assert key.id is not None
        return cls(
            id=strawberry.ID(str(key.id)),
            description=key.description,
            created_at=key.created_at,
            expires_at=key.expires_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            key_id=key.id,
            scoped=bool(getattr(key, "scoped", False)),
        )

    @strawberry.field(description="Empty for a key with its user's full rights.")
    async def scopes(self, info: Info) -> list[ApiKeyScope]:
        rows = await loaders.api_key_scopes(info.context).load(self.key_id)
        return [ApiKeyScope(channel=channel, package=package, role=Role(role)) for channel, package, role in rows]


@strawberry.type(description="A key just created: `secret` is shown this once and never again.")
class NewApiKey:
    api_key: ApiKey
    secret: str = strawberry.field(description="Send as `Authorization: Bearer <secret>` or `X-API-Key`.")
