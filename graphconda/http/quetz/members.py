"""Quetz member routes: channel members (list, add or change, remove) and package members (list, add)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.errors import InvalidInputError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import json_body, ok, quetz, text, user_json
from graphconda.services import catalog, members


async def _member_body(request: Request) -> tuple[str, str]:
    body = await json_body(request)
    username, role = text(body, "username", required=True), text(body, "role", required=True)
    assert username is not None and role is not None
    return username, role


async def channel_members(request: Request) -> Response:
    """Users with a role on the channel, as `{role, user}`."""
    rows = await catalog.channel_members(services_of(request), actor_of(request), request.path_params["channel"])
    return ok([{"role": role, "user": user_json(user)} for user, role in rows])


async def add_channel_member(request: Request) -> Response:
    """Give `username` `role` on the channel (or change the role they hold): 201."""
    username, role = await _member_body(request)
    await members.set_channel_member(services_of(request), actor_of(request), request.path_params["channel"],
                                     username, role)
    return ok(None, 201)


async def remove_channel_member(request: Request) -> Response:
    """Take the role of `?username=` on the channel away."""
    username = request.query_params.get("username")
    if not username:
        raise InvalidInputError("username is required", field="username")
    await members.remove_channel_member(services_of(request), actor_of(request), request.path_params["channel"],
                                        username)
    return ok(None)


async def package_members(request: Request) -> Response:
    """Users with a role on the package."""
    rows = await catalog.package_members(services_of(request), actor_of(request), request.path_params["channel"],
                                         request.path_params["package"])
    return ok([{"role": role, "user": user_json(user)} for user, role in rows])


async def add_package_member(request: Request) -> Response:
    """Give `username` `role` on the package: 201; 409 when they already hold one."""
    username, role = await _member_body(request)
    await members.set_package_member(services_of(request), actor_of(request), request.path_params["channel"],
                                     request.path_params["package"], username, role, exists_ok=False)
    return ok(None, 201)


routes = [
    Route("/api/channels/{channel}/members", quetz(channel_members), methods=["GET"]),
    Route("/api/channels/{channel}/members", quetz(add_channel_member), methods=["POST"]),
    Route("/api/channels/{channel}/members", quetz(remove_channel_member), methods=["DELETE"]),
    Route("/api/channels/{channel}/packages/{package}/members", quetz(package_members), methods=["GET"]),
    Route("/api/channels/{channel}/packages/{package}/members", quetz(add_package_member), methods=["POST"]),
]
