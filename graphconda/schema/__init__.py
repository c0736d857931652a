"""The Strawberry GraphQL schema and its ASGI view."""

from __future__ import annotations

from typing import Any

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from graphconda.schema.context import Context
from graphconda.schema.queries import Query
from graphconda.http.deps import actor_of
from graphconda.settings import Settings


def build_schema(settings: Settings) -> strawberry.Schema:
    limits = settings.limits
    return strawberry.Schema(
        query=Query,
        extensions=[
            lambda: QueryDepthLimiter(max_depth=limits.graphql_max_depth),
            lambda: MaxTokensLimiter(max_token_count=limits.graphql_max_tokens),
            lambda: MaxAliasesLimiter(max_alias_count=limits.graphql_max_aliases),
        ],
    )


class GraphQLView(GraphQL[Context, None]):
    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket | None) -> Context:
        return Context(services=request.app.state.services, actor=actor_of(request), request=request, response=response)


def graphql_app(settings: Settings) -> Any:
    return GraphQLView(build_schema(settings), graphql_ide="graphiql")
