"""Sign-out that holds: a cookie stops working once its session ends on the server (logout, everywhere, roles).

Each test replays a cookie the way a thief (or a shared computer's next user) would: the
browser forgot it, but a copy made before the logout is sent again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from graphconda.services import api_keys, members, users
from graphconda.services.api_keys import ScopeSpec
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from tests.helpers.channels import add_member, make_channel, make_user
from tests.helpers.sessions import signed_cookie
from tests.helpers.sql import count_statements

SAME_SITE = {"Origin": "http://testserver"}
COOKIE = "graphconda_session"
CREATE = 'mutation { createChannel(input: {name: "made-here"}) { __typename } }'
SIGN_OUT_EVERYWHERE = """mutation { signOutEverywhere { __typename
  ... on SignedOut { sessionsEnded } ... on PermissionDenied { message } } }"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"server": {"dev": True}}


@asynccontextmanager
async def browser(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    """Another browser (its own cookie jar) on the same server."""
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


async def dev_login(client: httpx2.AsyncClient, username: str) -> str:
    """Log in; returns the cookie value, as someone copying it would have it."""
    response = await client.get(f"/auth/dev/login/{username}")
    assert response.status_code == 303
    cookie = client.cookies.get(COOKIE)
    assert cookie
    return cookie


def replay(client: httpx2.AsyncClient, cookie: str) -> None:
    client.cookies.set(COOKIE, cookie, domain="testserver.local")


async def me(client: httpx2.AsyncClient) -> Any:
    response = await client.get("/auth/me")
    assert response.status_code == 200, response.text
    return response.json()["user"]


async def assert_refused(client: httpx2.AsyncClient, cookie: str, words: str = "") -> None:
    """The cookie gets 401 (and is cleared) on reads and writes; nothing is changed."""
    requests = (lambda: client.get("/auth/me"),
                lambda: client.post("/graphql", json={"query": CREATE}, headers=SAME_SITE))
    for request in requests:
        replay(client, cookie)
        response = await request()
        assert response.status_code == 401, response.text
        assert words in response.json()["detail"]
        assert f'{COOKIE}=""' in response.headers["set-cookie"]
    assert await me(client) is None  # cleared: the browser is simply anonymous again


async def test_logout_ends_the_session_on_the_server(client: httpx2.AsyncClient, services: Services) -> None:
    """The cookie from before a logout used to keep working for its 14 days."""
    cookie = await dev_login(client, "dev")
    assert (await me(client))["username"] == "dev"
    assert (await client.post("/auth/logout", headers=SAME_SITE)).json() == {"loggedOut": True}
    await assert_refused(client, cookie, "signed out")
    assert await dev_login(client, "dev") != cookie  # logging in again starts a new session


async def test_logout_of_one_browser_leaves_the_others(app: Starlette, client: httpx2.AsyncClient) -> None:
    await dev_login(client, "alice")
    async with browser(app) as other:
        await dev_login(other, "alice")
        await client.post("/auth/logout", headers=SAME_SITE)
        assert (await me(other))["username"] == "alice"


async def test_logging_in_as_someone_else_ends_the_previous_session(client: httpx2.AsyncClient) -> None:
    alice = await dev_login(client, "alice")
    await dev_login(client, "bob")
    assert (await me(client))["username"] == "bob"
    await assert_refused(client, alice)


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_logout_everywhere(app: Starlette, client: httpx2.AsyncClient, form: bool) -> None:
    here = await dev_login(client, "alice")
    async with browser(app) as laptop, browser(app) as bobs:
        there = await dev_login(laptop, "alice")
        await dev_login(bobs, "bob")
        if form:  # the logout page's second button
            page = await client.get("/auth/logout", params={"next": "/web/"})
            assert 'action="logout?next=%2Fweb%2F&amp;everywhere=1"' in page.text
            response = await client.post(
                "/auth/logout", params={"next": "/web/", "everywhere": "1"}, content=b"",
                headers={**SAME_SITE, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 303 and response.headers["location"] == "/web/"
        else:
            response = await client.post("/auth/logout?everywhere=1", headers=SAME_SITE)
            assert response.json() == {"loggedOut": True, "sessionsEnded": 2}
        await assert_refused(client, here)
        await assert_refused(laptop, there)
        assert (await me(bobs))["username"] == "bob"


async def test_a_cross_site_page_cannot_sign_you_out_everywhere(app: Starlette, client: httpx2.AsyncClient) -> None:
    await dev_login(client, "alice")
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
    assert (await client.post("/auth/logout?everywhere=1", content=b"", headers=form)).status_code == 403
    assert (await me(client))["username"] == "alice"


async def test_graphql_sign_out_everywhere(app: Starlette, client: httpx2.AsyncClient, services: Services) -> None:
    here = await dev_login(client, "alice")
    async with browser(app) as laptop:
        there = await dev_login(laptop, "alice")
        response = await client.post("/graphql", json={"query": SIGN_OUT_EVERYWHERE}, headers=SAME_SITE)
        assert response.json()["data"]["signOutEverywhere"] == {"__typename": "SignedOut", "sessionsEnded": 2}
        await assert_refused(client, here)
        await assert_refused(laptop, there)


async def test_sign_out_everywhere_with_a_key(app: Starlette, client: httpx2.AsyncClient, services: Services) -> None:
    """A key (say, after a laptop was stolen) ends the browser sessions; keys are not sessions and stay."""
    cookie = await dev_login(client, "alice")
    alice = users.actor_for(await users.get_user(services, "alice"))
    _, key = await api_keys.create_api_key(services, alice)
    await make_channel(services, "team")
    await add_member(services, "team", alice, Role.MEMBER)
    _, scoped = await api_keys.create_api_key(services, alice, scopes=[ScopeSpec("team", "member")])
    async with browser(app) as script:
        refused = await script.post("/graphql", json={"query": SIGN_OUT_EVERYWHERE}, headers={"X-API-Key": scoped})
        assert refused.json()["data"]["signOutEverywhere"]["__typename"] == "PermissionDenied"
        assert (await script.post("/auth/logout?everywhere=1", headers={"X-API-Key": scoped})).status_code == 403
        assert (await me(client))["username"] == "alice"
        anonymous = await script.post("/graphql", json={"query": SIGN_OUT_EVERYWHERE})
        assert anonymous.json()["data"]["signOutEverywhere"]["__typename"] == "PermissionDenied"
        done = await script.post("/graphql", json={"query": SIGN_OUT_EVERYWHERE}, headers={"X-API-Key": key})
        assert done.json()["data"]["signOutEverywhere"] == {"__typename": "SignedOut", "sessionsEnded": 1}
        assert (await script.get("/auth/me", headers={"X-API-Key": key})).json()["user"]["username"] == "alice"
    await assert_refused(client, cookie)


async def test_removing_the_server_role_or_disabling_ends_sessions(
    app: Starlette, client: httpx2.AsyncClient, services: Services
) -> None:
    owner = await dev_login(client, "dev")  # the dev login's server owner
    async with browser(app) as alices, browser(app) as bobs:
        alice = await dev_login(alices, "alice")
        bob = await dev_login(bobs, "bob")
        await users.set_server_role(services, SYSTEM, "alice", Role.MEMBER)
        await users.set_server_role(services, SYSTEM, "bob", Role.MEMBER)
        assert (await me(alices))["serverRole"] == "member"  # a demotion alone applies in place
        set_none = 'mutation { setServerRole(username: "alice", role: null) { __typename } }'
        response = await client.post("/graphql", json={"query": set_none}, headers=SAME_SITE)
        assert response.json()["data"]["setServerRole"]["__typename"] == "User"
        await assert_refused(alices, alice)
        await users.set_disabled(services, SYSTEM, "bob", True)
        await assert_refused(bobs, bob)
    replay(client, owner)
    assert (await me(client))["username"] == "dev"


async def test_cookie_from_before_server_sessions_is_refused(
    client: httpx2.AsyncClient, services: Services, settings: Any
) -> None:
    """A signed `{"uid": N}` cookie could never be ended on the server: it must not work any more."""
    alice = await make_user(services, "alice", Role.OWNER)
    old = signed_cookie(settings, {"uid": alice.user_id})
    await assert_refused(client, old, "log in again")
    replay(client, old)
    await dev_login(client, "alice")  # the login route replaces it
    assert (await me(client))["username"] == "alice"


async def test_a_cookie_request_costs_one_query(client: httpx2.AsyncClient, services: Services) -> None:
    await dev_login(client, "alice")
    with count_statements(services) as seen:
        assert (await me(client))["username"] == "alice"
    statements = [s for s in seen if s.split()[0].upper() in ("SELECT", "UPDATE", "INSERT", "DELETE")]
    assert len(statements) == 1, seen
    assert "user_sessions" in statements[0] and "users" in statements[0]


async def test_a_removed_member_loses_a_private_channel_at_once(
    client: httpx2.AsyncClient, services: Services
) -> None:
    """Cookie and key alike: GraphQL and the conda routes (served through the per-process cache)."""
    await make_user(services, "owner", Role.OWNER)
    await make_channel(services, "team", private=True)
    cookie = await dev_login(client, "alice")
    alice = users.actor_for(await users.get_user(services, "alice"))
    await add_member(services, "team", alice, Role.MEMBER)
    _, key = await api_keys.create_api_key(services, alice)
    query = {"query": '{ channel(name: "team") { name } }'}
    repodata = "/get/team/noarch/repodata.json"

    async def can_read(headers: dict[str, str]) -> tuple[bool, bool]:
        if "X-API-Key" in headers:
            client.cookies.clear()
        else:
            replay(client, cookie)
        found = (await client.post("/graphql", json=query, headers=headers)).json()["data"]["channel"]
        served = (await client.get(repodata, headers=headers)).status_code
        assert served in (200, 404)
        return found is not None, served == 200

    for headers in ({}, {"X-API-Key": key}):
        assert await can_read(headers) == (True, True)
    await members.remove_channel_member(services, SYSTEM, "team", "alice")
    for headers in ({}, {"X-API-Key": key}):
        assert await can_read(headers) == (False, False)
