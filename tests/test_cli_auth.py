"""Bootstrap without OAuth: `graphconda user ...`, `graphconda api-key ...`, and `serve --dev`'s admin key."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import ApiKey
from graphconda.errors import AuthenticationError
from graphconda.services import api_keys, users
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.test_cli import cli_env, invoke, served  # noqa: F401 - fixtures shared with the CLI suite


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data")]


async def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    # The CLI runs its own event loop (asyncio.run): keep it off the test's loop.
    return await anyio.to_thread.run_sync(invoke, args, env)


async def ok(args: list[str], env: dict[str, str]) -> str:
    code, out, err = await run_cli(args, env)
    assert code == 0, err
    return out


async def one_line_error(args: list[str], env: dict[str, str], code: int = 1) -> str:
    got, out, err = await run_cli(args, env)
    assert got == code, (out, err)
    assert out == ""
    return err


async def key_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def test_user_create(cli_env: dict[str, str], data: list[str], services: Services) -> None:  # noqa: F811
    assert await ok(["user", "create", "alice", "--role", "owner", *data], cli_env) == "created user alice (owner)\n"
    assert await ok(["user", "create", "bob", *data], cli_env) == "created user bob\n"
    assert (await users.get_user(services, "alice")).server_role == "owner"
    err = await one_line_error(["user", "create", "ALICE", *data], cli_env)
    assert err == "error: user 'ALICE' already exists\n"
    bad_role = await one_line_error(["user", "create", "c", "--role", "admin", *data], cli_env, 2)
    assert "Invalid value for '--role'" in bad_role
    for name in ("../x", "a b", "ünï", "x-"):
        assert (await one_line_error(["user", "create", name, *data], cli_env)).startswith("error: a username is")
    changed = await ok(["user", "set-role", "bob", "maintainer", *data], cli_env)
    assert changed == "user bob now has server role maintainer\n"
    assert await ok(["user", "list", *data], cli_env) == "alice\towner\nbob\tmaintainer\n"


async def test_api_key_create_prints_only_the_key(
    cli_env: dict[str, str], data: list[str], services: Services  # noqa: F811
) -> None:
    await ok(["user", "create", "alice", *data], cli_env)
    code, out, err = await run_cli(["api-key", "create", "--user", "alice", "--description", "laptop", *data], cli_env)
    assert code == 0, err
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("gc_")
    assert "revoke" in err  # the id, for revoking, goes to stderr
    actor = await api_keys.authenticate_key(services, secret)
    assert (actor.username, actor.scopes) == ("alice", None)
    listed = await ok(["api-key", "list", "--user", "alice", *data], cli_env)
    assert listed.startswith("1\tactive\tall\tlast used") and listed.rstrip().endswith("laptop")
    assert secret not in listed


async def test_scoped_expiring_key(cli_env: dict[str, str], data: list[str], services: Services) -> None:  # noqa: F811
    await ok(["user", "create", "alice", *data], cli_env)
    await ok(["channel", "create", "team", "--private", "--owner", "alice", *data], cli_env)
    args = ["api-key", "create", "--user", "alice", "--channel", "team", "--package", "numpy", "--role", "maintainer",
            "--expires-in-days", "30", *data]
    secret = (await ok(args, cli_env)).strip()
    actor = await api_keys.authenticate_key(services, secret)
    assert actor.scopes is not None
    assert [(s.role, s.package_name) for s in actor.scopes] == [(Role.MAINTAINER, "numpy")]
    listed = await ok(["api-key", "list", "--user", "alice", *data], cli_env)
    assert "\texpires " in listed and "team/numpy:maintainer" in listed


async def test_key_cannot_exceed_the_users_rights(
    cli_env: dict[str, str], data: list[str], services: Services  # noqa: F811
) -> None:
    await ok(["user", "create", "alice", *data], cli_env)
    await ok(["user", "create", "mallory", *data], cli_env)
    await ok(["channel", "create", "team", "--private", "--owner", "alice", *data], cli_env)
    await ok(["channel", "create", "open", "--owner", "alice", *data], cli_env)
    escalate = ["api-key", "create", "--user", "mallory", "--role", "owner", *data]
    assert "cannot grant more" in await one_line_error([*escalate, "--channel", "open"], cli_env)
    hidden = await one_line_error([*escalate, "--channel", "team"], cli_env)
    missing = await one_line_error([*escalate, "--channel", "nothing-here"], cli_env)
    assert hidden.replace("team", "nothing-here") == missing and "team" not in hidden  # same answer, no name
    assert await key_count(services) == 0


@pytest.mark.parametrize(
    "extra",
    [
        ["--package", "numpy"],
        ["--role", "owner"],
        ["--channel", "team"],
        ["--channel", "team", "--role", "admin"],
        ["--expires-in-days", "0"],
        ["--expires-in-days", "x"],
    ],
)
async def test_api_key_create_usage_errors(
    cli_env: dict[str, str], data: list[str], services: Services, extra: list[str]  # noqa: F811
) -> None:
    await ok(["user", "create", "alice", *data], cli_env)
    code, out, _ = await run_cli(["api-key", "create", "--user", "alice", *extra, *data], cli_env)
    assert (code, out) == (2, "")
    assert await key_count(services) == 0


async def test_api_key_for_unknown_user(cli_env: dict[str, str], data: list[str]) -> None:  # noqa: F811
    assert await one_line_error(["api-key", "create", "--user", "ghost", *data], cli_env) == "error: user not found\n"


async def test_api_key_revoke(cli_env: dict[str, str], data: list[str], services: Services) -> None:  # noqa: F811
    await ok(["user", "create", "alice", *data], cli_env)
    secret = (await ok(["api-key", "create", "--user", "alice", *data], cli_env)).strip()
    assert await ok(["api-key", "revoke", "1", *data], cli_env) == "revoked API key 1\n"
    with pytest.raises(AuthenticationError):
        await api_keys.authenticate_key(services, secret)
    assert await one_line_error(["api-key", "revoke", "99", *data], cli_env) == "error: API key not found\n"
    assert (await run_cli(["api-key", "revoke", "one", *data], cli_env))[0] == 2
    assert "\trevoked\t" in await ok(["api-key", "list", "--user", "alice", *data], cli_env)


def test_serve_dev_prints_a_working_admin_key(served: tuple[str, str]) -> None:  # noqa: F811
    url, log = served
    lines = [line for line in log.splitlines() if line.startswith("  dev API key: ")]
    assert len(lines) == 1
    key = lines[0].removeprefix("  dev API key: ")
    assert key.startswith("gc_")
    me = httpx2.get(f"{url}/auth/me", headers={"X-API-Key": key}, timeout=5).json()
    assert me["user"]["username"] == "dev" and me["user"]["serverRole"] == "owner"
    assert httpx2.get(f"{url}/t/{key}/auth/me", timeout=5).json() == me
    assert httpx2.get(f"{url}/auth/me", headers={"X-API-Key": key + "x"}, timeout=5).status_code == 401
    login = httpx2.get(f"{url}/auth/dev/login/dev", timeout=5)
    assert login.status_code == 303 and "graphconda_session=" in login.headers["set-cookie"]
