"""`graphconda channel create --proxy/--mirror` with lists and ttl, and `channel update --upstream/--ttl`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import cli_env, invoke  # noqa: F401 - the fixture is used by name


def test_create_proxy_and_mirror_channels(tmp_path: Path, cli_env: dict[str, str]) -> None:  # noqa: F811
    data = str(tmp_path / "data")
    code, out, err = invoke(["channel", "create", "cf", "--proxy", "https://u:secret-pw@conda.example.org/cf",
                             "--ttl", "60", "--data-dir", data], cli_env)
    assert code == 0, err
    assert out.strip() == "created channel cf, proxy of https://***@conda.example.org/cf"
    code, out, err = invoke(["channel", "create", "m", "--mirror", "https://conda.example.org/m", "--include", "numpy",
                             "--include", "python 3.12.*", "--proxylist", "big", "--data-dir", data], cli_env)
    assert code == 0, err
    code, _, err = invoke(["channel", "create", "x", "--mirror", "https://a.org/c", "--include", "a", "--exclude", "b",
                           "--data-dir", data], cli_env)
    assert code != 0 and "not both" in err
    code, _, err = invoke(["channel", "create", "y", "--mirror", "https://a.org/c", "--proxy", "https://a.org/c",
                           "--data-dir", data], cli_env)
    assert code != 0 and "not both" in err
    code, _, err = invoke(["channel", "update", "cf", "--upstream", "https://conda.example.org/other", "--ttl", "5",
                           "--data-dir", data], cli_env)
    assert code == 0, err
    code, out, _ = invoke(["channel", "list", "--json", "--data-dir", data], cli_env)
    assert {c["name"]: c["mirror_mode"] for c in json.loads(out)} == {"cf": "proxy", "m": "mirror"}


def test_mirror_sync_and_status(tmp_path: Path, cli_env: dict[str, str]) -> None:  # noqa: F811
    import asyncio

    from tests.fixtures.upstreams import StaticServer, place, rattler_index
    from tests.helpers.packages import build_package

    root = tmp_path / "upstream"
    place(root, [build_package(tmp_path / "b", "alpha", "1.0", "0"),
                 build_package(tmp_path / "b", "beta", "1.0", "0", subdir="linux-64", fmt=".tar.bz2")])
    asyncio.run(rattler_index(root))
    data = str(tmp_path / "data")
    with StaticServer(root) as upstream:
        code, out, err = invoke(["channel", "create", "m", "--mirror", upstream.url, "--no-sync", "--data-dir", data],
                                cli_env)
        assert code == 0 and "queued" not in out, err
        code, out, err = invoke(["mirror", "status", "m", "--data-dir", data], cli_env)
        assert code == 0 and "last sync:     never" in out, err
        code, out, err = invoke(["mirror", "sync", "m", "--wait", "--data-dir", data], cli_env)
        assert code == 0, err
        assert "succeeded" in out and "2 files" in out
        code, out, err = invoke(["mirror", "status", "m", "--data-dir", data], cli_env)
        assert code == 0 and "files:         2 (" in out and "synchronize succeeded" in out, out
        code, _, err = invoke(["mirror", "sync", "nosuch", "--data-dir", data], cli_env)
        assert code == 1 and "channel not found" in err
