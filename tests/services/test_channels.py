"""Channels (graphconda/services/channels.py): create, list, update, delete, and who sees what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from graphconda.db.models import Channel, ChannelMember, Package, PackageFile, SubdirState
from graphconda.errors import (
    AlreadyExistsError,
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from graphconda.services import access, authz, channels, layout, members, packages, users
from graphconda.services.authz import ANONYMOUS, SYSTEM, Actor, KeyScope, Role
from graphconda.services.channels import ChannelSpec, ChannelUpdate
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published
from tests.helpers.packages import build_package


async def actor(services: Services, username: str, server_role: str | None = None) -> Actor:
    return users.actor_for(await users.create_user(services, SYSTEM, username, server_role=server_role))


async def blobs(services: Services, channel: str) -> list[str]:
    return [b.key async for b in services.storage.list(layout.channel_prefix(channel))]


def built(tmp_path: Path, name: str, **kw: str) -> tuple[str, bytes]:
    path = build_package(tmp_path, name, "1.0", "0", **kw)
    return path.name, path.read_bytes()


async def upload(services: Services, who: Actor, channel: str, package: tuple[str, bytes]) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield package[1]

    await packages.ingest_package(services, who, channel, package[0], body())


async def test_create_makes_the_creator_owner(services: Services) -> None:
    alice = await actor(services, "alice")
    made = await channels.create_channel(services, alice, ChannelSpec("tools", description="d"))
    assert (made.name, made.description, made.private) == ("tools", "d", False)
    async with services.db.read() as session:
        role = await session.scalar(select(ChannelMember.role).where(ChannelMember.channel_id == made.id))
    assert role == "owner"
    with pytest.raises(AlreadyExistsError):
        await channels.create_channel(services, alice, ChannelSpec("tools"))


@pytest.mark.parametrize("name", ["", "Tools", "../x", "a/b", ".hidden", "-x", "x" * 65, "a b", "a\x00"])
async def test_hostile_names_are_refused(services: Services, name: str) -> None:
    with pytest.raises(InvalidInputError):
        await channels.create_channel(services, SYSTEM, ChannelSpec(name))
    assert await channels.list_channels(services, SYSTEM) == []


async def test_anonymous_and_scoped_keys_cannot_create(services: Services) -> None:
    alice = await actor(services, "alice")
    with pytest.raises(AuthenticationError):
        await channels.create_channel(services, ANONYMOUS, ChannelSpec("x"))
    scoped = Actor(user_id=alice.user_id, username="alice", scopes=())
    with pytest.raises(PermissionDeniedError):
        await channels.create_channel(services, scoped, ChannelSpec("x"))
    with pytest.raises(PermissionDeniedError):
        await channels.create_channel(
            services, alice, ChannelSpec("m", mirror_mode="proxy", mirror_channel_url="https://x.org/c")
        )


async def test_visible_channels_clause_agrees_with_authz(services: Services) -> None:
    """Lists (SQL) and single lookups (authz) must never disagree on who sees a channel."""
    owner = await actor(services, "owner")
    member = await actor(services, "member")
    staff = await actor(services, "staff", "maintainer")
    outsider = await actor(services, "outsider")
    public = await channels.create_channel(services, owner, ChannelSpec("public"))
    private = await channels.create_channel(services, owner, ChannelSpec("private", private=True))
    other = await channels.create_channel(services, owner, ChannelSpec("other", private=True))
    await members.set_channel_member(services, owner, "private", "member", Role.MEMBER)
    assert private.id and other.id and public.id

    def scoped(a: Actor, *channel_ids: int) -> Actor:
        return Actor(user_id=a.user_id, username=a.username, server_role=a.server_role,
                     scopes=tuple(KeyScope(c, Role.MEMBER) for c in channel_ids))

    actors = {
        "anonymous": ANONYMOUS, "system": SYSTEM, "owner": owner, "member": member, "staff": staff,
        "outsider": outsider, "member-key-here": scoped(member, private.id),
        "member-key-elsewhere": scoped(member, public.id), "staff-key-here": scoped(staff, private.id),
        "staff-key-elsewhere": scoped(staff, other.id), "outsider-key": scoped(outsider, private.id),
    }
    for label, who in actors.items():
        listed = {c.name for c in await channels.list_channels(services, who)}
        async with services.db.read() as session:
            expected = set()
            for channel in (public, private, other):
                found = await access.find_channel(session, who, channel.name)
                assert found is not None
                if authz.can_read_channel(who, found[1]):
                    expected.add(channel.name)
        assert listed == expected, label
    assert {c.name for c in await channels.list_channels(services, scoped(staff, private.id))} == {"public", "private"}
    assert {c.name for c in await channels.list_channels(services, outsider)} == {"public"}


async def test_get_visible_hides_private_channels(services: Services) -> None:
    owner = await actor(services, "owner")
    await channels.create_channel(services, owner, ChannelSpec("secret", private=True))
    async with services.db.read() as session:
        assert (await access.gate(session, owner, "secret"))[0].name == "secret"
        for name in ("secret", "absent", "x" * 1000):
            with pytest.raises(NotFoundError) as raised:
                await access.gate(session, ANONYMOUS, name)
            assert str(raised.value) == "channel not found"


async def test_update_channel(services: Services) -> None:
    owner = await actor(services, "owner")
    staff = await actor(services, "staff", "maintainer")
    made = await channels.create_channel(services, owner, ChannelSpec("tools"))
    updated = await channels.update_channel(services, owner, "tools", ChannelUpdate(description="new", private=True))
    assert (updated.description, updated.private) == ("new", True)
    assert updated.updated_at >= made.updated_at
    with pytest.raises(PermissionDeniedError):
        await channels.update_channel(services, owner, "tools", ChannelUpdate(excludelist=["numpy"]))
    updated = await channels.update_channel(services, staff, "tools", ChannelUpdate(excludelist=[" a ", "a", "b"]))
    assert updated.excludelist == ["a", "b"]
    for bad in (ChannelUpdate(includelist=[""]), ChannelUpdate(includelist=["a\nb"]),
                ChannelUpdate(proxylist=["x"] * 1001), ChannelUpdate(description="x" * 10_001)):
        with pytest.raises(InvalidInputError):
            await channels.update_channel(services, staff, "tools", bad)
    with pytest.raises(NotFoundError):
        await channels.update_channel(services, await actor(services, "outsider"), "tools", ChannelUpdate())


async def test_delete_channel_removes_rows_and_files(services: Services, tmp_path: Path) -> None:
    owner = await actor(services, "owner")
    await channels.create_channel(services, owner, ChannelSpec("tools"))
    await channels.create_channel(services, owner, ChannelSpec("tools2"))
    for channel in ("tools", "tools2"):
        await upload(services, owner, channel, built(tmp_path, "numpy"))
        await upload(services, owner, channel, built(tmp_path, "numpy", subdir="linux-64"))
    await wait_published(services)
    assert any(k.endswith("repodata.json") for k in await blobs(services, "tools"))
    maintainer = await actor(services, "maint")
    await members.set_channel_member(services, owner, "tools", "maint", Role.MAINTAINER)
    with pytest.raises(PermissionDeniedError):
        await channels.delete_channel(services, maintainer, "tools")
    deleted = await channels.delete_channel(services, owner, "tools")
    assert deleted.name == "tools"
    assert await blobs(services, "tools") == []
    assert len(await blobs(services, "tools2")) > 2  # a channel whose name extends it is untouched
    async with services.db.read() as session:
        for model in (Package, PackageFile, SubdirState, ChannelMember):
            where = model.channel_id == deleted.id  # type: ignore[attr-defined]
            left = await session.scalar(select(func.count()).select_from(model).where(where))
            assert left == 0, model
        assert await session.scalar(select(func.count()).select_from(Channel)) == 1
    with pytest.raises(NotFoundError):
        await channels.delete_channel(services, owner, "tools")


async def test_a_recreated_channel_starts_empty(services: Services, tmp_path: Path) -> None:
    owner = await actor(services, "owner")
    await channels.create_channel(services, owner, ChannelSpec("tools"))
    # Leftovers of an earlier channel of this name (say a purge that failed half-way).
    await services.storage.put(layout.subdir_file_key("tools", "noarch", "repodata.json"), b"{}")
    await channels.delete_channel(services, owner, "tools")
    await services.storage.put(layout.subdir_file_key("tools", "noarch", "repodata.json"), b"{}")
    await channels.create_channel(services, owner, ChannelSpec("tools"))
    assert await blobs(services, "tools") == []


async def test_only_server_staff_adopt_files_left_in_storage(services: Services) -> None:
    """Quetz's create-with-reindex keeps what storage holds under the name, for staff only: a plain
    user's new channel never takes over files a deleted (maybe private) channel left behind."""
    leftover = layout.package_key("kept", "noarch", "ab" * 32, "tool-1.0-0.conda")
    await services.storage.put(leftover, b"left behind")
    user = await actor(services, "plain")
    await channels.create_channel(services, user, ChannelSpec("kept", adopt_stored_files=True))
    assert await blobs(services, "kept") == []
    await channels.delete_channel(services, user, "kept")
    await services.storage.put(leftover, b"left behind")
    staff = await actor(services, "staff", "maintainer")
    await channels.create_channel(services, staff, ChannelSpec("kept", adopt_stored_files=True))
    assert await blobs(services, "kept") == [leftover]


@pytest.mark.parametrize("name", ["a\x00b", "\ud800", "x" * 300, "../tools", "Tools", ""])
async def test_names_no_channel_can_have_are_not_found_without_a_query(
    services: Services, tmp_path: Path, name: str
) -> None:
    """Lookups by such names (a percent-encoded URL can carry NUL) answer 'not found', also on PostgreSQL."""
    alice = await actor(services, "alice", server_role="owner")
    await channels.create_channel(services, alice, ChannelSpec("tools"))
    with pytest.raises(NotFoundError, match=r"^channel not found$"):
        await upload(services, alice, name, built(tmp_path, "tool"))
    async with services.db.read() as session:
        assert await access.find_channel(session, alice, name) is None
        with pytest.raises(NotFoundError, match=r"^channel not found$"):
            await access.gate(session, alice, name)
