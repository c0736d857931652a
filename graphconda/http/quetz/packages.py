"""Quetz package routes: list and page packages, read and delete one, its versions (files), upload files to it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.errors import NotFoundError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import as_uuid, iso, ok, paginated, paging, profile, quetz, when
from graphconda.http.upload import store_multipart
from graphconda.services import catalog, package_removal, packages
from graphconda.services.catalog import FileSummary, PackageSummary


def package_json(summary: PackageSummary) -> dict[str, Any]:
    p = summary.package
    return {"name": p.name, "summary": p.summary, "description": p.description, "url": p.home or None,
            "platforms": summary.platforms, "current_version": p.latest_version or None,
            "latest_change": iso(p.updated_at)}


def version_json(summary: FileSummary) -> dict[str, Any]:
    f = summary.file
    uploader = profile(summary.uploader) if summary.uploader else {"name": None, "avatar_url": ""}
    return {"id": as_uuid(f.id), "channel_name": summary.channel_name, "package_name": f.name,
            "platform": f.subdir, "version": f.version, "build_string": f.build, "build_number": f.build_number,
            "filename": f.filename, "info": json.loads(f.record), "uploader": uploader,
            "time_created": iso(f.uploaded_at), "download_count": summary.downloads}


def _path(request: Request) -> tuple[str, str]:
    return request.path_params["channel"], request.path_params["package"]


async def list_packages(request: Request) -> Response:
    """The channel's packages (`q`: name contains)."""
    page = await catalog.page_packages(services_of(request), actor_of(request), request.path_params["channel"],
                                       q=request.query_params.get("q"))
    return ok([package_json(p) for p in page.items])


async def paginated_packages(request: Request) -> Response:
    """One page of the channel's packages (`skip`, `limit` (-1: all), `q`, `order_by`: name, current_version,
    latest_change, each with :asc or :desc)."""
    skip, limit = paging(request)
    page = await catalog.page_packages(services_of(request), actor_of(request), request.path_params["channel"],
                                       q=request.query_params.get("q"), skip=skip, limit=limit,
                                       order_by=request.query_params.get("order_by"))
    return ok(paginated(page, [package_json(p) for p in page.items]))


async def get_package(request: Request) -> Response:
    """One package."""
    return ok(package_json(await catalog.package_summary(services_of(request), actor_of(request), *_path(request))))


async def delete_package(request: Request) -> Response:
    """Delete the package with all its files (channel owners/maintainers, package owners)."""
    await package_removal.delete_package(services_of(request), actor_of(request), *_path(request))
    return ok(None)


def _since(request: Request) -> datetime | None:
    return when({"time_created__ge": request.query_params.get("time_created__ge") or None}, "time_created__ge")


async def list_versions(request: Request) -> Response:
    """The package's files, newest first (`time_created__ge`: uploaded since)."""
    files = await catalog.package_files(services_of(request), actor_of(request), *_path(request),
                                        created_since=_since(request))
    return ok([version_json(f) for f in files])


async def get_version(request: Request) -> Response:
    """One file of the package, by platform (subdir) and filename."""
    files = await catalog.package_files(services_of(request), actor_of(request), *_path(request),
                                        platform=request.path_params["platform"],
                                        filename=request.path_params["filename"])
    if not files:
        raise NotFoundError("package version not found")
    return ok(version_json(files[0]))


async def delete_version(request: Request) -> Response:
    """Delete one file of the package from the indexes and storage."""
    services, actor = services_of(request), actor_of(request)
    channel, package = _path(request)
    platform, filename = request.path_params["platform"], request.path_params["filename"]
    # The file must belong to the package of the URL (and be visible) before it goes.
    if not await catalog.package_files(services, actor, channel, package, platform=platform, filename=filename):
        raise NotFoundError("package version not found")
    await packages.delete_package_file(services, actor, channel, platform, filename)
    return ok(None)


async def post_files(request: Request) -> Response:
    """Multipart upload (fields `files`, `force`) of files of this package: 201 with the stored records."""
    await catalog.package_summary(services_of(request), actor_of(request), *_path(request))  # 404 first
    return await store_multipart(request, package=request.path_params["package"])


_P = "/api/channels/{channel}/packages/{package}"
routes = [
    Route("/api/channels/{channel}/packages", quetz(list_packages), methods=["GET"]),
    Route("/api/paginated/channels/{channel}/packages", quetz(paginated_packages), methods=["GET"]),
    Route(_P, quetz(get_package), methods=["GET"]),
    Route(_P, quetz(delete_package), methods=["DELETE"]),
    Route(f"{_P}/versions", quetz(list_versions), methods=["GET"]),
    Route(_P + "/versions/{platform}/{filename}", quetz(get_version), methods=["GET"]),
    Route(_P + "/versions/{platform}/{filename}", quetz(delete_version), methods=["DELETE"]),
    Route(f"{_P}/files/", quetz(post_files), methods=["POST"]),
    Route(f"{_P}/files", quetz(post_files), methods=["POST"]),
]
