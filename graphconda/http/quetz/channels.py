"""Quetz channel routes: list, page, create (with mirror options and actions), read, change, delete, actions.

Each route parses Quetz's parameters and calls services.channels, services.catalog or
services.channel_actions; what the caller may do is decided there (authz).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graphconda.errors import InvalidInputError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.quetz.common import (
    boolean,
    channel_base,
    http_url,
    integer,
    job_json,
    json_body,
    ok,
    paginated,
    paging,
    q_bool,
    quetz,
    strings,
    text,
    when,
)
from graphconda.services import authz, catalog, channel_actions, channels, mirror_metrics
from graphconda.services.access import ChannelKind
from graphconda.services.authz import Actor
from graphconda.services.catalog import ChannelSummary
from graphconda.services.context import Services

LISTS = ("includelist", "excludelist", "proxylist")
PATCHABLE = frozenset({"private", "size_limit", "metadata", "ttl"})


def _extra(services: Services, summary: ChannelSummary, actor: Actor) -> dict[str, Any]:
    return {**channel_base(summary.channel, services.settings.mirror.ttl_seconds, actor),
            "members_count": summary.members, "packages_count": summary.packages}


def _metadata(body: dict[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInputError("metadata must be an object", field="metadata")
    unknown = set(metadata) - set(LISTS)
    if unknown:
        raise InvalidInputError(f"metadata takes {', '.join(LISTS)}", field="metadata")
    return {name: strings(metadata, name) for name in LISTS if name in metadata}


async def list_channels(request: Request) -> Response:
    """Channels the caller may see (`q`: name contains; `public=false`: only those the caller is a member of)."""
    services = services_of(request)
    page = await catalog.page_channels(services, actor_of(request), q=request.query_params.get("q"),
                                       public=q_bool(request, "public", True))
    return ok([_extra(services, s, actor_of(request)) for s in page.items])


async def paginated_channels(request: Request) -> Response:
    """Channels, one page (`skip`, `limit`, `q`, `public`) in Quetz's pagination envelope."""
    services = services_of(request)
    skip, limit = paging(request)
    page = await catalog.page_channels(services, actor_of(request), q=request.query_params.get("q"),
                                       public=q_bool(request, "public", True), skip=skip, limit=limit)
    return ok(paginated(page, [_extra(services, s, actor_of(request)) for s in page.items]))


async def create_channel(request: Request) -> Response:
    """Create a channel (201); the caller becomes its owner. Mirror channels queue `synchronize_repodata`
    unless `actions` says otherwise; `register_mirror=true` (with `mirror_api_key`, a key of the upstream)
    registers a new mirror channel at its upstream (`<server>/get/<channel>`) first."""
    services, actor = services_of(request), actor_of(request)
    authz.require_login(actor, "create channels")
    register = q_bool(request, "register_mirror", False)
    body = await json_body(request)
    name = text(body, "name", required=True)
    assert name is not None
    mode, url = text(body, "mirror_mode"), http_url(body, "mirror_channel_url")
    if bool(mode) != bool(url):
        raise InvalidInputError("give mirror_channel_url and mirror_mode together", field="mirror_mode")
    if mode is not None and mode not in ("proxy", "mirror"):
        raise InvalidInputError("mirror_mode must be proxy or mirror", field="mirror_mode")
    if integer(body, "size_limit") is not None:
        raise InvalidInputError("size_limit is not supported by this server", field="size_limit")
    lists = _metadata(body)
    if lists.get("includelist") is not None and lists.get("excludelist") is not None:
        raise InvalidInputError("Cannot use both `includelist` and `excludelist` together.", field="metadata")
    actions = body.get("actions")
    if actions is None:
        actions = ["synchronize_repodata"] if mode == "mirror" else []
    if not isinstance(actions, list):
        raise InvalidInputError("actions must be a list of action names", field="actions")
    kind = ChannelKind(mode) if mode else ChannelKind.LOCAL
    checked = channel_actions.check_actions(actor, kind, actions)
    # Quetz indexes files already in storage when created with a reindex action: keep them for it.
    reindexing = any(action.job == "reindex" for action in checked)
    spec = channels.ChannelSpec(
        name=name, description=text(body, "description", default="") or "", adopt_stored_files=reindexing,
        private=bool(boolean(body, "private", True)), mirror_mode=mode, mirror_channel_url=url,
        ttl=integer(body, "ttl"), sync_now=False, includelist=lists.get("includelist") or (),
        excludelist=lists.get("excludelist") or (), proxylist=lists.get("proxylist") or (),
    )
    if register and mode == "mirror":
        # Registered at the upstream before any action runs; refused there, nothing is left here.
        created = await mirror_metrics.create_registered_mirror(
            services, actor, spec, base_url=_base_url(request), api_key=request.query_params.get("mirror_api_key", ""))
    else:
        created = await channels.create_channel(services, actor, spec)
    for action in actions:
        await channel_actions.run_action(services, actor, created.name, action)
    return ok(None, 201)


def _base_url(request: Request) -> str:
    """Where clients reach this server: the configured public URL, else the request's own."""
    public = services_of(request).settings.server.public_url
    return (public or str(request.base_url)).rstrip("/")


async def get_channel(request: Request) -> Response:
    """One channel with its member and package counts; 404 when absent or invisible."""
    services = services_of(request)
    actor = actor_of(request)
    return ok(_extra(services, await catalog.channel_summary(services, actor, request.path_params["channel"]), actor))


async def patch_channel(request: Request) -> Response:
    """Change `private`, `ttl` or `metadata` (include/exclude/proxy lists); other fields are 422."""
    services, actor = services_of(request), actor_of(request)
    body = await json_body(request)
    for key in body:
        if key not in PATCHABLE and not (key == "name" and body[key] == request.path_params["channel"]):
            raise InvalidInputError(f"attribute '{key}' of channel can not be changed", field=key)
    if integer(body, "size_limit") is not None:
        raise InvalidInputError("size_limit is not supported by this server", field="size_limit")
    lists = _metadata(body)
    changes = channels.ChannelUpdate(private=boolean(body, "private", None), ttl=integer(body, "ttl"),
                                     includelist=lists.get("includelist"), excludelist=lists.get("excludelist"),
                                     proxylist=lists.get("proxylist"))
    changed = await channels.update_channel(services, actor, request.path_params["channel"], changes)
    return ok(channel_base(changed, services.settings.mirror.ttl_seconds, actor))


async def delete_channel(request: Request) -> Response:
    """Delete a channel with its packages and files (channel owners)."""
    await channels.delete_channel(services_of(request), actor_of(request), request.path_params["channel"])
    return ok(None)


async def channel_action(request: Request) -> Response:
    """Run an action (`synchronize`, `synchronize_repodata`, `reindex`, `generate_indexes`, `cleanup`,
    `cleanup_dry_run`) as a job; answers the job. 405 when the channel's kind does not take it."""
    services, actor = services_of(request), actor_of(request)
    body = await json_body(request)
    action = body.get("action")
    if action is None:
        raise InvalidInputError("action is required", field="action")
    repeat = body.get("repeat_every_seconds")
    run = await channel_actions.run_action(services, actor, request.path_params["channel"], action,
                                           start_at=when(body, "start_at"), repeat_every_seconds=repeat)
    name = None if channel_actions.ACTIONS[action].server_wide else request.path_params["channel"]
    return ok(job_json(run, name, repeat_every_seconds=repeat))


routes = [
    Route("/api/channels", quetz(list_channels), methods=["GET"]),
    Route("/api/channels", quetz(create_channel), methods=["POST"]),
    Route("/api/paginated/channels", quetz(paginated_channels), methods=["GET"]),
    Route("/api/channels/{channel}", quetz(get_channel), methods=["GET"]),
    Route("/api/channels/{channel}", quetz(patch_channel), methods=["PATCH"]),
    Route("/api/channels/{channel}", quetz(delete_channel), methods=["DELETE"]),
    Route("/api/channels/{channel}/actions", quetz(channel_action), methods=["PUT"]),
]
