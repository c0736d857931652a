"""`graphconda channel create` publishing flags and `graphconda channel update`, over the channel service."""

from __future__ import annotations

import asyncio
import bz2
import json
from pathlib import Path

from graphconda.services import packages
from graphconda.services.authz import SYSTEM
from graphconda.services.context import open_services
from graphconda.services.publisher import wait_published
from graphconda.settings import load_settings
from tests.helpers.channels import chunks
from tests.helpers.packages import build_package
from tests.test_cli import cli_env, invoke  # noqa: F401 - the fixture is used by name

KEY = "channels/{c}/noarch/{f}"


def listed(data: str, env: dict[str, str]) -> dict[str, dict[str, object]]:
    code, out, err = invoke(["channel", "list", "--json", "--data-dir", data], env)
    assert code == 0, err
    return {c["name"]: c["publishing"] for c in json.loads(out)}


async def stored(data: str, env: dict[str, str], channel: str, tmp_path: Path | None = None) -> dict[str, bytes]:
    """Upload one package first when `tmp_path` is given; the channel's noarch index files in storage."""
    settings = load_settings(environ=env, overrides={"server": {"data_dir": data}})
    handle = await open_services(settings)
    try:
        services = handle.services
        if tmp_path is not None:
            path = build_package(tmp_path, "foo", "1.0", "0")
            await packages.ingest_package(services, SYSTEM, channel, path.name, chunks(path))
            await wait_published(services)
        found = {}
        for name in ("repodata.json", "repodata.json.bz2", "current_repodata.json", "repodata_shards.msgpack.zst"):
            if await services.storage.stat(KEY.format(c=channel, f=name)) is not None:
                found[name] = await services.storage.read(KEY.format(c=channel, f=name))
        return found
    finally:
        await handle.aclose()


def test_create_flags_and_update(tmp_path: Path, cli_env: dict[str, str]) -> None:  # noqa: F811
    data = str(tmp_path / "data")
    code, _, err = invoke(["channel", "create", "classic", "--bz2", "--current-repodata", "--no-shards",
                           "--data-dir", data], cli_env)
    assert code == 0, err
    assert invoke(["channel", "create", "tools", "--data-dir", data], cli_env)[0] == 0
    assert listed(data, cli_env) == {
        "classic": {"bz2": True, "current_repodata": True, "shards": False},
        "tools": {"bz2": False, "current_repodata": False, "shards": True},
    }
    files = asyncio.run(stored(data, cli_env, "classic", tmp_path))
    # (Uploads keep the shard index current even with shards off; serving withholds it.)
    assert {"repodata.json", "repodata.json.bz2", "current_repodata.json"} <= set(files)
    assert bz2.decompress(files["repodata.json.bz2"]) == files["repodata.json"]

    code, out, err = invoke(["channel", "update", "classic", "--no-bz2", "--no-current-repodata", "--shards",
                             "--description", "now modern", "--data-dir", data], cli_env)
    assert code == 0, err
    assert "bz2 off, current_repodata off, shards on" in out
    assert set(asyncio.run(stored(data, cli_env, "classic"))) == {"repodata.json", "repodata_shards.msgpack.zst"}
    # Options not given stay as they are.
    assert invoke(["channel", "update", "classic", "--private", "--data-dir", data], cli_env)[0] == 0
    assert listed(data, cli_env)["classic"] == {"bz2": False, "current_repodata": False, "shards": True}

    code, _, err = invoke(["channel", "update", "nope", "--bz2", "--data-dir", data], cli_env)
    assert code == 1 and err.startswith("error: ") and "not found" in err and err.count("\n") == 1
