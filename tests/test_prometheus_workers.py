"""`graphconda serve --workers 2` with `[metrics] prometheus`: whichever worker answers /metrics, the counts of
both workers add up; values of an earlier run do not; a worker that stops leaves no live gauge behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from graphconda.services import ops_metrics
from tests.test_cli import serve_process

pytestmark = pytest.mark.slow

_EARLIER_RUN = """
from graphconda.services import ops_metrics
metrics = ops_metrics.enable()
for _ in range(1000):
    metrics.tally.add("/healthz", "GET", 200, 0.001, 10, 0)
metrics.flush()
"""


def healthz_counts(url: str) -> tuple[float, float]:
    """(requests counted, latencies observed) of GET /healthz, from whichever worker answers."""
    with httpx2.Client(timeout=10) as http:  # a connection of its own: any worker may answer
        text = http.get(f"{url}/metrics").text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples
               if s.labels.get("route") == "/healthz"]
    return (sum(s.value for s in samples if s.name == "graphconda_http_requests_total"),
            sum(s.value for s in samples if s.name == "graphconda_http_request_duration_seconds_count"))


def answered_by(directory: Path) -> set[str]:
    """Workers that observed a request latency (labelled histograms get a file per process on first use)."""
    return {m.group(1) for f in directory.iterdir() if (m := re.fullmatch(r"histogram_(\d+)\.db", f.name))}


def test_two_workers_add_up(tmp_path: Path, database_url: str) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCONDA_")}
    env |= {"GRAPHCONDA_DATABASE__URL": database_url, "GRAPHCONDA_METRICS__PROMETHEUS": "true",
            "GRAPHCONDA_JOBS__EMBEDDED_RUNNER": "false", "GRAPHCONDA_JOBS__EMBEDDED_SCHEDULER": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    # A counter file left by an earlier run in the same directory: the new run must not add it in.
    subprocess.run([sys.executable, "-c", _EARLIER_RUN], env=env, check=True)
    assert list(directory.glob("counter_*.db"))
    made = 0
    with serve_process(tmp_path, env, ["--workers", "2"], dev=False) as (url, _):
        made += 1  # serve_process's own readiness probe that succeeded
        # Separate connections, many at once, until both workers have answered some.
        with ThreadPoolExecutor(16) as pool:
            for _ in range(30):
                codes = list(pool.map(lambda _: httpx2.get(f"{url}/healthz", timeout=10).status_code, range(16)))
                assert codes == [200] * 16
                made += 16
                time.sleep(ops_metrics.FLUSH_SECONDS * 1.5)  # each worker writes its tally this often
                if len(answered_by(directory)) >= 2:
                    break
        assert len(answered_by(directory)) == 2, "one worker answered every request"
        # Every worker's tally reaches the files within FLUSH_SECONDS; then every scrape, whichever
        # worker answers it, sees them all (and nothing of the earlier run).
        deadline = time.monotonic() + 10
        while healthz_counts(url) != (made, made):
            assert time.monotonic() < deadline, (healthz_counts(url), made)
            time.sleep(0.2)
        assert {healthz_counts(url) for _ in range(12)} == {(made, made)}
    # Both workers marked themselves dead on the way out: no live gauge of theirs is summed any more.
    assert not list(directory.glob("gauge_livesum_*.db"))


def test_a_run_without_a_directory_gets_its_own(tmp_path: Path, database_url: str) -> None:
    """No PROMETHEUS_MULTIPROC_DIR: `serve` makes a temporary directory for its workers and removes it at exit."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCONDA_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {"GRAPHCONDA_DATABASE__URL": database_url, "GRAPHCONDA_METRICS__PROMETHEUS": "true", "TMPDIR": str(temp),
            # No jobs to wind down: the server stops well within serve_process's patience (else it is killed).
            "GRAPHCONDA_JOBS__EMBEDDED_RUNNER": "false", "GRAPHCONDA_JOBS__EMBEDDED_SCHEDULER": "false"}
    with serve_process(tmp_path, env, ["--workers", "2"], dev=False) as (url, _):
        (made,) = [d for d in temp.iterdir() if d.name.startswith("graphconda-prometheus-")]
        assert list(made.glob("*.db"))
        assert httpx2.get(f"{url}/metrics", timeout=10).status_code == 200
    assert not made.exists()
