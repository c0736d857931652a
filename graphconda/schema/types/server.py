"""ServerInfo: what this server is and what it runs on."""

from __future__ import annotations

import strawberry

import graphconda
from graphconda.services.context import Services


@strawberry.type(description="Facts about this graphconda server.")
class ServerInfo:
    version: str
    storage_backend: str = strawberry.field(description="local or s3")
    database_backend: str = strawberry.field(description="sqlite or postgresql")

    @classmethod
    def from_services(cls, services: Services) -> ServerInfo:
        return cls(
            version=graphconda.__version__,
            storage_backend=services.storage.backend,
            database_backend=services.db.backend,
        )
