"""GET /metrics (`[metrics] prometheus`): off by default, token protection, parsed by prometheus-client's own
parser, and what traffic, uploads and job runs change in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from graphconda.app import create_app
from graphconda.services import jobs
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.helpers.channels import owner_key_for_main
from tests.helpers.jobs import run_to_end
from tests.helpers.packages import build_package, sha256_of
from tests.jobs import kinds  # noqa: F401 - registers the test kinds

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, labels); the parser raises on anything malformed."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx2.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"metrics": {"prometheus": True}, "mirror": {"backoff_seconds": 0}}


async def test_off_by_default(tmp_path: Path, database_url: str) -> None:
    from graphconda.settings import load_settings

    settings = load_settings(environ={}, overrides={"server": {"data_dir": str(tmp_path / "d")},
                                                    "database": {"url": database_url}})
    assert settings.metrics.prometheus is False
    app = create_app(settings)
    async with (app.router.lifespan_context(app),
                httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http):
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/healthz")).status_code == 200


async def test_requests_uploads_and_jobs_change_the_metrics(
    client: httpx2.AsyncClient, services: Services, tmp_path: Path
) -> None:
    before = await scrape(client)
    key = await owner_key_for_main(services)
    pkg = build_package(tmp_path, "hello", "1.0", "0")
    for _ in range(3):
        assert (await client.get("/healthz")).status_code == 200
    upload = await client.post(f"/api/channels/main/upload/{pkg.name}?sha256={sha256_of(pkg)}",
                               content=pkg.read_bytes(), headers={"X-API-Key": key})
    assert upload.status_code == 201, upload.text
    # The same repodata twice: the second is answered by the serving fast path, and both count.
    for _ in range(2):
        assert (await client.get("/get/main/noarch/repodata.json")).status_code == 200
    assert (await client.get("/get/main/noarch/nothing-here.conda")).status_code == 404
    assert (await client.get("/no/such/page/12345")).status_code == 404
    run = await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 2, "delay": 0})
    assert run.id is not None
    assert (await run_to_end(services, run.id, seconds=20)).status == "succeeded"
    await services.publisher.wait_idle()
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "graphconda_http_requests_total"
    assert delta(requests, route="/healthz", method="GET", status="200") == 3
    assert delta(requests, route="/api/channels/{channel}/upload/{filename:path}", method="POST", status="201") == 1
    assert delta(requests, route="/get/{path:path}", method="GET", status="200") == 2
    assert delta(requests, route="/get/{path:path}", method="GET", status="404") == 1
    assert delta(requests, route="<unmatched>", method="GET", status="404") == 1
    assert delta(requests, route="/metrics", method="GET", status="200") == 1  # the first scrape
    # Bounded labels: no raw path appears anywhere.
    routes = {dict(labels).get("route") for (_, labels) in after}
    assert not any(r and ("nothing-here" in r or "12345" in r or "repodata" in r) for r in routes)
    assert delta("graphconda_http_request_duration_seconds_count", route="/healthz", method="GET") == 3
    assert delta("graphconda_http_request_duration_seconds_bucket", route="/healthz", method="GET", le="+Inf") == 3
    assert delta("graphconda_http_received_bytes_total") >= pkg.stat().st_size
    assert delta("graphconda_http_sent_bytes_total") > 0
    assert delta("graphconda_uploads_total") == 1
    assert delta("graphconda_upload_bytes_total") == pkg.stat().st_size
    assert delta("graphconda_publish_duration_seconds_count", step="shards") == 1
    assert delta("graphconda_publish_duration_seconds_count", step="repodata") >= 1
    assert delta("graphconda_job_runs_total", kind="test_steps", status="succeeded") == 1
    assert delta("graphconda_job_duration_seconds_count", kind="test_steps") == 1
    assert ("graphconda_db_connections_in_use", frozenset()) in after
    assert value(after, "graphconda_db_connections_open") >= 1


async def test_queue_depth_is_read_from_the_database(client: httpx2.AsyncClient, services: Services) -> None:
    assert value(await scrape(client), "graphconda_jobs_queued", kind="test_steps") == 0
    await jobs.run_job(services, SYSTEM, "test_steps", args={"steps": 1})  # no runner here: it stays queued
    assert value(await scrape(client), "graphconda_jobs_queued", kind="test_steps") == 1


async def test_upstream_errors_are_counted(client: httpx2.AsyncClient, services: Services, tmp_path: Path) -> None:
    """A real upstream on loopback that fails: each failed attempt counts once, by reason."""
    from graphconda.errors import UpstreamError
    from tests.fixtures.server import free_port
    from tests.fixtures.upstreams import StaticServer

    reasons = ("connection", "http_status", "refused", "circuit_open")

    async def errors() -> dict[str, float]:
        samples = await scrape(client)
        return {r: value(samples, "graphconda_upstream_errors_total", reason=r) for r in reasons}

    before = await errors()
    attempts = services.settings.mirror.retries + 1
    root = tmp_path / "upstream"
    (root / "noarch").mkdir(parents=True)
    (root / "noarch" / "repodata.json").write_text("{}")
    with StaticServer(root) as upstream:
        upstream.fail("repodata.json", "status", status=503, times=attempts)  # retried, then given up
        with pytest.raises(UpstreamError):
            await services.upstream.fetch(f"{upstream.url}/noarch/repodata.json")
        upstream.fail("repodata.json", "status", status=403)  # not worth retrying
        with pytest.raises(UpstreamError):
            await services.upstream.fetch(f"{upstream.url}/noarch/repodata.json")
    gone = f"http://127.0.0.1:{free_port()}/noarch/repodata.json"
    for _ in range(services.settings.mirror.circuit_failures):  # until that upstream is not asked any more
        with pytest.raises(UpstreamError):
            await services.upstream.fetch(gone)
    with pytest.raises(UpstreamError, match="not asked again"):
        await services.upstream.fetch(gone)
    after = await errors()
    assert {r: after[r] - before[r] for r in reasons} == {
        "http_status": attempts, "refused": 1,
        "connection": attempts * services.settings.mirror.circuit_failures, "circuit_open": 1}


@pytest.fixture
async def token_client(settings: Settings, services: Services) -> AsyncIterator[httpx2.AsyncClient]:
    app: Starlette = create_app(settings.model_copy(update={"metrics": settings.metrics.model_copy(
        update={"prometheus_token": "s3cret-scrape"})}), services=services)
    async with (app.router.lifespan_context(app),
                httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http):
        yield http


async def test_token_protects_the_endpoint(token_client: httpx2.AsyncClient) -> None:
    assert (await token_client.get("/metrics")).status_code == 401
    wrong = await token_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    basic = await token_client.get("/metrics", headers={"Authorization": "Basic czNjcmV0LXNjcmFwZQ=="})
    assert basic.status_code == 401
    samples = await scrape(token_client, Authorization="Bearer s3cret-scrape")
    assert ("graphconda_uploads_total", frozenset()) in samples
    # The token is the metrics' only: the rest of the server does not take it as a credential.
    assert (await token_client.get("/healthz")).status_code == 200
