"""Temporary upload files left by processes killed with SIGKILL are removed at start and on demand,
and a live process's files never are (several processes share one data directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2

from graphconda.app import create_app
from graphconda.services import staging, temp_files
from graphconda.services.cleanup import run_cleanup
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.fixtures.server import free_port, wait_until_serving
from tests.helpers.channels import owner_key_for_main

# A process that makes one temporary file the way uploads do, prints its path and waits.
HOLDER = """
import os, sys, time
from pathlib import Path
from graphconda.services.temp_files import temp_file
fd, path = temp_file(Path(sys.argv[1]), "upload")
os.write(fd, b"partial upload")
print(path, flush=True)
time.sleep(120)
"""


@contextmanager
def holder(directory: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc, Path(proc.stdout.readline().strip())
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def serve(settings: Settings, database_url: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`graphconda serve` on the test's data directory and database, in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCONDA_")}
    env |= {"GRAPHCONDA_DATABASE__URL": database_url, "GRAPHCONDA_AUTH__SESSION_SECRET": "test-session-secret"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "graphconda", "serve", "--port", str(port),
                                   "--data-dir", str(settings.data_dir)], env=env, stdout=out, stderr=out)
    try:
        wait_until_serving(server, url, log)
        yield server, url
    finally:
        server.kill()
        server.wait()


def tmp_dir(settings: Settings) -> Path:
    return settings.data_dir / temp_files.TEMP_DIR


async def test_files_of_dead_processes_go_live_ones_stay(services: Services, settings: Settings) -> None:
    directory = tmp_dir(settings)
    with holder(directory) as (killed, dead_file), holder(directory) as (live, live_file):
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert dead_file.exists() and f".{killed.pid}." in dead_file.name  # SIGKILL leaves it behind
        fd, own_file = temp_files.temp_file(directory, "multipart")
        os.close(fd)
        # Our pid, but written by an earlier process that had it (another start token): stale.
        host, pid, _ = own_file.name.split("-")[1].split(".")
        reused = directory / f"upload-{host}.{pid}.0123456789abt42-abcd1234.part"
        other_host = directory / f"upload-00000000.{killed.pid}.0-abcd1234.part"  # cannot be checked: kept
        old_legacy, new_legacy = directory / "upload-k2j3h4g5.part", directory / "multipart-a1b2c3d4.part"
        for path in (reused, other_host, old_legacy, new_legacy):
            path.write_bytes(b"x")
        two_days_ago = time.time() - 2 * 24 * 3600
        os.utime(old_legacy, (two_days_ago, two_days_ago))
        unrelated = directory / "README"
        unrelated.write_text("not ours")

        assert await staging.remove_stale_upload_files(services, dry_run=True) == sorted(
            [dead_file, reused, old_legacy])
        assert dead_file.exists()
        removed = await staging.remove_stale_upload_files(services)

        assert sorted(removed) == sorted([dead_file, reused, old_legacy])
        assert all(p.exists() for p in (live_file, own_file, other_host, new_legacy, unrelated))
        assert not any(p.exists() for p in removed)
        assert live.poll() is None
        assert await staging.remove_stale_upload_files(services) == []


async def test_a_starting_app_removes_what_a_dead_process_left(settings: Settings, services: Services) -> None:
    with holder(tmp_dir(settings)) as (killed, dead_file):
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    app = create_app(settings, services=services)
    async with app.router.lifespan_context(app):
        assert not dead_file.exists()


async def test_server_killed_mid_upload_leaves_a_file_the_next_start_removes(
    services: Services, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    key = await owner_key_for_main(services)
    with serve(settings, database_url, tmp_path / "serve.log") as (server, url):
        hold = anyio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"\0" * (2 * 1024 * 1024)  # a big upload, a quarter sent
            await hold.wait()

        async with httpx2.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
            tg.start_soon(lambda: http.post(f"{url}/api/channels/main/upload/big-1.0-0.conda", content=body(),
                                            headers={"X-API-Key": key, "Content-Length": str(8 * 1024 * 1024)}))
            directory = tmp_dir(settings)
            for _ in range(200):
                parts = list(directory.glob("upload-*.part")) if directory.exists() else []
                if parts and parts[0].stat().st_size > 0:
                    break
                await anyio.sleep(0.05)
            (part,) = parts
            writer = int(part.name.split("-")[1].split(".")[1])
            os.kill(writer, signal.SIGKILL)  # the process writing the upload (the server, or its worker)
            server.kill()
            server.wait()
            tg.cancel_scope.cancel()
    assert part.exists()
    assert await staging.remove_stale_upload_files(services) == [part]
    assert not part.exists()


async def test_the_cleanup_job_removes_them_too(services: Services, settings: Settings) -> None:
    with holder(tmp_dir(settings)) as (killed, dead_file), holder(tmp_dir(settings)) as (_, live_file):
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        dry = await run_cleanup(services, dry_run=True)
        assert dry.counts["upload temp files"] == 1 and dead_file.exists()
        report = await run_cleanup(services)
        assert report.counts["upload temp files"] == 1
        assert not dead_file.exists() and live_file.exists()
