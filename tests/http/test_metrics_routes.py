"""Quetz's metrics routes on a live server: the response shape, periods and ranges, fill_zeros, and
private channels a 404 to outsiders (and visible to members)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.services import api_keys, packages
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from graphconda.services.metrics import aggregate
from graphconda.services.publisher import wait_published
from tests.fixtures.server import LiveServer
from tests.helpers.channels import add_member, chunks, make_channel, make_user
from tests.helpers.packages import build_package


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"metrics": {"flush_seconds": 0.1}}


async def folded(services: Services, expected: int) -> None:
    """Aggregate until the live server's flushed counts are all folded."""
    total = 0
    for _ in range(200):
        total += (await aggregate(services)).downloads
        if total >= expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {total} of {expected} downloads arrived")


@pytest.fixture
async def keys(services: Services, tmp_path: Path) -> dict[str, str]:
    await make_channel(services, "pub")
    await make_channel(services, "secret", private=True)
    member = await make_user(services, "member")
    outsider = await make_user(services, "outsider")
    await add_member(services, "secret", member, Role.MEMBER)
    for channel in ("pub", "secret"):
        for name, subdir in (("alpha", "noarch"), ("beta", "linux-64")):
            path = build_package(tmp_path / channel, name, "1.0", "0", subdir=subdir)
            await packages.ingest_package(services, SYSTEM, channel, path.name, chunks(path))
    await wait_published(services)
    return {"member": (await api_keys.create_api_key(services, member))[1],
            "outsider": (await api_keys.create_api_key(services, outsider))[1]}


async def test_channel_and_file_metrics(live_server: LiveServer, services: Services, keys: dict[str, str]) -> None:
    now = datetime.now(UTC)
    if now.minute == 59 and now.second >= 40:  # the downloads below must all fall in one hour
        await asyncio.sleep(61 - now.second)
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        for _ in range(3):
            assert (await http.get("/get/pub/noarch/alpha-1.0-0.conda")).status_code == 200
        assert (await http.get("/get/pub/linux-64/beta-1.0-0.conda")).status_code == 200
        await folded(services, 4)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        channel = (await http.get("/metrics/channels/pub", params={"period": "H"})).json()
        assert channel["period"] == "H" and channel["metric_name"] == "download" and channel["total"] == 4
        assert datetime.fromisoformat(channel["server_timestamp"]) - datetime.now(UTC) < timedelta(minutes=1)
        assert channel["series"] == [{"timestamp": hour.isoformat(), "count": 4}]
        assert channel["packages"] == {"noarch/alpha-1.0-0.conda": {"series": [{"timestamp": hour.isoformat(),
                                                                                 "count": 3}]},
                                       "linux-64/beta-1.0-0.conda": {"series": [{"timestamp": hour.isoformat(),
                                                                                 "count": 1}]}}
        only_linux = (await http.get("/metrics/channels/pub", params={"period": "Y", "platform": "linux-64"})).json()
        assert only_linux["total"] == 1 and list(only_linux["packages"]) == ["linux-64/beta-1.0-0.conda"]
        later = await http.get("/metrics/channels/pub", params={"period": "H",
                                                             "start": (hour + timedelta(hours=1)).isoformat()})
        assert later.json()["total"] == 0 and later.json()["packages"] == {}

        url = "/metrics/channels/pub/packages/alpha/versions/noarch/alpha-1.0-0.conda"
        one = (await http.get(url, params={"period": "D"})).json()
        assert one["total"] == 3 and one["period"] == "D"
        assert one["series"] == [{"timestamp": hour.replace(hour=0).isoformat(), "count": 3}]
        filled = (await http.get(url, params={"period": "H", "fill_zeros": "true",
                                              "start": (hour - timedelta(hours=2)).isoformat(),
                                              "end": (hour + timedelta(hours=1)).isoformat()})).json()
        assert [p["count"] for p in filled["series"]] == [0, 0, 3] and filled["total"] == 3
        assert (await http.get("/metrics/channels/pub/packages/alpha/versions/noarch/nope-1.0-0.conda")).status_code \
            == 404
        bad = await http.get("/metrics/channels/pub", params={"period": "W"})
        assert bad.status_code == 422 and bad.json()["field"] == "period"
        assert (await http.get("/metrics/channels/pub", params={"metric_name": "uploads"})).status_code == 422


async def test_private_channel_metrics_are_a_404_to_outsiders(live_server: LiveServer, services: Services,
                                                              keys: dict[str, str]) -> None:
    member = {"X-API-Key": keys["member"]}
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        assert (await http.get("/get/secret/noarch/alpha-1.0-0.conda", headers=member)).status_code == 200
        await folded(services, 1)
        urls = ["/metrics/channels/secret",
                "/metrics/channels/secret/packages/alpha/versions/noarch/alpha-1.0-0.conda"]
        for url in urls:
            for headers in ({}, {"X-API-Key": keys["outsider"]}):
                response = await http.get(url, headers=headers)
                assert response.status_code == 404 and "alpha" not in response.text
            # ... the same answer as for a channel that does not exist.
            assert (await http.get(url.replace("secret", "nothing"))).json() == (await http.get(url)).json()
            seen = await http.get(url, headers=member)
            assert seen.status_code == 200 and seen.json()["total"] == 1
