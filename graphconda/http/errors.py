"""How domain errors become HTTP responses: public ones say what is wrong, internal ones are masked.

A backend that is down or busy answers 503 with Retry-After (the database refused, timed
out or stayed locked; storage unreachable), a full store 507 (Insufficient Storage): both
say "try again" to clients and uploaders, are logged as one WARNING line, and name no
infrastructure. Anything else unexpected is a 500, logged with its traceback.
"""

from __future__ import annotations

import errno
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
    StorageFullError,
)

RETRY_AFTER_SECONDS = 5
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

log = logging.getLogger("graphconda")


def error_response(exc: GraphcondaError) -> JSONResponse:
    if isinstance(exc, PublicError):
        headers = {"WWW-Authenticate": 'Bearer realm="graphconda"'} if isinstance(exc, AuthenticationError) else None
        body: dict[str, str] = {"detail": str(exc)}
        field = getattr(exc, "field", None)
        if field:
            body["field"] = field
        return JSONResponse(body, status_code=exc.status_code, headers=headers)
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if isinstance(exc, StorageFullError):
        log.warning("storage full: %s", exc)
        return JSONResponse({"detail": "the server's storage is full; nothing was stored, try again later"},
                            status_code=507, headers=retry)
    if isinstance(exc, DatabaseError | StorageError) and not isinstance(exc, BlobNotFoundError):
        # A backend that is down: 503 says "try again" to clients (and uploaders retry it), as /readyz does.
        log.warning("%s unavailable: %s", "database" if isinstance(exc, DatabaseError) else "storage", exc)
        what = "the database" if isinstance(exc, DatabaseError) else "storage"
        return JSONResponse({"detail": f"{what} is temporarily unavailable; try again later"}, status_code=503,
                            headers=retry)
    log.error("internal error: %s", exc, exc_info=exc)
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


async def handle_os_error(request: Request, exc: Exception) -> Response:
    # Services translate their own storage errors; this catches a full disk under a spool file.
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return error_response(StorageFullError(f"no space left: {exc}"))
    log.error("internal error: %s", exc, exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


exception_handlers = {GraphcondaError: handle_graphconda_error, ClientDisconnect: handle_client_disconnect,
                      OSError: handle_os_error}
