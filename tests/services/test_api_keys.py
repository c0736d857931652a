"""API keys: hashed storage, scopes, expiry, revocation, authentication (graphconda/services/api_keys.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from graphconda.db.models import ApiKey, ApiKeyScope, ChannelMember
from graphconda.errors import (
    AuthenticationError,
    InvalidInputError,
    InvalidNameError,
    NotFoundError,
    PermissionDeniedError,
)
from graphconda.services import access, api_keys, channels, users
from graphconda.services.api_keys import ScopeSpec
from graphconda.services.authz import ANONYMOUS, SYSTEM, Actor, KeyScope, Role
from graphconda.services.context import Services
from tests.helpers.clock import Clock
from tests.helpers.keys import assert_conda_reads_the_whole_key, legacy_key, token_conda_reads


async def make_user(services: Services, name: str, role: Role | None = None) -> Actor:
    return users.actor_for(await users.create_user(services, SYSTEM, name, server_role=role))


async def add_member(services: Services, channel: str, actor: Actor, role: Role) -> None:
    async with services.db.write() as session:
        found, _ = await access.gate(session, SYSTEM, channel)
        session.add(ChannelMember(channel_id=found.id, user_id=actor.user_id, role=role.value))


async def key_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def test_secret_is_shown_once_and_stored_only_as_hash(services: Services) -> None:
    """Quetz stored API keys in plain text."""
    alice = await make_user(services, "alice")
    key, secret = await api_keys.create_api_key(services, alice, description="laptop")
    assert secret.startswith("gc-") and len(secret) >= 40
    async with services.db.read() as session:
        rows = (await session.execute(text("SELECT * FROM api_keys"))).all()
    assert len(rows) == 1
    assert all(secret not in str(value) and secret[3:] not in str(value) for value in rows[0])
    assert key.key_hash == api_keys.hash_secret(secret) != secret
    listed = await api_keys.list_api_keys(services, alice)
    assert [(i.key.id, i.key.description, i.scopes) for i in listed] == [(key.id, "laptop", ())]
    actor = await api_keys.authenticate_key(services, secret)
    assert (actor.user_id, actor.username, actor.scopes, actor.api_key_id) == (alice.user_id, "alice", None, key.id)


async def test_new_keys_survive_condas_token_url_pattern(services: Services) -> None:
    """conda reads `/t/([a-zA-Z0-9-]*)`: a `gc_...` key was read as the token `gc`."""
    alice = await make_user(services, "alice", Role.OWNER)
    made = [(await api_keys.create_api_key(services, alice))[1] for _ in range(50)]
    made.append((await api_keys.ensure_dev_admin(services))[1])
    for secret in made:
        assert_conda_reads_the_whole_key(secret)
        assert len(secret) == 46 and secret.startswith("gc-")
    assert len(set(made)) == len(made)


async def test_keys_issued_before_the_format_change_keep_working(services: Services) -> None:
    alice = await make_user(services, "alice")
    old = await legacy_key(services, alice)
    assert token_conda_reads(old) == "gc"  # why new keys changed: conda cannot use these in token URLs
    actor = await api_keys.authenticate_key(services, old)
    assert (actor.username, actor.scopes) == ("alice", None)
    listed = await api_keys.list_api_keys(services, alice)
    await api_keys.revoke_api_key(services, alice, listed[0].key.id or 0)
    with pytest.raises(AuthenticationError, match="revoked"):
        await api_keys.authenticate_key(services, old)


async def test_two_keys_have_different_secrets(services: Services) -> None:
    alice = await make_user(services, "alice")
    _, one = await api_keys.create_api_key(services, alice)
    _, two = await api_keys.create_api_key(services, alice)
    assert one != two


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "gc_",
        "gc-",
        "gc_" + "A" * 43 + "x",  # right shape, unknown
        "gc-" + "A" * 43 + "x",
        "gc-" + "A" * 20 + "_" + "A" * 22,  # new prefix, old alphabet: never issued
        "not-a-key",
        "gc_" + "A" * 500,  # too long
        "gc_ÄÖÜ" + "A" * 40,  # non-ASCII
        "gc_" + "A" * 20 + "\x00" + "A" * 20,
        "gc_" + "A" * 20 + "' OR 1=1 --",
    ],
)
async def test_wrong_and_malformed_keys_are_refused(services: Services, bad: str) -> None:
    alice = await make_user(services, "alice")
    await api_keys.create_api_key(services, alice)
    with pytest.raises(AuthenticationError, match="invalid API key"):
        await api_keys.authenticate_key(services, bad)


async def test_expired_keys_are_refused(services: Services, clock: Clock) -> None:
    alice = await make_user(services, "alice")
    _, secret = await api_keys.create_api_key(services, alice, expires_at=clock.now + timedelta(days=1))
    await api_keys.authenticate_key(services, secret)
    clock.now += timedelta(days=1)
    with pytest.raises(AuthenticationError, match="expired"):
        await api_keys.authenticate_key(services, secret)


async def test_expiry_must_be_in_the_future(services: Services, clock: Clock) -> None:
    alice = await make_user(services, "alice")
    with pytest.raises(InvalidInputError):
        await api_keys.create_api_key(services, alice, expires_at=clock.now - timedelta(seconds=1))
    with pytest.raises(InvalidInputError):
        await api_keys.create_api_key(services, alice, description="x" * 513)
    assert await key_count(services) == 0


async def test_revoked_keys_are_refused(services: Services) -> None:
    alice = await make_user(services, "alice")
    key, secret = await api_keys.create_api_key(services, alice)
    assert key.id is not None
    revoked = await api_keys.revoke_api_key(services, alice, key.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError, match="revoked"):
        await api_keys.authenticate_key(services, secret)
    await api_keys.revoke_api_key(services, alice, key.id)  # idempotent


async def test_keys_of_others_cannot_be_listed_or_revoked(services: Services) -> None:
    alice = await make_user(services, "alice")
    eve = await make_user(services, "eve")
    root = await make_user(services, "root", Role.OWNER)
    key, secret = await api_keys.create_api_key(services, alice)
    assert key.id is not None
    with pytest.raises(NotFoundError):
        await api_keys.revoke_api_key(services, eve, key.id)
    with pytest.raises(NotFoundError):
        await api_keys.revoke_api_key(services, eve, 12345)
    with pytest.raises(PermissionDeniedError):
        await api_keys.list_api_keys(services, eve, alice.user_id)
    with pytest.raises(PermissionDeniedError):
        await api_keys.create_api_key(services, eve, user_id=alice.user_id)
    with pytest.raises(AuthenticationError):
        await api_keys.create_api_key(services, ANONYMOUS)
    await api_keys.authenticate_key(services, secret)  # untouched
    assert len(await api_keys.list_api_keys(services, root, alice.user_id)) == 1
    await api_keys.revoke_api_key(services, root, key.id)


async def test_last_used_is_recorded_at_most_once_a_minute(services: Services, clock: Clock) -> None:
    alice = await make_user(services, "alice")
    _, secret = await api_keys.create_api_key(services, alice)

    async def last_used() -> datetime | None:
        return (await api_keys.list_api_keys(services, alice))[0].key.last_used_at

    assert await last_used() is None
    start = clock.now
    await api_keys.authenticate_key(services, secret)
    assert await last_used() == start
    clock.now += timedelta(seconds=30)
    await api_keys.authenticate_key(services, secret)
    assert await last_used() == start
    clock.now += timedelta(seconds=31)
    await api_keys.authenticate_key(services, secret)
    assert await last_used() == clock.now


async def test_disabled_users_keys_stop_working(services: Services) -> None:
    from graphconda.db.models import User

    alice = await make_user(services, "alice")
    _, secret = await api_keys.create_api_key(services, alice)
    async with services.db.write() as session:
        user = await session.get(User, alice.user_id)
        assert user is not None
        user.disabled = True
    with pytest.raises(AuthenticationError):
        await api_keys.authenticate_key(services, secret)


# --- scopes -----------------------------------------------------------------------


async def test_scoped_key_carries_its_scopes(services: Services) -> None:
    alice = await make_user(services, "alice")
    await channels.create_channel(services, alice, channels.ChannelSpec("ci-chan"))
    _, secret = await api_keys.create_api_key(
        services, alice, scopes=[ScopeSpec("ci-chan", "maintainer", "numpy"), ScopeSpec("ci-chan", Role.MEMBER)]
    )
    actor = await api_keys.authenticate_key(services, secret)
    assert actor.scopes is not None
    assert {(s.role, s.package_name) for s in actor.scopes} == {(Role.MAINTAINER, "numpy"), (Role.MEMBER, None)}
    listed = await api_keys.list_api_keys(services, alice)
    assert listed[0].scopes == (ScopeSpec("ci-chan", Role.MAINTAINER, "numpy"), ScopeSpec("ci-chan", Role.MEMBER))


async def test_scope_naming_a_missing_or_hidden_channel_leaks_nothing(services: Services) -> None:
    owner = await make_user(services, "owner")
    eve = await make_user(services, "eve")
    await channels.create_channel(services, owner, channels.ChannelSpec("secret-plans", private=True))
    errors = []
    for name in ("secret-plans", "no-such-channel"):
        with pytest.raises(InvalidInputError) as caught:
            await api_keys.create_api_key(services, eve, scopes=[ScopeSpec(name, "member")])
        errors.append(str(caught.value))
        assert name not in str(caught.value)
    assert errors[0] == errors[1]  # a hidden channel looks exactly like a missing one
    assert await key_count(services) == 0


async def test_member_cannot_create_an_owner_scoped_key(services: Services) -> None:
    owner = await make_user(services, "owner")
    member = await make_user(services, "member")
    await channels.create_channel(services, owner, channels.ChannelSpec("team", private=True))
    await add_member(services, "team", member, Role.MEMBER)
    for role in ("owner", "maintainer"):
        with pytest.raises(PermissionDeniedError):
            await api_keys.create_api_key(services, member, scopes=[ScopeSpec("team", role)])
    # Nor through a package scope, without a package role.
    with pytest.raises(PermissionDeniedError):
        await api_keys.create_api_key(services, member, scopes=[ScopeSpec("team", "owner", "numpy")])
    assert await key_count(services) == 0
    await api_keys.create_api_key(services, member, scopes=[ScopeSpec("team", "member")])


async def test_scope_needs_a_role_on_the_channel(services: Services) -> None:
    owner = await make_user(services, "owner")
    bob = await make_user(services, "bob")
    await channels.create_channel(services, owner, channels.ChannelSpec("public-one"))
    with pytest.raises(PermissionDeniedError):
        await api_keys.create_api_key(services, bob, scopes=[ScopeSpec("public-one", "member")])
    # Server staff hold owner rights on every channel, private ones too.
    staff = await make_user(services, "staff", Role.MAINTAINER)
    await api_keys.create_api_key(services, staff, scopes=[ScopeSpec("public-one", "owner")])


async def test_server_owner_creates_keys_limited_by_the_target_user(services: Services) -> None:
    root = await make_user(services, "root", Role.OWNER)
    bob = await make_user(services, "bob")
    await channels.create_channel(services, bob, channels.ChannelSpec("bobs"))
    _, secret = await api_keys.create_api_key(services, root, user_id=bob.user_id, scopes=[ScopeSpec("bobs", "owner")])
    assert (await api_keys.authenticate_key(services, secret)).user_id == bob.user_id
    await channels.create_channel(services, root, channels.ChannelSpec("roots"))
    with pytest.raises(PermissionDeniedError):
        await api_keys.create_api_key(services, root, user_id=bob.user_id, scopes=[ScopeSpec("roots", "member")])


@pytest.mark.parametrize(
    ("scope", "error"),
    [
        (ScopeSpec("chan", "admin"), InvalidInputError),
        (ScopeSpec("chan", ""), InvalidInputError),
        (ScopeSpec("chan", "owner", "Bad Name!"), InvalidNameError),
        (ScopeSpec("../chan", "owner"), InvalidInputError),
    ],
)
async def test_malformed_scopes(services: Services, scope: ScopeSpec, error: type[Exception]) -> None:
    alice = await make_user(services, "alice")
    await channels.create_channel(services, alice, channels.ChannelSpec("chan"))
    with pytest.raises(error):
        await api_keys.create_api_key(services, alice, scopes=[scope])
    assert await key_count(services) == 0


async def test_scoped_key_cannot_create_keys(services: Services) -> None:
    alice = await make_user(services, "alice")
    await channels.create_channel(services, alice, channels.ChannelSpec("chan"))
    _, secret = await api_keys.create_api_key(services, alice, scopes=[ScopeSpec("chan", "member")])
    scoped = await api_keys.authenticate_key(services, secret)
    with pytest.raises(PermissionDeniedError):
        await api_keys.create_api_key(services, scoped)
    assert await key_count(services) == 1


async def test_deleting_the_scoped_channel_leaves_a_powerless_key(services: Services) -> None:
    alice = await make_user(services, "alice", Role.OWNER)
    created = await channels.create_channel(services, alice, channels.ChannelSpec("chan"))
    _, secret = await api_keys.create_api_key(services, alice, scopes=[ScopeSpec("chan", "owner")])
    async with services.db.write() as session:
        await session.execute(text("DELETE FROM channels WHERE id = :id"), {"id": created.id})
    async with services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(ApiKeyScope)) == 0
    actor = await api_keys.authenticate_key(services, secret)
    assert actor.scopes == ()  # not None: it must not fall back to alice's full rights
    assert actor.scopes != (KeyScope(0, Role.OWNER),)


async def test_dev_admin_gets_a_fresh_working_key(services: Services) -> None:
    user, secret = await api_keys.ensure_dev_admin(services)
    assert (user.username, user.server_role) == ("dev", "owner")
    _, again = await api_keys.ensure_dev_admin(services)
    assert again != secret
    for s in (secret, again):
        actor = await api_keys.authenticate_key(services, s)
        assert (actor.username, actor.server_role, actor.scopes) == ("dev", Role.OWNER, None)


async def test_granting_scope_roles_needs_the_rights_to_grant(services: Services) -> None:
    owner = await make_user(services, "owner")
    bot = await make_user(services, "bot")
    eve = await make_user(services, "eve")
    await channels.create_channel(services, owner, channels.ChannelSpec("team", private=True))
    assert bot.user_id is not None
    with pytest.raises(NotFoundError):  # eve cannot even see the channel
        await api_keys.grant_scope_roles(services, eve, bot.user_id, [ScopeSpec("team", "maintainer")])
    await api_keys.grant_scope_roles(services, owner, bot.user_id, [ScopeSpec("team", "maintainer")])
    _, secret = await api_keys.create_api_key(
        services, SYSTEM, user_id=bot.user_id, scopes=[ScopeSpec("team", "maintainer")]
    )
    assert (await api_keys.authenticate_key(services, secret)).scopes == (KeyScope(1, Role.MAINTAINER),)
