"""Quetz user and API key routes: /api/me, users (list, page, one, server role), api-keys (list, create, revoke).

API keys are hashed at rest: `POST /api/api-keys` answers the secret once in `key`; the
lists answer `"key": null` (Quetz lists the secrets). `DELETE /api/api-keys/{key}` takes the
secret, as in Quetz, or the key's id (GraphQL `ApiKey.id`, `graphconda api-key list`).
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.db.models import ApiKey
from graphconda.errors import InvalidInputError, NotFoundError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import (
    as_uuid,
    day,
    json_body,
    ok,
    paginated,
    paging,
    parse_id,
    profile,
    quetz,
    text,
    user_json,
)
from graphconda.services import api_keys, authz, catalog, users
from graphconda.services.api_keys import ScopeSpec


async def me(request: Request) -> Response:
    """The caller's profile."""
    actor = actor_of(request)
    authz.require_login(actor, "see your profile")
    if actor.user_id is None:
        raise NotFoundError("the server itself has no profile")
    user = await users.get_user_by_id(services_of(request), actor.user_id)
    return ok({**profile(user), "user": {"id": as_uuid(user.id), "username": user.username}})


async def list_users(request: Request) -> Response:
    """Users (`q`: name contains); only server staff see others than themselves."""
    page = await catalog.page_users(services_of(request), actor_of(request), q=request.query_params.get("q"))
    return ok([user_json(u) for u in page.items])


async def paginated_users(request: Request) -> Response:
    """One page of users (`skip`, `limit`, `q`)."""
    skip, limit = paging(request)
    page = await catalog.page_users(services_of(request), actor_of(request), q=request.query_params.get("q"),
                                    skip=skip, limit=limit)
    return ok(paginated(page, [user_json(u) for u in page.items]))


async def get_user(request: Request) -> Response:
    """One user: themself, or anyone for server staff."""
    return ok(user_json(await catalog.user_profile(services_of(request), actor_of(request),
                                                   request.path_params["username"])))


async def get_role(request: Request) -> Response:
    """A user's server role (`null`: none)."""
    user = await catalog.user_profile(services_of(request), actor_of(request), request.path_params["username"])
    return ok({"role": user.server_role})


async def set_role(request: Request) -> Response:
    """Set a user's server role (`null` removes it): server owners only, never anonymous callers."""
    body = await json_body(request)
    if "role" not in body:
        raise InvalidInputError("role is required (owner, maintainer, member or null)", field="role")
    await users.set_server_role(services_of(request), actor_of(request), request.path_params["username"],
                                text(body, "role"))
    return ok(None)


def _key_json(key: ApiKey, scopes: tuple[ScopeSpec, ...] | list[ScopeSpec], secret: str | None) -> dict[str, Any]:
    roles = [{"channel": s.channel, "package": s.package, "role": str(s.role)} for s in scopes]
    return {"description": key.description, "time_created": key.created_at.date().isoformat(),
            "expire_at": key.expires_at.date().isoformat() if key.expires_at else None,
            "roles": roles or None, "key": secret}


async def list_keys(request: Request) -> Response:
    """The caller's API keys that still work, without their secrets."""
    services, actor = services_of(request), actor_of(request)
    now = services.now()
    infos = await api_keys.list_api_keys(services, actor)
    live = [i for i in infos if i.key.revoked_at is None
            and (i.key.expires_at is None or i.key.expires_at.astimezone(UTC) > now)]
    return ok([_key_json(i.key, i.scopes, None) for i in live])


def _roles(body: dict[str, Any]) -> list[ScopeSpec]:
    roles = body.get("roles")
    if roles is None:
        return []
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        raise InvalidInputError("roles must be a list of {channel, package, role}", field="roles")
    return [ScopeSpec(channel=text(r, "channel", required=True) or "", role=text(r, "role", required=True) or "",
                      package=text(r, "package")) for r in roles]


async def create_key(request: Request) -> Response:
    """Create an API key for the caller (`roles` restrict it); 201 with the secret in `key`, shown only here."""
    services, actor = services_of(request), actor_of(request)
    body = await json_body(request)
    description = text(body, "description", required=True) or ""
    expires = day(body, "expire_at")
    scopes = _roles(body)
    # Valid through the day it names, as in Quetz.
    expires_at = datetime.combine(expires, time.max, tzinfo=UTC) if expires else None
    key, secret = await api_keys.create_api_key(services, actor, description=description, expires_at=expires_at,
                                                scopes=scopes)
    return ok(_key_json(key, scopes, secret), 201)


async def delete_key(request: Request) -> Response:
    """Revoke a key, named by its secret or its id."""
    services, actor = services_of(request), actor_of(request)
    authz.require_manage_api_keys(actor, actor.user_id)
    value = request.path_params["key"]
    key_id = await api_keys.find_key_id(services, value)
    if key_id is None:
        key_id = parse_id(value)
    if key_id is None:
        raise NotFoundError("API key not found")
    await api_keys.revoke_api_key(services, actor, key_id)
    return ok(None)


routes = [
    Route("/api/me", quetz(me), methods=["GET"]),
    Route("/api/users", quetz(list_users), methods=["GET"]),
    Route("/api/paginated/users", quetz(paginated_users), methods=["GET"]),
    Route("/api/users/{username}", quetz(get_user), methods=["GET"]),
    Route("/api/users/{username}/role", quetz(get_role), methods=["GET"]),
    Route("/api/users/{username}/role", quetz(set_role), methods=["PUT"]),
    Route("/api/api-keys", quetz(list_keys), methods=["GET"]),
    Route("/api/api-keys", quetz(create_key), methods=["POST"]),
    Route("/api/api-keys/{key}", quetz(delete_key), methods=["DELETE"]),
]
