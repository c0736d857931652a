"""CLI: `graphconda upload` (an HTTP client), `graphconda reindex`, `graphconda package delete`."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from sqlalchemy import delete

from graphconda.cli import main
from graphconda.db.models import PackageFile
from graphconda.services import packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.fixtures.server import LiveServer
from tests.helpers.channels import (
    chunks,
    make_channel,
    owner_key_for_main,
    package_files,
    repodata,
    storage_keys,
)
from tests.helpers.packages import build_package


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GRAPHCONDA_")}
    result = CliRunner().invoke(main, args, env={**unset, **env})
    return result.exit_code, result.stdout, result.stderr


async def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    # The server-side commands run their own event loop; keep it off the test's.
    return await anyio.to_thread.run_sync(invoke, args, env)


@pytest.fixture
async def owner_key(services: Services) -> str:
    return await owner_key_for_main(services)


async def test_upload_continues_past_bad_files_and_fails_at_the_end(live_server: LiveServer, services: Services,
                                                                    owner_key: str, tmp_path: Path) -> None:
    good = build_package(tmp_path, "alpha", "1.0")
    other = build_package(tmp_path, "beta", "2.0", subdir="linux-64", fmt=".tar.bz2")
    bad = tmp_path / "gamma-1.0-0.conda"
    bad.write_text("not a package")
    args = ["upload", "--url", live_server.url, "--channel", "main", "--no-progress",
            str(good), str(bad), str(tmp_path / "missing-1.0-0.conda"), str(other)]
    code, out, err = await run_cli(args, {"GRAPHCONDA_API_KEY": owner_key})
    assert code == 1
    assert f"{good.name}: uploaded to main" in out and f"{other.name}: uploaded to main" in out
    assert f"{bad.name}: failed (422): {bad.name} is not a valid .conda file" in out
    assert "missing-1.0-0.conda: failed: no such file" in out
    assert err.strip() == "error: 2 of 4 files failed"
    assert {f.filename for f in await package_files(services)} == {good.name, other.name}

    code, out, _ = await run_cli(["upload", "--url", live_server.url, "-c", "main", "--no-progress", str(good)],
                                 {"GRAPHCONDA_API_KEY": owner_key})
    assert code == 1 and "failed (409)" in out and "already exists" in out
    code, out, _ = await run_cli(["upload", "--url", live_server.url, "-c", "main", "--no-progress", "--force",
                                  str(good)], {"GRAPHCONDA_API_KEY": owner_key})
    assert code == 0 and "uploaded" in out


async def test_upload_without_key_says_so(live_server: LiveServer, owner_key: str, tmp_path: Path) -> None:
    good = build_package(tmp_path, "alpha")
    code, out, _ = await run_cli(["upload", "--url", live_server.url, "-c", "main", "--no-progress", str(good)], {})
    assert code == 1 and "failed (401)" in out and "API key" in out


async def test_upload_to_an_unreachable_server(tmp_path: Path) -> None:
    good = build_package(tmp_path, "alpha")
    code, out, err = await run_cli(["upload", "--url", "http://127.0.0.1:9", "-c", "main", "--no-progress",
                                    str(good)], {})
    assert code == 1 and out.startswith(f"{good.name}: failed:") and "1 of 1" in err


def server_env(settings: Settings) -> dict[str, str]:
    return {"GRAPHCONDA_DATABASE__URL": settings.database_url, "GRAPHCONDA_SERVER__DATA_DIR": str(settings.data_dir)}


async def test_reindex_rebuilds_records_from_storage(services: Services, settings: Settings, tmp_path: Path) -> None:
    await make_channel(services, "main")
    paths = [build_package(tmp_path, "alpha", "1.0"), build_package(tmp_path, "beta", "1.0", fmt=".tar.bz2")]
    for path in paths:
        await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    before = (await repodata(services, "main", "noarch"))
    # The database loses its rows; the published files go too.
    async with services.db.write() as session:
        await session.execute(delete(PackageFile))
    for key in await storage_keys(services, "channels/main/noarch/"):
        if "repodata" in key:
            await services.storage.delete(key)
    code, out, err = await run_cli(["reindex", "main"], server_env(settings))
    assert code == 0, err
    assert "2 files added, 0 removed" in out
    assert {f.filename for f in await package_files(services)} == {p.name for p in paths}
    assert await repodata(services, "main", "noarch") == before


async def test_package_delete(services: Services, settings: Settings, tmp_path: Path) -> None:
    await make_channel(services, "main")
    path = build_package(tmp_path, "alpha")
    await packages.ingest_package(services, SYSTEM, "main", path.name, chunks(path))
    code, out, err = await run_cli(["package", "delete", "main", "noarch", path.name], server_env(settings))
    assert code == 0, err
    assert out.strip() == f"deleted main/noarch/{path.name}"
    assert not await package_files(services)
    published = await repodata(services, "main", "noarch")
    assert published is not None and published["packages.conda"] == {}
    code, _, err = await run_cli(["package", "delete", "main", "noarch", path.name], server_env(settings))
    assert code == 1 and err.startswith("error: ") and "not found" in err
    code, _, err = await run_cli(["package", "delete", "main", "noarch", "../x.conda"], server_env(settings))
    assert code == 1 and "must not contain" in err


async def test_upload_finds_the_server_from_the_config(live_server: LiveServer, owner_key: str,
                                                       tmp_path: Path) -> None:
    """Like every command, upload takes --config: without --url it uploads to server.public_url."""
    good = build_package(tmp_path, "alpha")
    config = tmp_path / "client.toml"
    config.write_text(f'[server]\npublic_url = "{live_server.url}"\n')
    code, out, _ = await run_cli(["upload", "--config", str(config), "-c", "main", "--no-progress", str(good)],
                                 {"GRAPHCONDA_API_KEY": owner_key})
    assert code == 0 and "uploaded" in out
