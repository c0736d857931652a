"""A real client end to end: py-rattler solves and installs packages we serve, and our records match its indexer.

The server runs under uvicorn on a loopback port; packages (with dependencies between
them, both formats, noarch and linux-64) are uploaded over HTTP; rattler runs in a
subprocess (it is a native library with its own runtime) once through sharded repodata
and once with shards disabled on the channel (repodata.json.zst and repodata.json).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from rattler import MatchSpec

from graphconda.services import api_keys
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.helpers.channels import add_member, make_channel, make_user
from tests.helpers.keys import assert_conda_reads_the_whole_key, legacy_key
from tests.helpers.packages import build_package, sha256_of

pytestmark = pytest.mark.slow

CLIENT = r'''
import asyncio, json, sys
from pathlib import Path

async def install(args):
    from rattler import Gateway, SourceConfig, install, solve
    config = SourceConfig(sharded_enabled=args["sharded"], zstd_enabled=args["zstd"], bz2_enabled=False)
    gateway = Gateway(cache_dir=args["cache"], default_config=config)
    records = await solve(sources=[args["channel"]], specs=args["specs"], gateway=gateway,
                          platforms=["linux-64", "noarch"], virtual_packages=[])
    await install(records, target_prefix=args["prefix"], cache_dir=Path(args["cache"]) / "pkgs",
                  show_progress=False)
    return {r.name.normalized: {"version": str(r.version), "url": str(r.url), "sha256": r.sha256.hex()}
            for r in records}

async def index(args):
    from rattler.index import index_fs
    await index_fs(Path(args["dir"]), write_zst=False, write_shards=False)
    return {sd: json.loads((Path(args["dir"]) / sd / "repodata.json").read_text()) for sd in args["subdirs"]}

args = json.loads(sys.argv[1])
result = asyncio.run({"install": install, "index": index}[args["command"]](args))
print(json.dumps(result), flush=True)
sys.stdout.flush()
import os
os._exit(0)  # skip interpreter teardown: py-rattler's runtime may crash there
'''


async def run_client(tmp_path: Path, **args: Any) -> Any:
    script = tmp_path / "rattler_client.py"
    script.write_text(CLIENT)
    result = await anyio.run_process([sys.executable, str(script), json.dumps(args)], check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def build_packages(directory: Path) -> list[Path]:
    """libfoo (noarch, two versions), helper (linux-64 .conda), app (linux-64 .tar.bz2) needing both."""
    ts = 1_700_000_000_000
    return [
        build_package(directory, "libfoo", "1.0", "0", timestamp=ts, run_exports={"weak": ["libfoo >=1"]}),
        build_package(directory, "libfoo", "2.0", "0", timestamp=ts + 1, fmt=".tar.bz2", constrains=["app>=1"]),
        build_package(directory, "helper", "0.5", "h1_0", subdir="linux-64", timestamp=ts,
                      depends=["libfoo>=2"], files={"bin/helper": b"#!/bin/sh\necho helper\n"}),
        build_package(directory, "app", "1.0", "h2_0", subdir="linux-64", fmt=".tar.bz2", timestamp=ts,
                      depends=["helper 0.5.*", "libfoo >=2,<3"], about={"summary": "the app"}),
    ]


def upload_all(server: LiveServer, channel: str, key: str, paths: list[Path]) -> None:
    with httpx2.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as http:
        for path in paths:
            url = f"/api/channels/{channel}/upload/{path.name}?sha256={sha256_of(path)}"
            response = http.post(url, content=path.read_bytes())
            assert response.status_code == 201, response.text


def wait_for_repodata(server: LiveServer, channel: str, paths: list[Path], key: str | None = None) -> None:
    """The monolithic files are rebuilt just after the uploads return; wait until they hold everything."""
    wanted = {p.name for p in paths}
    deadline = time.monotonic() + 30
    with httpx2.Client(base_url=server.url, headers={"X-API-Key": key} if key else {}, timeout=10) as http:
        while True:
            found: set[str] = set()
            for subdir in ("noarch", "linux-64"):
                doc = http.get(f"/get/{channel}/{subdir}/repodata.json").json()
                found |= set(doc["packages"]) | set(doc["packages.conda"])
            if wanted <= found:
                return
            assert time.monotonic() < deadline, f"repodata.json never listed {sorted(wanted - found)}"
            time.sleep(0.05)


@pytest.fixture
async def uploader_key(services: Services) -> str:
    owner = await make_user(services, "owner", Role.OWNER)
    _, secret = await api_keys.create_api_key(services, owner)
    return secret


def assert_installed(prefix: Path, solved: dict[str, Any], channel_url: str, paths: list[Path]) -> None:
    assert {name: s["version"] for name, s in solved.items()} == {"app": "1.0", "helper": "0.5", "libfoo": "2.0"}
    for s in solved.values():
        assert s["url"].startswith(channel_url + "/"), s["url"]
        built = next(p for p in paths if p.name == s["url"].rsplit("/", 1)[1])
        assert s["sha256"] == sha256_of(built)
    assert (prefix / "bin/helper").read_text() == "#!/bin/sh\necho helper\n"
    assert (prefix / "share/app/data.txt").exists() and (prefix / "share/libfoo/data.txt").exists()
    metas = {p.name for p in (prefix / "conda-meta").glob("*.json")}
    assert {"app-1.0-h2_0.json", "helper-0.5-h1_0.json", "libfoo-2.0-0.json"} <= metas


async def test_rattler_installs_through_sharded_repodata(live_server: LiveServer, services: Services,
                                                         uploader_key: str, tmp_path: Path) -> None:
    await make_channel(services, "shardy")
    paths = build_packages(tmp_path / "pkgs")
    await anyio.to_thread.run_sync(upload_all, live_server, "shardy", uploader_key, paths)
    # No waiting: the shard index is written before each upload returns.
    channel_url = f"{live_server.url}/get/shardy"
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=True,
                              zstd=True, prefix=str(tmp_path / "env"), cache=str(tmp_path / "cache"))
    assert_installed(tmp_path / "env", solved, channel_url, paths)
    # rattler fetched shards, not the monolithic files.
    cached = [p.name for p in (tmp_path / "cache").rglob("*")]
    assert any("shard" in name for name in cached), cached


@pytest.mark.parametrize("zstd", [True, False], ids=["repodata.json.zst", "repodata.json"])
async def test_rattler_installs_without_shards(live_server: LiveServer, services: Services, uploader_key: str,
                                               tmp_path: Path, zstd: bool) -> None:
    await make_channel(services, "plain", options={"shards": False})
    paths = build_packages(tmp_path / "pkgs")
    await anyio.to_thread.run_sync(upload_all, live_server, "plain", uploader_key, paths)
    await anyio.to_thread.run_sync(wait_for_repodata, live_server, "plain", paths)
    channel_url = f"{live_server.url}/get/plain"
    # The client asks for shards first; the channel answers 404 and it falls back.
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app >=1"], sharded=True,
                              zstd=zstd, prefix=str(tmp_path / "env"), cache=str(tmp_path / "cache"))
    assert_installed(tmp_path / "env", solved, channel_url, paths)


def same_spec(ours: str, theirs: str) -> bool:
    return str(MatchSpec(ours)) == str(MatchSpec(theirs))


async def test_records_match_rattlers_indexer(live_server: LiveServer, services: Services, uploader_key: str,
                                              tmp_path: Path) -> None:
    await make_channel(services, "compare")
    paths = build_packages(tmp_path / "pkgs")
    await anyio.to_thread.run_sync(upload_all, live_server, "compare", uploader_key, paths)
    await anyio.to_thread.run_sync(wait_for_repodata, live_server, "compare", paths)
    local = tmp_path / "local-channel"
    for path in paths:
        subdir = "noarch" if path.name.startswith("libfoo") else "linux-64"
        (local / subdir).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, local / subdir / path.name)
    theirs = await run_client(tmp_path, command="index", dir=str(local), subdirs=["noarch", "linux-64"])
    async with httpx2.AsyncClient(base_url=live_server.url) as http:
        for subdir in ("noarch", "linux-64"):
            ours = (await http.get(f"/get/compare/{subdir}/repodata.json")).json()
            reference = theirs[subdir]
            assert ours["info"] == reference["info"]
            for group in ("packages", "packages.conda"):
                assert set(ours[group]) == set(reference[group])
                for filename, record in ours[group].items():
                    expected = {k: v for k, v in reference[group][filename].items() if k != "indexed_timestamp"}
                    assert set(record) == set(expected), filename
                    for field, value in record.items():
                        if field in ("depends", "constrains"):
                            assert len(value) == len(expected[field])
                            assert all(same_spec(a, b) for a, b in zip(value, expected[field], strict=True)), field
                        else:
                            assert value == expected[field], (filename, field)


@pytest.mark.parametrize("issued", ["new", "legacy"])
async def test_rattler_installs_from_a_private_channel_through_a_token_url(
    live_server: LiveServer, services: Services, uploader_key: str, tmp_path: Path, issued: str
) -> None:
    """`/t/<key>/get/<channel>`: the key travels in the path, as conda and rattler users write it."""
    await make_channel(services, "secret", private=True)
    paths = build_packages(tmp_path / "pkgs")
    await anyio.to_thread.run_sync(upload_all, live_server, "secret", uploader_key, paths)
    await anyio.to_thread.run_sync(wait_for_repodata, live_server, "secret", paths, uploader_key)
    reader = await make_user(services, "reader")
    await add_member(services, "secret", reader, Role.MEMBER)
    if issued == "new":
        key = (await api_keys.create_api_key(services, reader))[1]
        assert_conda_reads_the_whole_key(key)
    else:
        key = await legacy_key(services, reader)  # `gc_...`: conda cannot read it, rattler can
    channel_url = f"{live_server.url}/t/{key}/get/secret"
    async with httpx2.AsyncClient() as http:
        assert (await http.get(f"{live_server.url}/get/secret/noarch/repodata.json")).status_code == 404
    solved = await run_client(tmp_path, command="install", channel=channel_url, specs=["app"], sharded=True,
                              zstd=True, prefix=str(tmp_path / "env"), cache=str(tmp_path / "cache"))
    assert_installed(tmp_path / "env", solved, channel_url, paths)

