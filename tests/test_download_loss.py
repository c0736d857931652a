"""How many download counts a `graphconda serve` process loses: none when it shuts down, at most one
`metrics.flush_seconds` of them when it is killed with SIGKILL (measured, not assumed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import DownloadEvent
from graphconda.services import packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from graphconda.settings import Settings
from tests.fixtures.server import free_port, process_env, wait_until_serving
from tests.helpers.channels import chunks, make_channel
from tests.helpers.packages import build_package

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FLUSH = 1.0


@pytest.fixture
def serve(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    """Start `graphconda serve` on the test's database and data directory with a given flush interval."""
    started: list[subprocess.Popen[bytes]] = []

    def start(flush_seconds: float) -> tuple[subprocess.Popen[bytes], str]:
        env = process_env(settings, {
            "GRAPHCONDA_METRICS__FLUSH_SECONDS": str(flush_seconds),
            "GRAPHCONDA_JOBS__METRICS_INTERVAL_SECONDS": "0",  # events stay events: nothing folds them
            "GRAPHCONDA_JOBS__CLEANUP_INTERVAL_SECONDS": "0",
        })
        port = free_port()
        with (tmp_path / f"serve-{port}.log").open("w") as log:
            popen = subprocess.Popen([sys.executable, "-m", "graphconda", "serve", "--port", str(port)], cwd=ROOT,
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(popen)
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(popen, url, tmp_path / f"serve-{port}.log")
        return popen, url

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait()


@pytest.fixture
async def package_url(services: Services, tmp_path: Path) -> str:
    await make_channel(services, "main")
    path = build_package(tmp_path, "alpha", "1.0", "0")
    await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    await wait_published(services)
    return f"/get/main/noarch/{path.name}"


async def written(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.coalesce(func.sum(DownloadEvent.count), 0))) or 0)


def download_for(url: str, seconds: float) -> list[float]:
    """Full GETs for `seconds`; the monotonic time each one completed."""
    done = []
    with httpx2.Client(base_url=url) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert http.get("/get/main/noarch/alpha-1.0-0.conda").status_code == 200
            done.append(time.monotonic())
    return done


async def test_shutdown_flushes_every_count(serve: Any, services: Services, package_url: str) -> None:
    popen, url = serve(3600.0)  # no periodic flush before shutdown
    done = download_for(url, 1.0)
    assert await written(services) == 0
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutting down
    assert await written(services) == len(done)


async def test_kill_9_loses_at_most_one_flush_interval(serve: Any, services: Services, package_url: str) -> None:
    popen, url = serve(FLUSH)
    done = download_for(url, 3.5 * FLUSH)
    killed_at = time.monotonic()
    popen.send_signal(signal.SIGKILL)
    popen.wait(timeout=30)
    kept = await written(services)
    lost = len(done) - kept
    assert kept > 0 and lost >= 0
    # The lost counts are the newest ones: how long before the kill the oldest of them completed.
    window = killed_at - done[-lost] if lost else 0.0
    print(f"\n{len(done)} downloads, {kept} written, {lost} lost, covering the last {window:.2f} s "
          f"before kill -9 (flush_seconds = {FLUSH})")
    assert window <= FLUSH + 0.5  # one flush interval, plus the time a flush itself takes
