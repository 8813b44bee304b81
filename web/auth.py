"""Who may do what on the web admin: sessions, CSRF, API keys and the security headers.

- Pages: a server-side session (table ``sessions``, see :meth:`Service.login`); the cookie holds
  a random token, the database only its SHA-256. Cookie ``HttpOnly; SameSite=Strict``, plus
  ``Secure`` when the request came over TLS (``wsgi.url_scheme``, or ``X-Forwarded-Proto`` from
  a trusted proxy). Never Bottle's signed (pickled) cookies.
- Every POST needs the session's CSRF token (form field ``csrf``); a cross-site POST
  (``Sec-Fetch-Site: cross-site``) is refused even with one. The login form, which has no
  session yet, uses a double-submit token (a cookie and a field that must match).
- The JSON API and /metrics: ``Authorization: Bearer <API key>``.

Routes say what they need with a route option, applied by :class:`AuthPlugin` (in the style of
bottle-sqlite's plugin): ``auth="page"`` (session; POST also CSRF), ``auth="login"`` (login-form
token on POST), ``auth="api"`` (API key), ``auth="sms"`` (API key, "sms" keys too: the SMS API,
:mod:`web.smsapi`), ``auth="public"``. Routes without the option (the ping API, /healthz) are
untouched.

API key scopes: "write" may do everything; "read" only GET, anywhere; "sms" only the SMS API's
routes (401 everywhere else). The key a request came with is ``environ["hbgw.api_key"]``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from typing import Any

import bottle

from gateway.accounts import API_KEY_SCOPES, SESSION_TTL, WebSession
from gateway.model import ApiKey
from gateway.service import Service

logger = logging.getLogger(__name__)

SESSION_COOKIE = "hbgw_session"
LOGIN_COOKIE = "hbgw_login"
CSRF_FIELD = "csrf"

# No inline scripts or styles anywhere: every script and stylesheet is a file under /static.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


# The same, as ASGI header pairs (the ping API and the server's own refusals answer without Bottle).
SECURITY_HEADER_PAIRS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def add_security_headers(response: bottle.BaseResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.set_header(name, value)


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(ch) < 32 for ch in target):
        return default
    return target


class Forbidden(Exception):
    """A request refused with 403 (no session, no or wrong CSRF token, cross-site)."""


class Auth:
    """Per-request authentication helpers for one app. Thread-safe: state lives in the request."""

    def __init__(
        self, service: Service, trusted_proxies: tuple[str, ...], client_addr: Callable[[], str | None]
    ) -> None:
        self.service = service
        self.client_addr = client_addr
        self._trusted = [ipaddress.ip_network(t, strict=False) for t in trusted_proxies]

    # ------------------------------------------------------------------ transport

    def is_tls(self) -> bool:
        """Whether the browser reached us over HTTPS (directly, or through a trusted proxy)."""
        env = bottle.request.environ
        if env.get("wsgi.url_scheme") == "https":
            return True
        proto = env.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
        return proto == "https" and self._peer_trusted()

    def _peer_trusted(self) -> bool:
        try:
            peer = ipaddress.ip_address(bottle.request.environ.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(peer in net for net in self._trusted)

    def _cookie(self, name: str, value: str, max_age: int, path: str = "/") -> None:
        bottle.response.set_cookie(
            name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=self.is_tls()
        )

    # ------------------------------------------------------------------ sessions

    def session(self) -> WebSession | None:
        """The request's live session (looked up once per request)."""
        env = bottle.request.environ
        if "hbgw.session" not in env:
            token = bottle.request.get_cookie(SESSION_COOKIE)
            env["hbgw.session"] = self.service.accounts.web_session(token) if token else None
        found: WebSession | None = env["hbgw.session"]
        return found

    def start_session(self, session: WebSession) -> None:
        assert session.token is not None
        self._cookie(SESSION_COOKIE, session.token, int(SESSION_TTL))
        bottle.response.delete_cookie(LOGIN_COOKIE, path="/login")
        bottle.request.environ["hbgw.session"] = session

    def end_session(self) -> None:
        session = self.session()
        if session is not None:
            self.service.accounts.logout(session)
        bottle.response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=self.is_tls())
        bottle.request.environ["hbgw.session"] = None

    # ------------------------------------------------------------------ CSRF

    def _cross_site(self) -> bool:
        site: str = bottle.request.environ.get("HTTP_SEC_FETCH_SITE", "")
        return site.lower() == "cross-site"

    def check_csrf(self, session: WebSession) -> None:
        """Raises Forbidden unless the POST carries this session's CSRF token."""
        sent = bottle.request.forms.get(CSRF_FIELD) or bottle.request.get_header("X-CSRF-Token") or ""
        if self._cross_site() or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise Forbidden("missing or wrong CSRF token")

    def login_token(self) -> str:
        """The login form's double-submit token (set as a cookie scoped to /login)."""
        token: str | None = bottle.request.get_cookie(LOGIN_COOKIE)
        if not token or len(token) > 100:
            token = secrets.token_urlsafe(24)
        self._cookie(LOGIN_COOKIE, token, 3600, path="/login")
        return token

    def check_login_token(self) -> None:
        cookie = bottle.request.get_cookie(LOGIN_COOKIE) or ""
        sent = bottle.request.forms.get(CSRF_FIELD) or ""
        if self._cross_site() or not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            raise Forbidden("missing or wrong login form token")

    # ------------------------------------------------------------------ API keys

    def api_key(self) -> ApiKey | None:
        """The request's Bearer key, of any scope (the caller decides what its scope allows)."""
        header = bottle.request.get_header("Authorization") or ""
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        return self.service.accounts.authenticate_api_key(secret.strip(), API_KEY_SCOPES)


class AuthPlugin:
    """Applies a route's ``auth`` option (see the module docstring) before its callback runs.

    ``forbidden()`` and ``unauthorized()`` build the refusals, so pages and the API answer in
    their own formats.
    """

    name = "hbgw-auth"
    api = 2

    def __init__(
        self,
        auth: Auth,
        *,
        forbidden: Callable[[str], Any],
        login_redirect: Callable[[], Any],
        unauthorized: Callable[[], Any],
    ) -> None:
        self.auth = auth
        self.forbidden = forbidden
        self.login_redirect = login_redirect
        self.unauthorized = unauthorized

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        need = route.config.get("auth")
        if need is None:
            return callback
        if need not in ("page", "login", "api", "sms", "public"):
            raise ValueError(f"route {route.rule}: unknown auth option {need!r}")
        auth = self.auth

        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            method = bottle.request.method
            if need in ("api", "sms"):
                key = auth.api_key()
                if key is None or not _key_may(key.scope, need, method):
                    return self.unauthorized()
                bottle.request.environ["hbgw.api_key"] = key
            elif need == "login":
                if method == "POST":
                    try:
                        auth.check_login_token()
                    except Forbidden as e:
                        return self.forbidden(str(e))
            elif need == "page":
                session = auth.session()
                if session is None:
                    if method in ("GET", "HEAD"):
                        return self.login_redirect()
                    return self.forbidden("log in first")
                if method not in ("GET", "HEAD"):
                    try:
                        auth.check_csrf(session)
                    except Forbidden as e:
                        logger.warning("refused %s %s: %s", method, bottle.request.path, e)
                        return self.forbidden(str(e))
            return callback(*args, **kwargs)

        return wrapper


def _key_may(scope: str, need: str, method: str) -> bool:
    """Whether a key of ``scope`` may use a route of ``auth=need`` with ``method``."""
    if scope == "read":
        return method in ("GET", "HEAD")
    if scope == "sms":
        return need == "sms"
    return scope == "write"
