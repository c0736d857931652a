"""The command line: serve, migrate, channel create/list, and one-line errors for bad setups."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from graphconda.cli import main
from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.server import free_port, wait_until_serving


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    """Environment for CLI runs: the test database, nothing else from the outer environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHCONDA_")}
    env["GRAPHCONDA_DATABASE__URL"] = database_url
    return env


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    # CliRunner applies `env` to os.environ for the call; None unsets a variable.
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GRAPHCONDA_")}
    result = CliRunner().invoke(main, args, env={**unset, **env})
    return result.exit_code, result.stdout, result.stderr


def test_migrate_then_channels(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = str(tmp_path / "data")
    assert invoke(["migrate", "--data-dir", data], cli_env)[0] == 0
    code, out, err = invoke(["channel", "create", "tools", "--description", "our tools", "--data-dir", data], cli_env)
    assert code == 0, err
    assert "created channel tools" in out
    assert invoke(["channel", "create", "secret", "--private", "--data-dir", data], cli_env)[0] == 0
    code, out, _ = invoke(["channel", "list", "--json", "--data-dir", data], cli_env)
    assert code == 0
    listed = {c["name"]: c for c in json.loads(out)}
    assert listed["tools"]["description"] == "our tools"
    assert listed["secret"]["private"] is True


@pytest.mark.parametrize("name", ["../etc", "Upper", "a/b", "", "x" * 65, "ümlaut"])
def test_channel_create_refuses_bad_names(tmp_path: Path, cli_env: dict[str, str], name: str) -> None:
    data = str(tmp_path / "data")
    code, _, err = invoke(["channel", "create", name, "--data-dir", data], cli_env)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    code, out, _ = invoke(["channel", "list", "--json", "--data-dir", data], cli_env)
    assert json.loads(out) == []


def test_channel_create_twice_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = str(tmp_path / "data")
    assert invoke(["channel", "create", "dup", "--data-dir", data], cli_env)[0] == 0
    code, _, err = invoke(["channel", "create", "dup", "--data-dir", data], cli_env)
    assert code == 1
    assert "already exists" in err


def _one_line_error(code: int, err: str, fragment: str, expected_code: int) -> None:
    assert code == expected_code, err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, f"expected one line, got: {err!r}"
    assert fragment in err


def test_unknown_config_key(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\nportt = 1\n")
    code, _, err = invoke(["migrate", "--config", str(config)], cli_env)
    _one_line_error(code, err, "unknown setting 'server.portt'", 2)


def test_malformed_toml(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server\n")
    code, _, err = invoke(["channel", "list", "--config", str(config)], cli_env)
    _one_line_error(code, err, "not valid TOML", 2)


def test_unwritable_data_dir(tmp_path: Path, cli_env: dict[str, str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = invoke(["migrate", "--data-dir", str(blocker / "data")], cli_env)
    _one_line_error(code, err, "is not writable", 2)


def test_unreachable_database_leaves_nothing(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "GRAPHCONDA_DATABASE__URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nope"}
    data = tmp_path / "data"
    code, _, err = invoke(["migrate", "--data-dir", str(data)], env)
    _one_line_error(code, err, "cannot migrate database", 1)
    assert not data.exists()


def test_malformed_database_url_is_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = tmp_path / "data"
    for command in (["migrate"], ["channel", "list"], ["serve", "--port", str(free_port())]):
        code, _, err = invoke([*command, "--data-dir", str(data)], {**cli_env, "GRAPHCONDA_DATABASE__URL": "notaurl"})
        _one_line_error(code, err, "invalid setting 'database.url'", 2)
    assert not data.exists()


def test_zero_workers_is_refused_not_ignored(tmp_path: Path, cli_env: dict[str, str]) -> None:
    code, _, err = invoke(["serve", "--workers", "0", "--data-dir", str(tmp_path / "d")], cli_env)
    _one_line_error(code, err, "invalid setting 'server.workers'", 2)
    assert not (tmp_path / "d").exists()


def test_unreachable_s3(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = tmp_path / "c.toml"
    endpoint = f"127.0.0.1:{free_port()}"
    config.write_text(f'[storage]\nbackend = "s3"\n[storage.s3]\nendpoint = "{endpoint}"\nsecure = false\n')
    started = time.monotonic()
    code, _, err = invoke(["migrate", "--config", str(config), "--data-dir", str(tmp_path / "d")], cli_env)
    _one_line_error(code, err, "127.0.0.1", 1)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "d").exists()


def test_port_in_use(tmp_path: Path, cli_env: dict[str, str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, _, err = invoke(["serve", "--port", str(port), "--data-dir", str(tmp_path / "d")], cli_env)
    _one_line_error(code, err, f"port {port} on 127.0.0.1 is in use", 2)


@contextlib.contextmanager
def serve_process(
    tmp_path: Path, env: dict[str, str], extra: list[str], *, dev: bool = True
) -> Iterator[tuple[str, str]]:
    """`graphconda serve` in a subprocess; yields (base URL, its output until ready)."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphconda", "serve", *(["--dev"] if dev else []), "--port", str(port),
         "--data-dir", str(tmp_path / "data"), *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, url, tmp_path / "serve.log")
        yield url, (tmp_path / "serve.log").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def served(tmp_path: Path, cli_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with serve_process(tmp_path, cli_env, getattr(request, "param", [])) as running:
        yield running


@pytest.mark.parametrize("served", [[], ["--workers", "2"]], indirect=True, ids=["one-worker", "two-workers"])
def test_serve_starts_and_is_ready(served: tuple[str, str], tmp_path: Path) -> None:
    url, log = served
    assert f"listening on {url}" in log
    assert f"data:     {tmp_path / 'data'}" in log
    assert httpx2.get(f"{url}/readyz", timeout=5).status_code == 200
    graphiql = httpx2.get(f"{url}/graphql", headers={"Accept": "text/html"}, timeout=5)
    assert graphiql.status_code == 200 and "graphiql" in graphiql.text.lower()
    info = httpx2.post(f"{url}/graphql", json={"query": "{ serverInfo { storageBackend } }"}, timeout=5).json()
    assert info["data"]["serverInfo"]["storageBackend"] == "local"
    assert (tmp_path / "data" / "files").is_dir()


@pytest.mark.parametrize("access_log", [None, "true"])
def test_serve_access_log_is_off_unless_configured(tmp_path: Path, cli_env: dict[str, str],
                                                   access_log: str | None) -> None:
    env = cli_env | ({"GRAPHCONDA_SERVER__ACCESS_LOG": access_log} if access_log else {})
    with serve_process(tmp_path, env, [], dev=False) as (url, _):
        assert httpx2.get(f"{url}/readyz", timeout=5).status_code == 200
        # uvicorn logs the line before it writes the response, and its handler flushes each line.
        logged = '"GET /readyz HTTP/1.1" 200' in (tmp_path / "serve.log").read_text()
    assert logged == bool(access_log)


@pytest.mark.s3
def test_serve_with_s3_config_is_ready(tmp_path: Path, cli_env: dict[str, str], seaweedfs: SeaweedFS) -> None:
    """`serve --config X.toml` with S3 storage (and PostgreSQL when the suite runs on it) starts and is ready."""
    config = tmp_path / "s3.toml"
    config.write_text(
        f'[database]\nurl = "{cli_env["GRAPHCONDA_DATABASE__URL"]}"\n'
        f'[storage]\nbackend = "s3"\n[storage.s3]\nendpoint = "{seaweedfs.endpoint}"\n'
        f'access_key = "{seaweedfs.access_key}"\nsecret_key = "{seaweedfs.secret_key}"\n'
        f'bucket = "cli-serve"\nprefix = "{uuid.uuid4().hex}/"\nsecure = false\n'
    )
    env = {k: v for k, v in cli_env.items() if k != "GRAPHCONDA_DATABASE__URL"}
    with serve_process(tmp_path, env, ["--config", str(config)]) as (url, _):
        assert httpx2.get(f"{url}/readyz", timeout=5).status_code == 200
        info = httpx2.post(f"{url}/graphql", json={"query": "{ serverInfo { storageBackend } }"}, timeout=5).json()
        assert info["data"]["serverInfo"]["storageBackend"] == "s3"


def test_dev_mode_only_with_the_flag(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """A config file or environment saying dev = true does not open the dev login (404) nor print a key."""
    config = tmp_path / "dev.toml"
    config.write_text("[server]\ndev = true\n")
    env = {**cli_env, "GRAPHCONDA_SERVER__DEV": "true"}
    with serve_process(tmp_path, env, ["--config", str(config)], dev=False) as (url, log):
        assert "dev API key" not in log and "[dev mode]" not in log
        for path in ("/auth/dev/login/dev", "/auth/dev/login/mallory"):
            assert httpx2.get(f"{url}{path}", timeout=5, follow_redirects=False).status_code == 404
        assert httpx2.get(f"{url}/auth/providers", timeout=5).json()["dev"] is False
