"""Login through a real OpenID Connect provider running on loopback (tests/fixtures/oidc.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import Identity, User
from graphconda.services import users
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from tests.fixtures.oidc import OIDCProvider, OIDCUser, serve_oidc_provider
from tests.fixtures.server import LiveServer


@pytest.fixture
def oidc() -> Iterator[OIDCProvider]:
    yield from serve_oidc_provider()


@pytest.fixture
def settings_overrides(oidc: OIDCProvider) -> dict[str, Any]:
    corp = {
        "kind": "oidc",
        "client_id": oidc.client.client_id,
        "client_secret": oidc.client.client_secret,
        "server_metadata_url": oidc.discovery_url,
        "display_name": "Corp SSO",
    }
    # The same loopback server also plays GitHub Enterprise (plain OAuth2 + user API).
    github = {
        "kind": "github",
        "client_id": oidc.client.client_id,
        "client_secret": oidc.client.client_secret,
        "github_url": oidc.url,
        "github_api_url": f"{oidc.url}/api",
    }
    return {"auth": {"providers": {"corp": corp, "gh": github}, "admins": ["corp:bob@example.org"],
                     "maintainers": ["gh:bob"]}}


@pytest.fixture
async def idp() -> AsyncIterator[httpx2.AsyncClient]:
    """The browser's side of the provider (its own cookies, no redirects followed)."""
    async with httpx2.AsyncClient() as http:
        yield http


async def login(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, next_: str = "/", provider: str = "corp"
) -> Any:
    """Walk the redirects by hand: graphconda -> provider (auto-approves) -> graphconda callback."""
    start = await client.get(f"/auth/{provider}/login", params={"next": next_})
    assert start.status_code == 302
    authorize = start.headers["location"]
    if provider == "gh":
        assert authorize.startswith(f"{oidc.url}/login/oauth/authorize?")
    else:
        assert authorize.startswith(f"{oidc.url}/authorize?")
        assert "nonce=" in authorize
    assert "code_challenge=" in authorize and "state=" in authorize
    approved = await idp.get(authorize)
    assert approved.status_code == 302, approved.text
    callback = approved.headers["location"]
    assert callback.startswith(f"http://testserver/auth/{provider}/callback?")
    return await client.get(callback)


async def me(client: httpx2.AsyncClient) -> dict[str, Any] | None:
    response = await client.get("/auth/me")
    assert response.status_code == 200
    return response.json()["user"]  # type: ignore[no-any-return]


async def count(services: Services, model: Any) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_first_login_creates_user_with_configured_role(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services
) -> None:
    done = await login(client, idp, oidc, next_="/channels/mine")
    assert done.status_code == 303
    assert done.headers["location"] == "/channels/mine"
    cookie = done.headers["set-cookie"]
    assert "graphconda_session=" in cookie and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # auth.cookie_secure is off in tests
    assert await me(client) == {"id": 1, "username": "bob", "serverRole": "owner"}
    user = await users.get_user(services, "bob")
    assert (user.email, user.display_name) == ("bob@example.org", "Bob Builder")
    async with services.db.read() as session:
        identity = await session.scalar(select(Identity))
    assert identity is not None
    assert (identity.provider, identity.subject, identity.user_id) == ("corp", "subject-bob", user.id)


async def test_second_login_reuses_the_identity(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services, app: Any
) -> None:
    assert (await login(client, idp, oidc)).status_code == 303
    first = await me(client)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver") as other:
        assert await me(other) is None
        assert (await login(other, idp, oidc)).status_code == 303
        assert await me(other) == first
    assert await count(services, User) == 1
    assert await count(services, Identity) == 1


async def test_forged_state_is_rejected(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services
) -> None:
    start = await client.get("/auth/corp/login")
    approved = await idp.get(start.headers["location"])
    callback = httpx2.URL(approved.headers["location"])
    forged = callback.copy_set_param("state", "forged-state")
    response = await client.get(str(forged))
    assert response.status_code == 400
    assert "state" in response.json()["detail"]
    assert await me(client) is None
    assert await count(services, User) == 0
    assert oidc.token_requests == 0  # the code was never exchanged


async def test_callback_from_another_browser_is_rejected(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services, app: Any
) -> None:
    """A login started by an attacker cannot be completed in the victim's browser (login CSRF)."""
    start = await client.get("/auth/corp/login")
    approved = await idp.get(start.headers["location"])
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver") as victim:
        response = await victim.get(approved.headers["location"])
        assert response.status_code == 400
        assert await me(victim) is None
    assert await count(services, User) == 0


async def test_id_token_with_wrong_issuer_is_rejected(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services
) -> None:
    oidc.id_token_issuer = "https://evil.example.org"
    response = await login(client, idp, oidc)
    assert response.status_code == 400
    assert "ID token" in response.json()["detail"] or "login failed" in response.json()["detail"]
    assert await me(client) is None
    assert await count(services, User) == 0


async def test_unverified_email_grants_no_role_and_names_are_deduplicated(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services
) -> None:
    await users.create_user(services, SYSTEM, "bob")
    oidc.user = OIDCUser("subject-2", "bob", "bob@example.org", "Not Bob", email_verified=False)
    assert (await login(client, idp, oidc)).status_code == 303
    assert await me(client) == {"id": 2, "username": "bob-2", "serverRole": None}


async def test_logout_ends_the_session(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider
) -> None:
    await login(client, idp, oidc)
    assert await me(client) is not None
    # A GET (an <img> on any site sends one) only shows a button that POSTs; it logs nobody out.
    page = await client.get("/auth/logout", params={"next": "/web/?x=1&y=\"2\""})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="logout?next=%2Fweb%2F%3Fx%3D1%26y%3D%222%22">' in page.text
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert await me(client) is not None
    assert (await client.get("/auth/logout", params={"next": "https://evil.example/"})).text.count("next=%2F\"") == 1
    # The same POST from another site is refused by the CSRF guard, and the session lives on.
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what the button sends (an empty form)
    forged = await client.post("/auth/logout", content=b"", headers={**form, "Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert await me(client) is not None
    # The page's form, posted from our own origin, ends the session and goes to `next`.
    response = await client.post(
        "/auth/logout", params={"next": "/web/"}, content=b"", headers={**form, "Origin": "http://testserver"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/web/"
    assert await me(client) is None


async def test_only_configured_providers_exist(client: httpx2.AsyncClient) -> None:
    listed = (await client.get("/auth/providers")).json()
    assert listed == {
        "providers": [
            {"name": "corp", "displayName": "Corp SSO", "kind": "oidc", "loginUrl": "/auth/corp/login"},
            {"name": "gh", "displayName": "gh", "kind": "github", "loginUrl": "/auth/gh/login"},
        ],
        "dev": False,
    }
    unknown = ("/auth/github/login", "/auth/google/callback?code=x&state=y", "/auth/dev/login", "/auth/dev/login/bob")
    for path in unknown:
        response = await client.get(path)
        assert response.status_code == 404, path


async def test_next_cannot_redirect_off_site(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider
) -> None:
    for hostile in ("//evil.example.org/x", "https://evil.example.org/", "/\\evil.example.org"):
        done = await login(client, idp, oidc, next_=hostile)
        assert done.headers["location"] == "/"


async def test_full_flow_through_a_live_server(live_server: LiveServer, oidc: OIDCProvider) -> None:
    """A browser-like client following every redirect between two real servers."""
    async with httpx2.AsyncClient(follow_redirects=True) as browser:
        response = await browser.get(f"{live_server.url}/auth/corp/login", params={"next": "/auth/me"})
        assert response.status_code == 200
        assert str(response.url) == f"{live_server.url}/auth/me"
        assert response.json()["user"]["username"] == "bob"
        assert [str(r.url).split("?")[0] for r in response.history] == [
            f"{live_server.url}/auth/corp/login",
            f"{oidc.url}/authorize",
            f"{live_server.url}/auth/corp/callback",
        ]


@pytest.mark.parametrize("settings_overrides", [{"auth": {"providers": {"down": {
    "kind": "oidc", "client_id": "x", "client_secret": "y",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}}}}])
async def test_unreachable_provider_gives_a_clear_error(client: httpx2.AsyncClient) -> None:
    response = await client.get("/auth/down/login")
    assert response.status_code == 502
    assert "unreachable" in response.json()["detail"]


async def test_github_login(
    client: httpx2.AsyncClient, idp: httpx2.AsyncClient, oidc: OIDCProvider, services: Services
) -> None:
    oidc.user = OIDCUser("gh-4242", "bob", "bob@example.org", "Bob on GitHub")
    done = await login(client, idp, oidc, provider="gh")
    assert done.status_code == 303
    assert await me(client) == {"id": 1, "username": "bob", "serverRole": "maintainer"}
    user = await users.get_user(services, "bob")
    assert (user.email, user.display_name) == ("bob@example.org", "Bob on GitHub")  # the primary, verified e-mail
    assert user.avatar_url.endswith("/avatars/bob.png")
    async with services.db.read() as session:
        identity = await session.scalar(select(Identity))
    assert identity is not None and (identity.provider, identity.subject) == ("gh", "4242")
    # The same person through the OIDC provider is a different identity, so a different user.
    oidc.user = OIDCUser("subject-bob", "bob", "bob@example.org")
    await client.post("/auth/logout", headers={"Origin": "http://testserver"})
    await login(client, idp, oidc)
    assert (await me(client) or {})["username"] == "bob-2"
