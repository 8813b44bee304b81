"""The use cases. Every edge (HTTP, SMTP, SMS, web form, CLI) parses and authenticates its input,
then makes one call here. Nothing in this module knows about HTTP or SQL."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import time
import unicodedata
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from gateway.config import Config, parse_hostport
from gateway.model import Check, Flip, Ping, PingKind, PingMeta, Schedule, Status
from gateway.passwords import generate_password, hash_password, verify_password
from gateway.rules import keywords, lifecycle
from gateway.rules import schedule as sched
from gateway.rules import settings as rules
from gateway.rules import status as st
from gateway.rules.durations import format_duration, humanize, parse_duration
from gateway.rules.settings import E164, Settings
from gateway.store import Conflict, DecideAll, NotFound, PingResult, Store

logger = logging.getLogger(__name__)

NAME_MAX = 200
# Names a ping may create on its own (auto_create): short, URL- and SMS-friendly.
AUTO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN_BYTES = 18  # 144 bits
MODEM_LOG_EVERY = 60.0  # the daemon records modem health this often (gateway.runtime.daemon)
STUCK_AFTER = 300.0  # a message still waiting after this long means alerts are not going out


class ValidationError(ValueError):
    """Input that a person must correct; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PingOutcome(Enum):
    OK = "ok"
    NOT_FOUND = "not found"
    LIMIT = "check limit reached"


def url_secret(nbytes: int) -> str:
    """A random URL-safe secret that never starts with ``-``.

    Tokens and ping keys become email addresses (``<token>@box``, ``<key>+<name>@box``) that
    people pass to msmtp, mail and sendmail on a command line, where a leading ``-`` reads as an
    option. Redrawing the 1 in 64 that would start with one costs under 0.03 bits.
    """
    while True:
        secret = secrets.token_urlsafe(nbytes)
        if not secret.startswith("-"):
            return secret


def new_token() -> str:
    return url_secret(TOKEN_BYTES)


def validate_name(name: str) -> str:
    """A check name as stored: trimmed, 1-200 characters, no control characters, no slash."""
    name = name.strip()
    if not name:
        raise ValidationError("name", "a name is required")
    if len(name) > NAME_MAX:
        raise ValidationError("name", f"a name has at most {NAME_MAX} characters")
    if "/" in name or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ValidationError("name", "a name cannot contain '/' or control characters")
    if set(name) == {"."}:  # "." and ".." vanish from URLs
        raise ValidationError("name", "a name cannot be only dots")
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
        self.ping_key = config.security.ping_key or store.setting_or_create("ping_key", lambda: url_secret(16))
        self._deadline_listeners: list[Callable[[float], None]] = []
        self._outbox_listeners: list[Callable[[], None]] = []
        self._settings = self._load_settings()  # the file's, with what the owner saved on the page
        # Set by the daemon: a callable giving the modem's current status for pages and probes.
        self.modem_status_source: Callable[[], dict[str, Any] | None] | None = None

    # ------------------------------------------------------------------ wiring

    def on_deadline(self, listener: Callable[[float], None]) -> None:
        """``listener(t)`` is told of every new deadline ``t``, from whichever thread set it."""
        self._deadline_listeners.append(listener)

    def on_outbox(self, listener: Callable[[], None]) -> None:
        """``listener()`` is told when new outbox rows may be waiting (from any thread)."""
        self._outbox_listeners.append(listener)

    def _changed(self, check: Check, flips: list[Flip]) -> None:
        for t in (check.next_deadline, check.alert_at):
            if t is not None:
                for f in self._deadline_listeners:
                    f(t)
        if flips:
            self._outbox_changed()

    def _outbox_changed(self) -> None:
        for h in self._outbox_listeners:
            h()

    # ------------------------------------------------------------------ checks

    def make_schedule(
        self, period: float | None = None, grace: float | None = None, cron: str | None = None, tz: str | None = None
    ) -> Schedule:
        d = self.config.defaults
        s = Schedule(
            period=d.period if period is None else period,
            grace=d.grace if grace is None else grace,
            cron=cron or None,
            tz=tz or "UTC",
        )
        try:
            return sched.validate(s)
        except sched.ScheduleError as e:
            field = (
                "cron"
                if "cron" in str(e)
                else "tz"
                if "zone" in str(e)
                else "grace"
                if str(e).startswith("grace")
                else "period"
            )
            raise ValidationError(field, str(e)) from None

    def add_check(
        self,
        name: str,
        *,
        period: float | None = None,
        grace: float | None = None,
        cron: str | None = None,
        tz: str | None = None,
    ) -> Check:
        """Create a check. Raises ValidationError (bad input) or Conflict (name taken, cap)."""
        name = validate_name(name)
        schedule = self.make_schedule(period, grace, cron, tz)
        check = self.store.add_check(name, new_token(), schedule, self.clock(), self.config.security.max_checks)
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
        """Apply the owner's ``change`` (a pure function of the check as stored) atomically, with
        an event row saying what they did and whatever it does to alerts."""
        now, s = self.clock(), self.settings
        d = self.store.change_check(name, lambda c: lifecycle.change(c, change(c), now, event, s), now)
        assert d.check is not None
        self._changed(d.check, [d.flip] if d.flip else [])
        return d.check

    def pause(self, name: str) -> Check:
        return self._update(name, st.apply_pause, "paused")

    def resume(self, name: str) -> Check:
        now = self.clock()
        return self._update(name, lambda c: st.apply_resume(c, now), "resumed")

    def replace_token(self, name: str) -> Check:
        """Give the check a new ping token: its old URL and token address answer 404 from now
        on (for a URL or address that leaked, e.g. in a shared crontab). History is kept."""
        return self._update(name, lambda c: dataclasses.replace(c, token=new_token()), "ping URL replaced")

    def set_sms_enabled(self, name: str, enabled: bool) -> Check:
        return self._update(
            name, lambda c: dataclasses.replace(c, sms_enabled=enabled), "sms on" if enabled else "sms off"
        )

    def set_email_enabled(self, name: str, enabled: bool) -> Check:
        return self._update(
            name, lambda c: dataclasses.replace(c, email_enabled=enabled), "email on" if enabled else "email off"
        )

    def set_schedule(
        self,
        name: str,
        *,
        period: float | None = None,
        grace: float | None = None,
        cron: str | None = None,
        tz: str | None = None,
    ) -> Check:
        """Change when pings are expected; the new deadlines apply from now on."""
        schedule = self.make_schedule(period, grace, cron, tz)
        now = self.clock()
        return self._update(name, lambda c: st.refresh(dataclasses.replace(c, schedule=schedule), now), "schedule")

    # ------------------------------------------------------------------ heartbeats

    def record_ping(
        self, token: str, kind: PingKind, exit_status: int | None = None, meta: PingMeta | None = None
    ) -> PingOutcome:
        """A heartbeat for the check with ``token``. Stored (committed) before this returns."""
        return self.submit_ping(token, None, kind, exit_status, meta).result()

    def check_ping_key(self, key: str) -> bool:
        return hmac.compare_digest(key.encode(), self.ping_key.encode())

    def record_named_ping(
        self, key: str, name: str, kind: PingKind, exit_status: int | None = None, meta: PingMeta | None = None
    ) -> PingOutcome:
        """A heartbeat by site ping key and check name. A wrong key answers NOT_FOUND, exactly
        like an unknown name, so the reply never reveals which names exist."""
        return self.submit_ping(key, name, kind, exit_status, meta).result()

    def submit_ping(
        self, key: str, name: str | None, kind: PingKind, exit_status: int | None = None, meta: PingMeta | None = None
    ) -> concurrent.futures.Future[PingOutcome]:
        """Queue a heartbeat without waiting: by token (``name`` None) or by site ping key and
        check name. The future resolves once the ping is committed (or raises StoreError); an
        event loop awaits it with ``asyncio.wrap_future`` instead of parking a thread on it."""
        meta = meta or PingMeta()
        now, settings = self.clock(), self.settings

        def decide(check: Check, body: str | None) -> lifecycle.Decision:
            return lifecycle.ping(check, kind, exit_status, now, settings, body)

        if name is None:
            stored = self.store.submit_ping(key, None, decide, meta, kind, exit_status, now)
        elif not self.check_ping_key(key):
            done: concurrent.futures.Future[PingOutcome] = concurrent.futures.Future()
            done.set_result(PingOutcome.NOT_FOUND)
            return done
        else:
            sec = self.config.security
            create = None
            if sec.auto_create and AUTO_NAME.fullmatch(name):
                create = (new_token(), self.make_schedule(), sec.max_checks)
            stored = self.store.submit_ping(None, name, decide, meta, kind, exit_status, now, create)
        outcome: concurrent.futures.Future[PingOutcome] = concurrent.futures.Future()

        def finish(f: concurrent.futures.Future[PingResult | None]) -> None:
            # Runs on the store's writer thread right after COMMIT: cheap, and only thread-safe calls.
            try:
                try:
                    result = f.result()
                except Conflict:
                    outcome.set_result(PingOutcome.LIMIT)
                    return
                if result is not None and result.created:
                    logger.info("check %r created by its first ping", result.check.name)
                outcome.set_result(self._pinged(result))
            except concurrent.futures.InvalidStateError:
                pass  # the waiter was cancelled (shutdown); the ping is stored all the same
            except BaseException as e:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    outcome.set_exception(e)

        stored.add_done_callback(finish)
        return outcome

    def _pinged(self, result: PingResult | None) -> PingOutcome:
        if result is None:
            return PingOutcome.NOT_FOUND
        self._changed(result.check, [result.flip] if result.flip else [])
        return PingOutcome.OK

    # ------------------------------------------------------------------ watchdog

    def advance(self, now: float | None = None) -> list[Flip]:
        """Flip every check whose deadline has passed by ``now`` (default: the clock's now) and
        queue the reminders that are due (sync callers: the CLI, tests)."""
        now = self.clock() if now is None else now
        s = self.settings
        return self._advanced(self.store.advance(now, lambda c: lifecycle.advance(c, now, s)))

    async def advance_async(self, now: float) -> list[Flip]:
        """:meth:`advance` for the watchdog: awaits the commit, parks no thread."""
        s = self.settings
        return self._advanced(await self.store.aadvance(now, lambda c: lifecycle.advance(c, now, s)))

    def _advanced(self, decisions: list[lifecycle.Decision]) -> list[Flip]:
        for d in decisions:
            if d.error is not None and d.check is not None:
                logger.error("cannot evaluate check id=%d (%s); retrying in an hour", d.check.id, d.error)
        self._outbox_changed()  # flips may have queued alerts, and reminders come without flips
        return [d.flip for d in decisions if d.flip is not None]

    def next_deadline(self) -> float | None:
        return self.store.min_deadline()

    def fresh_start(self, offline_since: float | None) -> list[Check]:
        """On start-up: checks whose deadline passed while the gateway was not running get a fresh
        period + grace from now instead of a false DOWN (see DESIGN §5)."""
        now, s = self.clock(), self.settings
        decisions = self.store.fresh_start(now, lambda due: lifecycle.fresh_start(due, now, offline_since, s))
        reset = [d.check for d in decisions if d.check is not None]
        if reset:
            logger.info("gateway was offline; %d check(s) given a fresh period", len(reset))
            self._outbox_changed()
        return reset

    def clock_stepped(self, expected: float, now: float) -> list[Check]:
        """The wall clock jumped from ``expected`` to ``now`` (NTP setting a clock that booted
        wrong, a person running ``date``). Forward: checks whose deadline fell in the skipped
        time get a fresh period, as after an outage of the gateway (with a note to the owner).
        Back: checks stamped in the future get a fresh period, so no deadline ends up late."""
        write = self.store.fresh_start if now >= expected else self.store.clock_back
        return self._stepped(expected, now, write(now, self._step_decision(expected, now)))

    async def clock_stepped_async(self, expected: float, now: float) -> list[Check]:
        """:meth:`clock_stepped` for the watchdog: awaits the commit, parks no thread."""
        write = self.store.afresh_start if now >= expected else self.store.aclock_back
        return self._stepped(expected, now, await write(now, self._step_decision(expected, now)))

    def _step_decision(self, expected: float, now: float) -> DecideAll:
        s = self.settings
        if now >= expected:
            return lambda due: lifecycle.fresh_start(due, now, expected, s, True)
        return lambda stamped: lifecycle.clock_back(stamped, now, expected, s)

    def _stepped(self, expected: float, now: float, decisions: list[lifecycle.Decision]) -> list[Check]:
        checks = [d.check for d in decisions if d.check is not None]
        reset = checks if now >= expected else [c for c in checks if c.anchor == now]
        logger.warning("the system clock jumped %+.1f s; %d check(s) given a fresh period", now - expected, len(reset))
        self._outbox_changed()
        return reset

    # ------------------------------------------------------------------ inbound SMS

    async def record_inbound_sms(self, sender: str, text: str) -> tuple[int, bool]:
        """Store an SMS that reached the SIM (before anything else is done with it); returns its
        inbox id and whether ``sender`` may command the gateway (the allow-list in force)."""
        allowed = sender in self.settings.sms_allow
        return await self.store.aadd_inbox(sender, text, self.clock(), allowed), allowed

    async def mark_inbox_handled(self, inbox_id: int, reply: str | None) -> None:
        await self.store.amark_inbox_handled(inbox_id, reply)

    # ------------------------------------------------------------------ owner actions (web, SMS, CLI)

    def ack(self, name: str) -> Check:
        """Acknowledge a check's outage: no more reminders until it recovers."""
        return self._update(
            name, lambda c: dataclasses.replace(c, acked=True) if c.status is Status.DOWN else c, "acked"
        )

    def last_alerted_check(self) -> Check | None:
        """The check of the most recent DOWN/FAIL/reminder alert that is still down."""
        for name in self.store.recent_alerted_names(20):
            check = self.store.get_check(name)
            if check is not None and check.status is Status.DOWN and not check.acked:
                return check
        return None

    def mute(self, name: str, seconds: float) -> Check:
        until = self.clock() + seconds
        return self._update(name, lambda c: dataclasses.replace(c, muted_until=until), "muted")

    def unmute(self, name: str) -> Check:
        return self._update(name, lambda c: dataclasses.replace(c, muted_until=None), "unmuted")

    def record_command(self, check_name: str | None, detail: str) -> None:
        """An event row for an owner's command (who and what; never the PIN or the raw text)."""
        check = self.store.get_check(check_name) if check_name else None
        self.store.add_event(check.id if check else None, self.clock(), "command", detail)

    def send_test_sms(self, number: str, text: str) -> int:
        """Queue a test SMS to ``number`` (E.164). Returns the outbox id."""
        if not E164.fullmatch(number):
            raise ValidationError("number", "use the international format, e.g. +15551234567")
        text = text.strip() or "hbgw test message"
        if len(text) > 1000:
            raise ValidationError("text", "at most 1000 characters")
        oid = self.store.queue_message("test", "sms", number, text, self.clock())
        self._outbox_changed()
        return oid

    async def notify_owner(self, text: str) -> None:
        """Queue a note about the gateway itself (the modem failing, working again) to every
        ``email_to`` address; returns once it is committed."""
        now = self.clock()
        for addr in self.settings.email_to:
            await self.store.awrite_message("modem", "email", addr, text, now)
        self._outbox_changed()

    async def record_modem_health(
        self,
        *,
        connected: bool,
        signal_dbm: int | None,
        registration: str | None,
        operator: str | None,
        error: str | None,
    ) -> None:
        """Log the modem's health now (the modem page's 24 h history, ``hbgw status``)."""
        await self.store.alog_modem(self.clock(), connected, signal_dbm, registration, operator, error)

    def last_alive(self) -> float | None:
        """When the daemon last said it was running (None: never)."""
        raw = self.store.get_setting(LAST_ALIVE_KEY)
        return float(raw) if raw else None

    async def note_alive(self) -> None:
        """Record that the daemon is running now (a restart measures its downtime from this)."""
        await self.store.aset_setting(LAST_ALIVE_KEY, repr(self.clock()))

    def note_alive_now(self) -> None:
        """:meth:`note_alive` for the daemon's start and stop, outside a running task."""
        self.store.set_setting(LAST_ALIVE_KEY, repr(self.clock()))

    async def queue_daily_summary(self, day: str) -> int:
        """Queue the daily "all is well" SMS to every owner number, once per local ``day`` (ISO
        date) even across restarts: the day mark and the messages commit together. Returns how
        many messages were queued (0: already sent for that day, or nobody to send to)."""
        from gateway.runtime.summary import modem_word, summary_text

        now = self.clock()
        statuses = {c.name: self.status_of(c, now) for c in self.list_checks()}
        text = summary_text(statuses, modem_word(self.modem_status()))
        n = await self.store.aqueue_once(SUMMARY_DAY_KEY, day, "summary", "sms", self.settings.sms_to, text, now)
        if n:
            self._outbox_changed()
            logger.info("daily summary queued for %d recipient(s)", n)
        return n

    async def prune(self) -> dict[str, int]:
        """Forget old history (events, finished messages, received SMS); rows removed per table."""
        return await self.store.aprune(self.clock())

    def notify_owner_by_email(self, text: str) -> None:
        """Queue a note about the gateway itself to every ``email_to`` address."""
        for addr in self.settings.email_to:
            self.store.queue_message("modem", "email", addr, text, self.clock())
        self._outbox_changed()

    def send_reply(self, number: str, text: str) -> int:
        """Queue an SMS reply to an owner's command (no coalescing delay)."""
        oid = self.store.queue_message("reply", "sms", number, text, self.clock())
        self._outbox_changed()
        return oid

    def list_outbox(self, limit: int = 100) -> list[dict[str, Any]]:
        return [_outbox_json(r) for r in self.store.list_outbox(limit)]

    def list_inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        return [
            {
                "id": r["id"],
                "received": iso(r["received"]),
                "from": r["sender"],
                "text": r["text"],
                "allowed": bool(r["allowed"]),
                "handled": bool(r["handled"]),
                "reply": r["reply"],
            }
            for r in self.store.list_inbox(limit)
        ]

    def modem_status(self) -> dict[str, Any] | None:
        src = self.modem_status_source
        return src() if src is not None else None

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
            "filters": json.loads(check.filters) if check.filters else None,
        }

    # ---- email heartbeats ----

    def find_check_by_token(self, token: str) -> Check | None:
        """The check with ping token ``token``, or None (an unknown token is ordinary input)."""
        return self.store.get_check_by_token(token)

    def accepts_named_ping(self, key: str, name: str) -> tuple[bool, Check | None]:
        """Whether a heartbeat for (``key``, ``name``) would be recorded, checked before
        recording it (an SMTP listener refuses the recipient at RCPT).

        Returns (accepted, check): ``check`` is the existing check, or None when the first ping
        will create it (``auto_create``). A wrong key is (False, None) whatever the name, and the
        names are not looked up then, so the answer never reveals which names exist. The same
        rules as :meth:`record_named_ping`, which still decides (the check cap is only known there).
        """
        if not self.check_ping_key(key):
            return False, None
        check = self.store.get_check(name)
        if check is not None:
            return True, check
        return bool(self.config.security.auto_create and AUTO_NAME.fullmatch(name)), None

    def set_filters(self, name: str, filters: Mapping[str, Any] | None) -> Check:
        """Set the keyword filters of the check ``name`` (shape and meaning: :mod:`gateway.rules.keywords`);
        None or an empty mapping removes them (every email is then a success).

        Raises ValidationError (field ``filters``) for invalid filters, NotFound for no such check.
        """
        if filters:
            try:
                stored = keywords.dumps(keywords.parse_filters(filters))
            except keywords.FilterError as e:
                raise ValidationError("filters", str(e)) from None
        else:
            stored = None
        return self._update(name, lambda c: dataclasses.replace(c, filters=stored), "filters")

    # ---- web admin (sessions, API keys, settings, listings) ----

    def login(self, password: str, remote_addr: str | None) -> WebSession:
        """A new session if ``password`` is the admin password (``token`` is its cookie value).

        Raises LoginRefused: a wrong password, no password set, or too many failures from this
        address within LOGIN_WINDOW (then ``retry_after`` is set and the password is not even
        checked, so throttled guessing costs us no scrypt time).
        """
        now = self.clock()
        addr = remote_addr or "unknown"
        failures, oldest = self.store.login_failures(addr, now - LOGIN_WINDOW)
        if failures >= LOGIN_MAX_FAILURES:
            wait = max(1.0, (oldest or now) + LOGIN_WINDOW - now)
            raise LoginRefused("too many failed attempts", retry_after=wait)
        stored = self.store.get_setting("admin_password")
        if stored is None or not verify_password(password, stored):
            self.store.add_login_failure(addr, now, now - LOGIN_WINDOW)
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
        """Set a new admin password; every other session is logged out.

        Raises ValidationError on "current" (wrong), "new" (too short), "again" (differs).
        """
        stored = self.store.get_setting("admin_password")
        if stored is None or not verify_password(current, stored):
            raise ValidationError("current", "this is not the current password")
        if len(new) < PASSWORD_MIN:
            raise ValidationError("new", f"use at least {PASSWORD_MIN} characters")
        if new != again:
            raise ValidationError("again", "the two new passwords differ")
        self.store.set_settings({"admin_password": hash_password(new), "demo_password": ""})
        dropped = self.store.delete_sessions(keep=session.key)
        logger.info("admin password changed; %d other session(s) logged out", dropped)

    def ensure_demo_password(self) -> str | None:
        """Demo mode only: the demo's admin password, made on first use and shown on the login
        page (the demo listens on loopback). None outside demo mode, or when the owner has set
        a password of their own."""
        if not self.config.demo:
            return None
        stored = self.store.get_setting("admin_password")
        shown = self.store.get_setting("demo_password")
        if stored is not None:
            return shown if shown and verify_password(shown, stored) else None
        password = generate_password()
        self.store.set_settings({"admin_password": hash_password(password), "demo_password": password})
        return password

    def create_api_key(self, label: str) -> tuple[dict[str, Any], str]:
        """A new API key: its stored description and the key itself, which is not kept (only its
        SHA-256) and so can be shown only now. Raises ValidationError("label")."""
        label = label.strip()
        if not label or len(label) > 100:
            raise ValidationError("label", "give the key a name of 1 to 100 characters")
        secret = API_KEY_PREFIX + secrets.token_urlsafe(30)
        prefix = secret[: len(API_KEY_PREFIX) + 6]
        key_id = self.store.add_api_key(label, prefix, _digest(secret), self.clock())
        logger.info("API key %d (%s) created", key_id, prefix)
        return {"id": key_id, "label": label, "prefix": prefix}, secret

    def list_api_keys(self) -> list[dict[str, Any]]:
        return self.store.list_api_keys()

    def revoke_api_key(self, key_id: int) -> None:
        """Raises NotFound when there is no live key with that id."""
        if not self.store.revoke_api_key(key_id, self.clock()):
            raise NotFound(str(key_id))
        logger.info("API key %d revoked", key_id)

    def authenticate_api_key(self, secret: str) -> dict[str, Any] | None:
        """The live key ``secret`` is, or None. Records its last use (at most once a minute)."""
        if not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
            return None
        key = self.store.find_api_key(_digest(secret))
        if key is not None:
            now = self.clock()
            if key["last_used"] is None or now - key["last_used"] > 60:
                self.store.touch_api_key(key["id"], now)
        return key

    @property
    def settings(self) -> Settings:
        """The alert settings in force: the config file's, with the fields saved on the page."""
        return self._settings

    def owner_settings(self) -> Settings:
        """The alert settings in force (kept in memory; the settings page and the API change
        them through this service, which keeps it current)."""
        return self._settings

    def settings_view(self) -> SettingsView:
        """What the settings page shows: the settings in force, the config file's, and which
        fields the page has set (those win over the file until reset)."""
        return SettingsView(self._settings, self.config.alerts, frozenset(self._saved_overrides()))

    def _saved_overrides(self) -> dict[str, Any]:
        raw = self.store.get_setting(OWNER_SETTINGS_KEY)
        if not raw:
            return {}
        try:
            saved = json.loads(raw)
            rules.apply(self.config.alerts, saved)  # validates
        except (ValueError, TypeError, AttributeError):
            logger.error("saved alert settings are unreadable; using the config file's")
            return {}
        if not isinstance(saved, dict):
            return {}
        return {k: v for k, v in saved.items() if k in rules.EDITABLE}

    def _load_settings(self) -> Settings:
        return rules.apply(self.config.alerts, self._saved_overrides())

    def load_owner_settings(self) -> Settings:
        """Read the saved settings again and put them in force; returns them."""
        self._settings = self._load_settings()
        return self._settings

    def update_owner_settings(self, **raw: Any) -> Settings:
        """Validate, save and put in force the editable alert settings (the settings page, the
        API): ``raw`` holds form strings or JSON values by field name (see
        :data:`gateway.rules.settings.EDITABLE`); fields left out keep their value. Only the
        fields that then differ from the config file are stored, so the file still governs the
        rest. Raises ValidationError naming the first bad field."""
        try:
            fields = rules.parse_edit(raw)
        except rules.SettingsError as e:
            raise ValidationError(e.field, str(e)) from None
        wanted = dataclasses.replace(self._settings, **fields)
        self.store.set_setting(
            OWNER_SETTINGS_KEY, json.dumps(rules.to_json(rules.overrides(self.config.alerts, wanted)))
        )
        self.store.add_event(None, self.clock(), "note", "alert settings changed on the web page")
        logger.info("alert settings changed")
        return self.load_owner_settings()

    def use_file_settings(self) -> Settings:
        """Forget what the settings page saved: the config file governs every field again."""
        self.store.set_setting(OWNER_SETTINGS_KEY, "")
        self.store.add_event(None, self.clock(), "note", "alert settings reset to the config file's")
        logger.info("alert settings reset to the config file's")
        return self.load_owner_settings()

    def edit_check(
        self,
        name: str,
        *,
        period: float | None,
        grace: float | None,
        cron: str | None,
        tz: str | None,
        repeat: float | None,
        sms_enabled: bool,
        email_enabled: bool,
        filters: Mapping[str, Any],
    ) -> Check:
        """Change a check's schedule, reminder interval, channels and email keyword filters in
        one transaction. ``repeat`` None = the global interval; ``filters`` as in
        :mod:`gateway.rules.keywords` (no keywords = none stored). Raises ValidationError, NotFound."""
        schedule = self.make_schedule(period, grace, cron, tz)
        if repeat is not None and not 60 <= repeat <= sched.MAX_PERIOD:
            raise ValidationError("repeat", "between 1m and 365d, or empty for the default")
        try:
            parsed = keywords.parse_filters(filters)
        except keywords.FilterError as e:
            raise ValidationError("filters", str(e)) from None
        stored_filters = keywords.dumps(parsed) if (parsed.success or parsed.fail or parsed.start) else None
        now = self.clock()

        def change(c: Check) -> Check:
            return st.refresh(
                dataclasses.replace(
                    c,
                    schedule=schedule,
                    repeat=repeat,
                    sms_enabled=sms_enabled,
                    email_enabled=email_enabled,
                    filters=stored_filters,
                ),
                now,
            )

        return self._update(name, change, "edited")

    def overview(self) -> Overview:
        """Every check for the status page, problems first (down, late, up, new, paused; then by
        name), with a ping histogram of the last 24 clock hours (oldest first, this hour last)."""
        now = self.clock()
        hour = now // SPARK_SLOT * SPARK_SLOT  # slots are clock hours; the last one is this hour
        past = self._past_hours(hour)
        current = self.store.ping_histogram(hour, SPARK_SLOT)
        rows = []
        for check in self.store.list_checks():
            ev = st.evaluate(check, now)
            done = past.get(check.id, {})
            # (a deleted check's id can be reused: nothing from before this one was created)
            born = (check.created - (hour - (SPARK_SLOTS - 1) * SPARK_SLOT)) // SPARK_SLOT
            spark = tuple(done.get(i, (0, 0)) if i >= born else (0, 0) for i in range(SPARK_SLOTS - 1))
            spark += (current.get(check.id, {}).get(0, (0, 0)),)
            rows.append(CheckRow(check, ev.status, _down_since(check, ev), spark))
        rows.sort(key=lambda r: (STATUS_ORDER[r.status], r.check.name.casefold()))
        counts = {s: 0 for s in STATUS_ORDER}
        for r in rows:
            counts[r.status] += 1
        return Overview(now=now, rows=rows, counts=counts, modem=self._modem_summary(), troubles=self.alert_troubles())

    def _past_hours(self, hour: float) -> dict[int, dict[int, tuple[int, int]]]:
        """The ping histogram of the 23 whole hours before ``hour``. Those hours are over, so it
        is computed once an hour and kept (a cache: the pings table is the truth)."""
        cached: tuple[float, dict[int, dict[int, tuple[int, int]]]] | None = getattr(self, "_spark_cache", None)
        if cached is None or cached[0] != hour:
            start = hour - (SPARK_SLOTS - 1) * SPARK_SLOT
            cached = (hour, self.store.ping_histogram(start, SPARK_SLOT, until=hour))
            self._spark_cache = cached
        return cached[1]

    def check_page(self, name: str, *, pings: int = 50, events: int = 100) -> CheckPage:
        """One check with its ping log, timeline (events and the alerts sent for it, newest
        first) and copy-paste snippets. Raises NotFound."""
        check = self.get_check(name)
        now = self.clock()
        ev = st.evaluate(check, now)
        timeline = [
            TimelineEntry(e.at, e.kind, e.old_status, e.new_status, e.detail)
            for e in self.store.list_events(check.id, events)
        ]
        timeline += [
            TimelineEntry(
                r["created"],
                "alert",
                None,
                None,
                r["text"],
                channel=r["channel"],
                recipient=r["recipient"],
                state=r["state"],
                error=r["error"],
                sent_at=r["sent_at"],
                alert_kind=r["kind"],
            )
            for r in self.store.list_outbox_for_check(check.id, events)
        ]
        timeline.sort(key=lambda t: t.at, reverse=True)
        try:
            filters = keywords.loads(check.filters) or keywords.Filters()
        except keywords.FilterError:
            filters = keywords.Filters()
        return CheckPage(
            now=now,
            check=check,
            status=ev.status,
            down_since=_down_since(check, ev),
            late_at=ev.late_at,
            down_at=ev.down_at,
            pings=self.store.list_pings(check.id, pings),
            timeline=timeline[:events],
            snippets=self.snippets(check),
            filters=filters,
            default_repeat=self.settings.repeat,
        )

    def snippets(self, check: Check) -> list[Snippet]:
        """Copy-paste ways to ping ``check``: crontab with curl or wget, a systemd timer, email."""
        url = self.ping_url(check)
        s = check.schedule
        if s.cron:  # noqa: SIM108  (two lines read better than one ternary here)
            when = s.cron if s.tz == "UTC" else f"CRON_TZ={s.tz}\n{s.cron}"
        else:
            when = _cron_for_period(s.period)
        curl = f"curl -fsS -m 10 --retry 3 -o /dev/null {url}"
        systemd = _systemd_snippet(check, url)
        email = self.email_address(check)
        # Tokens made before url_secret() may start with "-": end mail's options before it.
        to = f"-- {email}" if email.startswith("-") else email
        return [
            Snippet("curl", "crontab, curl", f"{when} {curl}"),
            Snippet("wget", "crontab, wget", f"{when} wget -q -T 10 -t 3 -O /dev/null {url}"),
            Snippet(
                "exit",
                "crontab, report the job's exit status",
                f"{when} /usr/local/bin/job.sh; curl -fsS -m 10 --retry 3 -o /dev/null {url}/$?",
            ),
            Snippet("systemd", "systemd timer", systemd),
            Snippet("email", "email", f"{email}\n\n# e.g. from cron:\n{when} echo ok | mail -s ok {to}"),
        ]

    def modem_page(self) -> ModemPage:
        """What the modem page shows: status now, 24 h history, outbox, inbox, SMS budget."""
        now = self.clock()
        status = self.modem_status()
        owner = self.owner_settings()
        return ModemPage(
            now=now,
            backend=self.config.modem.backend,
            device=self.config.modem.device,
            status=status,
            bars=signal_bars(status.get("signal_dbm")) if status else None,
            history=self.store.modem_history(now - 86400),
            outbox=self.list_outbox(50),
            inbox=self.list_inbox(50),
            sms_last_hour=self.store.sms_sent_since(now - 3600),
            max_sms_per_hour=owner.max_sms_per_hour,
            owner_numbers=owner.sms_to,
        )

    def ping_log(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest pings of a check in their JSON form. Raises NotFound."""
        check = self.get_check(name)
        return [
            {
                "at": iso(p.at),
                "kind": p.kind.value,
                "exit_status": p.exit_status,
                "source": p.source,
                "remote_addr": p.remote_addr,
                "method": p.method,
                "user_agent": p.user_agent,
                "body": p.body,
            }
            for p in self.store.list_pings(check.id, max(1, min(limit, 1000)))
        ]

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges for /metrics: checks by status, pings received, messages by
        channel and state, modem signal."""
        now = self.clock()
        counts = {s: 0 for s in STATUS_ORDER}
        for check in self.store.list_checks():
            counts[st.evaluate(check, now).status] += 1
        status = self.modem_status()
        return {
            "checks": counts,
            "pings": self.store.total_pings(),
            "outbox": self.store.count_outbox(),
            "modem": status,
        }

    def health(self, daemon_pid: int | None) -> dict[str, Any]:
        """What ``hbgw status`` reports, read from the database by any process: the daemon, the
        modem as the daemon last recorded it (each minute and on change), the checks, the
        outbox. ``ok`` is False when alerts could not go out as they should."""
        now = self.clock()
        counts = {s.value: 0 for s in STATUS_ORDER}
        problems: dict[str, list[str]] = {"down": [], "late": []}
        for check in self.store.list_checks():
            status = st.evaluate(check, now).status
            counts[status.value] += 1
            if status.value in problems:
                problems[status.value].append(check.name)
        waiting, overdue = self.store.outbox_backlog(now)
        failed = self.store.count_failed(now - 86400)
        modem: dict[str, Any] | None = None
        if self.config.modem.backend != "none":
            seen = self.store.modem_history(now - 3 * MODEM_LOG_EVERY)
            last = seen[-1] if seen else None
            modem = {
                "backend": self.config.modem.backend,
                "connected": bool(last and last["connected"]),
                "as_of": iso(last["at"]) if last else None,
                **({k: last[k] for k in ("registration", "operator", "signal_dbm", "error")} if last else {}),
            }
        troubles = self._setup_troubles()
        if daemon_pid is None:
            troubles.append("the gateway is not running")
        elif modem is not None and not modem["connected"]:
            troubles.append("the modem is not connected" if modem["as_of"] else "no recent modem report")
        troubles += self._outbox_troubles(now, waiting, overdue)
        return {
            "ok": not troubles,
            "troubles": troubles,
            "daemon": {"running": daemon_pid is not None, "pid": daemon_pid or None},
            "modem": modem,
            "checks": counts,
            "down": sorted(problems["down"]),
            "late": sorted(problems["late"]),
            "outbox": {"waiting": waiting, "overdue_since": iso(overdue), "failed_24h": failed},
        }

    def alert_troubles(self) -> list[str]:
        """What keeps alerts from going out, as the settings and the outbox tell (the web page
        shows these; ``health`` adds the daemon and the modem)."""
        now = self.clock()
        waiting, overdue = self.store.outbox_backlog(now)
        return self._setup_troubles() + self._outbox_troubles(now, waiting, overdue)

    def _setup_troubles(self) -> list[str]:
        a, troubles = self.settings, []
        if not a.sms_to and not a.email_to:
            troubles.append(
                "nobody to alert: add a phone number or an email address on the"
                " settings page ([alerts] sms_to, email_to)"
            )
        if a.sms_to and self.config.modem.backend == "none":
            troubles.append("SMS numbers are set but no modem is configured ([modem] backend)")
        if a.email_to and not self.config.email.host:
            troubles.append("email addresses are set but no mail relay is configured ([email] host)")
        return troubles

    @staticmethod
    def _outbox_troubles(now: float, waiting: int, overdue: float | None) -> list[str]:
        if overdue is not None and now - overdue > STUCK_AFTER:
            return [f"{waiting} message(s) waiting; one is {humanize(now - overdue)} overdue"]
        return []

    def _modem_summary(self) -> ModemSummary | None:
        if self.config.modem.backend == "none":
            return None
        status = self.modem_status()
        if status is None:
            return ModemSummary(connected=False, operator=None, bars=None)
        return ModemSummary(
            connected=bool(status.get("connected")),
            operator=status.get("operator"),
            bars=signal_bars(status.get("signal_dbm")),
        )


def _outbox_json(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "to": r["recipient"],
        "channel": r["channel"],
        "text": r["text"],
        "state": r["state"],
        "attempts": r["attempts"],
        "error": r["error"],
        "kind": r["kind"],
        "check": r["check_name"],
        "created": iso(r["created"]),
        "sent_at": iso(r["sent_at"]),
        "refs": r["refs"],
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


# ---- web admin (sessions, API keys, settings, listings) ----
# Imported here, inside this section, so that edits to the header by others never clash.


SESSION_TTL = 7 * 86400.0
LOGIN_WINDOW = 15 * 60.0
LOGIN_MAX_FAILURES = 5  # per address within LOGIN_WINDOW
PASSWORD_MIN = 10
API_KEY_PREFIX = "hbgw_"
OWNER_SETTINGS_KEY = "owner_settings"
LAST_ALIVE_KEY = "last_alive"
SUMMARY_DAY_KEY = "daily_summary_day"  # the local date of the last daily summary queued
SPARK_SLOTS, SPARK_SLOT = 24, 3600.0
STATUS_ORDER = {Status.DOWN: 0, Status.LATE: 1, Status.UP: 2, Status.NEW: 3, Status.PAUSED: 4}


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


@dataclasses.dataclass(frozen=True)
class SettingsView:
    in_force: Settings
    file: Settings  # the config file's [alerts]
    on_page: frozenset[str]  # fields saved on the settings page: they win over the file

    @property
    def saved(self) -> bool:
        return bool(self.on_page)


@dataclasses.dataclass(frozen=True)
class ModemSummary:
    connected: bool
    operator: str | None
    bars: int | None  # 0-5


@dataclasses.dataclass(frozen=True)
class CheckRow:
    check: Check
    status: Status  # evaluated at the overview's ``now``
    down_since: float | None
    spark: tuple[tuple[int, int], ...]  # (pings, failures) per hourly slot, oldest first


@dataclasses.dataclass(frozen=True)
class Overview:
    now: float
    rows: list[CheckRow]
    counts: dict[Status, int]
    modem: ModemSummary | None  # None: no modem configured
    troubles: list[str]  # what keeps alerts from going out (Service.alert_troubles)


@dataclasses.dataclass(frozen=True)
class TimelineEntry:
    at: float
    kind: str  # an event kind ("flip", "created", "command", ...) or "alert" (an outbox row)
    old_status: str | None
    new_status: str | None
    detail: str | None
    channel: str | None = None
    recipient: str | None = None
    state: str | None = None
    error: str | None = None
    sent_at: float | None = None
    alert_kind: str | None = None


@dataclasses.dataclass(frozen=True)
class Snippet:
    key: str
    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class CheckPage:
    now: float
    check: Check
    status: Status
    down_since: float | None
    late_at: float | None
    down_at: float | None
    pings: list[Ping]
    timeline: list[TimelineEntry]
    snippets: list[Snippet]
    filters: keywords.Filters
    default_repeat: float


@dataclasses.dataclass(frozen=True)
class ModemPage:
    now: float
    backend: str
    device: str
    status: dict[str, Any] | None
    bars: int | None
    history: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    inbox: list[dict[str, Any]]
    sms_last_hour: int
    max_sms_per_hour: int
    owner_numbers: tuple[str, ...]


def signal_bars(dbm: int | None) -> int | None:
    """Signal strength in dBm → 0-5 bars, as phones show it (None: unknown)."""
    if dbm is None:
        return None
    for bars, floor in ((5, -73), (4, -83), (3, -93), (2, -103), (1, -111)):
        if dbm >= floor:
            return bars
    return 0


def parse_duration_field(field: str, value: str | float | int | None) -> float | None:
    """A duration from a form or JSON ("15m", 900); None when empty. Raises ValidationError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValidationError(field, "a duration such as 15m, 2h or 1d")
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value)
    except ValueError:
        raise ValidationError(field, "a duration such as 90s, 15m, 2h or 1d") from None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _down_since(check: Check, ev: st.Evaluation) -> float | None:
    if ev.status is not Status.DOWN:
        return None
    if check.down_since is not None:
        return check.down_since
    return ev.down_at if ev.down_at is not None else check.last_ping


SYSTEMD_TIMER_EVERY = 300.0  # what systemd/hbgw-ping@.timer ships with


def _systemd_snippet(check: Check, url: str) -> str:
    """How to ping ``check`` with the hbgw-ping@ template units from systemd/: the URL goes in a
    root-only file handed to curl as a credential (never on a command line or in a unit file that
    every local user can read); a drop-in sets this check's interval."""
    unit = re.sub(r"[^A-Za-z0-9_.]+", "-", check.name).strip("-.")[:60] or "check"
    s = check.schedule
    lines = [
        "# with hbgw-ping@.service and hbgw-ping@.timer from heartbeat-gateway's systemd/ folder",
        "install -m 0644 hbgw-ping@.service hbgw-ping@.timer /etc/systemd/system/",
        f"mkdir -p /etc/hbgw-ping && (umask 077; echo '{url}' > /etc/hbgw-ping/{unit}.url)",
    ]
    if s.cron:
        lines += [
            f"# a cron schedule ({s.cron}, {s.tz}): `systemctl edit hbgw-ping@{unit}.timer`,",
            "# empty OnBootSec= and OnUnitActiveSec=, and the matching OnCalendar= (see",
            "# systemd.time(7)); or let the job ping when it ends (the exit-status line)",
        ]
    elif s.period != SYSTEMD_TIMER_EVERY:
        dropin = f"/etc/systemd/system/hbgw-ping@{unit}.timer.d"
        lines += [
            f"# every {format_duration(s.period)} instead of the timer's 5 minutes",
            f"mkdir -p {dropin} && printf '[Timer]\\nOnUnitActiveSec=\\n"
            f"OnUnitActiveSec={format_duration(s.period)}\\n' > {dropin}/interval.conf",
        ]
    lines.append(f"systemctl daemon-reload && systemctl enable --now hbgw-ping@{unit}.timer")
    return "\n".join(lines)


def _cron_for_period(period: float) -> str:
    """A crontab schedule that pings at least every ``period`` seconds."""
    minutes = max(1, int(period // 60))
    if minutes == 1:
        return "* * * * *"
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = minutes // 60
    if hours < 24:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    return "0 0 * * *"
