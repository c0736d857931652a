"""Per-request cost of the Prometheus instrumentation on the serving fast path, in-process.

    python bench/prometheus_overhead.py [--requests 50000] [--repeats 5]

Builds the app twice on one SQLite data directory with a small published channel and the
same services: metrics off (`FastStarlette`) and on (`InstrumentedStarlette`), and drives
both directly, without a socket, alternately (so the machine's load hits both alike) with the
requests the fast path answers most: an anonymous 304 revalidation of repodata.json and a 200
of a shard. Once with prometheus-client's in-memory values (one worker), once in a child
process with PROMETHEUS_MULTIPROC_DIR set, as `serve --workers N` does (prometheus-client picks
its value class at import). Reports the best of --repeats runs in microseconds of CPU time per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def measure(data_dir: str, requests: int, repeats: int) -> dict[str, Any]:
    """{"off": {case: us}, "on": {case: us}, "etag": repodata.json's ETag}."""
    import httpx2

    from graphconda.app import create_app
    from graphconda.services.context import open_services
    from graphconda.settings import load_settings
    from tests.helpers.channels import owner_key_for_main
    from tests.helpers.packages import build_package, sha256_of

    settings = load_settings(environ={}, overrides={"server": {"data_dir": data_dir},
                                                    "publish": {"debounce_seconds": 0}})
    settings_on = settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"prometheus": True})})
    from graphconda.cli.common import prepare

    await asyncio.to_thread(prepare, settings)  # migrate (the first run creates the database)
    handle = await open_services(settings)
    services = handle.services
    app = create_app(settings, services=services)
    app_on = create_app(settings_on, services=services)
    async with app.router.lifespan_context(app), app_on.router.lifespan_context(app_on):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://b") as http:
            if (await http.get("/get/main/noarch/repodata.json")).status_code == 404:
                key = await owner_key_for_main(services)
                pkg = build_package(Path(data_dir), "hello", "1.0", "0")
                up = await http.post(f"/api/channels/main/upload/{pkg.name}?sha256={sha256_of(pkg)}",
                                     content=pkg.read_bytes(), headers={"X-API-Key": key})
                assert up.status_code == 201, up.text
                await services.publisher.wait_idle()
            first = await http.get("/get/main/noarch/repodata.json", headers={"Accept-Encoding": "identity"})
            etag = first.headers["etag"]
            index = await http.get("/get/main/noarch/repodata_shards.msgpack.zst")
            assert index.status_code == 200
        import msgpack
        import zstandard

        shards = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(index.content))["shards"]
        shard = next(iter(shards.values())).hex()

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
            return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                    "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                    "root_path": "", "headers": [(b"host", b"b"), (b"accept", b"*/*"), *headers],
                    "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

        cases = {
            "304 repodata.json": scope("/get/main/noarch/repodata.json", [(b"if-none-match", etag.encode())]),
            "200 shard": scope(f"/get/main/noarch/shards/{shard}.msgpack.zst", []),
        }
        out: dict[str, Any] = {"off": {}, "on": {}, "etag": etag}
        for name, request in cases.items():
            best = {"off": float("inf"), "on": float("inf")}
            for _ in range(repeats):  # alternating, so that the machine's load hits both alike
                for mode, target in (("off", app), ("on", app_on)):
                    statuses.clear()
                    start = time.thread_time()  # CPU time: on a busy machine wall time mostly measures the others
                    for _ in range(requests):
                        await target(dict(request), receive, send)
                    best[mode] = min(best[mode], (time.thread_time() - start) / requests * 1e6)
                    assert set(statuses) == {304 if name.startswith("304") else 200}, set(statuses)
            for mode in ("off", "on"):
                out[mode][name] = best[mode]
    await handle.aclose()
    return out


def child(args: argparse.Namespace) -> None:
    result = asyncio.run(measure(args.data_dir, args.requests, args.repeats))
    print(json.dumps(result))


def _cpu_seconds(stat: Path, ticks: int) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def server_cpu(data_dir: str, etag: str, requests: int, repeats: int) -> dict[str, float]:
    """Server CPU microseconds per 304 under uvicorn (one worker), metrics off and on, by /proc accounting."""
    import httpx2

    from graphconda.app import SETTINGS_ENV
    from graphconda.settings import load_settings
    from tests.fixtures.server import free_port

    ticks = os.sysconf("SC_CLK_TCK")
    best: dict[str, float] = {}
    for _ in range(repeats):
        for mode in ("off", "on"):
            settings = load_settings(environ={}, overrides={"server": {"data_dir": data_dir},
                                                            "metrics": {"prometheus": mode == "on"}})
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "graphconda.app:app_from_env", "--factory", "--host", "127.0.0.1",
                 "--port", str(port), "--no-access-log", "--log-level", "warning", "--http", "httptools",
                 "--loop", "uvloop"],
                env=os.environ | {SETTINGS_ENV: settings.model_dump_json()}, cwd=Path(__file__).resolve().parents[1])
            try:
                url = f"http://127.0.0.1:{port}/get/main/noarch/repodata.json"
                with httpx2.Client(timeout=10) as http:
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            http.get(url, headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
                            break
                        except httpx2.TransportError:
                            assert time.monotonic() < deadline, "server did not start"
                            time.sleep(0.1)
                    for _ in range(200):  # warm: the caches the fast path reads
                        http.get(url, headers={"If-None-Match": etag, "Accept-Encoding": "identity"})

                    stat = Path(f"/proc/{proc.pid}/stat")
                    before = _cpu_seconds(stat, ticks)
                    for _ in range(requests):
                        answer = http.get(url, headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
                        assert answer.status_code == 304
                    used = (_cpu_seconds(stat, ticks) - before) / requests * 1e6
                best[mode] = min(best.get(mode, float("inf")), used)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--server-requests", type=int, default=5000,
                        help="also measure the server process's CPU per 304 under uvicorn (0: skip)")
    parser.add_argument("--mode", choices=["single", "multiprocess"], help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results: dict[str, dict[str, Any]] = {}
        for mode in ("single", "multiprocess"):
            env = dict(os.environ)
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(dir=tmp)
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--data-dir", f"{tmp}/data",
                                  "--requests", str(args.requests), "--repeats", str(args.repeats)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
        print(f"{'request':20} {'mode':13} {'off us':>8} {'on us':>8} {'+us':>6}")
        for mode, result in results.items():
            for case, off in result["off"].items():
                on = result["on"][case]
                print(f"{case:20} {mode:13} {off:8.2f} {on:8.2f} {on - off:6.2f}")
        if args.server_requests:
            etag = results["single"]["etag"]  # the same data directory: the same file
            served = server_cpu(f"{tmp}/data", etag, args.server_requests, 3)
            print(f"{'304 under uvicorn':20} {'server CPU':13} {served['off']:8.2f} {served['on']:8.2f} "
                  f"{served['on'] - served['off']:6.2f}")


if __name__ == "__main__":
    main()
