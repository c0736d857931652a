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


def package_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith((".conda", ".tar.bz2")))


def test_a_mirror_recovered_after_its_database_was_lost(tmp_path: Path, cli_env: dict[str, str]) -> None:  # noqa: F811
    """The files stay in storage; a new database gets the channel back with `--keep-stored-files` and
    `reindex`, and the next sync downloads nothing. Without the flag the leftovers are deleted."""
    import asyncio

    from tests.fixtures.upstreams import StaticServer, place, rattler_index
    from tests.helpers.packages import build_package

    root = tmp_path / "upstream"
    place(root, [build_package(tmp_path / "b", "alpha", "1.0", "0"),
                 build_package(tmp_path / "b", "beta", "1.0", "0", subdir="linux-64", fmt=".tar.bz2")])
    asyncio.run(rattler_index(root))
    data = str(tmp_path / "data")
    lost = {**cli_env, "GRAPHCONDA_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"}
    stored = tmp_path / "data" / "files" / "channels" / "m"
    with StaticServer(root) as upstream:
        code, out, err = invoke(["channel", "create", "m", "--mirror", upstream.url, "--no-sync", "--data-dir", data],
                                cli_env)
        assert code == 0, err
        code, out, err = invoke(["mirror", "sync", "m", "--wait", "--data-dir", data], cli_env)
        assert code == 0 and "2 files" in out, (out, err)
        files = package_files(stored)
        assert len(files) == 2, files
        # A new, empty database beside the same storage.
        code, _, err = invoke(["channel", "create", "m", "--mirror", upstream.url, "--no-sync", "--keep-stored-files",
                               "--owner", "someone", "--data-dir", data], lost)
        assert code != 0 and "without --owner" in err
        code, out, err = invoke(["channel", "create", "m", "--mirror", upstream.url, "--no-sync", "--keep-stored-files",
                                 "--data-dir", data], lost)
        assert code == 0, err
        assert package_files(stored) == files
        code, out, err = invoke(["reindex", "m", "--data-dir", data], lost)
        assert code == 0 and "2 files added" in out, (out, err)
        code, out, err = invoke(["mirror", "sync", "m", "--wait", "--data-dir", data], lost)
        assert code == 0 and "0 files" in out, (out, err)
        code, out, err = invoke(["mirror", "status", "m", "--data-dir", data], lost)
        assert code == 0 and "files:         2 (" in out, out
    # Without the flag, a new channel of that name starts empty: what storage held is deleted.
    other = {**cli_env, "GRAPHCONDA_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"}
    code, _, err = invoke(["channel", "create", "m", "--data-dir", data], other)
    assert code == 0, err
    assert package_files(stored) == []
