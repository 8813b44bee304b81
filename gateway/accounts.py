"""Who may change things: the admin password, web sessions, login throttling and API keys.

Secrets are stored only as hashes: the password with a memory-hard KDF (gateway.passwords), a
session cookie and an API key as SHA-256 (they are long random strings, so a fast hash is
enough and a lookup by hash stays an index seek).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable

from gateway.config import Config
from gateway.errors import ValidationError
from gateway.model import ApiKey
from gateway.passwords import generate_password, hash_password, verify_password
from gateway.store import NotFound, Store

logger = logging.getLogger(__name__)

SESSION_TTL = 7 * 86400.0
LOGIN_WINDOW = 15 * 60.0
LOGIN_MAX_FAILURES = 5  # per address within LOGIN_WINDOW
PASSWORD_MIN = 10
API_KEY_PREFIX = "hbgw_"
API_KEY_SCOPES = ("write", "read", "sms")  # "sms": only the SMS API (web.smsapi)
# The scopes a key may have to be accepted where nothing else is said (everywhere but the SMS API).
GENERAL_SCOPES = ("write", "read")
_PASSWORD_KEY = "admin_password"
_DEMO_PASSWORD_KEY = "demo_password"


class LoginRefused(Exception):
    """A login that did not succeed; ``retry_after`` (seconds) when the address is throttled."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class WebSession:
    key: str  # SHA-256 of the cookie value: what the sessions table stores
    csrf: str
    expires: float
    token: str | None = dataclasses.field(default=None, repr=False)  # the cookie value, at login only


class Accounts:
    """Logins, sessions, the admin password and API keys over one store. Thread-safe."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    # ------------------------------------------------------------------ password and sessions

    def login(self, password: str, remote_addr: str | None) -> WebSession:
        """A new session if ``password`` is the admin password (``token`` is its cookie value).

        Raises LoginRefused: a wrong password, no password set, or too many failures from this
        address within LOGIN_WINDOW (then ``retry_after`` is set and the password is not even
        checked, so throttled guessing costs us no scrypt time). The attempt is counted before
        the password is checked, in the same transaction as the count, so concurrent guesses
        get no more than LOGIN_MAX_FAILURES checks between them; a success forgets them.
        """
        now = self.clock()
        addr = remote_addr or "unknown"
        allowed, oldest = self.store.reserve_login_attempt(addr, now, now - LOGIN_WINDOW, LOGIN_MAX_FAILURES)
        if not allowed:
            wait = max(1.0, (oldest or now) + LOGIN_WINDOW - now)
            raise LoginRefused("too many failed attempts", retry_after=wait)
        stored = self.store.get_setting(_PASSWORD_KEY)
        if stored is None or not verify_password(password, stored):
            logger.warning("failed web login from %s", addr)
            raise LoginRefused("no admin password is set" if stored is None else "wrong password")
        self.store.clear_login_failures(addr)
        token = secrets.token_urlsafe(32)
        session = WebSession(key=_digest(token), csrf=secrets.token_urlsafe(32), expires=now + SESSION_TTL, token=token)
        self.store.add_session(session.key, session.csrf, now, session.expires, remote_addr)
        logger.info("web login from %s", addr)
        return session

    def web_session(self, token: str | None) -> WebSession | None:
        """The live session whose cookie value is ``token``; extends it when in use (at most
        once an hour, to keep reads read-only)."""
        if not token or len(token) > 100:
            return None
        key = _digest(token)
        row = self.store.get_session(key)
        if row is None:
            return None
        csrf, _, expires = row
        now = self.clock()
        if expires <= now:
            return None
        if expires < now + SESSION_TTL - 3600:
            expires = now + SESSION_TTL
            self.store.extend_session(key, expires)
        return WebSession(key=key, csrf=csrf, expires=expires)

    def logout(self, session: WebSession) -> None:
        self.store.delete_session(session.key)

    def change_password(self, session: WebSession, current: str, new: str, again: str) -> None:
        """Set a new admin password from the settings page; every other session is logged out.

        Raises ValidationError on "current" (wrong), "new" (too short), "again" (differs).
        """
        stored = self.store.get_setting(_PASSWORD_KEY)
        if stored is None or not verify_password(current, stored):
            raise ValidationError("current", "this is not the current password")
        _check_password(new)
        if new != again:
            raise ValidationError("again", "the two new passwords differ")
        self._set_password(new, keep=session.key)

    def set_password(self, new: str) -> int:
        """Set the admin password (``hbgw passwd``, ``hbgw init``: whoever can run those owns
        the box); every session is logged out. Returns how many were. Raises ValidationError."""
        return self._set_password(new, keep=None)

    def _set_password(self, new: str, *, keep: str | None) -> int:
        _check_password(new)
        dropped = self.store.set_password(
            _PASSWORD_KEY, hash_password(new), forget=(_DEMO_PASSWORD_KEY,), keep_session=keep
        )
        logger.info("admin password changed; %d other session(s) logged out", dropped)
        return dropped

    def ensure_demo_password(self) -> str | None:
        """Demo mode only: the demo's admin password, made on first use and shown on the login
        page (the demo listens on loopback). None outside demo mode, or when the owner has set
        a password of their own."""
        if not self.config.demo:
            return None
        stored = self.store.get_setting(_PASSWORD_KEY)
        shown = self.store.get_setting(_DEMO_PASSWORD_KEY)
        if stored is not None:
            return shown if shown and verify_password(shown, stored) else None
        password = generate_password()
        self.store.set_settings({_PASSWORD_KEY: hash_password(password), _DEMO_PASSWORD_KEY: password})
        return password

    # ------------------------------------------------------------------ API keys

    def create_api_key(self, label: str, scope: str = "write") -> tuple[ApiKey, str]:
        """A new API key: its stored description and the key itself, which is not kept (only its
        SHA-256) and so can be shown only now. ``scope``: "write" (everything), "read" (reading
        checks, flips and metrics) or "sms" (only the SMS API: sending through the gateway and
        asking what became of a message). Raises ValidationError("label" or "scope")."""
        label = label.strip()
        if not label or len(label) > 100:
            raise ValidationError("label", "give the key a name of 1 to 100 characters")
        if scope not in API_KEY_SCOPES:
            raise ValidationError("scope", f"one of {', '.join(API_KEY_SCOPES)}")
        secret = API_KEY_PREFIX + secrets.token_urlsafe(30)
        prefix = secret[: len(API_KEY_PREFIX) + 6]
        now = self.clock()
        key_id = self.store.add_api_key(label, prefix, _digest(secret), now, scope)
        logger.info("API key %d (%s, %s) created", key_id, prefix, scope)
        return ApiKey(key_id, label, prefix, now, None, None, scope), secret

    def list_api_keys(self) -> list[ApiKey]:
        return self.store.list_api_keys()

    def revoke_api_key(self, key_id: int) -> None:
        """Raises NotFound when there is no live key with that id."""
        if not self.store.revoke_api_key(key_id, self.clock()):
            raise NotFound(str(key_id))
        logger.info("API key %d revoked", key_id)

    def authenticate_api_key(self, secret: str, scopes: tuple[str, ...] = GENERAL_SCOPES) -> ApiKey | None:
        """The live key ``secret`` is, if its scope is one of ``scopes``, or None. Records its
        last use (at most once a minute). The default leaves out "sms" keys, so every caller
        that does not ask for them (Healthchecks' API, /metrics by URL) refuses them."""
        if not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
            return None
        key = self.store.find_api_key(_digest(secret))
        if key is not None and key.scope not in scopes:
            return None
        if key is not None:
            now = self.clock()
            if key.last_used is None or now - key.last_used > 60:
                self.store.touch_api_key(key.id, now)
        return key


def _check_password(new: str) -> None:
    if len(new) < PASSWORD_MIN:
        raise ValidationError("new", f"use at least {PASSWORD_MIN} characters")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
