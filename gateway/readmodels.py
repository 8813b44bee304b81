"""What the pages, the CLI, ``/metrics`` and ``hbgw status`` show: read-only views over the
store, as typed records (the JSON forms are built here too, once).

Nothing here writes; every method reads the store (read-only connections) and the service's
settings in force, and takes ``now`` from the service's clock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gateway.config import Config
from gateway.model import Check, Event, InboxRow, ModemLogRow, ModemReport, OutboxRow, Ping, Status, iso
from gateway.rules import keywords, maintenance, smspath
from gateway.rules import status as st
from gateway.rules.durations import humanize
from gateway.rules.phone import mask
from gateway.rules.policy import clock as policy_clock
from gateway.rules.relay import relay_budget
from gateway.rules.settings import Settings
from gateway.rules.status import STATUS_ORDER, count_statuses
from gateway.snippets import Snippet, snippets
from gateway.store import Store

MODEM_LOG_EVERY = 60.0  # the daemon records modem health this often (gateway.runtime.modemwatch)
STUCK_AFTER = 300.0  # a message still waiting after this long means alerts are not going out
# SIM storage this close to full (free slots) is a trouble: once full, the network holds every
# further SMS, the owner's commands too (10 % of the slots, at least 2).
STORAGE_MIN_FREE, STORAGE_MIN_FREE_SHARE = 2, 0.1
BEATS = 30  # pings in a check's heartbeat bar
DAY, MONTH = 86400.0, 30 * 86400.0


@dataclasses.dataclass(frozen=True)
class ModemSummary:
    connected: bool
    operator: str | None
    bars: int | None  # 0-5


@dataclasses.dataclass(frozen=True)
class Uptime:
    day: float | None  # share of the last 24 h spent up (late counts as up), None: no data
    month: float | None  # the same over 30 days


@dataclasses.dataclass(frozen=True)
class CheckRow:
    check: Check
    status: Status  # evaluated at the overview's ``now``
    down_since: float | None
    late_at: float | None
    down_at: float | None
    beats: str  # the newest BEATS pings' outcomes, oldest first, a letter each (see beat_letters)
    uptime: Uptime


@dataclasses.dataclass(frozen=True)
class Overview:
    now: float
    rows: list[CheckRow]  # those matching the filter (all when there is none)
    counts: dict[Status, int]  # of every check, filtered or not
    modem: ModemSummary | None  # None: no modem configured
    troubles: list[str]  # what keeps alerts from going out (Views.page_troubles)
    tags: list[str] = dataclasses.field(default_factory=list)  # every tag in use, sorted
    total: int = 0  # checks before filtering


@dataclasses.dataclass(frozen=True)
class Banner:
    """What every page says on top: can alerts go out, and how many servers are down."""

    troubles: list[str]
    down: int


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
    uptime: Uptime = Uptime(None, None)


@dataclasses.dataclass(frozen=True)
class ModemPage:
    now: float
    backend: str
    device: str
    status: ModemReport | None  # as the modem task sees it now
    bars: int | None
    history: list[ModemLogRow]
    outbox: list[OutboxRow]
    inbox: list[InboxRow]
    sms_last_hour: int
    max_sms_per_hour: int
    owner_numbers: tuple[str, ...]
    reports: str | None = None  # "no delivery reports from this network ..." (see delivery_reports)
    canary: smspath.Canary | None = None  # the SMS path's last proof (None: no canary configured)
    balance: smspath.Balance | None = None  # the last balance check (None: none configured)
    relay_budget: int | None = None  # relayed SMS allowed per hour (None: relaying is off)
    relayed: dict[str, int] = dataclasses.field(default_factory=dict)  # queued in the last hour, by sender


REPORTS_AFTER = 600.0  # an SMS older than this without any report counts as "no report"
REPORTS_SAMPLE = 3  # this many such SMS in a row, and none with a report: the network sends none


def delivery_reports(outbox: Sequence[OutboxRow], now: float) -> str | None:
    """Whether this network sends delivery reports at all, from the recent outbox (pure): the
    latest SMS sent more than REPORTS_AFTER ago, REPORTS_SAMPLE or more of them, none with a
    report → a note (their "sent" stays the truth, not a failure). None otherwise."""
    sent = [
        o for o in outbox if o.channel == "sms" and o.state == "sent" and o.sent_at and o.sent_at < now - REPORTS_AFTER
    ]
    if len(sent) < REPORTS_SAMPLE or any(o.delivery for o in sent[:10]):
        return None
    return "no delivery reports from this network: messages show as sent, without a delivery confirmation"


def by_tag(rows: Sequence[CheckRow], grouped: bool) -> list[tuple[str | None, CheckRow]]:
    """The overview's rows, each with the heading to show above it (None: none). Grouped, a
    check stands under each of its tags (tags in name order, untagged last under ""), in the
    rows' own order within a group; ungrouped, the rows as they are."""
    if not grouped:
        return [(None, r) for r in rows]
    groups: dict[str, list[CheckRow]] = {}
    for r in rows:
        for t in r.check.tag_list or [""]:
            groups.setdefault(t, []).append(r)
    out: list[tuple[str | None, CheckRow]] = []
    for tag in sorted(groups, key=lambda t: (t == "", t.casefold())):
        out += [(tag if i == 0 else None, r) for i, r in enumerate(groups[tag])]
    return out


def beat_letters(outcomes: Sequence[tuple[str, int | None]]) -> str:
    """One letter per ping, oldest first, from (kind, exit status) newest first: "o" success,
    "f" failure (a fail, or a non-zero exit status), "s" start or log, "i" ignored."""
    return "".join(
        "f" if kind == "fail" or (code or 0) != 0 else "o" if kind == "success" else "i" if kind == "ign" else "s"
        for kind, code in reversed(outcomes)
    )


def signal_bars(dbm: int | None) -> int | None:
    """Signal strength in dBm → 0-5 bars, as phones show it (None: unknown)."""
    if dbm is None:
        return None
    for bars, floor in ((5, -73), (4, -83), (3, -93), (2, -103), (1, -111)):
        if dbm >= floor:
            return bars
    return 0


class SmsPathState(Protocol):
    """The canary's and the balance check's records (``service.smspath``)."""

    def state(self) -> smspath.Canary: ...

    def balance(self) -> smspath.Balance: ...


class Context(Protocol):
    """What the read models need from the use cases (the Service provides it)."""

    store: Store
    config: Config
    clock: Callable[[], float]

    @property
    def smspath(self) -> SmsPathState: ...

    @property
    def settings(self) -> Settings: ...

    def get_check(self, name: str) -> Check: ...

    def ping_url(self, check: Check) -> str: ...

    def email_address(self, check: Check) -> str: ...

    def modem_status(self) -> ModemReport | None: ...


class Views:
    """Read models over one store, with the settings in force."""

    def __init__(self, service: Context) -> None:
        self.service = service
        self.store = service.store
        self.config = service.config
        self._beat_cache: dict[int, tuple[int, str]] = {}  # check id -> (n_pings, beat letters)

    def _now(self) -> float:
        return self.service.clock()

    # ------------------------------------------------------------------ checks

    def describe(self, check: Check, now: float | None = None) -> dict[str, Any]:
        """The stable JSON form of a check (CLI ``--json`` and the API)."""
        now = self._now() if now is None else now
        ev = st.evaluate(check, now)
        parents = self.service.store.parents_of(check.id)
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
            "ping_url": self.service.ping_url(check),
            "email": self.service.email_address(check),
            "late_at": iso(ev.late_at),
            "down_at": iso(ev.down_at),
            "last_exit_status": check.last_exit_status,
            "n_pings": check.n_pings,
            "created": iso(check.created),
            "filters": json.loads(check.filters) if check.filters else None,
            "down_since": iso(check.down_since),
            "acked": check.acked,
            "acked_by": check.acked_by,
            "acked_at": iso(check.acked_at),
            "muted_until": iso(check.muted_until) if check.muted_until and check.muted_until > now else None,
            "snooze_until_up": check.snooze_until_up,
            "maintenance_until": iso(maintenance.active_end(self.service.settings.maintenance, check, now)),
            "ladder": check.ladder,
            "escalation_steps_taken": check.ladder_step,
            "slug": check.slug,
            "tags": check.tag_list,
            "desc": check.desc,
            "manual_resume": check.manual_resume,
            "methods": check.methods,
            "started": check.last_start is not None,
            "last_duration": check.last_duration,
            "depends_on": [n for n, _ in parents],
            "behind": [n for n, st_ in parents if st_ == "down"] if ev.status is Status.DOWN else [],
        }

    def snippets(self, check: Check) -> list[Snippet]:
        """Copy-paste ways to ping ``check`` (gateway.snippets)."""
        return snippets(check, self.service.ping_url(check), self.service.email_address(check))

    def overview(self, q: str = "", tag: str = "") -> Overview:
        """Every check for the status page, problems first (down, late, up, new, paused; then by
        name), each with its newest pings and uptime; ``q`` (words in the name, tags or
        description) and ``tag`` narrow the rows, not the counts."""
        now = self._now()
        rows, statuses, tags = [], [], set()
        for check in self.store.list_checks():
            ev = st.evaluate(check, now)
            statuses.append(ev.status)
            tags.update(check.tag_list)
            if not matches(check, q, tag):
                continue
            beats = self._beats(check)
            row = CheckRow(check, ev.status, _down_since(check, ev), ev.late_at, ev.down_at, beats, self.uptime(check))
            rows.append(row)
        rows.sort(key=lambda r: (STATUS_ORDER[r.status], r.check.name.casefold()))
        return Overview(
            now=now,
            rows=rows,
            counts=count_statuses(statuses),
            modem=self._modem_summary(),
            troubles=self.page_troubles(),
            tags=sorted(tags, key=str.casefold),
            total=len(statuses),
        )

    def _beats(self, check: Check) -> str:
        """:func:`beat_letters` of the check's newest pings, kept until its next ping (the
        overview is polled every few seconds: only checks pinged since are read again)."""
        cached = self._beat_cache.get(check.id)
        if cached is not None and cached[0] == check.n_pings:
            return cached[1]
        letters = beat_letters(self.store.recent_outcomes(check.id, BEATS))
        self._beat_cache[check.id] = (check.n_pings, letters)
        return letters

    def uptime(self, check: Check) -> Uptime:
        """Uptime over 24 h and 30 days, from the check's status flips."""
        now = self._now()
        flips = self.store.list_flips(check.id, start=now - MONTH)
        before = self.store.list_flips(check.id, end=now - MONTH, limit=1)
        current = st.evaluate(check, now).status.value
        return Uptime(
            uptime_share(flips, before, current, max(now - DAY, check.created), now),
            uptime_share(flips, before, current, max(now - MONTH, check.created), now),
        )

    def banner(self) -> Banner:
        """The line on top of every page: what keeps alerts from going out, and the down count."""
        now = self._now()
        down = sum(1 for c in self.store.list_checks() if st.evaluate(c, now).status is Status.DOWN)
        return Banner(self.page_troubles(), down)

    def check_page(self, name: str, *, pings: int = 50, events: int = 100) -> CheckPage:
        """One check with its ping log, timeline (events and the alerts sent for it, newest
        first) and copy-paste snippets. Raises NotFound."""
        check = self.service.get_check(name)
        now = self._now()
        ev = st.evaluate(check, now)
        timeline = [
            TimelineEntry(e.at, e.kind, e.old_status, e.new_status, e.detail)
            for e in self.store.list_events(check.id, events)
        ]
        timeline += [
            TimelineEntry(
                r.created,
                "alert",
                None,
                None,
                r.text,
                channel=r.channel,
                recipient=r.recipient,
                state=r.state,
                error=r.error,
                sent_at=r.sent_at,
                alert_kind=r.kind,
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
            default_repeat=self.service.settings.repeat,
            uptime=self.uptime(check),
        )

    def ping_log(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest pings of a check in their JSON form. Raises NotFound."""
        check = self.service.get_check(name)
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
                "rid": p.rid,
                "duration": p.duration,
            }
            for p in self.store.list_pings(check.id, max(1, min(limit, 1000)))
        ]

    # ------------------------------------------------------------------ messages and modem

    def outbox(self, limit: int = 100) -> list[OutboxRow]:
        return self.store.list_outbox(limit)

    def inbox(self, limit: int = 100) -> list[InboxRow]:
        return self.store.list_inbox(limit)

    def modem_page(self) -> ModemPage:
        """What the modem page shows: status now, 24 h history, outbox, inbox, SMS budget."""
        now = self._now()
        status = self.service.modem_status()
        settings = self.service.settings
        return ModemPage(
            now=now,
            backend=self.config.modem.backend,
            device=self.config.modem.device,
            status=status,
            bars=signal_bars(status.signal_dbm) if status else None,
            history=self.store.modem_history(now - 86400),
            outbox=self.outbox(50),
            inbox=self.inbox(50),
            sms_last_hour=self.store.sms_sent_since(now - 3600),
            max_sms_per_hour=settings.max_sms_per_hour,
            owner_numbers=settings.sms_to,
            reports=delivery_reports(self.outbox(50), now),
            canary=self.service.smspath.state() if self.config.modem.canary_at is not None else None,
            balance=self.service.smspath.balance() if self.config.modem.balance_ussd else None,
            relay_budget=relay_budget(settings.max_sms_per_hour, self.config.relay)
            if self.config.relay.enabled
            else None,
            relayed=self.store.relayed_since(now - 3600) if self.config.relay.enabled else {},
        )

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges for /metrics: checks by status, pings received, messages by
        channel and state, modem signal."""
        now = self._now()
        return {
            "checks": count_statuses(st.evaluate(c, now).status for c in self.store.list_checks()),
            "pings": self.store.total_pings(),
            "outbox": self.store.count_outbox(),
            "modem": self.service.modem_status(),
        }

    # ------------------------------------------------------------------ trouble

    def health(self, daemon_pid: int | None) -> dict[str, Any]:
        """What ``hbgw status`` reports, read from the database by any process: the daemon, the
        modem as the daemon last recorded it (each minute and on change), the checks, the
        outbox. ``ok`` is False when alerts could not go out as they should."""
        now = self._now()
        statuses = {c.name: st.evaluate(c, now).status for c in self.store.list_checks()}
        waiting, overdue = self.store.outbox_backlog(now)
        failed = self.store.count_failed(now - 86400)
        modem: dict[str, Any] | None = None
        last: ModemLogRow | None = None
        if self.config.modem.backend != "none":
            seen = self.store.modem_history(now - 3 * MODEM_LOG_EVERY)
            last = seen[-1] if seen else None
            modem = {"backend": self.config.modem.backend, "connected": bool(last and last.connected)}
            modem["as_of"] = iso(last.at) if last else None
            if last is not None:
                modem |= {
                    "registration": last.registration,
                    "operator": last.operator,
                    "signal_dbm": last.signal_dbm,
                    "error": last.error,
                    "recovery": last.recovery,
                }
        troubles = self._setup_troubles()
        if self.service.modem_status() is None and last is not None:  # another process: as logged
            troubles += storage_troubles(last.storage_used, last.storage_total)
        if daemon_pid is None:
            troubles.append("the gateway is not running")
        elif modem is not None and not modem["connected"]:
            troubles.append("the modem is not connected" if modem["as_of"] else "no recent modem report")
        if modem is not None and modem.get("recovery"):
            troubles.append(f"the modem is being recovered: {modem['recovery']}")
        troubles += _outbox_troubles(now, waiting, overdue)
        return {
            "ok": not troubles,
            "troubles": troubles,
            "daemon": {"running": daemon_pid is not None, "pid": daemon_pid or None},
            "modem": modem,
            "checks": {s.value: n for s, n in count_statuses(statuses.values()).items()},
            "down": sorted(n for n, s in statuses.items() if s is Status.DOWN),
            "late": sorted(n for n, s in statuses.items() if s is Status.LATE),
            "outbox": {"waiting": waiting, "overdue_since": iso(overdue), "failed_24h": failed},
            "sms_path": self._sms_path() if self.config.modem.canary_at is not None else None,
        }

    def _sms_path(self) -> dict[str, Any]:
        c = self.service.smspath.state()
        return {"proven_at": iso(c.proven_at), "round_trip_s": c.round_trip, "broken": c.broken}

    def alert_troubles(self) -> list[str]:
        """What keeps alerts from going out, as the settings and the outbox tell (the web page
        shows these; ``health`` adds the daemon and the modem)."""
        now = self._now()
        waiting, overdue = self.store.outbox_backlog(now)
        return self._setup_troubles() + _outbox_troubles(now, waiting, overdue)

    def page_troubles(self) -> list[str]:
        """What the pages' banner lists: ``alert_troubles`` and the modem as the modem task sees
        it now (unplugged, radio off, being recovered), as ``hbgw status`` reports them."""
        troubles = self.alert_troubles()
        if self.config.modem.backend == "none":
            return troubles
        report = self.service.modem_status()
        if report is None:
            troubles.append("the modem has not reported yet")
        elif not report.connected:
            # (its last error, often a long device path, is on the modem page)
            troubles.append("the modem is not connected: SMS alerts cannot be sent")
        elif report.radio in ("off", "refused"):
            troubles.append("the modem's radio is off: SMS alerts cannot be sent")
        if report is not None and report.recovery:
            troubles.append(f"the modem is being recovered: {report.recovery}")
        return troubles

    def _setup_troubles(self) -> list[str]:
        a, troubles = self.service.settings, []
        if not a.sms_to and not a.email_to and not a.push_to and not a.escalation:
            troubles.append(
                "nobody to alert: add a phone number or an email address on the"
                " settings page ([alerts] sms_to, email_to, push_to, or an escalation ladder)"
            )
        if a.sms_to and self.config.modem.backend == "none":
            troubles.append("SMS numbers are set but no modem is configured ([modem] backend)")
        if a.email_to and not self.config.email.host:
            troubles.append("email addresses are set but no mail relay is configured ([email] host)")
        if self.config.modem.backend != "none":
            report = self.service.modem_status()
            if report is not None:
                troubles += storage_troubles(report.storage_used, report.storage_total)
            no_voice = self.store.get_setting("no_voice")
            if no_voice and any(step.call for n in (None, *a.ladder_names) for step in a.ladder(n)):
                troubles.append(
                    f"the escalation ladder's calls cannot be made: this modem has no voice calls ({no_voice})"
                )
        return troubles + self._sms_path_troubles()

    def _sms_path_troubles(self) -> list[str]:
        m, out = self.config.modem, []
        canary = self.service.smspath.state()
        if canary.broken and canary.failed_sent_at is not None:
            sent = policy_clock(canary.failed_sent_at, self.service.settings)
            out.append(f"the SMS path is broken: the gateway's SMS to itself, sent {sent}, did not come back")
        out += smspath.balance_troubles(self.service.smspath.balance(), m.balance_min, m.balance_ussd)
        return out

    def _modem_summary(self) -> ModemSummary | None:
        if self.config.modem.backend == "none":
            return None
        status = self.service.modem_status()
        if status is None:
            return ModemSummary(connected=False, operator=None, bars=None)
        return ModemSummary(connected=status.connected, operator=status.operator, bars=signal_bars(status.signal_dbm))


def storage_troubles(used: int | None, total: int | None) -> list[str]:
    """The trouble line when few SIM message slots are left ("SIM message storage nearly full:
    28 of 30"); none while the fill is not known."""
    if used is None or not total:
        return []
    if total - used > max(STORAGE_MIN_FREE, int(total * STORAGE_MIN_FREE_SHARE)):
        return []
    return [f"SIM message storage {'full' if used >= total else 'nearly full'}: {used} of {total}"]


def _outbox_troubles(now: float, waiting: int, overdue: float | None) -> list[str]:
    if overdue is not None and now - overdue > STUCK_AFTER:
        return [f"{waiting} message(s) waiting; one is {humanize(now - overdue)} overdue"]
    return []


def _down_since(check: Check, ev: st.Evaluation) -> float | None:
    if ev.status is not Status.DOWN:
        return None
    if check.down_since is not None:
        return check.down_since
    return ev.down_at if ev.down_at is not None else check.last_ping


def matches(check: Check, q: str, tag: str) -> bool:
    """Whether ``check`` passes the overview's filter: it has ``tag`` (if any) and every word of
    ``q`` is in its name, tags or description (case-insensitive)."""
    if tag and tag not in check.tag_list:
        return False
    hay = f"{check.name} {check.tags} {check.desc}".casefold()
    return all(word in hay for word in q.casefold().split())


def uptime_share(
    flips: Sequence[Event], before: Sequence[Event], current: str, start: float, now: float
) -> float | None:
    """The share of ``[start, now]`` spent up (late counts as up; new and paused count neither
    way), from status ``flips`` newest first and the last flip ``before`` them (if any).
    None when no time was counted (pure)."""
    if now <= start:
        return None
    ordered = list(reversed(flips))
    if before:
        state = before[0].new_status or current
    elif ordered:
        state = ordered[0].old_status or current
    else:
        state = current
    up = down = 0.0
    t = start
    for e in ordered:
        at = min(max(e.at, start), now)
        if state in ("up", "late"):
            up += at - t
        elif state == "down":
            down += at - t
        state, t = e.new_status or state, at
    if state in ("up", "late"):
        up += now - t
    elif state == "down":
        down += now - t
    return up / (up + down) if up + down > 0 else None


def show_recipient(channel: str | None, recipient: str | None) -> str:
    """A message's recipient as pages show it: numbers and addresses masked like event rows
    (``+155***67``), a push target (an apprise URL holding a secret) as its scheme only."""
    if not recipient:
        return ""
    if channel == "push" or "://" in recipient:
        scheme = recipient.split("://", 1)[0] if "://" in recipient else "push"
        return f"{scheme}://…"
    return mask(recipient)
