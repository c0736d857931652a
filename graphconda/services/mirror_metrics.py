"""Registered mirrors: downstream servers that mirror one of our channels and report its downloads back.

A channel keeps a list of mirrors (`RegisteredMirror`: url, api and metrics endpoints). Channel
owners and maintainers register and unregister them; a metrics endpoint must answer in Quetz's
metrics shape when it is registered. `synchronize_metrics` (job kind of the same name) pulls
each mirror's hourly figures and merges them into this channel's: the mirror's hour buckets are
stored under a `source` of their own and *replaced*, not added to, on every pull (day, month,
year and total move by the difference), so pulling the same period again adds nothing, and a
pull may overlap the last one (it does, by a day) to pick up counts the mirror folded late. A
mirror that fails is logged, its `last_error` set, and pulled again next run; the others merge.

A mirror channel created with "register with upstream" registers itself at its upstream
(`register_at_upstream`) through Quetz's `POST /api/channels/{channel}/mirrors`, which
graphconda serves as well (http/quetz/mirrors.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx2
from sqlalchemy import delete, select, tuple_
from sqlmodel import col

from graphconda.db.models import Channel, DownloadCount, RegisteredMirror
from graphconda.errors import InvalidInputError, NotFoundError, UpstreamError
from graphconda.services import authz
from graphconda.services.access import channel_access, gate
from graphconda.services.authz import Actor
from graphconda.services.context import Services
from graphconda.services.metrics import PERIODS, CountKey, Period, add_counts, bucket_start

log = logging.getLogger("graphconda.mirror_metrics")
OVERLAP = timedelta(days=1)  # each pull re-reads this much before the last one (late folds on the mirror)
MAX_METRICS_BYTES = 64 * 1024 * 1024


def mirror_source(url: str) -> str:
    """The `source` of a mirror's count rows: stable for its URL, so registering it again never counts twice."""
    return "m:" + hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:40]


def check_endpoint(value: str, field_name: str, *, required: bool = True) -> str:
    value = (value or "").strip()
    if not value and not required:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 2048:
        raise InvalidInputError(f"{field_name} must be an absolute http(s) URL", field=field_name)
    return value


async def _fetch_metrics(services: Services, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
    """GET a Quetz metrics endpoint; UpstreamError unless it answers 200 with Quetz's channel metrics shape."""
    try:
        response = await services.http.get(endpoint, params=params, follow_redirects=True,
                                           timeout=services.settings.mirror.upstream_timeout_seconds)
    except httpx2.HTTPError as exc:
        raise UpstreamError(f"{endpoint}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise UpstreamError(f"{endpoint} answered {response.status_code}")
    if len(response.content) > MAX_METRICS_BYTES:
        raise UpstreamError(f"{endpoint} answered more than {MAX_METRICS_BYTES} bytes")
    try:
        data = response.json()
    except ValueError:
        raise UpstreamError(f"{endpoint} did not answer JSON") from None
    if not (isinstance(data, dict) and isinstance(data.get("packages"), dict) and "period" in data):
        raise UpstreamError(f"{endpoint} did not answer in the Quetz metrics shape (period, packages)")
    return data


# --- registering ------------------------------------------------------------------------


async def list_mirrors(services: Services, actor: Actor, channel_name: str) -> Sequence[RegisteredMirror]:
    async with services.db.read() as session:
        channel, _ = await gate(session, actor, channel_name)
        return (await session.scalars(select(RegisteredMirror).where(col(RegisteredMirror.channel_id) == channel.id)
                                      .order_by(col(RegisteredMirror.id)))).all()


async def register_mirror(services: Services, actor: Actor, channel_name: str, *, url: str, api_endpoint: str = "",
                          metrics_endpoint: str = "") -> RegisteredMirror:
    """Register a mirror of the channel (its owners and maintainers); the metrics endpoint is asked once first."""
    async with services.db.read() as session:
        channel, access = await gate(session, actor, channel_name)
        authz.require_manage_channel(actor, access)
    url = check_endpoint(url, "url")
    api_endpoint = check_endpoint(api_endpoint, "apiEndpoint", required=False)
    metrics_endpoint = check_endpoint(metrics_endpoint, "metricsEndpoint")
    try:
        await _fetch_metrics(services, metrics_endpoint, {"period": "H", "start": services.now().isoformat()})
    except UpstreamError as exc:
        raise InvalidInputError(f"metricsEndpoint does not answer Quetz metrics: {exc}",
                                field="metricsEndpoint") from None
    assert channel.id is not None
    async with services.db.write() as session:
        existing = await session.scalar(select(RegisteredMirror).where(
            col(RegisteredMirror.channel_id) == channel.id, col(RegisteredMirror.url) == url))
        mirror = existing or RegisteredMirror(channel_id=channel.id, url=url)
        mirror.api_endpoint = api_endpoint
        mirror.metrics_endpoint = metrics_endpoint
        session.add(mirror)
        await session.flush()
    return mirror


async def unregister_mirror(services: Services, actor: Actor, mirror_id: int) -> RegisteredMirror:
    """Remove a registered mirror (the counts already merged stay). NotFoundError if the caller cannot see it."""
    async with services.db.write() as session:
        mirror = await session.get(RegisteredMirror, mirror_id)
        channel = await session.get(Channel, mirror.channel_id) if mirror is not None else None
        if mirror is None or channel is None:
            raise NotFoundError("registered mirror not found")
        access = await channel_access(session, actor, channel)
        if not authz.can_read_channel(actor, access):
            raise NotFoundError("registered mirror not found")
        authz.require_manage_channel(actor, access)
        await session.execute(delete(RegisteredMirror).where(col(RegisteredMirror.id) == mirror_id))
    return mirror


async def register_at_upstream(services: Services, channel: Channel, *, base_url: str, api_key: str) -> None:
    """Register our mirror `channel` at its upstream (Quetz's POST /api/channels/{c}/mirrors, with an API key).

    `base_url` is this server's public URL. UpstreamError when the upstream refuses.
    """
    upstream = (channel.mirror_channel_url or "").rstrip("/")
    head, sep, upstream_channel = upstream.rpartition("/get/")
    if not sep or "/" in upstream_channel:
        raise InvalidInputError("registering at the upstream needs an upstream URL of the form "
                                "<server>/get/<channel>", field="mirrorChannelUrl")
    body = {"url": f"{base_url}/get/{channel.name}", "api_endpoint": f"{base_url}/api/channels/{channel.name}",
            "metrics_endpoint": f"{base_url}/metrics/channels/{channel.name}"}
    try:
        response = await services.http.post(f"{head}/api/channels/{upstream_channel}/mirrors", json=body,
                                            headers={"X-API-Key": api_key},
                                            timeout=services.settings.mirror.upstream_timeout_seconds)
    except httpx2.HTTPError as exc:
        raise UpstreamError(f"the upstream could not be reached: {type(exc).__name__}") from None
    if response.status_code not in (200, 201):
        detail = response.text[:300]
        raise UpstreamError(f"the upstream refused the registration ({response.status_code}): {detail}")


# --- pulling ------------------------------------------------------------------------------


@dataclass
class SyncReport:
    merged: dict[str, int] = field(default_factory=dict)  # mirror url -> downloads added by this pull
    failures: list[str] = field(default_factory=list)


def _parse_series(data: dict[str, Any]) -> dict[tuple[str, str, datetime], int]:
    """(subdir, filename, hour) -> count from a Quetz channel metrics answer of period H."""
    counts: dict[tuple[str, str, datetime], int] = {}
    for name, entry in data["packages"].items():
        subdir, slash, filename = str(name).partition("/")
        if not slash or not filename or "/" in filename or len(subdir) > 32 or len(filename) > 211:
            continue
        for point in (entry or {}).get("series", []) if isinstance(entry, dict) else []:
            try:
                at = datetime.fromisoformat(str(point["timestamp"]).replace("Z", "+00:00"))
                count = int(point["count"])
            except (KeyError, TypeError, ValueError):
                raise UpstreamError(f"a malformed point in {name}: {point!r}") from None
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
            if count > 0:
                key = (subdir, filename, bucket_start(Period.HOUR, at))
                counts[key] = counts.get(key, 0) + count
    return counts


async def _merge(services: Services, channel_id: int, mirror: RegisteredMirror,
                 pulled: dict[tuple[str, str, datetime], int], synced_at: datetime) -> int:
    """Store the mirror's hour counts (replacing), move its other periods by the difference; one transaction."""
    source = mirror_source(mirror.url)
    added = 0
    async with services.db.write() as session:
        old: dict[tuple[str, str, datetime], int] = {}
        keys = list(pulled)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = await session.execute(select(col(DownloadCount.subdir), col(DownloadCount.filename),
                                                col(DownloadCount.bucket), col(DownloadCount.count)).where(
                col(DownloadCount.channel_id) == channel_id, col(DownloadCount.source) == source,
                col(DownloadCount.period) == Period.HOUR.value,
                tuple_(col(DownloadCount.subdir), col(DownloadCount.filename), col(DownloadCount.bucket)).in_(chunk)))
            old.update({(s, f, b.astimezone(UTC)): int(c) for s, f, b, c in rows.all()})
        hours: dict[CountKey, int] = {}
        deltas: dict[CountKey, int] = defaultdict(int)
        for (subdir, filename, hour), count in pulled.items():
            delta = count - old.get((subdir, filename, hour), 0)
            if delta == 0:
                continue
            added += delta
            hours[(channel_id, subdir, filename, Period.HOUR.value, hour)] = count
            for period in PERIODS:
                if period != Period.HOUR.value:
                    deltas[(channel_id, subdir, filename, period, bucket_start(period, hour))] += delta
        await add_counts(session, hours, source=source, replace=True)
        await add_counts(session, dict(deltas), source=source)
        row = await session.get(RegisteredMirror, mirror.id)
        if row is not None:
            row.last_synced_at = synced_at
            row.last_error = ""
    return added


async def synchronize_metrics(services: Services, channel: Channel, *,
                              log_line: Callable[[str], None] = lambda line: None) -> SyncReport:
    """Pull every registered mirror's downloads of `channel` and merge them, each exactly once."""
    async with services.db.read() as session:
        mirrors = (await session.scalars(select(RegisteredMirror).where(col(RegisteredMirror.channel_id) == channel.id)
                                         .order_by(col(RegisteredMirror.id)))).all()
    report = SyncReport()
    assert channel.id is not None
    for mirror in mirrors:
        now = services.now()
        params = {"period": "H", "metric_name": "download"}
        if mirror.last_synced_at is not None:
            params["start"] = (bucket_start(Period.HOUR, mirror.last_synced_at) - OVERLAP).isoformat()
        try:
            if not mirror.metrics_endpoint:
                raise UpstreamError("no metrics endpoint registered")
            pulled = _parse_series(await _fetch_metrics(services, mirror.metrics_endpoint, params))
            added = await _merge(services, channel.id, mirror, pulled, now)
        except UpstreamError as exc:
            report.failures.append(f"{mirror.url}: {exc}")
            log.warning("metrics of mirror %s of %s not pulled: %s", mirror.url, channel.name, exc)
            log_line(f"{mirror.url}: failed: {exc}")
            async with services.db.write() as session:
                row = await session.get(RegisteredMirror, mirror.id)
                if row is not None:
                    row.last_error = str(exc)[:2000]
            continue
        report.merged[mirror.url] = added
        log_line(f"{mirror.url}: {added} downloads added")
    return report


async def create_registered_mirror(services: Services, actor: Actor, spec: Any, *, base_url: str,
                                   api_key: str) -> Channel:
    """Create a mirror channel and register it at its upstream; if the upstream refuses, nothing is left."""
    from graphconda.services import channels

    if spec.mirror_mode != "mirror":
        raise InvalidInputError("only mirror channels register with their upstream", field="registerWithUpstream")
    if not api_key:
        raise InvalidInputError("registering with the upstream needs an upstream API key", field="upstreamApiKey")
    channel = await channels.create_channel(services, actor, spec)
    try:
        await register_at_upstream(services, channel, base_url=base_url, api_key=api_key)
    except (UpstreamError, InvalidInputError) as exc:
        await channels.delete_channel(services, authz.SYSTEM, channel.name)
        field = exc.field if isinstance(exc, InvalidInputError) else "registerWithUpstream"
        raise InvalidInputError(f"the upstream did not register this mirror: {exc}", field=field) from None
    return channel
