"""Proxy index files on S3 storage (SeaweedFS): every encoding still comes from one stored snapshot."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx2
import pytest

from graphconda.services.context import Services
from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.upstreams import StaticChannel
from tests.http.test_proxy_index import OVERRIDES, add_package, filenames, make_proxy, read_all, upstream, zst  # noqa: F401

pytestmark = [pytest.mark.s3]


@pytest.fixture
def settings_overrides(seaweedfs: SeaweedFS) -> dict[str, Any]:
    s3 = seaweedfs.s3_settings(bucket="proxies", prefix=f"t-{uuid.uuid4().hex[:12]}/")
    return {**OVERRIDES, "storage": {"backend": "s3", "s3": s3.model_dump()}}


async def test_every_encoding_agrees_on_s3(client: httpx2.AsyncClient, services: Services,
                                           upstream: StaticChannel, zst: bool, tmp_path: Path) -> None:  # noqa: F811
    await make_proxy(services, upstream.url, ttl=0)
    await read_all(client, "noarch")
    for first in (1, 3):  # upstream changes, then the gzip copy is asked first; again, the .bz2 first
        added = await add_package(upstream, zst, tmp_path / "more", f"gamma{first}")
        docs = await read_all(client, "noarch", first=first)
        for versions in docs.values():
            assert all(doc == versions[0] for doc in versions) and added in filenames(versions[0])
