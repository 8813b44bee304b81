"""The use cases. Every edge (HTTP, SMTP, SMS, web form, CLI) parses and authenticates its input,
then makes one call here. Nothing in this module knows about HTTP or SQL."""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hmac
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from gateway.accounts import Accounts
from gateway.config import Config, parse_hostport
from gateway.depends import Dependencies
from gateway.errors import ValidationError
from gateway.model import Check, Flip, ModemReport, PingKind, PingMeta, Schedule, Status
from gateway.quiet import Quiet
from gateway.readmodels import Views
from gateway.relay import Relay
from gateway.rules import checkfields, keywords, lifecycle
from gateway.rules import commands as cmds
from gateway.rules import schedule as sched
from gateway.rules import settings as rules
from gateway.rules import status as st
from gateway.rules.durations import parse_duration
from gateway.rules.phone import mask as mask_number
from gateway.rules.settings import E164, Settings
from gateway.rules.summary import modem_word, summary_text
from gateway.smspath import SmsPath
from gateway.store import Ambiguous, Conflict, DecideAll, NotFound, PingResult, Store

logger = logging.getLogger(__name__)

# Names a ping may create on its own (auto_create): short, URL- and SMS-friendly.
AUTO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN_BYTES = 18  # 144 bits


class PingOutcome(Enum):
    OK = "ok"
    CREATED = "created"  # by its first ping (a slug URL with ?create=1, or auto_create)
    NOT_FOUND = "not found"
    LIMIT = "check limit reached"
    AMBIGUOUS = "ambiguous slug"


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
        self.accounts = Accounts(store, config, clock=clock)  # logins, sessions, API keys
        self.smspath = SmsPath(self)  # the daily canary and the prepaid balance
        self.relay = Relay(self)  # messages others in the house send through the modem
        self.quiet = Quiet(self)  # maintenance windows, snoozes, tag selectors
        self.deps = Dependencies(self)  # check dependencies (--depends-on)
        self.views = Views(self)  # what pages, the CLI and /metrics show
        # Set by the daemon: a callable giving the modem's current status for pages and probes.
        self.modem_status_source: Callable[[], ModemReport | None] | None = None

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
            self.notify_outbox()

    def notify_outbox(self) -> None:
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
        token: str | None = None,
        **fields: Any,
    ) -> Check:
        """Create a check: a fresh ping token, or ``token`` brought from elsewhere (a Healthchecks
        UUID, an Uptime Kuma push token); ``fields``: slug, tags, desc, manual_resume, methods
        (the slug defaults to the name's). Raises ValidationError (bad input) or Conflict (name
        or token taken, cap)."""
        name = checkfields.validate_name(name)
        unknown = sorted(set(fields) - {"slug", "tags", "desc", "manual_resume", "methods"})
        if unknown:
            raise ValidationError(unknown[0], "unknown field")
        fields = checkfields.validate(fields)
        token = new_token() if token is None else checkfields.validate_token(token)
        schedule = self.make_schedule(period, grace, cron, tz)
        check = self.store.add_check(name, token, schedule, self.clock(), self.config.security.max_checks, fields)
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
        return self._updated(
            self.store.change_check(name, lambda c, p: lifecycle.change(c, change(c), now, event, s, p), now)
        )

    async def _aupdate(self, name: str, change: Callable[[Check], Check], event: str | None) -> Check:
        """:meth:`_update` for async callers: awaits the commit."""
        now, s = self.clock(), self.settings
        d = await self.store.achange_check(name, lambda c, p: lifecycle.change(c, change(c), now, event, s, p), now)
        return self._updated(d)

    def _updated(self, d: lifecycle.Decision) -> Check:
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

    # ------------------------------------------------------------------ heartbeats

    def record_ping(
        self, token: str, kind: PingKind, exit_status: int | None = None, meta: PingMeta | None = None
    ) -> PingOutcome:
        """A heartbeat for the check with ``token``. Stored (committed) before this returns."""
        return self.submit_ping(token, None, kind, exit_status, meta).result()

    def check_ping_key(self, key: str) -> bool:
        return hmac.compare_digest(key.encode(), self.ping_key.encode())

    def submit_ping(
        self,
        key: str,
        name: str | None,
        kind: PingKind,
        exit_status: int | None = None,
        meta: PingMeta | None = None,
        create: bool = False,
    ) -> concurrent.futures.Future[PingOutcome]:
        """Queue a heartbeat without waiting: by token (``name`` None) or by site ping key and
        check slug (or name). ``create`` (Healthchecks' ``?create=1``, or ``auto_create`` in the
        config) makes a check for a slug nobody has. The future resolves once the ping is
        committed (or raises StoreError); an event loop awaits it with ``asyncio.wrap_future``
        instead of parking a thread on it."""
        meta = meta or PingMeta()
        now, settings = self.clock(), self.settings

        def decide(check: Check, body: str | None, counted: PingKind, parents: lifecycle.Parents) -> lifecycle.Decision:
            return lifecycle.ping(check, counted, exit_status, now, settings, body, meta.rid, parents)

        if name is None:
            stored = self.store.submit_ping(key, None, decide, meta, kind, exit_status, now)
        elif not self.check_ping_key(key):
            done: concurrent.futures.Future[PingOutcome] = concurrent.futures.Future()
            done.set_result(PingOutcome.NOT_FOUND)
            return done
        else:
            sec = self.config.security
            new = None
            if (create or sec.auto_create) and AUTO_NAME.fullmatch(name):
                new = (new_token(), self.make_schedule(), sec.max_checks)
            stored = self.store.submit_ping(None, name, decide, meta, kind, exit_status, now, new)
        outcome: concurrent.futures.Future[PingOutcome] = concurrent.futures.Future()

        def finish(f: concurrent.futures.Future[PingResult | None]) -> None:
            # Runs on the store's writer thread right after COMMIT: cheap, and only thread-safe calls.
            try:
                try:
                    result = f.result()
                except Ambiguous:
                    outcome.set_result(PingOutcome.AMBIGUOUS)
                    return
                except Conflict:
                    outcome.set_result(PingOutcome.LIMIT)
                    return
                if result is not None and result.created:
                    logger.info("check %r created by its first ping", result.check.name)
                    self._pinged(result)
                    outcome.set_result(PingOutcome.CREATED)
                    return
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
        return self._advanced(self.store.advance(now, lambda c, p: lifecycle.advance(c, now, s, p)))

    async def advance_async(self, now: float) -> list[Flip]:
        """:meth:`advance` for the watchdog: awaits the commit, parks no thread."""
        s = self.settings
        return self._advanced(await self.store.aadvance(now, lambda c, p: lifecycle.advance(c, now, s, p)))

    def _advanced(self, decisions: list[lifecycle.Decision]) -> list[Flip]:
        for d in decisions:
            if d.error is not None and d.check is not None:
                logger.error("cannot evaluate check %r (%s); retrying in an hour", d.check.name, d.error)
            elif d.flip is not None and d.check is not None:
                logger.info("check %r %s -> %s", d.check.name, d.flip.old.value, d.flip.new.value)
        self.notify_outbox()  # flips may have queued alerts, and reminders come without flips
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
            self.notify_outbox()
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
        self.notify_outbox()
        return reset

    # ------------------------------------------------------------------ inbound SMS

    async def record_inbound_sms(self, sender: str, text: str) -> tuple[int, bool]:
        """Store an SMS that reached the SIM (before anything else is done with it); returns its
        inbox id and whether ``sender`` may command the gateway (the allow-list in force)."""
        allowed = sender in self.settings.sms_allow
        return await self.store.add_inbox(sender, text, self.clock(), allowed), allowed

    async def mark_inbox_handled(self, inbox_id: int, reply: str | None) -> None:
        await self.store.mark_inbox_handled(inbox_id, reply)

    # ------------------------------------------------------------------ owner actions (web, SMS, CLI)

    def ack(self, name: str, by: str) -> Check:
        """Acknowledge a check's outage (``by``: who, as shown: "web", "cli", "api", a masked
        number): no more reminders or escalation steps until it recovers. A check that is not
        down is returned unchanged (``acked`` False): nothing to acknowledge."""
        return self._update(name, _acking(by, self.clock()), f"acked by {by}")

    async def call_answered(self, names: list[str], number: str) -> None:
        """Someone answered an escalation call about ``names``: recorded; with ``[alerts]
        call_answer_acks`` it acknowledges those outages (the ladder stops)."""
        who = f"call {mask_number(number)}"
        for name in names:
            try:
                if self.settings.call_answer_acks:
                    await self._aupdate(name, _acking(who, self.clock()), f"acked by {who}")
                else:
                    await self.store.aadd_event(name, self.clock(), "call", f"answered by {mask_number(number)}")
            except NotFound:
                continue  # removed meanwhile

    async def note_voice(self, detail: str | None) -> None:
        """The modem cannot make calls (``detail``: why), or can again (None): the owner hears
        it once (by email), and the page says so while the ladder has call steps."""
        await self.store.aset_setting(NO_VOICE_KEY, detail or "")
        if detail is None:
            return
        await self.notify_owner(
            f"hbgw: the escalation ladder cannot call: this modem or network has no voice calls ({detail})."
            " Call steps are skipped until another modem is connected; SMS and email go on."
        )

    def last_alerted_check(self) -> Check | None:
        """The check of the most recent DOWN/FAIL/reminder alert that is still down."""
        for name in self.store.recent_alerted_names(20):
            check = self.store.get_check(name)
            if check is not None and check.status is Status.DOWN and not check.acked:
                return check
        return None

    def mute(self, name: str, seconds: float, by: str = "") -> Check:
        """No alerts for ``name`` for ``seconds`` (reminders and escalation steps wait)."""
        if not 60 <= seconds <= 30 * 86400:
            raise ValidationError("for", "a mute lasts from 1m to 30d")
        until = self.clock() + seconds
        event = f"muted by {by}" if by else "muted"
        return self._update(name, lambda c: c.evolve(muted_until=until, snooze_until_up=False), event)

    def unmute(self, name: str, by: str = "") -> Check:
        event = f"unmuted by {by}" if by else "unmuted"
        return self._update(name, lambda c: c.evolve(muted_until=None, snooze_until_up=False), event)

    # ------------------------------------------------------------------ the owner's SMS commands

    async def answer_command(
        self, parsed: cmds.Command | cmds.ParseError | cmds.PinRejected, who: str, reply_to: str | None
    ) -> str | None:
        """Carry out an SMS command from an allow-listed number (``parsed`` by
        :func:`gateway.rules.commands.parse`), record who did what as an event (``who``: the
        sender, masked; never the PIN or the raw text), and queue the reply to ``reply_to``
        (None: answer nothing, e.g. over the per-sender reply limit). Returns the reply queued,
        or None. The same use cases the web page and the API call, awaited."""
        if isinstance(parsed, cmds.PinRejected):
            detail = f"SMS from {who} rejected: PIN missing or wrong"
            await self.store.aadd_event(None, self.clock(), "command", detail)
            return None
        if isinstance(parsed, cmds.ParseError):
            reply, check_name, what = parsed.reply, None, f"not understood ({parsed.code})"
        else:
            reply, check_name = await self._carry_out(parsed, who)
            what = parsed.verb.value + (f" {check_name}" if check_name else "")
        await self.store.aadd_event(check_name, self.clock(), "command", f"SMS from {who}: {what}")
        if reply_to is None:
            return None
        await self.store.awrite_message("reply", "sms", reply_to, reply, self.clock())
        self.notify_outbox()
        return reply

    async def _carry_out(self, c: cmds.Command, by: str) -> tuple[str, str | None]:
        """The reply to ``c`` (from ``by``, masked) and the check it named, after doing it."""
        if c.verb is cmds.Verb.HELP:
            return cmds.render_help(pin_required=self.settings.sms_pin is not None), None
        now = self.clock()
        if c.verb is cmds.Verb.STATUS:
            if c.name:
                check = self.get_check(c.name)
                age = now - check.last_ping if check.last_ping is not None else None
                return cmds.render_check(check.name, self.status_of(check, now), age), check.name
            rows = [
                (k.name, self.status_of(k, now), now - k.last_ping if k.last_ping else None) for k in self.list_checks()
            ]
            return cmds.render_status(rows), None
        if c.tag is not None or c.verb is cmds.Verb.MAINT:
            return await self.quiet.carry_out(c, by)
        if c.verb is cmds.Verb.ACK:
            name = c.name
            if name is None:
                last = self.last_alerted_check()
                if last is None:
                    return cmds.render_nothing_to_ack(), None
                name = last.name
            await self._aupdate(name, _acking(by, now), f"acked by {by}")
            return cmds.render_done(cmds.Command(cmds.Verb.ACK, name)), name
        change, event = _command_change(c, now)
        for name in [c.name] if c.name else [k.name for k in self.list_checks()]:
            try:
                await self._aupdate(name, change, event)
            except NotFound:
                continue  # removed between parsing and now
        return cmds.render_done(c), c.name

    def send_test_sms(self, number: str, text: str) -> int:
        """Queue a test SMS to ``number`` (E.164). Returns the outbox id."""
        if not E164.fullmatch(number):
            raise ValidationError("number", "use the international format, e.g. +15551234567")
        text = text.strip() or "hbgw test message"
        if len(text) > 1000:
            raise ValidationError("text", "at most 1000 characters")
        oid = self.store.queue_message("test", "sms", number, text, self.clock())
        self.notify_outbox()
        return oid

    async def notify_owner(self, text: str) -> None:
        """Queue a note about the gateway itself (the modem failing, working again) to every
        ``email_to`` address; returns once it is committed."""
        now = self.clock()
        for addr in self.settings.email_to:
            await self.store.awrite_message("modem", "email", addr, text, now)
        self.notify_outbox()

    async def record_modem_health(
        self,
        *,
        connected: bool,
        signal_dbm: int | None,
        registration: str | None,
        operator: str | None,
        error: str | None,
        storage_used: int | None = None,
        storage_total: int | None = None,
        recovery: str | None = None,
    ) -> None:
        """Log the modem's health now (the modem page's 24 h history, ``hbgw status``)."""
        storage = (storage_used, storage_total)
        await self.store.log_modem(
            self.clock(), connected, signal_dbm, registration, operator, error, storage, recovery
        )

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
        now = self.clock()
        statuses = {c.name: self.status_of(c, now) for c in self.list_checks()}
        text = summary_text(statuses, modem_word(self.modem_status()))
        n = await self.store.queue_once(SUMMARY_DAY_KEY, day, "summary", "sms", self.settings.sms_to, text, now)
        if n:
            self.notify_outbox()
            logger.info("daily summary queued for %d recipient(s)", n)
        return n

    async def prune(self) -> dict[str, int]:
        """Forget old history (events, finished messages, received SMS); rows removed per table."""
        return await self.store.prune(self.clock())

    def modem_status(self) -> ModemReport | None:
        src = self.modem_status_source
        return src() if src is not None else None

    # ------------------------------------------------------------------ views

    def status_of(self, check: Check, now: float | None = None) -> Status:
        return st.evaluate(check, self.clock() if now is None else now).status

    def ping_url(self, check: Check) -> str:
        return f"{self.base_url}/ping/{check.token}"

    def email_address(self, check: Check) -> str:
        return f"{check.token}@{self.config.smtp.domain}"

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
        rules as :meth:`submit_ping`, which still decides (the check cap is only known there).
        """
        if not self.check_ping_key(key):
            return False, None
        try:
            check = self.store.get_check_by_slug(name)
        except Ambiguous:
            return False, None
        if check is not None:
            return True, check
        return bool(self.config.security.auto_create and AUTO_NAME.fullmatch(name)), None

    def set_filters(self, name: str, filters: Mapping[str, Any] | None) -> Check:
        """Set the keyword filters of the check ``name`` (shape and meaning:
        :mod:`gateway.rules.keywords`); None or an empty mapping removes them (every email is
        then a success). Raises ValidationError (field ``filters``), NotFound."""
        return self.patch_check(name, filters=filters)

    @property
    def settings(self) -> Settings:
        """The alert settings in force: the config file's, with the fields saved on the page."""
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
        # the maintenance windows in force, and those over or ended in the last WINDOW_MEMORY:
        # policy asks whether a past alert fell in one (ended early: when it ended)
        windows = tuple(self.store.list_windows(self.clock() - WINDOW_MEMORY))
        return dataclasses.replace(rules.apply(self.config.alerts, self._saved_overrides()), maintenance=windows)

    def load_owner_settings(self) -> Settings:
        """Read the saved settings and the maintenance windows again and put them in force
        (also on the daemon's SIGHUP, after the command line changed them); returns them."""
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

    def _ladder_name(self, value: Any) -> str | None:
        """A check's ladder as given (None or "": the default). Raises ValidationError."""
        if value is None or value == "":
            return None
        names = self.settings.ladder_names
        if not isinstance(value, str) or value not in names:
            raise ValidationError("ladder", f"one of {', '.join(names)}, or empty for the default ladder")
        return value

    def patch_check(self, name: str, /, **changes: Any) -> Check:
        """Change some of a check's settings in one transaction, merged with the check as stored
        then (two edits at once never undo each other): any of ``period``, ``grace``, ``cron``,
        ``tz`` (None: the default), ``repeat`` (seconds; None: the global interval),
        ``sms_enabled``, ``email_enabled``, ``filters`` (as in :mod:`gateway.rules.keywords`;
        empty: none), ``ladder`` (a named escalation ladder, "none"; None: the default), and
        ``name``, ``slug``, ``tags``, ``desc``, ``manual_resume``, ``methods``
        (:mod:`gateway.rules.checkfields`). New deadlines count from now. Raises
        ValidationError, NotFound, Conflict (a name another check has)."""
        unknown = sorted(set(changes) - set(checkfields.PATCHABLE))
        if unknown:
            raise ValidationError(unknown[0], f"unknown field (allowed: {', '.join(sorted(checkfields.PATCHABLE))})")
        changes = checkfields.validate(changes)
        repeat = changes.get("repeat")
        if repeat is not None:
            try:
                changes["repeat"] = rules.duration("repeat", repeat, rules.REPEAT_MIN)
            except rules.SettingsError as e:
                raise ValidationError("repeat", f"{e}, or empty for the default") from None
        if "filters" in changes:
            try:
                parsed = keywords.parse_filters(changes["filters"] or {})
            except keywords.FilterError as e:
                raise ValidationError("filters", str(e)) from None
            changes["filters"] = keywords.dumps(parsed) if (parsed.success or parsed.fail or parsed.start) else None
        for flag in ("sms_enabled", "email_enabled"):
            if flag in changes and not isinstance(changes[flag], bool):
                raise ValidationError(flag, "true or false")
        if "ladder" in changes:
            changes["ladder"] = self._ladder_name(changes["ladder"])
        timing: dict[str, Any] = {k: changes.pop(k) for k in ("period", "grace", "cron", "tz") if k in changes}
        now = self.clock()

        def change(c: Check) -> Check:
            s = c.schedule
            schedule = self.make_schedule(
                timing.get("period", s.period),
                timing.get("grace", s.grace),
                timing.get("cron", s.cron),
                timing.get("tz", s.tz),
            )
            return st.refresh(dataclasses.replace(c, schedule=schedule, **changes), now)

        return self._update(name, change, checkfields.patch_event(set(changes) | set(timing), changes))


def _acking(by: str, now: float) -> Callable[[Check], Check]:
    def ack(c: Check) -> Check:
        if c.status is not Status.DOWN or c.acked:
            return c  # nothing to acknowledge, or done already: the first one stays on record
        return c.evolve(acked=True, acked_by=by, acked_at=now)

    return ack


def _command_change(c: cmds.Command, now: float) -> tuple[Callable[[Check], Check], str]:
    """What an ON/OFF/MUTE/UNMUTE/PAUSE/RESUME command does to one check, and its event."""
    if c.verb in (cmds.Verb.ON, cmds.Verb.OFF):
        on = c.verb is cmds.Verb.ON
        return (lambda k: dataclasses.replace(k, sms_enabled=on)), "sms on" if on else "sms off"
    if c.verb is cmds.Verb.MUTE:
        until = now + (c.duration or 3600.0)
        return (lambda k: k.evolve(muted_until=until, snooze_until_up=False)), "muted"
    if c.verb is cmds.Verb.UNMUTE:
        return (lambda k: k.evolve(muted_until=None, snooze_until_up=False)), "unmuted"
    if c.verb is cmds.Verb.PAUSE:
        return st.apply_pause, "paused"
    if c.verb is cmds.Verb.RESUME:
        return (lambda k: st.apply_resume(k, now)), "resumed"
    raise ValueError(f"no change for {c.verb}")


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


OWNER_SETTINGS_KEY = "owner_settings"
WINDOW_MEMORY = 30 * 86400.0
LAST_ALIVE_KEY = "last_alive"
NO_VOICE_KEY = "no_voice"  # why the modem could not make the ladder's calls (cleared on a new modem)
SUMMARY_DAY_KEY = "daily_summary_day"  # the local date of the last daily summary queued


@dataclasses.dataclass(frozen=True)
class SettingsView:
    in_force: Settings
    file: Settings  # the config file's [alerts]
    on_page: frozenset[str]  # fields saved on the settings page: they win over the file

    @property
    def saved(self) -> bool:
        return bool(self.on_page)


def parse_duration_field(field: str, value: str | float | int | None) -> float | None:
    """A duration from a form or JSON ("15m", 900); None when empty. Raises ValidationError.

    Text needs a unit ("10" is refused: seconds or minutes?), the same rule as the config file,
    the command line and the SMS commands; a JSON number is seconds, since a typed number is not
    ambiguous (the Healthchecks-compatible API keeps its own rules, web/hcapi.py)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValidationError(field, "a duration such as 15m, 2h or 1d")
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value)
    except ValueError as e:
        raise ValidationError(field, str(e)) from None
