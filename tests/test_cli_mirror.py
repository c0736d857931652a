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
