"""What every Quetz-compatible route shares: JSON bodies, query parameters, ids, Quetz's JSON shapes.

Quetz's documented `curl -X PUT ... -d '{"action": ...}'` sends its JSON as a form
content type, so a body is read as JSON whatever `Content-Type` says. Bad input is a 422
naming the field; ChannelKindError (an action the channel's kind does not take) is Quetz's
405. Ids Quetz gives as UUIDs (users, mirrors, package versions) are our integer ids in
UUID form (`00000000-0000-0000-0000-00000000002a` is 42); both forms are accepted back.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from graphconda.db.models import Channel, JobRun, User
from graphconda.errors import ChannelKindError, InvalidInputError
from graphconda.http.errors import error_response
from graphconda.services.authz import Actor
from graphconda.services.catalog import Page
from graphconda.services.upstream import shown_url

MAX_BODY = 1024 * 1024
PAGINATION_LIMIT = 20  # Quetz's default page size

Handler = Callable[[Request], Awaitable[Response]]


def quetz(handler: Handler) -> Handler:
    """Route wrapper: Quetz's 405 for actions the channel's kind refuses (409 elsewhere in graphconda)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ChannelKindError as exc:
            response = error_response(exc)
            response.status_code = 405
            return response

    wrapped.__doc__ = handler.__doc__
    wrapped.__name__ = handler.__name__
    return wrapped


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


# --- request bodies -------------------------------------------------------------------------


async def json_body(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise InvalidInputError("the JSON body is too large", field="body")
    try:
        data = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: refused like bad JSON
        raise InvalidInputError("the body is not valid JSON", field="body") from None
    if not isinstance(data, dict):
        raise InvalidInputError("the body must be a JSON object", field="body")
    bad = _unstorable(data)
    if bad is not None:
        raise InvalidInputError(f"{bad} must not contain NUL characters or unpaired surrogates", field=bad)
    return data


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(data: Any) -> str | None:
    """The name of the first field holding text no database stores (JSON can carry both), else None.

    Checked once here, so that such text is a 422 and never fails inside a service as a 500;
    walked with a stack, since a body nests as deep as its sender likes.
    """
    stack: list[tuple[Any, str]] = [(data, "body")]
    while stack:
        value, name = stack.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                return name
        elif isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    return name
                stack.append((item, key))
        elif isinstance(value, list):
            stack.extend((item, name) for item in value)
    return None


def text(body: dict[str, Any], name: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInputError(f"{name} is required", field=name)
        return default
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string", field=name)
    return value


def boolean(body: dict[str, Any], name: str, default: bool | None) -> bool | None:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be true or false", field=name)
    return value


def integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an integer", field=name)
    return value


def strings(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{name} must be a list of strings", field=name)
    return value


def http_url(body: dict[str, Any], name: str) -> str | None:
    value = text(body, name)
    if value is not None and (not value.startswith(("http://", "https://")) or len(value) <= len("https://")):
        raise InvalidInputError(f"{name} must be an absolute http(s) URL", field=name)
    return value


def when(body: dict[str, Any], name: str) -> datetime | None:
    value = text(body, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"{name} must be an ISO 8601 date and time", field=name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def day(body: dict[str, Any], name: str) -> date | None:
    value = text(body, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidInputError(f"{name} must be a date (YYYY-MM-DD)", field=name) from None


# --- query parameters ----------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def q_bool(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidInputError(f"{name} must be true or false", field=name)


def q_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInputError(f"{name} must be an integer", field=name) from None
    if not -(2**31) <= number < 2**31:
        raise InvalidInputError(f"{name} is out of range", field=name)
    return number


def paging(request: Request, default_limit: int = PAGINATION_LIMIT) -> tuple[int, int]:
    return q_int(request, "skip", 0), q_int(request, "limit", default_limit)


# --- ids and shapes --------------------------------------------------------------------------


def as_uuid(value: int | None) -> str | None:
    return None if value is None else str(uuid.UUID(int=value))


def parse_id(value: str) -> int | None:
    """Our integer id from its UUID form or its digits; None when it can be neither."""
    if value.isdigit() and len(value) < 19:
        return int(value)
    try:
        number = uuid.UUID(value).int
    except ValueError:
        return None
    return number if 0 < number < 2**63 else None


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def paginated(page: Page[Any], items: list[Any]) -> dict[str, Any]:
    return {"pagination": {"skip": page.skip, "limit": page.limit, "all_records_count": page.total},
            "result": items}


def profile(user: User) -> dict[str, Any]:
    # quetz-client types the name as str (never null): users without a display name show their username.
    return {"name": user.display_name or user.username, "avatar_url": user.avatar_url}


def user_json(user: User) -> dict[str, Any]:
    return {"id": as_uuid(user.id), "username": user.username, "profile": profile(user)}


def channel_base(channel: Channel, default_ttl: int, actor: Actor) -> dict[str, Any]:
    url = channel.mirror_channel_url and shown_url(actor, channel.mirror_channel_url)
    return {"name": channel.name, "description": channel.description, "private": channel.private,
            "size_limit": None, "ttl": channel.mirror_ttl if channel.mirror_ttl is not None else default_ttl,
            "mirror_channel_url": url, "mirror_mode": channel.mirror_mode}


JOB_STATUS = {"queued": "pending", "running": "running", "succeeded": "success", "failed": "failed",
              "cancelled": "cancelled"}
OUR_STATUS = {quetz: ours for ours, quetz in JOB_STATUS.items()}


def job_json(run: JobRun, channel_name: str | None, *, repeat_every_seconds: int | None = None) -> dict[str, Any]:
    """Quetz's Job: the kind is the `manifest`, the channel the `items_spec`."""
    return {"id": run.id, "items_spec": f"channel={channel_name}" if channel_name else "*", "manifest": run.kind,
            "owner_id": as_uuid(run.triggered_by_id), "created": iso(run.created_at),
            "status": JOB_STATUS.get(run.status, run.status),
            "start_at": iso(run.run_after) if run.status == "queued" else None,
            "repeat_every_seconds": repeat_every_seconds}
