"""Browser login: OAuth2/OIDC through authlib's Starlette client, dev login, logout.

Routes (only configured providers exist; anything else is 404):

    GET  /auth/providers                 the configured providers (for the login page)
    GET  /auth/<provider>/login[?next=]  redirect to the provider (state, nonce, PKCE)
    GET  /auth/<provider>/callback       code exchange, ID token check, session cookie
    POST /auth/logout[?next=][&everywhere=1]  end this session, or every session of the user
                                         (a cookie-authenticated POST: CSRF-checked)
    GET  /auth/logout[?next=]            a page whose buttons POST the above (a GET changes nothing)
    GET  /auth/me                        who the session (or key) is
    GET  /auth/dev/login/<username>      dev mode only (`graphconda serve --dev`)

GitHub is plain OAuth2 plus its user API; Google and any other OIDC issuer go through
discovery (`server_metadata_url`), and their ID token is verified (signature, issuer,
audience, expiry, nonce) by authlib before we read a claim.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx2
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from graphconda.errors import AuthenticationError, GraphcondaError, NotFoundError
from graphconda.http.deps import actor_of, services_of
from graphconda.http.errors import error_response
from graphconda.http.identity import SESSION_TOKEN_KEY
from graphconda.services import sessions, users
from graphconda.services.authz import SYSTEM, Role
from graphconda.settings import GOOGLE_DISCOVERY_URL, OAuthProvider, Settings

if TYPE_CHECKING:
    from graphconda.db.models import User

log = logging.getLogger("graphconda.auth")

NEXT_KEY = "login_next"
DEV_ADMIN = "dev"


def _safe_next(value: str | None) -> str:
    """Only same-site paths: an open redirect after login would hand phishers our domain."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 2048:
        return "/"
    return value


def build_oauth(settings: Settings) -> OAuth:
    oauth = OAuth()
    for name, provider in settings.auth.providers.items():
        kwargs: dict[str, Any] = {"code_challenge_method": "S256"}
        if provider.kind == "github":
            kwargs["scope"] = provider.scope or "read:user user:email"
            web = provider.github_url.rstrip("/")
            oauth.register(
                name,
                client_id=provider.client_id,
                client_secret=provider.client_secret,
                access_token_url=f"{web}/login/oauth/access_token",
                authorize_url=f"{web}/login/oauth/authorize",
                api_base_url=provider.github_api_url.rstrip("/") + "/",
                client_kwargs=kwargs,
            )
            continue
        kwargs["scope"] = provider.scope or "openid email profile"
        metadata = provider.server_metadata_url or (GOOGLE_DISCOVERY_URL if provider.kind == "google" else "")
        oauth.register(
            name,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            server_metadata_url=metadata,
            client_kwargs=kwargs,
        )
    return oauth


class AuthRoutes:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.oauth = build_oauth(settings)

    def _provider(self, request: Request) -> tuple[str, OAuthProvider, Any]:
        name = request.path_params["provider"]
        provider = self.settings.auth.providers.get(name)
        if provider is None:
            raise NotFoundError("no such login provider")
        return name, provider, self.oauth.create_client(name)

    def _callback_url(self, request: Request, name: str) -> str:
        public = self.settings.server.public_url
        if public:
            return f"{public.rstrip('/')}/auth/{name}/callback"
        return str(request.url_for("auth_callback", provider=name))

    async def providers(self, request: Request) -> Response:
        listed = [
            {"name": name, "displayName": p.display_name or name, "kind": p.kind, "loginUrl": f"/auth/{name}/login"}
            for name, p in self.settings.auth.providers.items()
        ]
        return JSONResponse({"providers": listed, "dev": self.settings.server.dev})

    async def login(self, request: Request) -> Response:
        name, _, client = self._provider(request)
        request.session[NEXT_KEY] = _safe_next(request.query_params.get("next"))
        try:
            return await client.authorize_redirect(request, self._callback_url(request, name))
        except httpx2.HTTPError as exc:
            log.warning("login provider %s unreachable: %s", name, exc)
            return JSONResponse({"detail": "the login provider is unreachable; try again later"}, status_code=502)

    async def callback(self, request: Request) -> Response:
        name, provider, client = self._provider(request)
        try:
            token = await client.authorize_access_token(request)
            identity = await self._identity(provider, client, token)
        except AuthlibBaseError as exc:
            reason = getattr(exc, "error", "") or "oauth_error"
            return JSONResponse({"detail": f"login failed: {reason}"}, status_code=400)
        except JoseError as exc:
            log.warning("login with %s: ID token rejected: %s", name, exc)
            return JSONResponse({"detail": "login failed: the ID token is not valid"}, status_code=400)
        except httpx2.HTTPError as exc:
            log.warning("login provider %s unreachable: %s", name, exc)
            return JSONResponse({"detail": "the login provider is unreachable; try again later"}, status_code=502)
        try:
            user = await users.login_identity(services_of(request), name, **identity)
        except GraphcondaError as exc:
            return error_response(exc)
        next_url = _safe_next(request.session.get(NEXT_KEY))
        try:
            await _start_session(request, user)
        except GraphcondaError as exc:
            return error_response(exc)
        return RedirectResponse(next_url, status_code=303)

    async def _identity(self, provider: OAuthProvider, client: Any, token: dict[str, Any]) -> dict[str, Any]:
        """subject, login, names and e-mail from the provider (verified ID token or GitHub API)."""
        if provider.kind == "github":
            response = await client.get("user", token=token)
            response.raise_for_status()
            profile = response.json()
            email, verified = profile.get("email") or "", False
            emails = await client.get("user/emails", token=token)
            if emails.status_code == 200:
                primary = [e for e in emails.json() if e.get("primary") and e.get("verified")]
                if primary:
                    email, verified = primary[0]["email"], True
            return {
                "subject": str(profile["id"]),
                "login": profile.get("login") or "",
                "display_name": profile.get("name") or "",
                "email": email,
                "email_verified": verified,
                "avatar_url": profile.get("avatar_url") or "",
            }
        claims = token.get("userinfo")
        if not claims:  # an OIDC provider must send an ID token (and authlib verified it)
            raise AuthenticationError("the identity provider sent no ID token")
        claims = dict(claims)
        if not claims.get("email") and not claims.get("preferred_username"):
            claims.update({k: v for k, v in dict(await client.userinfo(token=token)).items() if k != "sub"})
        email = claims.get("email") or ""
        return {
            "subject": str(claims["sub"]),
            "login": claims.get("preferred_username") or email,
            "display_name": claims.get("name") or "",
            "email": email,
            "email_verified": claims.get("email_verified") is True,
            "avatar_url": claims.get("picture") or "",
        }

    async def logout(self, request: Request) -> Response:
        """End the session (all the user's with `everywhere=1`): JSON for scripts, a redirect for the page's form."""
        services, actor = services_of(request), actor_of(request)
        ended: int | None = None
        if request.query_params.get("everywhere") in ("1", "true", "yes"):
            if actor.authenticated:
                try:
                    ended = await sessions.end_all_sessions(services, actor)
                except GraphcondaError as exc:  # a scoped key
                    return error_response(exc)
            else:
                ended = 0
        else:
            await sessions.end_session(services, request.session.get(SESSION_TOKEN_KEY))
        request.session.clear()
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        return JSONResponse({"loggedOut": True} if ended is None else {"loggedOut": True, "sessionsEnded": ended})

    async def logout_page(self, request: Request) -> Response:
        """Buttons that POST the logout: a GET (an <img> on any site can send one) must not log out."""
        next_url = _safe_next(request.query_params.get("next"))
        action = "logout?" + urlencode({"next": next_url})
        everywhere = "logout?" + urlencode({"next": next_url, "everywhere": "1"})
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log out - graphconda</title></head>'
            f'<body><form method="post" action="{html.escape(action)}"><button type="submit">Log out</button>'
            f'</form><form method="post" action="{html.escape(everywhere)}">'
            '<button type="submit">Log out everywhere</button></form></body></html>'
        )
        # Not in a frame: another site could otherwise trick a click on the button.
        headers = {"Content-Security-Policy": "frame-ancestors 'none'", "Cache-Control": "no-store"}
        return HTMLResponse(page, headers=headers)

    async def me(self, request: Request) -> Response:
        actor = actor_of(request)
        if actor.user_id is None:
            return JSONResponse({"user": None})
        role = actor.server_role.value if actor.server_role else None
        return JSONResponse({"user": {"id": actor.user_id, "username": actor.username, "serverRole": role}})

    async def dev_login(self, request: Request) -> Response:
        """Dev mode only: become `username` (created on first use; `dev` is a server owner)."""
        services = services_of(request)
        username = users.validate_username(request.path_params["username"])
        try:
            user = await users.get_user(services, username)
        except NotFoundError:
            role = Role.OWNER if username == DEV_ADMIN else None
            user = await users.create_user(services, SYSTEM, username, server_role=role)
        await _start_session(request, user)
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)


async def _start_session(request: Request, user: User) -> None:
    """Log the browser in as `user`: a new server-side session whose token the signed cookie carries."""
    services = services_of(request)
    token = await sessions.start_session(services, user)
    # A session this browser had before (another user, an earlier login) ends: its cookie is replaced.
    await sessions.end_session(services, request.session.get(SESSION_TOKEN_KEY))
    request.session.clear()  # drops the login's state and nonce with everything else
    request.session[SESSION_TOKEN_KEY] = token


def routes(settings: Settings) -> list[BaseRoute]:
    """The /auth routes; the dev login route is only built in dev mode."""
    auth = AuthRoutes(settings)
    out: list[BaseRoute] = [
        Route("/auth/providers", auth.providers, methods=["GET"]),
        Route("/auth/logout", auth.logout, methods=["POST"]),
        Route("/auth/logout", auth.logout_page, methods=["GET"]),
        Route("/auth/me", auth.me, methods=["GET"]),
    ]
    if settings.server.dev:
        out.append(Route("/auth/dev/login/{username}", auth.dev_login, methods=["GET"]))
    out += [
        Route("/auth/{provider}/login", auth.login, methods=["GET"]),
        Route("/auth/{provider}/callback", auth.callback, methods=["GET"], name="auth_callback"),
    ]
    return out
