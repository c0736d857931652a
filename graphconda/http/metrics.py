"""Quetz's download metrics API: GET /metrics/channels/{channel}[/packages/{package}/versions/{platform}/{filename}].

Registered mirrors answer these, and `synchronize_metrics` reads them (services/mirror_metrics.py).
Thin adapters over services/metrics.py: a private channel is a 404 to anyone who may not see it.
`GET /metrics` itself (operations metrics) is not served here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graphconda.errors import InvalidInputError
from graphconda.http.deps import actor_of, services_of
from graphconda.services import metrics


def _when(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidInputError(f"{name} must be an ISO 8601 date and time", field=name) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _common(request: Request) -> tuple[metrics.Period, str, datetime | None, datetime | None]:
    period = metrics.parse_period(request.query_params.get("period", "D"))
    metric_name = request.query_params.get("metric_name", "download")
    metrics.check_metric_name(metric_name)
    return period, metric_name, _when(request, "start"), _when(request, "end")


def _points(points: list[metrics.Point]) -> list[dict[str, Any]]:
    return [{"timestamp": p.start.isoformat(), "count": p.count} for p in points]


def _head(services: Any, period: metrics.Period, metric_name: str) -> dict[str, Any]:
    return {"server_timestamp": services.now().astimezone(UTC).isoformat(), "period": metrics.QUETZ_LETTERS[period],
            "metric_name": metric_name}


async def channel_metrics(request: Request) -> Response:
    """Downloads of a channel: `series` for the channel, `packages` per "platform/filename" (Quetz's shape)."""
    services = services_of(request)
    period, metric_name, start, end = _common(request)
    found = await metrics.channel_metrics(services, actor_of(request), request.path_params["channel"], period,
                                          platform=request.query_params.get("platform") or None, start=start, end=end)
    return JSONResponse({**_head(services, period, metric_name), "total": found.series.total,
                         "series": _points(found.series.points),
                         "packages": {name: {"series": _points(points)} for name, points in found.files.items()}})


async def file_metrics(request: Request) -> Response:
    """Downloads of one package file (Quetz's "package version")."""
    services = services_of(request)
    period, metric_name, start, end = _common(request)
    fill_zeros = request.query_params.get("fill_zeros", "false").lower() in ("1", "true", "yes", "on")
    params = request.path_params
    found = await metrics.file_metrics(services, actor_of(request), params["channel"], params["package"],
                                       params["platform"], params["filename"], period, start=start, end=end,
                                       fill_zeros=fill_zeros)
    return JSONResponse({**_head(services, period, metric_name), "total": found.total,
                         "series": _points(found.points)})


routes = [
    Route("/metrics/channels/{channel}", channel_metrics, methods=["GET"]),
    Route("/metrics/channels/{channel}/packages/{package}/versions/{platform}/{filename}", file_metrics,
          methods=["GET"]),
]
