"""Upload routes the existing clients speak, all ending in services.packages.

- Quetz: `POST /api/channels/<channel>/upload/<filename>?sha256=&force=` with the raw
  package as body (quetz-client, `rattler-build upload quetz`), and multipart
  `POST /api/channels/<channel>/files` (field `files`, form field `force`).
- prefix.dev: `POST /api/v1/upload/<channel>` with `X-File-Name`, `X-File-SHA256`
  (`rattler-build upload prefix`, pixi).

201 with the stored repodata record (a list of them for multipart); 409 when the file
exists and force is not set. Bodies are streamed, never held in memory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graphconda.conda.names import parse_filename
from graphconda.db.models import PackageFile
from graphconda.errors import InvalidInputError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.multipart import spool_multipart
from graphconda.services import packages, staging

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _flag(value: str | None, name: str = "force") -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"{name} must be true or false", field=name)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidInputError("Content-Length must be a number of bytes", field="Content-Length")
    return int(value)


def _created(row: PackageFile) -> Response:
    # The record exactly as stored and published.
    return Response(row.record, status_code=201, media_type="application/json")


async def quetz_upload(request: Request) -> Response:
    """Quetz `POST /api/channels/<channel>/upload/<filename>`: the body is the package."""
    row = await packages.ingest_package(
        services_of(request),
        actor_of(request),
        request.path_params["channel"],
        request.path_params["filename"],
        request.stream(),
        force=_flag(request.query_params.get("force")),
        expected_sha256=request.query_params.get("sha256") or None,
        expected_size=_content_length(request),
    )
    return _created(row)


async def prefix_upload(request: Request) -> Response:
    """prefix.dev `POST /api/v1/upload/<channel>` with X-File-Name and X-File-SHA256."""
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        return await _prefix_multipart(request)
    filename = request.headers.get("x-file-name")
    if not filename:
        raise InvalidInputError("the X-File-Name header (the package's filename) is required", field="X-File-Name")
    row = await packages.ingest_package(
        services_of(request),
        actor_of(request),
        request.path_params["channel"],
        filename,
        request.stream(),
        force=_flag(request.query_params.get("force")),
        expected_sha256=request.headers.get("x-file-sha256") or None,
        expected_size=_content_length(request),
    )
    return _created(row)


async def _read(path: Path | None) -> AsyncIterator[bytes]:
    if path is None:
        return
    f = await run_in_threadpool(open, path, "rb")
    try:
        while chunk := await run_in_threadpool(f.read, 1024 * 1024):
            yield chunk
    finally:
        f.close()


async def _prefix_multipart(request: Request) -> Response:
    """What rattler-build (0.40+) and pixi send: one multipart part `file` carrying its own
    X-File-Name / X-File-SHA256 headers, plus an optional `attestation` field we ignore."""
    services, actor = services_of(request), actor_of(request)
    await staging.precheck_upload(services, actor, request.path_params["channel"])
    limit = services.settings.limits.max_upload_bytes
    spool = await spool_multipart(request, services.settings.data_dir / "tmp", limit)
    try:
        parts = spool.file_parts("file", "files")
        if len(parts) != 1:
            raise InvalidInputError("send exactly one package file, as the multipart field 'file'", field="file")
        part = parts[0]
        filename = part.headers.get("x-file-name") or request.headers.get("x-file-name") or part.filename
        if not filename:
            raise InvalidInputError("the package's filename is missing (X-File-Name)", field="X-File-Name")
        row = await packages.ingest_package(
            services,
            actor,
            request.path_params["channel"],
            filename,
            _read(part.path),
            force=_flag(spool.fields().get("force", request.query_params.get("force"))),
            expected_sha256=part.headers.get("x-file-sha256") or request.headers.get("x-file-sha256") or None,
        )
    finally:
        await run_in_threadpool(spool.cleanup)
    return _created(row)


async def quetz_files(request: Request) -> Response:
    """Quetz multipart `POST /api/channels/<channel>/files`: every file is checked before any is stored."""
    return await store_multipart(request)


async def store_multipart(request: Request, package: str | None = None) -> Response:
    """Quetz multipart upload; with `package` (Quetz's `/packages/<package>/files/`) only files of that package."""
    services, actor = services_of(request), actor_of(request)
    channel = request.path_params["channel"]
    await staging.precheck_upload(services, actor, channel)
    limit = services.settings.limits.max_upload_bytes
    spool = await spool_multipart(request, services.settings.data_dir / "tmp", limit)

    async def free_spool() -> None:
        await run_in_threadpool(spool.cleanup)

    try:
        force = _flag(spool.fields().get("force", request.query_params.get("force")))
        files = spool.files("files", "file")
        if not files:
            raise InvalidInputError("no package files: send them as multipart fields named 'files'", field="files")
        for name, _ in files:
            if package is not None and parse_filename(name).name != package:
                raise InvalidInputError(f"{name} is not a file of package {package}", field="files")
        rows = await packages.ingest_packages(services, actor, channel, [(name, _read(path)) for name, path in files],
                                              force=force, on_staged=free_spool)
    finally:
        await free_spool()
    return JSONResponse([json.loads(row.record) for row in rows], status_code=201)


# The Quetz routes (quetz_upload, quetz_files) are mounted by graphconda/http/quetz/uploads.py,
# with the rest of the Quetz API (its 405 for uploads into mirror and proxy channels).
routes = [
    Route("/api/v1/upload/{channel}", prefix_upload, methods=["POST"]),
]
