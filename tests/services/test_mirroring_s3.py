"""Mirror channels on S3 storage (SeaweedFS): a sync stores verified files, a corrupt one never."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from graphconda.services.context import Services
from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.upstreams import StaticChannel
from tests.services.test_mirroring import files, make_mirror, packages, sync, upstream, upstream_files  # noqa: F401

pytestmark = [pytest.mark.s3]


@pytest.fixture
def settings_overrides(seaweedfs: SeaweedFS) -> dict[str, Any]:
    s3 = seaweedfs.s3_settings(bucket="mirrors", prefix=f"t-{uuid.uuid4().hex[:12]}/")
    return {"storage": {"backend": "s3", "s3": s3.model_dump()},
            "mirror": {"upstream_timeout_seconds": 1.0, "backoff_seconds": 0.01, "retries": 1}}


async def test_sync_on_s3(services: Services, upstream: StaticChannel, packages: list[Path]) -> None:  # noqa: F811
    await make_mirror(services, upstream.url)
    upstream.fail("alpha-1.0-0.conda", "corrupt", times=10)
    report = await sync(services)
    assert len(report.failures) == 1 and report.downloaded == 4
    assert not [b async for b in services.storage.list("channels/mir/") if b.key.endswith("alpha-1.0-0.conda")]
    upstream.clear_faults()
    report = await sync(services)
    assert report.failures == [] and report.downloaded == 1
    assert {k: v[0] for k, v in (await files(services)).items()} == upstream_files(upstream)
    stored = {b.key.rsplit("/", 1)[1] async for b in services.storage.list("channels/mir/")
              if b.key.endswith((".conda", ".tar.bz2"))}
    assert stored == {p.name for p in packages}
