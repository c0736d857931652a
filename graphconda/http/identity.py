"""Who is calling: the identity middleware (API keys, conda token paths, session cookies) and the CSRF guard.

A pure ASGI middleware, so streamed uploads and downloads pass through untouched. It
stores the resolved actor in `scope["state"]["actor"]` (read it with
`graphconda.http.deps.actor_of`). A request without credentials costs no database
query. Bad credentials end the request with 401; they never fall back to anonymous.

Credentials, first match wins (two different keys in one request are refused):
`X-API-Key: <key>`, `Authorization: Bearer|token <key>`, HTTP Basic with the key as
password (or as user name with an empty password), the conda token path `/t/<key>/...`
(stripped before routing), else the signed session cookie set by /auth/... routes. The
cookie carries a session token; `services.sessions` checks its row on every request (one
indexed query), so a session ended on the server (sign-out, sign out everywhere, lost
server role, disabled account) is refused at once, with the cookie cleared.

CSRF: a cookie is sent by the browser whatever page made the request, so changes
authenticated by the cookie need proof that our own pages made them: an `Origin` we
trust (our host, `server.public_url`, `auth.trusted_origins`), or, when the browser
sent no Origin, a body or header that a cross-site form cannot produce without a CORS
preflight (which we never grant). API-key requests carry their own proof.
"""

from __future__ import annotations

import binascii
import logging
import os
import secrets
from base64 import b64decode
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from graphconda.errors import AuthenticationError, ConfigError, InternalError
from graphconda.http.errors import error_response
from graphconda.services.authz import ANONYMOUS, Actor
from graphconda.settings import Settings

log = logging.getLogger("graphconda.identity")

SESSION_COOKIE = "graphconda_session"
SESSION_TOKEN_KEY = "sid"  # the session's token (services.sessions)
LEGACY_SESSION_KEY = "uid"  # cookies from before server-side sessions: a bare user id, never revocable
CSRF_HEADERS = (b"x-requested-with", b"x-graphconda-csrf")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Bodies a cross-site <form> (or fetch without preflight) can send.
SIMPLE_CONTENT_TYPES = frozenset({"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
MAX_CREDENTIAL_LENGTH = 1024  # longer Authorization values are refused before any decoding
_CREDENTIAL = "credential"  # websockets: scope["state"] key of what the actor was resolved from


def session_secret(settings: Settings) -> str:
    """The configured secret, else one generated once and kept in DATA_DIR/session-secret (0600)."""
    if settings.auth.session_secret:
        return settings.auth.session_secret
    path = settings.data_dir / "session-secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Write aside, then link into place: atomic, and the first of several workers wins.
        tmp = path.with_name(f".session-secret.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_text().strip()
    if not secret:
        raise ConfigError(f"{path} is empty; delete it or set auth.session_secret")
    return secret


def identity_middleware(settings: Settings) -> list[Middleware]:
    """Session cookies, then actor resolution: add these to the app's middleware, in this order."""
    auth = settings.auth
    return [
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(settings),
            session_cookie=SESSION_COOKIE,
            max_age=auth.session_max_age_seconds,
            same_site="lax",
            https_only=auth.cookie_secure,
        ),
        Middleware(IdentityMiddleware, settings=settings),
    ]


def _origin(url: str) -> str | None:
    """scheme://host[:port] with default ports dropped; None when not an absolute http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _host_netloc(origin: str) -> str:
    return origin.split("://", 1)[1]


class IdentityMiddleware:
    """Resolve the actor of every http/websocket request (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        trusted = [settings.server.public_url, *settings.auth.trusted_origins]
        self.trusted_origins = frozenset(o for o in (_origin(t) for t in trusted if t) if o)
        self.session_cookie = SESSION_COOKIE.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["actor"] = ANONYMOUS
        try:
            actor, via_cookie = await self._resolve(scope)
        except _Reject as reject:
            await reject.send(scope, receive, send)
            return
        except InternalError as exc:  # the database is down: 503, as the routes behind us would say
            if scope["type"] == "websocket":  # 1013: try again later
                await send({"type": "websocket.close", "code": 1013, "reason": "service temporarily unavailable"})
            else:
                await error_response(exc)(scope, receive, send)
            return
        state["actor"] = actor
        if via_cookie:
            refused = self._csrf_refusal(scope)
            if refused:
                await _Reject(403, refused).send(scope, receive, send)
                return
        await self.app(scope, receive, send)

    # --- credentials ------------------------------------------------------------

    async def _resolve(self, scope: Scope) -> tuple[Actor, bool]:
        keys: list[str] = []
        has_cookie = False
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                keys.append(_header_text(value))
            elif name == b"authorization":
                keys.append(_from_authorization(value))
            elif name == b"cookie" and self.session_cookie in value:
                has_cookie = True
        path: str = scope["path"]
        if path.startswith("/t/"):
            keys.append(_strip_token_path(scope))
        if keys:
            if len(set(keys)) > 1:
                raise _Reject(401, "conflicting credentials: send one API key")
            actor = await _authenticate(scope, keys[0])
            _remember_credential(scope, ("key", keys[0]))
            return actor, False
        session = scope.get("session")
        token = session.get(SESSION_TOKEN_KEY) if session else None
        if _is_login_path(path):
            # Login routes work whatever the cookie holds, so that logging in again replaces a
            # bad or ended session (and signing out of one that already ended is no error).
            try:
                return (await _session_actor(scope, token), True) if token is not None else (ANONYMOUS, False)
            except _Reject:
                return ANONYMOUS, False
        if token is None:
            if has_cookie and not session:
                # A cookie we cannot read: signed with another secret, or expired.
                raise _Reject(401, "your session is invalid or has expired; log in again", clear_cookie=True)
            if session and LEGACY_SESSION_KEY in session:
                # Signed by us, but from before sessions could be ended: honouring it would
                # keep alive a login that sign-out could never end.
                session.clear()
                raise _Reject(401, "your session is from an older version; log in again", clear_cookie=True)
            return ANONYMOUS, False
        actor = await _session_actor(scope, token)
        _remember_credential(scope, ("session", token))
        return actor, True

    # --- CSRF -------------------------------------------------------------------

    def _csrf_refusal(self, scope: Scope) -> str | None:
        """Why this cookie-authenticated request looks forged, or None when it is fine."""
        method = scope.get("method", "GET")
        websocket = scope["type"] == "websocket"
        if not websocket and method in SAFE_METHODS:
            return None
        headers = {name: value for name, value in scope["headers"]}
        origin_header = headers.get(b"origin")
        if origin_header is not None:
            origin = _origin(_header_text(origin_header))
            if origin is not None and (origin in self.trusted_origins or self._same_host(origin, headers)):
                return None
            return "cross-site request refused: this origin may not act with the session cookie"
        if websocket:
            return None  # not a browser: browsers always send Origin on websocket handshakes
        if headers.get(b"sec-fetch-site", b"") == b"cross-site":
            return "cross-site request refused"
        if any(h in headers for h in CSRF_HEADERS):
            return None
        content_type = _header_text(headers.get(b"content-type", b"")).split(";", 1)[0].strip().lower()
        if method == "POST" and content_type in SIMPLE_CONTENT_TYPES:
            return "cross-site request refused: send the X-Requested-With header with cookie-authenticated forms"
        return None

    def _same_host(self, origin: str, headers: dict[bytes, bytes]) -> bool:
        host = headers.get(b"host")
        if host is None:
            return False
        scheme = origin.split("://", 1)[0]
        ours = _origin(f"{scheme}://{_header_text(host)}")
        return ours is not None and _host_netloc(ours) == _host_netloc(origin)


class _Reject(Exception):
    """End the request here: a JSON error for HTTP, a policy close for websockets."""

    def __init__(self, status: int, detail: str, *, clear_cookie: bool = False) -> None:
        super().__init__(detail)
        self.status, self.detail, self.clear_cookie = status, detail, clear_cookie

    async def send(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": self.detail[:120]})
            return
        if self.status == 401:
            response: JSONResponse = error_response(AuthenticationError(self.detail))
        else:
            response = JSONResponse({"detail": self.detail}, status_code=self.status)
        if self.clear_cookie:
            response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax")
        await response(scope, receive, send)


def _remember_credential(scope: Scope, credential: tuple[str, object]) -> None:
    # A websocket lives on after its handshake: `recheck_actor` resolves it again from this.
    if scope["type"] == "websocket":
        scope["state"][_CREDENTIAL] = credential


async def recheck_actor(scope: Scope) -> Actor:
    """The actor of a websocket now, resolved again from the credentials it was opened with:
    AuthenticationError once its API key or session was revoked or expired, or the account
    disabled; a changed role or key scope shows in the actor returned. One indexed query."""
    credential = scope.get("state", {}).get(_CREDENTIAL)
    if credential is None:
        return ANONYMOUS
    from graphconda.services.api_keys import authenticate_key
    from graphconda.services.sessions import session_actor

    kind, value = credential
    services = scope["app"].state.services
    return await (authenticate_key(services, value) if kind == "key" else session_actor(services, value))


def _is_login_path(path: str) -> bool:
    return path.startswith("/auth/") and path != "/auth/me"


def _header_text(value: bytes) -> str:
    return value.decode("latin-1")


def _from_authorization(value: bytes) -> str:
    if len(value) > MAX_CREDENTIAL_LENGTH:
        raise _Reject(401, "invalid API key")
    scheme, _, credentials = _header_text(value).strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme in ("bearer", "token") and credentials:
        return credentials
    if scheme == "basic" and credentials:
        try:
            decoded = b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _Reject(401, "malformed Basic credentials") from None
        user, _, password = decoded.partition(":")
        key = password or user
        if key:
            return key
    raise _Reject(401, "unsupported Authorization header: use 'Bearer <API key>' or Basic with the key as password")


def _strip_token_path(scope: Scope) -> str:
    """Take the key out of /t/<key>/rest and route the request as /rest."""
    key, _, rest = scope["path"][3:].partition("/")
    scope["path"] = "/" + rest
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(b"/t/"):
        scope["raw_path"] = b"/" + raw[3:].partition(b"/")[2]
    if not key:
        raise _Reject(401, "invalid API key")
    return key


async def _authenticate(scope: Scope, key: str) -> Actor:
    from graphconda.services.api_keys import authenticate_key

    try:
        return await authenticate_key(scope["app"].state.services, key)
    except AuthenticationError as exc:
        raise _Reject(401, str(exc)) from None


async def _session_actor(scope: Scope, token: object) -> Actor:
    from graphconda.services.sessions import session_actor

    try:
        return await session_actor(scope["app"].state.services, token)
    except AuthenticationError as exc:
        scope["session"].clear()
        raise _Reject(401, str(exc), clear_cookie=True) from None
