"""Serving benchmark: graphconda under uvicorn against nginx on the same files, with the same load tool.

    python bench/serve.py [--records 200000] [--workers 1 2] [--seconds 10] [--connections 32]

Publishes a subdir of --records records (real ones from ../shared/corpus when present),
then for each worker count starts graphconda (`uvicorn graphconda.app:app_from_env`) and
nginx (Debian package, its default settings: sendfile on, no open_file_cache) serving the
storage directory, and drives both with wrk:
  - a 304 revalidation of repodata.json.zst (If-None-Match with the server's own ETag)
  - a shard GET (200, about 2 KB)
  - a full repodata.json.zst GET (bytes per second)
Targets: 304s and shard GETs >= 0.35x nginx's requests/s; full GETs >= 0.8x its bytes/s.
Needs `apt-get install nginx wrk`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2
import msgpack
import zstandard

from bench import corpus
from bench.publish import SUBDIR, machine, prepare, store_records
from graphconda.app import SETTINGS_ENV
from graphconda.services import channels, republishing
from graphconda.services.authz import SYSTEM
from graphconda.services.context import open_services
from graphconda.settings import Settings
from tests.fixtures.server import free_port

NGINX_CONF = """
{user}
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    types {{ application/zstd zst; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /get/ {{ alias {root}/channels/; }}
    }}
}}
"""


def require_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk")
               if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        sys.exit(f"bench/serve.py needs {' and '.join(missing)}: apt-get update && apt-get install -y nginx wrk")


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early ({proc.returncode}) for {url}")
        try:
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"server at {url} did not come up")


def start_graphconda(settings: Settings, workers: int, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {SETTINGS_ENV: settings.model_dump_json()}
    command = [sys.executable, "-m", "uvicorn", "graphconda.app:app_from_env", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    return subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[1], start_new_session=True)


def start_nginx(root: Path, workers: int, port: int, prefix: Path) -> subprocess.Popen[bytes]:
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""  # the temporary directories are private to us
    conf.write_text(NGINX_CONF.format(user=user, workers=workers, prefix=prefix, port=port, root=root))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf)], start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group we started (uvicorn's workers, nginx's)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str] | None = None) -> tuple[float, float]:
    """(requests/s, bytes/s) from one wrk run."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    rate, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w*)", out).groups()  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors and int(errors.group(1)):
        print(f"  warning: {errors.group(1)} error responses from {url}")
    return rps, float(rate) * _UNITS[unit]


async def publish(settings: Settings, records: int) -> None:
    handle = await open_services(settings)
    try:
        services = handle.services
        channel = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(name="main"))
        assert channel.id is not None
        await store_records(services, channel.id, list(corpus.records(records, SUBDIR)))
        await republishing.republish_subdir(services, channel.id, SUBDIR)
    finally:
        await handle.aclose()


def targets(base: str) -> dict[str, str]:
    index = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(
        httpx2.get(f"{base}/get/main/{SUBDIR}/repodata_shards.msgpack.zst").content))
    digest = sorted(index["shards"].values())[len(index["shards"]) // 2]
    return {"repodata": f"/get/main/{SUBDIR}/repodata.json.zst",
            "shard": f"/get/main/{SUBDIR}/shards/{digest.hex()}.msgpack.zst"}


def measure(base: str, paths: dict[str, str], seconds: int, connections: int) -> dict[str, float]:
    etag = httpx2.get(base + paths["repodata"]).headers["etag"]
    assert httpx2.get(base + paths["repodata"], headers={"If-None-Match": etag}).status_code == 304
    rps_304, _ = wrk(base + paths["repodata"], seconds, connections, {"If-None-Match": etag})
    rps_shard, _ = wrk(base + paths["shard"], seconds, connections)
    _, bytes_full = wrk(base + paths["repodata"], seconds, min(connections, 8))
    return {"304 req/s": rps_304, "shard req/s": rps_shard, "repodata.json.zst bytes/s": bytes_full}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    require_tools()
    settings, workdir = prepare(argparse.Namespace(database_url=""))
    print(f"machine: {machine()}")
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s (full GETs: -c8); {args.records} records, {corpus.source()}")
    asyncio.run(publish(settings, args.records))
    zst = settings.storage_path / "channels" / "main" / SUBDIR / "repodata.json.zst"
    print(f"repodata.json.zst: {zst.stat().st_size / 1e6:.1f} MB")
    results = {}
    for workers in args.workers:
        for name in ("nginx", "graphconda"):
            port = free_port()
            if name == "nginx":
                proc = start_nginx(settings.storage_path.resolve(), workers, port, workdir / f"nginx-{workers}")
            else:
                proc = start_graphconda(settings, workers, port)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_http(base + f"/get/main/{SUBDIR}/repodata.json.zst", proc)
                paths = targets(base)
                httpx2.get(base + paths["shard"])  # warm caches
                results[(name, workers)] = measure(base, paths, args.seconds, args.connections)
            finally:
                stop(proc)
            shown = [f"{k} {v / 1e6:.0f} MB/s" if "bytes" in k else f"{k} {v:,.0f}"
                     for k, v in results[(name, workers)].items()]
            print(f"{name} ({workers} worker{'s' if workers > 1 else ''}): " + ", ".join(shown))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.ceiling_app:app", "--port", str(port),
                                 "--workers", str(workers), "--no-access-log", "--log-level", "warning"],
                                cwd=Path(__file__).resolve().parents[1], start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/", proc)
            ceiling, _ = wrk(f"http://127.0.0.1:{port}/", args.seconds, args.connections)
        finally:
            stop(proc)
        print(f"uvicorn ceiling ({workers} worker(s), constant 304 from a bare ASGI app): {ceiling:,.0f} req/s "
              f"= {ceiling / results[('nginx', workers)]['304 req/s']:.2f}x nginx")
        ours, theirs = results[("graphconda", workers)], results[("nginx", workers)]
        ratios = {k: ours[k] / theirs[k] for k in ours}
        goal = {"304 req/s": 0.35, "shard req/s": 0.35, "repodata.json.zst bytes/s": 0.8}
        print(f"ratios at {workers} worker(s): " + ", ".join(
            f"{k} {r:.2f}x ({'ok' if r >= goal[k] else 'MISSED'}, target {goal[k]}x)" for k, r in ratios.items()))
    print(json.dumps({f"{n}-{w}": r for (n, w), r in results.items()}))


if __name__ == "__main__":
    main()
