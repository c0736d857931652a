"""Users, identities and server roles (graphconda/services/users.py)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from graphconda.db.models import Identity, User
from graphconda.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from graphconda.services import users
from graphconda.services.authz import ANONYMOUS, SYSTEM, Role
from graphconda.services.context import Services


async def user_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_create_and_get_user(services: Services) -> None:
    created = await users.create_user(services, SYSTEM, "Alice", server_role="owner", email="a@example.org")
    assert (created.username, created.server_role) == ("Alice", "owner")
    assert (await users.get_user(services, "alice")).id == created.id  # names compare case-insensitively
    with pytest.raises(AlreadyExistsError):
        await users.create_user(services, SYSTEM, "ALICE")
    with pytest.raises(NotFoundError):
        await users.get_user(services, "nobody")


@pytest.mark.parametrize(
    "name", ["", "-lead", "trail.", "a b", "ünï", "x" * 65, "../etc", "a/b", "name\x00", "semi;colon", "a@b"]
)
async def test_hostile_usernames_are_refused(services: Services, name: str) -> None:
    with pytest.raises(InvalidInputError):
        await users.create_user(services, SYSTEM, name)
    assert await user_count(services) == 0


async def test_only_server_owners_create_users(services: Services) -> None:
    owner = await users.create_user(services, SYSTEM, "root", server_role=Role.OWNER)
    maint = await users.create_user(services, SYSTEM, "maint", server_role=Role.MAINTAINER)
    await users.create_user(services, users.actor_for(owner), "bob")
    with pytest.raises(PermissionDeniedError):
        await users.create_user(services, users.actor_for(maint), "eve")
    with pytest.raises(AuthenticationError):
        await users.create_user(services, ANONYMOUS, "eve")
    with pytest.raises(InvalidInputError):
        await users.create_user(services, SYSTEM, "eve", server_role="admin")
    assert await user_count(services) == 3


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"auth": {"admins": ["github:Alice"], "maintainers": ["corp:carol@example.org"], "members": ["github:dan"]}}


async def test_first_login_creates_user_and_applies_role_lists(services: Services) -> None:
    alice = await users.login_identity(services, "github", "101", login="alice", display_name="Alice A")
    assert (alice.username, alice.server_role, alice.display_name) == ("alice", "owner", "Alice A")
    carol = await users.login_identity(
        services, "corp", "c-1", login="carol", email="carol@example.org", email_verified=True
    )
    assert carol.server_role == "maintainer"
    dan = await users.login_identity(services, "github", "103", login="dan")
    assert dan.server_role == "member"
    # The same login at another provider is somebody else.
    other = await users.login_identity(services, "gitlab", "101", login="alice")
    assert (other.username, other.server_role) == ("alice-2", None)


async def test_role_lists_apply_on_first_login_only(services: Services) -> None:
    alice = await users.login_identity(services, "github", "101", login="alice")
    owner = await users.create_user(services, SYSTEM, "root", server_role=Role.OWNER)
    await users.set_server_role(services, users.actor_for(owner), "alice", Role.MEMBER)
    again = await users.login_identity(services, "github", "101", login="alice", display_name="New Name")
    assert (again.id, again.server_role, again.display_name) == (alice.id, "member", "New Name")


async def test_unverified_email_matches_no_role_list(services: Services) -> None:
    carol = await users.login_identity(services, "corp", "c-1", login="carol", email="carol@example.org")
    assert carol.server_role is None


async def test_second_login_reuses_identity(services: Services) -> None:
    first = await users.login_identity(services, "github", "55", login="zed")
    second = await users.login_identity(services, "github", "55", login="zed-renamed")
    assert first.id == second.id
    assert second.username == "zed"  # the username is ours; renames at the provider don't move it
    async with services.db.read() as session:
        identities = list(await session.scalars(select(Identity)))
    assert [(i.provider, i.subject, i.login) for i in identities] == [("github", "55", "zed-renamed")]


async def test_usernames_are_deduplicated_and_sanitised(services: Services) -> None:
    await users.create_user(services, SYSTEM, "bob")
    a = await users.login_identity(services, "corp", "1", login="bob@example.org")
    b = await users.login_identity(services, "corp", "2", login="Bob")
    c = await users.login_identity(services, "corp", "3", login="  ünïcode ☃ name ")
    d = await users.login_identity(services, "corp", "4", login="")
    assert [a.username, b.username] == ["bob-2", "Bob-3"]
    users.validate_username(c.username)
    assert d.username == "user"


async def test_disabled_user_cannot_log_in(services: Services) -> None:
    user = await users.login_identity(services, "github", "9", login="gone")
    async with services.db.write() as session:
        row = await session.get(User, user.id)
        assert row is not None
        row.disabled = True
    with pytest.raises(AuthenticationError):
        await users.login_identity(services, "github", "9", login="gone")


async def test_login_without_subject_is_refused(services: Services) -> None:
    with pytest.raises(AuthenticationError):
        await users.login_identity(services, "github", "", login="x")
    assert await user_count(services) == 0


async def test_set_server_role_rules(services: Services) -> None:
    root = users.actor_for(await users.create_user(services, SYSTEM, "root", server_role=Role.OWNER))
    maint = users.actor_for(await users.create_user(services, SYSTEM, "maint", server_role=Role.MAINTAINER))
    await users.create_user(services, SYSTEM, "bob")
    # A maintainer promoting itself to owner: refused, nothing changed.
    with pytest.raises(PermissionDeniedError):
        await users.set_server_role(services, maint, "maint", Role.OWNER)
    assert (await users.get_user(services, "maint")).server_role == "maintainer"
    with pytest.raises(AuthenticationError):
        await users.set_server_role(services, ANONYMOUS, "root", None)
    assert (await users.get_user(services, "root")).server_role == "owner"
    assert (await users.set_server_role(services, root, "bob", "maintainer")).server_role == "maintainer"
    with pytest.raises(NotFoundError):
        await users.set_server_role(services, root, "nobody", Role.MEMBER)
    with pytest.raises(InvalidInputError):
        await users.set_server_role(services, root, "bob", "superuser")
    # The last owner cannot be demoted (nobody could set roles any more).
    with pytest.raises(ConflictError):
        await users.set_server_role(services, root, "root", Role.MEMBER)
    await users.set_server_role(services, root, "bob", Role.OWNER)
    assert (await users.set_server_role(services, root, "root", None)).server_role is None


async def test_list_users_is_for_server_staff(services: Services) -> None:
    root = users.actor_for(await users.create_user(services, SYSTEM, "root", server_role=Role.OWNER))
    bob = users.actor_for(await users.create_user(services, SYSTEM, "bob"))
    assert [u.username for u in await users.list_users(services, root)] == ["bob", "root"]
    with pytest.raises(PermissionDeniedError):
        await users.list_users(services, bob)
    with pytest.raises(AuthenticationError):
        await users.list_users(services, ANONYMOUS)
