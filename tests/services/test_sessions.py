"""Browser sessions on the server: start, check, end (here, everywhere, with the role), cleanup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from graphconda.db.models import UserSession
from graphconda.errors import AuthenticationError, ConflictError, PermissionDeniedError
from graphconda.services import api_keys, sessions, users
from graphconda.services.api_keys import ScopeSpec
from graphconda.services.authz import ANONYMOUS, SYSTEM, Role
from graphconda.services.context import Services
from tests.helpers.channels import make_channel, make_user
from tests.helpers.clock import Clock


async def login(services: Services, username: str) -> str:
    return await sessions.start_session(services, await users.get_user(services, username))


async def rows(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(UserSession)) or 0)


async def test_a_session_stands_for_its_user_and_only_its_hash_is_stored(services: Services) -> None:
    await make_user(services, "alice", Role.MAINTAINER)
    token = await login(services, "alice")
    actor = await sessions.session_actor(services, token)
    assert (actor.username, actor.server_role, actor.scopes, actor.api_key_id) == ("alice", Role.MAINTAINER, None, None)
    async with services.db.read() as session:
        stored = (await session.execute(text("SELECT * FROM user_sessions"))).all()
    assert len(stored) == 1 and all(token not in str(value) for value in stored[0])
    assert await login(services, "alice") != token


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "A" * 5000, "Ä" * 43, 1, None, ["A" * 43]])
async def test_unknown_and_malformed_tokens_are_refused(services: Services, token: object) -> None:
    await make_user(services, "alice")
    await login(services, "alice")
    with pytest.raises(AuthenticationError):
        await sessions.session_actor(services, token)


async def test_ending_a_session_refuses_its_token_at_once(services: Services) -> None:
    await make_user(services, "alice")
    token, other = await login(services, "alice"), await login(services, "alice")
    assert await sessions.end_session(services, token) is True
    with pytest.raises(AuthenticationError, match="signed out"):
        await sessions.session_actor(services, token)
    assert await sessions.end_session(services, token) is False  # once is enough
    assert (await sessions.session_actor(services, other)).username == "alice"  # the other browser stays in


async def test_sign_out_everywhere_ends_every_session_of_the_user_only(services: Services) -> None:
    alice = await make_user(services, "alice")
    await make_user(services, "bob")
    mine = [await login(services, "alice") for _ in range(3)]
    bobs = await login(services, "bob")
    assert await sessions.end_all_sessions(services, alice) == 3
    for token in mine:
        with pytest.raises(AuthenticationError):
            await sessions.session_actor(services, token)
    assert (await sessions.session_actor(services, bobs)).username == "bob"
    assert await sessions.end_all_sessions(services, alice) == 0


async def test_who_may_sign_out_everywhere(services: Services) -> None:
    alice = await make_user(services, "alice", Role.OWNER)
    bob = await make_user(services, "bob", Role.MAINTAINER)
    await make_channel(services, "team")
    bobs = await login(services, "bob")
    with pytest.raises(AuthenticationError):
        await sessions.end_all_sessions(services, ANONYMOUS)
    with pytest.raises(PermissionDeniedError):  # server maintainers only end their own
        await sessions.end_all_sessions(services, bob, alice.user_id)
    _, scoped = await api_keys.create_api_key(services, bob, scopes=[ScopeSpec("team", "maintainer")])
    with pytest.raises(PermissionDeniedError, match="scoped"):  # the whole account is not a scoped key's to end
        await sessions.end_all_sessions(services, await api_keys.authenticate_key(services, scoped))
    assert await sessions.end_all_sessions(services, alice, bob.user_id) == 1  # server owners end anyone's
    with pytest.raises(AuthenticationError):
        await sessions.session_actor(services, bobs)


async def test_losing_the_server_role_ends_the_sessions(services: Services) -> None:
    await make_user(services, "owner", Role.OWNER)
    await make_user(services, "alice", Role.MAINTAINER)
    token = await login(services, "alice")
    await users.set_server_role(services, SYSTEM, "alice", Role.MEMBER)  # a demotion applies at the next request
    assert (await sessions.session_actor(services, token)).server_role == Role.MEMBER
    await users.set_server_role(services, SYSTEM, "alice", None)
    with pytest.raises(AuthenticationError):
        await sessions.session_actor(services, token)
    fresh = await login(services, "alice")  # logging in again works (nothing grants access by itself)
    assert (await sessions.session_actor(services, fresh)).server_role is None


async def test_disabling_ends_sessions_and_refuses_keys(services: Services) -> None:
    await make_user(services, "owner", Role.OWNER)
    alice = await make_user(services, "alice")
    token = await login(services, "alice")
    _, key = await api_keys.create_api_key(services, alice)
    await users.set_disabled(services, SYSTEM, "alice", True)
    with pytest.raises(AuthenticationError):
        await sessions.session_actor(services, token)
    with pytest.raises(AuthenticationError, match="disabled"):
        await api_keys.authenticate_key(services, key)
    with pytest.raises(AuthenticationError, match="disabled"):
        await login(services, "alice")
    await users.set_disabled(services, SYSTEM, "alice", False)
    assert (await api_keys.authenticate_key(services, key)).username == "alice"
    with pytest.raises(AuthenticationError):  # the ended session stays ended
        await sessions.session_actor(services, token)
    with pytest.raises(PermissionDeniedError):
        await users.set_disabled(services, alice, "owner", True)
    with pytest.raises(ConflictError, match="last server owner"):
        await users.set_disabled(services, SYSTEM, "owner", True)


async def test_sessions_expire_the_max_age_after_login(services: Services, clock: Clock) -> None:
    """As the signed cookie does: Starlette re-signs it only when the session changes."""
    await make_user(services, "alice")
    max_age = timedelta(seconds=services.settings.auth.session_max_age_seconds)
    token = await login(services, "alice")
    clock.now += max_age - timedelta(seconds=1)
    assert (await sessions.session_actor(services, token)).username == "alice"
    clock.now += timedelta(seconds=1)
    with pytest.raises(AuthenticationError, match="expired"):
        await sessions.session_actor(services, token)


async def test_delete_expired_sessions_keeps_only_live_ones(services: Services, clock: Clock) -> None:
    await make_user(services, "alice")
    live, ended = await login(services, "alice"), await login(services, "alice")
    await sessions.end_session(services, ended)
    clock.now += timedelta(seconds=services.settings.auth.session_max_age_seconds / 2)
    await login(services, "alice")
    clock.now += timedelta(seconds=services.settings.auth.session_max_age_seconds / 2 + 1)  # the first has expired
    assert await rows(services) == 3
    assert await sessions.delete_expired_sessions(services) == 2
    assert await rows(services) == 1
    with pytest.raises(AuthenticationError):
        await sessions.session_actor(services, live)
    assert await sessions.delete_expired_sessions(services) == 0


async def test_the_cleanup_job_deletes_ended_sessions(services: Services) -> None:
    from graphconda.services.cleanup import run_cleanup

    await make_user(services, "alice")
    ended, live = await login(services, "alice"), await login(services, "alice")
    await sessions.end_session(services, ended)
    report = await run_cleanup(services)
    assert report.counts["expired sessions"] == 1
    assert await rows(services) == 1
    assert (await sessions.session_actor(services, live)).username == "alice"
