"""The Query root: thin resolvers over the services."""

from __future__ import annotations

import strawberry

from graphconda.schema.context import Info
from graphconda.schema.types.server import ServerInfo


@strawberry.type
class Query:
    @strawberry.field(description="Version and backends of this server.")
    def server_info(self, info: Info) -> ServerInfo:
        return ServerInfo.from_services(info.context.services)
