"""Who is calling, over HTTP: API keys in every accepted form, session cookies, dev login, CSRF."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import httpx2
import itsdangerous
import pytest
from starlette.applications import Starlette

from graphconda.errors import NotFoundError
from graphconda.services import access, api_keys, channels, users
from graphconda.services.api_keys import ScopeSpec
from graphconda.services.authz import SYSTEM, Role
from graphconda.services.context import Services
from tests.helpers.keys import legacy_key
from tests.helpers.sessions import signed_cookie
from tests.helpers.sql import count_statements

CREATE = 'mutation { createChannel(input: {name: "made-here"}) { __typename } }'


async def whoami(client: httpx2.AsyncClient, path: str = "/auth/me", **kwargs: Any) -> Any:
    return await client.get(path, **kwargs)


@pytest.fixture
async def alice_key(services: Services) -> str:
    alice = await users.create_user(services, SYSTEM, "alice", server_role=Role.MAINTAINER)
    _, secret = await api_keys.create_api_key(services, SYSTEM, user_id=alice.id)
    return secret


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_anonymous_requests_cost_no_query(client: httpx2.AsyncClient, services: Services) -> None:
    with count_statements(services) as seen:
        response = await client.get("/healthz")
        me = await whoami(client)
    assert response.status_code == 200
    assert me.json() == {"user": None}
    assert seen == []


@pytest.mark.parametrize("issued", ["new", "legacy"])
@pytest.mark.parametrize(
    "how",
    ["x-api-key", "bearer", "token-scheme", "basic-password", "basic-user", "token-path"],
)
async def test_every_key_form_is_accepted(
    client: httpx2.AsyncClient, services: Services, alice_key: str, how: str, issued: str
) -> None:
    if issued == "legacy":  # a `gc_...` key issued before new keys left out `_`
        alice = users.actor_for(await users.get_user(services, "alice"))
        alice_key = await legacy_key(services, alice)
    headers, path = {}, "/auth/me"
    if how == "x-api-key":
        headers["X-API-Key"] = alice_key
    elif how == "bearer":
        headers["Authorization"] = f"Bearer {alice_key}"
    elif how == "token-scheme":
        headers["Authorization"] = f"token {alice_key}"
    elif how == "basic-password":
        headers["Authorization"] = basic("anything", alice_key)
    elif how == "basic-user":
        headers["Authorization"] = basic(alice_key, "")
    else:
        path = f"/t/{alice_key}/auth/me"
    response = await whoami(client, path, headers=headers)
    assert response.status_code == 200
    assert response.json()["user"]["username"] == "alice"
    assert response.json()["user"]["serverRole"] == "maintainer"


async def test_token_path_is_stripped_before_routing(client: httpx2.AsyncClient, alice_key: str) -> None:
    assert (await client.get(f"/t/{alice_key}/healthz")).json() == {"status": "ok"}
    assert (await client.get(f"/t/{alice_key}/no-such-route")).status_code == 404


async def assert_401(response: httpx2.Response, words: str = "") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "gc_" + "A" * 43},
        {"X-API-Key": "wrong"},
        {"X-API-Key": ""},
        {"X-API-Key": "gc_" + "A" * 5000},
        {"X-API-Key": "gc_ÄÖÜ" + "A" * 40},
        {"Authorization": "Bearer gc_" + "B" * 43},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        {"Authorization": "Digest username=x"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=lambda h: next(iter(h.values()))[:24],
)
async def test_bad_keys_get_401(client: httpx2.AsyncClient, headers: dict[str, str]) -> None:
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}
    await assert_401(await whoami(client, headers=encoded))


async def test_bad_token_path_gets_401(client: httpx2.AsyncClient) -> None:
    await assert_401(await client.get("/t/gc_nope/get/x/noarch/repodata.json"))
    await assert_401(await client.get("/t//healthz"))


async def test_expired_and_revoked_keys_get_401(client: httpx2.AsyncClient, services: Services) -> None:
    bob = await users.create_user(services, SYSTEM, "bob")
    soon = services.now() + timedelta(hours=1)
    _, expiring = await api_keys.create_api_key(services, SYSTEM, user_id=bob.id, expires_at=soon)
    key, revoked = await api_keys.create_api_key(services, SYSTEM, user_id=bob.id)
    assert (await whoami(client, headers={"X-API-Key": revoked})).status_code == 200
    assert key.id is not None
    await api_keys.revoke_api_key(services, SYSTEM, key.id)
    await assert_401(await whoami(client, headers={"X-API-Key": revoked}), "revoked")
    later = services.now() + timedelta(hours=2)
    services.clock = lambda: later
    await assert_401(await whoami(client, headers={"X-API-Key": expiring}), "expired")


async def test_two_different_keys_are_refused(client: httpx2.AsyncClient, alice_key: str) -> None:
    response = await whoami(client, headers={"X-API-Key": alice_key, "Authorization": "Bearer gc_" + "C" * 43})
    await assert_401(response, "conflicting")
    same = await whoami(client, f"/t/{alice_key}/auth/me", headers={"X-API-Key": alice_key})
    assert same.status_code == 200


# --- session cookies and dev login ------------------------------------------------


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return getattr(request, "param", {"server": {"dev": True}})


async def dev_login(client: httpx2.AsyncClient, username: str) -> None:
    response = await client.get(f"/auth/dev/login/{username}")
    assert response.status_code == 303
    assert "graphconda_session=" in response.headers["set-cookie"]


async def test_dev_login_logs_in_and_creates_users(client: httpx2.AsyncClient, services: Services) -> None:
    await dev_login(client, "dev")
    assert (await whoami(client)).json()["user"] == {"id": 1, "username": "dev", "serverRole": "owner"}
    await dev_login(client, "carol")
    assert (await whoami(client)).json()["user"]["username"] == "carol"
    assert (await users.get_user(services, "carol")).server_role is None
    for hostile in ("..%2F..%2Fetc", "%E2%98%83", "-x-", "a" * 80):
        assert (await client.get(f"/auth/dev/login/{hostile}")).status_code in (404, 422)


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {},
        {"server": {"dev": False}},
        {"auth": {"providers": {"github": {"kind": "github", "client_id": "a", "client_secret": "b"}}}},
    ],
    indirect=True,
)
async def test_dev_login_does_not_exist_outside_dev_mode(client: httpx2.AsyncClient, services: Services) -> None:
    """Quetz: its dummy login worked outside dev mode."""
    for path in ("/auth/dev/login/dev", "/auth/dev/login/admin", "/auth/dev/callback"):
        assert (await client.get(path)).status_code == 404
    assert (await whoami(client)).json() == {"user": None}
    with pytest.raises(NotFoundError):
        await users.get_user(services, "dev")


async def test_session_signed_with_another_secret_is_refused(client: httpx2.AsyncClient) -> None:
    forged = itsdangerous.TimestampSigner("some-other-secret").sign(base64.b64encode(b'{"uid": 1}')).decode()
    client.cookies.set("graphconda_session", forged, domain="testserver.local")
    response = await whoami(client)
    await assert_401(response, "session")
    assert 'graphconda_session=""' in response.headers["set-cookie"]  # cleared, so the next request works
    assert (await whoami(client)).json() == {"user": None}
    client.cookies.set("graphconda_session", forged, domain="testserver.local")
    await dev_login(client, "dev")  # logging in again still works and replaces the bad cookie
    assert (await whoami(client)).json()["user"]["username"] == "dev"


@pytest.mark.parametrize("sid", [2**63, 10**30, -1, "", "A" * 43, "A" * 5000, "1", [1], True, {"a": 1}])
async def test_session_with_an_impossible_token_is_refused(
    client: httpx2.AsyncClient, settings: Any, sid: object
) -> None:
    """Correctly signed (only the server could), yet naming no live session: 401, never a 500."""
    client.cookies.set("graphconda_session", signed_cookie(settings, {"sid": sid}), domain="testserver.local")
    response = await whoami(client)
    await assert_401(response, "session")
    assert 'graphconda_session=""' in response.headers["set-cookie"]


async def test_session_of_a_deleted_user_is_refused(client: httpx2.AsyncClient, services: Services) -> None:
    from sqlalchemy import text

    await dev_login(client, "ghost")
    async with services.db.write() as session:
        await session.execute(text("DELETE FROM users WHERE username = 'ghost'"))
    await assert_401(await whoami(client))


async def test_logout(client: httpx2.AsyncClient) -> None:
    await dev_login(client, "dev")
    # GET changes nothing (it answers with a page whose button POSTs), and no site but ours may POST.
    assert (await client.get("/auth/logout")).status_code == 200
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {}):
        assert (await client.post("/auth/logout", content=b"", headers={**form, **headers})).status_code == 403
    assert (await whoami(client)).json()["user"]["username"] == "dev"
    assert (await client.post("/auth/logout", headers={"Origin": "http://testserver"})).json() == {"loggedOut": True}
    assert (await whoami(client)).json() == {"user": None}


# --- CSRF -------------------------------------------------------------------------


async def graphql(client: httpx2.AsyncClient, query: str, **kwargs: Any) -> httpx2.Response:
    return await client.post("/graphql", json={"query": query}, **kwargs)


async def channel_exists(services: Services) -> bool:
    try:
        async with services.db.read() as session:
            await access.gate(session, SYSTEM, "made-here")
    except NotFoundError:
        return False
    return True


@pytest.mark.parametrize(
    "origin", ["http://evil.example.org", "null", "http://testserver.evil.example.org", "https://testserver:444"]
)
async def test_cross_site_cookie_writes_are_refused(
    client: httpx2.AsyncClient, services: Services, origin: str
) -> None:
    await dev_login(client, "dev")
    response = await graphql(client, CREATE, headers={"Origin": origin})
    assert response.status_code == 403
    assert "cross-site" in response.json()["detail"]
    assert not await channel_exists(services)


async def test_form_post_without_origin_is_refused(client: httpx2.AsyncClient, services: Services) -> None:
    await dev_login(client, "dev")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = await client.post(
            "/graphql", content=f'{{"query": {CREATE!r}}}'.encode(), headers={"Content-Type": content_type}
        )
        assert response.status_code == 403, content_type
    response = await client.post("/graphql", json={"query": CREATE}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert not await channel_exists(services)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://testserver"},
        {},  # JSON without Origin: a browser could not send it cross-site without a CORS preflight
        {"X-Requested-With": "fetch"},
    ],
)
async def test_same_site_cookie_writes_work(
    client: httpx2.AsyncClient, services: Services, headers: dict[str, str]
) -> None:
    await dev_login(client, "dev")
    response = await graphql(client, CREATE, headers=headers)
    assert response.status_code == 200, response.text
    assert await channel_exists(services)


@pytest.mark.parametrize(
    "settings_overrides", [{"server": {"dev": True}, "auth": {"trusted_origins": ["https://dash.example.org"]}}],
    indirect=True,
)
async def test_trusted_origins_may_write(client: httpx2.AsyncClient, services: Services) -> None:
    await dev_login(client, "dev")
    assert (await graphql(client, CREATE, headers={"Origin": "https://dash.example.org"})).status_code == 200
    assert await channel_exists(services)


async def test_api_key_requests_ignore_origin(client: httpx2.AsyncClient, alice_key: str, services: Services) -> None:
    response = await graphql(client, CREATE, headers={"Origin": "http://evil.example.org", "X-API-Key": alice_key})
    assert response.status_code == 200
    assert await channel_exists(services)


async def test_anonymous_cannot_demote_the_admin(client: httpx2.AsyncClient, services: Services) -> None:
    """Quetz: an anonymous request demoted the admin of a live instance."""
    await users.create_user(services, SYSTEM, "admin", server_role=Role.OWNER)
    mutation = 'mutation { setServerRole(username: "admin", role: MEMBER) { __typename } }'
    for headers in ({}, {"Origin": "http://evil.example.org"}):
        response = await graphql(client, mutation, headers=headers)
        assert response.status_code == 200
        assert response.json()["data"]["setServerRole"]["__typename"] != "User"
    assert (await users.get_user(services, "admin")).server_role == "owner"


async def test_scoped_key_sees_only_its_private_channel(client: httpx2.AsyncClient, services: Services) -> None:
    owner = users.actor_for(await users.create_user(services, SYSTEM, "owner"))
    for name in ("team-a", "team-b"):
        await channels.create_channel(services, owner, channels.ChannelSpec(name, private=True))
    _, key = await api_keys.create_api_key(services, owner, scopes=[ScopeSpec("team-a", "member")])
    query = "{ channels { nodes { name } } }"
    response = await client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    names = [c["name"] for c in response.json()["data"]["channels"]["nodes"]]
    assert names == ["team-a"]


def test_app_builds_without_a_session_secret(tmp_path: Any) -> None:
    """An empty auth.session_secret makes one, once, in the data dir (private to the owner)."""
    from graphconda.app import create_app
    from graphconda.settings import load_settings

    settings = load_settings(environ={}, overrides={"server": {"data_dir": str(tmp_path / "d")}})
    assert isinstance(create_app(settings), Starlette)
    secret_file = tmp_path / "d" / "session-secret"
    first = secret_file.read_text()
    create_app(settings)
    assert secret_file.read_text() == first and len(first) >= 40
    assert secret_file.stat().st_mode & 0o077 == 0


async def test_cross_site_websocket_with_the_cookie_is_refused(live_server: Any) -> None:
    """A page on another site must not open a GraphQL websocket riding on the user's cookie."""
    import websockets
    from websockets.exceptions import InvalidStatus

    async with httpx2.AsyncClient(base_url=live_server.url) as browser:
        login = await browser.get("/auth/dev/login/dev")
        assert login.status_code == 303
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    ws_url = live_server.url.replace("http://", "ws://") + "/graphql"
    headers = {"Cookie": cookie}
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            ws_url, subprotocols=["graphql-transport-ws"], additional_headers=headers, origin="http://evil.example.org"
        ):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(
        ws_url, subprotocols=["graphql-transport-ws"], additional_headers=headers, origin=live_server.url
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


@pytest.mark.parametrize(
    "settings_overrides", [{"server": {"dev": True}, "auth": {"cookie_secure": True}}], indirect=True
)
async def test_secure_cookie_when_configured(client: httpx2.AsyncClient) -> None:
    response = await client.get("/auth/dev/login/dev")
    flags = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(flags)
