"""How domain errors become HTTP responses: public ones say what is wrong, internal ones are masked."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from graphconda.errors import (
    AuthenticationError,
    BlobNotFoundError,
    DatabaseError,
    GraphcondaError,
    PublicError,
    StorageError,
)

log = logging.getLogger("graphconda")


def error_response(exc: GraphcondaError) -> JSONResponse:
    if isinstance(exc, PublicError):
        headers = {"WWW-Authenticate": 'Bearer realm="graphconda"'} if isinstance(exc, AuthenticationError) else None
        body: dict[str, str] = {"detail": str(exc)}
        field = getattr(exc, "field", None)
        if field:
            body["field"] = field
        return JSONResponse(body, status_code=exc.status_code, headers=headers)
    log.error("internal error: %s", exc, exc_info=exc)
    if isinstance(exc, DatabaseError | StorageError) and not isinstance(exc, BlobNotFoundError):
        # A backend that is down: 503 says "try again" to clients (and uploaders retry it), as /readyz does.
        return JSONResponse({"detail": "service temporarily unavailable; try again later"}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"detail": "internal error"}, status_code=500)


async def handle_graphconda_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GraphcondaError)
    return error_response(exc)


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    # A client that goes away mid-upload is ordinary (a cancelled push, a dropped link); what
    # it sent was discarded on the way out, so there is nothing to alarm an operator about.
    client = request.client.host if request.client else "a client"
    log.info("%s disconnected during %s %s; the request was abandoned", client, request.method, request.url.path)
    return Response(status_code=400)  # nobody is left to read it


exception_handlers = {GraphcondaError: handle_graphconda_error, ClientDisconnect: handle_client_disconnect}
