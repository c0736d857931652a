"""Server memory while it takes a 2 GB upload: the peak RSS must grow by less than 64 MB.

    python bench/upload_memory.py [--gigabytes 2]

Builds a valid .conda whose pkg-*.tar.zst member holds --gigabytes of incompressible
bytes (the server only reads the info/ member), starts the server (uvicorn, one worker)
in its own process, uploads one small package to warm it up, then streams the big one
through the Quetz raw route and compares the process's VmHWM (peak RSS, /proc) with its
RSS just before the upload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2

from bench.publish import machine
from graphconda.app import SETTINGS_ENV
from graphconda.db.migrate import upgrade_sync
from graphconda.services import api_keys, channels, users
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import open_services
from graphconda.settings import Settings, load_settings
from tests.fixtures.server import free_port
from tests.helpers.packages import build_package, sha256_of


def big_conda(small: Path, dest: Path, size: int) -> Path:
    """`small` with its pkg member replaced by `size` bytes that do not compress."""
    block = os.urandom(1 << 20)
    stem = small.name[: -len(".conda")]
    out = dest / small.name
    with zipfile.ZipFile(small) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for info in src.infolist():
            if info.filename.startswith("pkg-"):
                continue
            zf.writestr(info, src.read(info))
        with zf.open(zipfile.ZipInfo(f"pkg-{stem}.tar.zst"), "w", force_zip64=True) as member:
            for _ in range(size // len(block)):
                member.write(block)
    return out


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


async def setup(settings: Settings) -> str:
    handle = await open_services(settings)
    try:
        services = handle.services
        await channels.create_channel(services, SYSTEM, channels.ChannelSpec(name="main"))
        owner = await users.create_user(services, SYSTEM, "bench", server_role=Role.OWNER)
        _, key = await api_keys.create_api_key(services, users.actor_for(owner))
        return key
    finally:
        await handle.aclose()


def upload(http: httpx2.Client, path: Path) -> float:
    size = path.stat().st_size

    def body():  # type: ignore[no-untyped-def]
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    start = time.perf_counter()
    response = http.post(f"/api/channels/main/upload/{path.name}?sha256={sha256_of(path)}", content=body(),
                         headers={"Content-Length": str(size)})
    assert response.status_code == 201, response.text
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gc-bench-upload-"))
    settings = load_settings(environ={}, overrides={
        "server": {"data_dir": str(workdir / "data")},
        "database": {"url": f"sqlite+aiosqlite:///{workdir / 'graphconda.db'}"},
        "auth": {"session_secret": "bench"},
    })
    upgrade_sync(settings.database_url)
    key = asyncio.run(setup(settings))
    small = build_package(workdir / "small", "warmup", "1.0", "0")
    big = big_conda(build_package(workdir / "seed", "bigpkg", "1.0", "0"), workdir, int(args.gigabytes * (1 << 30)))
    print(f"machine: {machine()}")
    print(f"package: {big.name}, {big.stat().st_size / (1 << 30):.2f} GiB")
    port = free_port()
    env = os.environ | {SETTINGS_ENV: settings.model_dump_json()}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "graphconda.app:app_from_env", "--factory",
                             "--port", str(port), "--no-access-log", "--log-level", "warning"],
                            env=env, cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key},
                           timeout=httpx2.Timeout(600)) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx2.HTTPError:
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.1)
            upload(http, small)
            time.sleep(1)  # let the warm-up's publish finish
            before = memory(proc.pid)
            seconds = upload(http, big)
            after = memory(proc.pid)
        growth = after["VmHWM"] - before["VmRSS"]
        print(f"RSS before {before['VmRSS'] / 1e6:.0f} MB, peak after {after['VmHWM'] / 1e6:.0f} MB: "
              f"grew {growth / 1e6:.1f} MB (target < 67.1 MB = 64 MiB); upload took {seconds:.1f} s "
              f"({big.stat().st_size / seconds / 1e6:.0f} MB/s)")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
