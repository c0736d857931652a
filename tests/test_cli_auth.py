"""Bootstrap without OAuth: `graphconda user ...`, `graphconda api-key ...`, and `serve --dev`'s admin key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import ApiKey, ChannelMember, User
from graphconda.errors import AuthenticationError, NotFoundError
from graphconda.services import api_keys, packages, sessions, users
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.helpers.keys import assert_conda_reads_the_whole_key
from tests.helpers.packages import build_package
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


async def test_user_disable_and_enable(cli_env: dict[str, str], data: list[str], services: Services) -> None:  # noqa: F811
    await ok(["user", "create", "root", "--role", "owner", *data], cli_env)
    await ok(["user", "create", "alice", *data], cli_env)
    secret = (await ok(["api-key", "create", "--user", "alice", *data], cli_env)).strip()
    token = await sessions.start_session(services, await users.get_user(services, "alice"))
    assert await ok(["user", "disable", "alice", *data], cli_env) == "user alice is now disabled\n"
    with pytest.raises(AuthenticationError, match="disabled"):
        await api_keys.authenticate_key(services, secret)
    with pytest.raises(AuthenticationError):
        await sessions.session_actor(services, token)
    assert await ok(["user", "enable", "alice", *data], cli_env) == "user alice is now enabled\n"
    assert (await api_keys.authenticate_key(services, secret)).username == "alice"
    with pytest.raises(AuthenticationError):  # ended sessions stay ended: alice logs in anew
        await sessions.session_actor(services, token)
    err = await one_line_error(["user", "disable", "root", *data], cli_env)
    assert err == "error: cannot disable the last server owner; make someone else owner first\n"
    assert await one_line_error(["user", "disable", "ghost", *data], cli_env) == "error: user not found\n"


async def test_api_key_create_prints_only_the_key(
    cli_env: dict[str, str], data: list[str], services: Services  # noqa: F811
) -> None:
    await ok(["user", "create", "alice", *data], cli_env)
    code, out, err = await run_cli(["api-key", "create", "--user", "alice", "--description", "laptop", *data], cli_env)
    assert code == 0, err
    secret = out.strip()
    assert out == secret + "\n" and secret.startswith("gc-")
    assert_conda_reads_the_whole_key(secret)
    assert err == ""
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


async def test_scoped_key_gives_the_user_the_role_it_needs(
    cli_env: dict[str, str], data: list[str], services: Services, tmp_path: Path  # noqa: F811
) -> None:
    """Bootstrap CI: a bot user, a private channel, a key that can upload there and nothing else."""
    await ok(["user", "create", "alice", *data], cli_env)
    await ok(["user", "create", "ci", *data], cli_env)
    await ok(["channel", "create", "team", "--private", "--owner", "alice", *data], cli_env)
    await ok(["channel", "create", "other", "--private", "--owner", "alice", *data], cli_env)
    args = ["api-key", "create", "--user", "ci", "--channel", "team", "--role", "maintainer", *data]
    key = await api_keys.authenticate_key(services, (await ok(args, cli_env)).strip())
    pkg = build_package(tmp_path, "tool", "1.0", "0")
    await packages.ingest_package(services, key, "team", pkg.name, _chunks(pkg))
    with pytest.raises(NotFoundError):  # the key sees nothing else, though ci is now a team maintainer
        await packages.ingest_package(services, key, "other", pkg.name, _chunks(pkg))
    # An owner asking for less keeps what they have.
    await ok(["api-key", "create", "--user", "alice", "--channel", "team", "--role", "member", *data], cli_env)
    async with services.db.read() as session:
        rows = await session.execute(
            select(User.username, ChannelMember.role).join(ChannelMember, ChannelMember.user_id == User.id)
        )
        roles = sorted(map(tuple, rows))
    assert roles == [("alice", "owner"), ("alice", "owner"), ("ci", "maintainer")]  # alice owns team and other
    err = await one_line_error(["api-key", "create", "--user", "ci", "--channel", "nothing-here", "--role", "owner",
                                *data], cli_env)
    assert err == "error: scope 1: channel not found\n"
    err = await one_line_error(["api-key", "create", "--user", "ci", "--channel", "team", "--package", "new-one",
                                "--role", "owner", *data], cli_env)
    assert "does not exist yet" in err
    assert await key_count(services) == 2


async def _chunks(path: Path) -> Any:
    yield await anyio.Path(path).read_bytes()


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
    for out_of_range in ("0", "-1", str(2**63), "9" * 30):
        assert await one_line_error(["api-key", "revoke", *data, "--", out_of_range], cli_env) == (
            "error: API key not found\n"
        )
    assert (await run_cli(["api-key", "revoke", "one", *data], cli_env))[0] == 2
    assert "\trevoked\t" in await ok(["api-key", "list", "--user", "alice", *data], cli_env)


def test_serve_dev_prints_a_working_admin_key(served: tuple[str, str]) -> None:  # noqa: F811
    url, log = served
    lines = [line for line in log.splitlines() if line.startswith("  dev API key: ")]
    assert len(lines) == 1
    key = lines[0].removeprefix("  dev API key: ")
    assert key.startswith("gc-")
    assert_conda_reads_the_whole_key(key)
    me = httpx2.get(f"{url}/auth/me", headers={"X-API-Key": key}, timeout=5).json()
    assert me["user"]["username"] == "dev" and me["user"]["serverRole"] == "owner"
    assert httpx2.get(f"{url}/t/{key}/auth/me", timeout=5).json() == me
    assert httpx2.get(f"{url}/auth/me", headers={"X-API-Key": key + "x"}, timeout=5).status_code == 401
    login = httpx2.get(f"{url}/auth/dev/login/dev", timeout=5)
    assert login.status_code == 303 and "graphconda_session=" in login.headers["set-cookie"]
