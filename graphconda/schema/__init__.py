"""The Strawberry GraphQL schema and its ASGI view (HTTP, websocket, GraphiQL, multipart uploads).

Hostile documents are cheap to refuse: the body size is capped before it is read in full,
the token limit aborts parsing, and depth, alias, size and cost limits (limits.py, linear in
the document however its fragments are spread; cost.py: the most objects an operation can
return) fail validation, so none of them reaches a resolver. Multipart
requests (uploads) must carry a header a cross-site form cannot send, and malformed ones
get a 400, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import strawberry
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import MaxTokensLimiter
from strawberry.file_uploads.utils import replace_placeholders_with_files
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from graphconda.errors import AuthenticationError
from graphconda.http import web
from graphconda.http.deps import actor_of
from graphconda.schema import bodies
from graphconda.schema.context import Context, RequestSession, WebsocketActor
from graphconda.schema.errors import PublicErrorsOnly, is_public
from graphconda.schema.limits import QueryLimits
from graphconda.schema.mutations import Mutation
from graphconda.schema.queries import Query
from graphconda.schema.subscriptions import Subscription
from graphconda.schema.text import UnstorableTextGuard
from graphconda.schema.types.enums import SCALARS
from graphconda.services import authz
from graphconda.settings import Settings

# A JSON document of 5000 tokens is far below this; variables carry the rest.
MAX_JSON_BODY_BYTES = 1024 * 1024
# Headers that make a browser preflight the request, so a cross-site form cannot send them.
PREFLIGHT_HEADERS = (
    b"authorization",
    b"x-api-key",
    b"x-requested-with",
    b"x-graphconda-csrf",
    b"apollo-require-preflight",
    b"graphql-require-preflight",
    b"x-apollo-operation-name",
)


class SubscriptionOverHTTPError(InvalidOperationTypeError):
    """A subscription sent as an HTTP request: answered 400 (the view turns it into that)."""

    def __init__(self) -> None:
        super().__init__(OperationType.SUBSCRIPTION)

    def as_http_error_reason(self, method: str) -> str:
        return (f"subscriptions are not served over HTTP {method}: open a websocket to /graphql "
                "(subprotocol graphql-transport-ws) and subscribe there")


class Schema(strawberry.Schema):
    async def execute(self, query: str | None, variable_values: dict[str, Any] | None = None,
                      context_value: Any | None = None, root_value: Any | None = None,
                      operation_name: str | None = None,
                      allowed_operation_types: Iterable[OperationType] | None = None,
                      operation_extensions: dict[str, Any] | None = None) -> ExecutionResult:
        """Queries and mutations (HTTP). Strawberry would run a subscription here too, as one result,
        which fails inside the resolver; websockets subscribe through `subscribe`, never this."""
        allowed = set(allowed_operation_types if allowed_operation_types is not None else OperationType)
        try:
            return await super().execute(query, variable_values, context_value, root_value, operation_name,
                                         allowed - {OperationType.SUBSCRIPTION}, operation_extensions)
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise SubscriptionOverHTTPError from None
            raise

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Log unexpected failures only: a client's bad query or a refused action is not a server problem."""
        super().process_errors([e for e in errors if not is_public(e)], execution_context)


def build_schema(settings: Settings) -> strawberry.Schema:
    limits = settings.limits
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=[
            WebsocketActor,  # before anything reads the actor
            lambda: MaxTokensLimiter(max_token_count=limits.graphql_max_tokens),
            lambda: QueryLimits(  # depth, aliases, size and cost, each linear in the document (limits.py)
                max_depth=limits.graphql_max_depth,
                max_aliases=limits.graphql_max_aliases,
                max_fields=limits.graphql_max_tokens,
                max_cost=limits.graphql_max_cost,
                max_page_size=limits.graphql_max_page_size,
            ),
            UnstorableTextGuard,
            PublicErrorsOnly,
            RequestSession,
        ],
    )


class _BodyTooLarge(Exception):
    pass


def _capped(receive: Receive, limit: int) -> Receive:
    """`receive` that fails once more than `limit` body bytes arrived (chunked bodies have no length)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
        return message

    return wrapped


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        super().__init__(schema, graphql_ide="graphiql", multipart_uploads_enabled=True)
        self.max_upload_bytes = settings.limits.max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if scope.get("method") != "POST":
            try:
                response = await self.run(Request(scope, receive))
            except HTTPException as exc:
                response = bodies.error_response(exc.status_code, exc.reason)
            await response(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        if multipart and not any(h in headers for h in PREFLIGHT_HEADERS):
            await bodies.error_response(
                400,
                "multipart GraphQL requests need an Authorization or X-API-Key header, "
                "or 'GraphQL-Require-Preflight: 1' (CSRF protection)",
            )(scope, receive, send)
            return
        if multipart:
            try:  # uploads need a caller; refuse anonymous ones before their body is spooled
                authz.require_login(actor_of(Request(scope)), "upload packages")
            except AuthenticationError as exc:
                await bodies.error_response(401, str(exc))(scope, receive, send)
                return
        limit = self.max_upload_bytes if multipart else MAX_JSON_BODY_BYTES
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        request = Request(scope, receive=_capped(receive, limit))
        try:
            response = await self.run(request)
        except HTTPException as exc:
            response = bodies.error_response(exc.status_code, exc.reason)
        except _BodyTooLarge:
            response = _too_large(limit)
        finally:
            await request.close()  # the spooled files of a multipart body
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        return bodies.decode_json(data)  # UTF-8 only, nesting bounded (bodies.py); websockets too

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return bodies.decode_json(data)
        except bodies.RefusedJSON as exc:
            raise HTTPException(400, exc.reason) from None
        except json.JSONDecodeError:
            raise HTTPException(400, "Unable to parse request body as JSON") from None

    async def parse_http_body(self, request: Any) -> Any:
        if request.method == "POST" and "application/json" in (request.content_type or ""):
            bodies.require_object_body(await request.get_body())  # else Strawberry fails on `"hello"`
        return await super().parse_http_body(request)

    async def parse_multipart(self, request: Any) -> dict[str, str]:
        """Strawberry's parser, with every malformed `operations`/`map` answered by a 400."""
        try:
            form = await request.get_form_data()
        except ValueError as exc:
            raise HTTPException(400, "Unable to parse the multipart body") from exc
        try:
            operations = self.parse_json(form.form.get("operations", "{}"))
            files_map = self.parse_json(form.form.get("map", "{}"))
        except HTTPException:
            raise
        except (TypeError, ValueError) as exc:
            raise HTTPException(400, "multipart `operations` and `map` must be JSON") from exc
        if not isinstance(operations, dict | list) or not isinstance(files_map, dict):
            raise HTTPException(400, "multipart `operations` must be an object and `map` an object of paths")
        if not all(isinstance(paths, list) and all(isinstance(p, str) for p in paths) for paths in files_map.values()):
            raise HTTPException(400, "each entry of the multipart `map` must be a list of paths")
        bodies.check_files_map(files_map)
        missing = sorted(name for name in files_map if name not in form.files)
        if missing:
            raise HTTPException(400, f"File(s) missing in form data: {', '.join(missing)[:200]}")
        for name in files_map:  # Starlette's form holds plain fields too: they would become text variables
            if not isinstance(form.files[name], UploadFile):
                raise HTTPException(400, f"multipart part {name[:64]!r} is not a file: a file part needs a "
                                         'filename (Content-Disposition: form-data; name="..."; filename="...")')
        try:
            return replace_placeholders_with_files(operations, files_map, form.files)  # type: ignore[arg-type]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise HTTPException(400, "the multipart `map` points at a path that is not in `operations`") from exc

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from our package (graphconda/web/graphiql/), not Strawberry's CDN page."""
        return web.graphiql_page()

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket | None) -> Context:
        return Context(services=request.app.state.services, actor=actor_of(request), request=request, response=response)


def _too_large(limit: int) -> Response:
    return bodies.error_response(413, f"request body over the limit of {limit} bytes")


def graphql_app(settings: Settings) -> Any:
    return GraphQLView(build_schema(settings), settings)


__all__ = ["GraphQLView", "build_schema", "graphql_app"]
