"""Mirror and proxy benchmark against a loopback upstream, ratios measured in the same run.

    python bench/mirror.py [--files 100] [--size-kb 1024 | --real-sizes [--cap-mb 16]] [--concurrency 8]
                           [--requests 200] [--upstream nginx|python] [--only-sync]

Upstream: a static channel of --files packages (each carrying --size-kb of incompressible
bytes, or with --real-sizes a size drawn, seeded, from the corpus's real records of at most
--cap-mb) indexed by py-rattler's indexer, served by nginx in its own process (Debian's
package: `apt-get install nginx`), or with `--upstream python` by the test suite's threaded
static server (tests/fixtures/upstreams.py) inside this process, where it shares the GIL
with both sides. CPU time of this process is printed for line 1.
1. Sync throughput: a mirror's first `synchronize_repodata` (services/mirroring.py) against
   downloading the same files with plain concurrent httpx2 at the same concurrency (to temp
   files, hashing them). Target: sync >= 0.8x the plain bytes/s.
2. Proxy, cached: sequential GETs of repodata.json and of a package file from a proxy channel
   (everything already fetched) against the same GETs from the mirror (a normal channel),
   over HTTP to graphconda (uvicorn, one worker, its own process) on loopback. Target: proxy
   <= 1.2x the time.
3. Proxy, first request: GET of a package file the proxy has not fetched yet, against a GET
   of the same file straight from upstream plus its sha256. Target: <= 1.2x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2

from bench import corpus
from bench.publish import machine
from bench.serve import start_graphconda, stop, wait_http
from graphconda.db.migrate import upgrade_sync
from graphconda.services import channels, layout
from graphconda.services.authz import SYSTEM
from graphconda.services.context import open_services
from graphconda.services.mirroring import sync_mirror
from graphconda.services.publisher import wait_published
from graphconda.settings import load_settings
from tests.fixtures.server import free_port
from tests.fixtures.upstreams import StaticServer, place, rattler_index
from tests.helpers.packages import build_package


def corpus_sizes(count: int, cap: int) -> list[int]:
    """`count` package sizes drawn (seeded) from the corpus's real records of at most `cap` bytes."""
    sizes = [size for size in corpus.package_sizes() if size <= cap] or [1 << 20]
    return random.Random(7).choices(sizes, k=count)


def build(directory: Path, count: int, size_kb: int, real_sizes: bool = False, cap_mb: int = 16) -> list[Path]:
    sizes = corpus_sizes(count, cap_mb << 20) if real_sizes else [size_kb * 1024] * count
    out = []
    for i, size in enumerate(sizes):
        payload = {f"share/p{i}/blob.bin": os.urandom(size)}  # incompressible: the archive is about this size
        fmt = ".conda" if i % 2 == 0 else ".tar.bz2"
        out.append(build_package(directory, f"pkg{i}", "1.0", "0", subdir="linux-64", fmt=fmt, files=payload))
    return out


@contextlib.contextmanager
def upstream_server(root: Path, kind: str, work: Path) -> Iterator[str]:
    """The upstream's URL: nginx in its own process, or the test suite's threaded server in ours."""
    if kind == "python":
        with StaticServer(root) as channel:
            yield channel.url
        return
    from bench.serve import require_tools, start_nginx, wait_http

    require_tools()
    (work / "nginx-root" / "channels").mkdir(parents=True)
    (work / "nginx-root" / "channels" / "up").symlink_to(root)
    port = free_port()
    proc = start_nginx(work / "nginx-root", 1, port, work / "nginx")
    try:
        url = f"http://127.0.0.1:{port}/get/up"
        wait_http(f"{url}/linux-64/repodata.json", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait()


async def plain_download(url: str, names: list[str], concurrency: int, directory: Path) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx2.AsyncClient(timeout=60) as http:

        async def one(name: str) -> None:
            async with semaphore:
                sha = hashlib.sha256()
                with open(directory / name, "wb") as f:  # noqa: ASYNC230 - the baseline does what a naive mirror does
                    async with http.stream("GET", f"{url}/linux-64/{name}") as response:
                        async for chunk in response.aiter_bytes():
                            sha.update(chunk)
                            f.write(chunk)

        start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in names))
        return time.perf_counter() - start


async def timed_gets(http: httpx2.AsyncClient, url: str, n: int) -> float:
    """Median seconds of n sequential full GETs."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = await http.get(url)
        response.raise_for_status()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_seconds() -> float:
    """CPU time of this process (every thread), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="gc-bench-mirror-"))
    try:
        await measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def measure(args: argparse.Namespace, work: Path) -> None:
    print(f"machine: {machine()}")
    packages = build(work / "built", args.files, args.size_kb, args.real_sizes, args.cap_mb)
    total = sum(p.stat().st_size for p in packages)
    print(f"upstream: {len(packages)} files, {total / 1e6:.1f} MB; concurrency {args.concurrency}")
    root = work / "upstream"
    place(root, packages)
    await rattler_index(root)
    settings = load_settings(environ={}, overrides={
        "server": {"data_dir": str(work / "data")}, "database": {"url": f"sqlite+aiosqlite:///{work / 'gc.db'}"},
        "auth": {"session_secret": "bench"}, "publish": {"debounce_seconds": 0.2},
        "mirror": {"concurrency": args.concurrency, "ttl_seconds": 3600}})
    await asyncio.to_thread(upgrade_sync, settings.database_url)
    with upstream_server(root, args.upstream, work) as upstream_url:
        names = [p.name for p in packages]
        (work / "plain").mkdir()
        os.sync()  # each side starts with no dirty pages to write back: the build's, then the baseline's
        cpu = cpu_seconds()
        plain = await plain_download(upstream_url, names, args.concurrency, work / "plain")
        plain_cpu = cpu_seconds() - cpu
        shutil.rmtree(work / "plain")
        os.sync()
        handle = await open_services(settings)
        try:
            services = handle.services
            mirror = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
                name="mir", mirror_mode="mirror", mirror_channel_url=upstream_url, sync_now=False))
            cpu, start = cpu_seconds(), time.perf_counter()
            report = await sync_mirror(services, mirror, verify_archives=False)
            synced = time.perf_counter() - start
            synced_cpu = cpu_seconds() - cpu
            assert report.failures == [] and report.downloaded == len(packages), report.summary()
            await wait_published(services)
            await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
                name="px", mirror_mode="proxy", mirror_channel_url=upstream_url, ttl=3600))
        finally:
            await handle.aclose()
        print(f"1. sync {synced:.2f} s ({total / synced / 1e6:.1f} MB/s) vs plain httpx2 {plain:.2f} s "
              f"({total / plain / 1e6:.1f} MB/s): {plain / synced:.2f}x the plain throughput (target >= 0.8x)")
        print(f"   CPU (this process; nginx is another): sync {synced_cpu:.2f} s, plain {plain_cpu:.2f} s "
              f"({synced_cpu / plain_cpu:.2f}x) on {os.cpu_count()} CPUs")
        if args.only_sync:
            return

        # The server in a process of its own, as clients meet it (in this process's threads, it and
        # the client took the interpreter lock from each other: that slowed every GET here but not
        # the upstream GET of the reference, served by another process).
        port = free_port()
        server = start_graphconda(settings, 1, port)  # type: ignore[arg-type]
        base_url = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_http, f"{base_url}/healthz", server)
            async with httpx2.AsyncClient(base_url=base_url, timeout=60) as http:
                package = packages[0].name
                for channel in ("mir", "px"):  # warm both (the proxy fetches here)
                    (await http.get(f"/get/{channel}/linux-64/repodata.json")).raise_for_status()
                    (await http.get(f"/get/{channel}/linux-64/{package}")).raise_for_status()
                for what, path in (("repodata.json", "linux-64/repodata.json"), ("package", f"linux-64/{package}")):
                    normal = await timed_gets(http, f"/get/mir/{path}", args.requests)
                    proxied = await timed_gets(http, f"/get/px/{path}", args.requests)
                    print(f"2. cached {what} GET: proxy {proxied * 1e3:.2f} ms vs normal channel "
                          f"{normal * 1e3:.2f} ms: {proxied / normal:.2f}x (target <= 1.2x)")
                firsts, directs, stores = [], [], []
                async with httpx2.AsyncClient(timeout=60) as direct:
                    for path in packages[1:21]:
                        start = time.perf_counter()
                        (await http.get(f"/get/px/linux-64/{path.name}")).raise_for_status()
                        firsts.append(time.perf_counter() - start)
                        # The proxy answers once the bytes are verified and stores them after: the
                        # reference is timed only when that is done (it does not share the CPU with it).
                        stored = settings.data_dir / "files" / layout.package_key(  # type: ignore[attr-defined]
                            "px", "linux-64", hashlib.sha256(path.read_bytes()).hexdigest(), path.name)
                        while not stored.exists():  # noqa: ASYNC110 - the server is another process
                            await asyncio.sleep(0.0005)
                        stores.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        body = (await direct.get(f"{upstream_url}/linux-64/{path.name}")).content
                        hashlib.sha256(body).hexdigest()
                        directs.append(time.perf_counter() - start)
                first, plain_get = statistics.median(firsts), statistics.median(directs)
                print(f"3. first package GET through the proxy {first * 1e3:.1f} ms vs upstream GET + sha256 "
                      f"{plain_get * 1e3:.1f} ms: {first / plain_get:.2f}x (target <= 1.2x); "
                      f"stored {statistics.median(stores) * 1e3:.1f} ms after the request began")
                # The floor while bytes are verified before they are answered: the upstream GET, then
                # our own answer (a GET of the same files, now cached, through the proxy).
                again = statistics.median([await timed_gets(http, f"/get/px/linux-64/{p.name}", 1)
                                           for p in packages[1:21]])
                floor = plain_get + again
                print(f"   floor: upstream GET + sha256 + a cached proxy GET = {floor * 1e3:.1f} ms "
                      f"({floor / plain_get:.2f}x); the first GET is {first / floor:.2f}x it")
        finally:
            stop(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--size-kb", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--upstream", choices=("nginx", "python"), default="nginx",
                        help="nginx (its own process, as a real upstream is) or the suite's threaded server")
    parser.add_argument("--real-sizes", action="store_true",
                        help="file sizes drawn from the corpus's real records (up to --cap-mb), not --size-kb")
    parser.add_argument("--cap-mb", type=int, default=16)
    parser.add_argument("--only-sync", action="store_true", help="measure line 1 only")
    asyncio.run(main(parser.parse_args()))
