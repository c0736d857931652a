"""Publishing benchmark: a full publish of a 200,000-record subdir against a floor, and upload latency.

    python bench/publish.py [--records 200000] [--uploads 5] [--database-url URL]

1. Floor, measured in this run: json.dumps of the whole repodata document plus
   compressing those bytes exactly as publishing does (conda.repodata.compress_zst at
   publish.zstd_level).
2. Full publish of the same records stored in the database: every shard, the shard
   index, repodata.json, .zst and run_exports.json (publishing.republish_subdir).
3. Upload latency over HTTP (uvicorn on loopback) into that subdir versus into a
   100-record channel: median of --uploads uploads, each into a quiescent channel (the
   previous upload's rebuild finished), and whether the package was in the shard index
   when the response came back.
Targets: publish <= 1.5x floor; upload latency <= 1.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2
import msgpack
import zstandard
from sqlalchemy import insert, select

from bench import corpus
from graphconda.app import create_app
from graphconda.conda.records import dumps_record, is_v3
from graphconda.conda.repodata import compress_zst
from graphconda.conda.shards import pack_record
from graphconda.db.migrate import upgrade_sync
from graphconda.db.models import Package, PackageFile, SubdirState
from graphconda.services import api_keys, channels, republishing, users
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services, open_services
from graphconda.settings import Settings, load_settings
from tests.fixtures.server import run_live_server
from tests.helpers.packages import build_package, sha256_of

SUBDIR = "linux-64"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    python = platform.python_version()
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), Python {python}"


def floor(records: list[tuple[str, dict[str, Any]]], level: int) -> tuple[float, float, int, int]:
    doc = {"info": {"subdir": SUBDIR}, "packages": {}, "packages.conda": {}, "removed": [], "repodata_version": 1}
    for filename, record in records:
        doc["packages.conda" if filename.endswith(".conda") else "packages"][filename] = record
    start = time.perf_counter()
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    encoded = time.perf_counter()
    compressed = compress_zst(data, level)
    done = time.perf_counter()
    return encoded - start, done - encoded, len(data), len(compressed)


async def store_records(services: Services, channel_id: int, records: list[tuple[str, dict[str, Any]]]) -> None:
    """Rows as uploads would have left them (not timed)."""
    now = services.now()
    names = sorted({r["name"] for _, r in records})
    async with services.db.write() as session:
        await session.execute(insert(Package), [{"channel_id": channel_id, "name": n, "created_at": now,
                                                 "updated_at": now, "about": {}} for n in names])
        ids = dict((await session.execute(select(Package.name, Package.id)
                                          .where(Package.channel_id == channel_id))).all())
        batch = []
        for filename, record in records:
            batch.append({
                "channel_id": channel_id, "package_id": ids[record["name"]], "subdir": SUBDIR,
                "filename": filename, "name": record["name"], "version": str(record["version"])[:256],
                "build": record["build"][:256], "build_number": int(record.get("build_number") or 0),
                "size": int(record.get("size") or 0), "md5": record["md5"], "sha256": record["sha256"],
                "record": dumps_record(record), "packed": pack_record(filename, dumps_record(record)),
                "v3": is_v3(record), "traits": [], "uploaded_at": now,
            })
            if len(batch) == 5000:
                await session.execute(insert(PackageFile), batch)
                batch = []
        if batch:
            await session.execute(insert(PackageFile), batch)


async def quiescent(services: Services, channel_id: int) -> None:
    """Wait until the server's publisher rebuilt everything (seen through the database)."""
    while True:
        async with services.db.read() as session:
            state = await session.scalar(select(SubdirState).where(SubdirState.channel_id == channel_id,
                                                                     SubdirState.subdir == SUBDIR))
        if state is None or state.published_generation >= state.generation:
            return
        await asyncio.sleep(0.05)


def in_shard_index(http: httpx2.Client, channel: str, name: str, filename: str) -> bool:
    index = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(
        http.get(f"/get/{channel}/{SUBDIR}/repodata_shards.msgpack.zst").content))
    digest = index["shards"].get(name)
    if digest is None:
        return False
    shard = http.get(f"/get/{channel}/{SUBDIR}/shards/{digest.hex()}.msgpack.zst")
    records = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(shard.content))
    return filename in records["packages.conda"]


def channeldata_shows(http: httpx2.Client, channel: str, version: str) -> None:
    """channeldata.json is rebuilt last, after the subdir's files: then the server is idle again."""
    while True:
        doc = http.get(f"/get/{channel}/channeldata.json").json()
        if doc.get("packages", {}).get("benchpkg", {}).get("version") == version:
            return
        time.sleep(0.05)


async def upload_latency(services: Services, settings: Settings, channel: str, channel_id: int, key: str,
                         count: int, workdir: Path) -> tuple[list[float], bool]:
    loop = asyncio.get_running_loop()
    server_gen = run_live_server(create_app(settings))
    server = next(server_gen)
    times: list[float] = []
    visible = True
    try:
        with httpx2.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=600) as http:
            for i in range(count + 1):  # the first one warms the server up and is not counted
                path = build_package(workdir / channel, "benchpkg", f"1.{i}", "0", subdir=SUBDIR)
                body = path.read_bytes()
                url = f"/api/channels/{channel}/upload/{path.name}?sha256={sha256_of(path)}"
                start = time.perf_counter()
                response = await loop.run_in_executor(None, lambda u=url, b=body: http.post(u, content=b))
                elapsed = time.perf_counter() - start
                assert response.status_code == 201, response.text
                found = await loop.run_in_executor(None, in_shard_index, http, channel, "benchpkg", path.name)
                visible = visible and found
                if i:
                    times.append(elapsed)
                await quiescent(services, channel_id)
                await loop.run_in_executor(None, channeldata_shows, http, channel, f"1.{i}")
    finally:
        next(server_gen, None)
    return times, visible


def prepare(args: argparse.Namespace) -> tuple[Settings, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="gc-bench-publish-"))
    db_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'graphconda.db'}"
    settings = load_settings(environ={}, overrides={
        "server": {"data_dir": str(workdir / "data")}, "database": {"url": db_url},
        "auth": {"session_secret": "bench"}, "publish": {"debounce_seconds": 0.2},
    })
    upgrade_sync(settings.database_url)
    return settings, workdir


async def main(args: argparse.Namespace, settings: Settings, workdir: Path) -> None:
    level = settings.publish.zstd_level
    print(f"machine: {machine()}")
    print(f"records: {args.records} {corpus.source()}; database {settings.database_url.split('://')[0]}; "
          f"local storage in {workdir}")
    records = list(corpus.records(args.records, SUBDIR))
    names = len({r["name"] for _, r in records})
    json_s, zst_s, raw, packed = floor(records, level)
    floor_s = json_s + zst_s
    print(f"floor: json {json_s:.2f} s + zstd-{level} {zst_s:.2f} s = {floor_s:.2f} s "
          f"({raw / 1e6:.1f} MB -> {packed / 1e6:.1f} MB)")

    handle = await open_services(settings)
    services = handle.services
    try:
        big = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(name="big"))
        small = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(name="small"))
        assert big.id is not None and small.id is not None
        await store_records(services, big.id, records)
        await store_records(services, small.id, list(corpus.records(100, SUBDIR)))
        start = time.perf_counter()
        await republishing.republish_subdir(services, big.id, SUBDIR)
        full_s = time.perf_counter() - start
        await republishing.republish_subdir(services, small.id, SUBDIR)
        print(f"full publish: {full_s:.2f} s for {args.records} records / {names} names "
              f"= {full_s / floor_s:.2f}x floor (target <= 1.5x)")

        owner = await users.create_user(services, SYSTEM, "bench", server_role=Role.OWNER)
        _, key = await api_keys.create_api_key(services, users.actor_for(owner))
    finally:
        await handle.aclose()

    handle = await open_services(settings)  # a watcher on the same database, outside the server
    try:
        results = {}
        for channel, cid in (("small", small.id), ("big", big.id)):
            times, visible = await upload_latency(handle.services, settings, channel, cid, key, args.uploads, workdir)
            results[channel] = statistics.median(times)
            print(f"upload into {channel}: median {results[channel] * 1000:.0f} ms of {len(times)} "
                  f"({', '.join(f'{t * 1000:.0f}' for t in times)} ms); in the shard index on return: {visible}")
        print(f"upload latency ratio big/small: {results['big'] / results['small']:.2f}x (target <= 1.2x)")
    finally:
        await handle.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--uploads", type=int, default=5)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary directory")
    arguments = parser.parse_args()
    asyncio.run(main(arguments, *prepare(arguments)))
