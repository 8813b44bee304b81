"""The use cases. Every edge (HTTP, SMTP, SMS, web form, CLI) parses and authenticates its input,
then makes one call here. Nothing in this module knows about HTTP or SQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import logging
import re
import secrets
import socket
import time
import unicodedata
from collections.abc import Callable
from enum import Enum
from typing import Any

from gateway import schedule as sched
from gateway import status as st
from gateway.config import Config, parse_hostport
from gateway.model import Check, Flip, PingKind, PingMeta, Schedule, Status
from gateway.store import Conflict, NotFound, PingResult, Store

logger = logging.getLogger(__name__)

NAME_MAX = 200
# Names a ping may create on its own (auto_create): short, URL- and SMS-friendly.
AUTO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN_BYTES = 18  # 144 bits


class ValidationError(ValueError):
    """Input that a person must correct; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PingOutcome(Enum):
    OK = "ok"
    NOT_FOUND = "not found"
    LIMIT = "check limit reached"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def validate_name(name: str) -> str:
    """A check name as stored: trimmed, 1-200 characters, no control characters, no slash."""
    name = name.strip()
    if not name:
        raise ValidationError("name", "a name is required")
    if len(name) > NAME_MAX:
        raise ValidationError("name", f"a name has at most {NAME_MAX} characters")
    if "/" in name or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ValidationError("name", "a name cannot contain '/' or control characters")
    return name


def iso(ts: float | None) -> str | None:
    """POSIX seconds → ISO 8601 UTC with a Z, to the second."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Service:
    """Use cases over one store. Thread-safe (the store serializes writes)."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.base_url = _base_url(config)
        self.ping_key = config.security.ping_key or store.setting_or_create(
            "ping_key", lambda: secrets.token_urlsafe(16)
        )
        self._deadline_listeners: list[Callable[[float], None]] = []
        self._flip_listeners: list[Callable[[list[Flip]], None]] = []

    # ------------------------------------------------------------------ wiring

    def on_deadline(self, listener: Callable[[float], None]) -> None:
        """``listener(t)`` is told of every new deadline ``t``, from whichever thread set it."""
        self._deadline_listeners.append(listener)

    def on_flips(self, listener: Callable[[list[Flip]], None]) -> None:
        self._flip_listeners.append(listener)

    def _changed(self, check: Check, flips: list[Flip]) -> None:
        if check.next_deadline is not None:
            for f in self._deadline_listeners:
                f(check.next_deadline)
        if flips:
            for g in self._flip_listeners:
                g(flips)

    # ------------------------------------------------------------------ checks

    def make_schedule(self, period: float | None = None, grace: float | None = None,
                      cron: str | None = None, tz: str | None = None) -> Schedule:
        d = self.config.defaults
        s = Schedule(period=d.period if period is None else period,
                     grace=d.grace if grace is None else grace,
                     cron=cron or None, tz=tz or "UTC")
        try:
            return sched.validate(s)
        except sched.ScheduleError as e:
            field = "cron" if "cron" in str(e) else "tz" if "zone" in str(e) else \
                "grace" if str(e).startswith("grace") else "period"
            raise ValidationError(field, str(e)) from None

    def add_check(self, name: str, *, period: float | None = None, grace: float | None = None,
                  cron: str | None = None, tz: str | None = None) -> Check:
        """Create a check. Raises ValidationError (bad input) or Conflict (name taken, cap)."""
        name = validate_name(name)
        schedule = self.make_schedule(period, grace, cron, tz)
        check = self.store.add_check(name, new_token(), schedule, self.clock(),
                                     self.config.security.max_checks)
        logger.info("check %r created", check.name)
        return check

    def get_check(self, name: str) -> Check:
        check = self.store.get_check(name)
        if check is None:
            raise NotFound(name)
        return check

    def list_checks(self) -> list[Check]:
        return self.store.list_checks()

    def remove_check(self, name: str) -> Check:
        check = self.store.remove_check(name)
        logger.info("check %r removed", check.name)
        return check

    def _update(self, name: str, change: Callable[[Check], Check], event: str | None) -> Check:
        now = self.clock()
        check, flip = self.store.update_check(name, change, now, event)
        self._changed(check, [flip] if flip else [])
        return check

    def pause(self, name: str) -> Check:
        return self._update(name, st.apply_pause, "paused")

    def resume(self, name: str) -> Check:
        now = self.clock()
        return self._update(name, lambda c: st.apply_resume(c, now), "resumed")

    def set_sms_enabled(self, name: str, enabled: bool) -> Check:
        return self._update(name, lambda c: dataclasses.replace(c, sms_enabled=enabled),
                            "sms on" if enabled else "sms off")

    def set_email_enabled(self, name: str, enabled: bool) -> Check:
        return self._update(name, lambda c: dataclasses.replace(c, email_enabled=enabled),
                            "email on" if enabled else "email off")

    def set_schedule(self, name: str, *, period: float | None = None, grace: float | None = None,
                     cron: str | None = None, tz: str | None = None) -> Check:
        """Change when pings are expected; the new deadlines apply from now on."""
        schedule = self.make_schedule(period, grace, cron, tz)
        now = self.clock()
        return self._update(
            name, lambda c: st.refresh(dataclasses.replace(c, schedule=schedule), now), "schedule"
        )

    # ------------------------------------------------------------------ heartbeats

    def record_ping(self, token: str, kind: PingKind, exit_status: int | None = None,
                    meta: PingMeta | None = None) -> PingOutcome:
        """A heartbeat for the check with ``token``. Stored (committed) before this returns."""
        result = self.store.record_ping(token, kind, exit_status, meta or PingMeta(), self.clock())
        return self._pinged(result)

    def check_ping_key(self, key: str) -> bool:
        return hmac.compare_digest(key.encode(), self.ping_key.encode())

    def record_named_ping(self, key: str, name: str, kind: PingKind, exit_status: int | None = None,
                          meta: PingMeta | None = None) -> PingOutcome:
        """A heartbeat by site ping key and check name. A wrong key answers NOT_FOUND, exactly
        like an unknown name, so the reply never reveals which names exist."""
        if not self.check_ping_key(key):
            return PingOutcome.NOT_FOUND
        create = None
        sec = self.config.security
        if sec.auto_create and AUTO_NAME.fullmatch(name):
            create = (new_token(), self.make_schedule(), sec.max_checks)
        try:
            result = self.store.record_named_ping(name, kind, exit_status, meta or PingMeta(),
                                                  self.clock(), create)
        except Conflict:
            return PingOutcome.LIMIT
        if result is not None and result.created:
            logger.info("check %r created by its first ping", result.check.name)
        return self._pinged(result)

    def _pinged(self, result: PingResult | None) -> PingOutcome:
        if result is None:
            return PingOutcome.NOT_FOUND
        self._changed(result.check, [result.flip] if result.flip else [])
        return PingOutcome.OK

    # ------------------------------------------------------------------ watchdog

    def advance(self) -> list[Flip]:
        """Flip every check whose deadline has passed (blocking; the watchdog runs it)."""
        flips = self.store.advance(self.clock())
        if flips:
            for g in self._flip_listeners:
                g(flips)
        return flips

    def next_deadline(self) -> float | None:
        return self.store.min_deadline()

    def fresh_start(self, offline_since: float | None) -> list[Check]:
        """On start-up: checks whose deadline passed while the gateway was not running get a fresh
        period + grace from now instead of a false DOWN (see DESIGN §5)."""
        now = self.clock()
        reset = self.store.fresh_start(now, offline_since)
        if reset:
            self.store.add_event(None, now, "note",
                                 f"gateway was offline from {iso(offline_since)} to {iso(now)};"
                                 f" {len(reset)} check(s) given a fresh period")
            logger.info("gateway was offline; %d check(s) given a fresh period", len(reset))
        return reset

    # ------------------------------------------------------------------ views

    def status_of(self, check: Check, now: float | None = None) -> Status:
        return st.evaluate(check, self.clock() if now is None else now).status

    def ping_url(self, check: Check) -> str:
        return f"{self.base_url}/ping/{check.token}"

    def email_address(self, check: Check) -> str:
        return f"{check.token}@{self.config.smtp.domain}"

    def describe(self, check: Check, now: float | None = None) -> dict[str, Any]:
        """The stable JSON form of a check (CLI ``--json`` and the API)."""
        now = self.clock() if now is None else now
        ev = st.evaluate(check, now)
        return {
            "name": check.name,
            "status": ev.status.value,
            "last_ping": iso(check.last_ping),
            "period": check.schedule.period,
            "grace": check.schedule.grace,
            "cron": check.schedule.cron,
            "tz": check.schedule.tz,
            "sms_enabled": check.sms_enabled,
            "email_enabled": check.email_enabled,
            "ping_url": self.ping_url(check),
            "email": self.email_address(check),
            "late_at": iso(ev.late_at) if ev.late_at is not None else None,
            "down_at": iso(ev.down_at) if ev.down_at is not None else None,
            "last_exit_status": check.last_exit_status,
            "n_pings": check.n_pings,
            "created": iso(check.created),
        }


def _base_url(config: Config) -> str:
    if config.http.base_url:
        return config.http.base_url.rstrip("/")
    host, port = parse_hostport(config.http.listen)
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
