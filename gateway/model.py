"""Records that cross layers. Times are POSIX seconds (float, UTC) unless a name says otherwise."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A check's status. Declared once; templates, JSON and SQL use these values."""

    NEW = "new"  # created, never pinged: it cannot be late yet
    UP = "up"
    LATE = "late"  # past the expected time, still within grace
    DOWN = "down"  # past period + grace, or the last ping reported failure
    PAUSED = "paused"  # manual; the next ping resumes it


class PingKind(StrEnum):
    SUCCESS = "success"
    START = "start"
    FAIL = "fail"
    LOG = "log"  # recorded, changes nothing
    IGNORED = (
        "ign"  # recorded, changes nothing: a GET to a POST-only check, a ping to a check paused until resumed by hand
    )


@dataclass(frozen=True)
class Schedule:
    """When a check expects its pings: every ``period`` seconds, or on a cron expression in ``tz``.

    ``grace`` is how long after the expected time it is only late, not yet down.
    """

    period: float
    grace: float
    cron: str | None = None
    tz: str = "UTC"


@dataclass(frozen=True)
class Check:
    """One monitored server or job, as stored."""

    id: int
    name: str
    token: str
    schedule: Schedule
    status: Status  # as last written by a ping or the watchdog; see status.evaluate for "now"
    anchor: float | None  # deadlines count from here: last success ping, resume, or gateway restart
    last_ping: float | None  # last ping of any kind, for display
    last_start: float | None  # last /start not yet followed by a success or fail
    last_failed: bool  # the last success-or-fail ping was a failure
    last_exit_status: int | None
    next_deadline: float | None  # when the status changes next without pings (late or down)
    sms_enabled: bool
    email_enabled: bool
    created: float
    n_pings: int
    repeat: float | None = None  # per-check reminder interval; None = the global [alerts] repeat
    muted_until: float | None = None  # no reminders before this time
    acked: bool = False  # the owner acknowledged the current outage (cleared on recovery)
    filters: str | None = None  # JSON: email keyword filters {"success": [...], "fail": [...], ...}
    down_since: float | None = None  # when the current outage began
    last_alert: float | None = None  # when the last DOWN or reminder was decided
    alert_at: float | None = None  # when the next reminder or escalation step is due (indexed)
    ladder_step: int = 0  # escalation steps taken in the current outage (rules.escalation)
    acked_by: str | None = None  # who acknowledged the current outage ("+49...", "web", "cli")
    acked_at: float | None = None
    ladder: str | None = None  # its escalation ladder: a [alerts.ladders] name, "none"; None: the default
    slug: str = ""  # /ping/<ping key>/<slug>; Healthchecks' rules (rules.slugs), "" for none
    tags: str = ""  # space-separated, as Healthchecks keeps them
    desc: str = ""  # a free-text description
    manual_resume: bool = False  # a paused check ignores pings until resumed by hand
    methods: str = ""  # "" any of HEAD/GET/POST; "POST": other methods' pings are ignored
    last_duration: float | None = None  # seconds from the matching /start to the last success or fail
    last_start_rid: str | None = None  # the run id (?rid=) of the /start in last_start
    snooze_until_up: bool = False  # the mute (muted_until) is a snooze that the first good ping ends
    outage_told: bool = True  # someone heard of the current outage (a DOWN, reminder or step went out)

    @property
    def tag_list(self) -> list[str]:
        return self.tags.split()

    @property
    def period(self) -> float:
        return self.schedule.period

    def evolve(self, **changes: Any) -> Check:
        """A copy with ``changes``: what ``dataclasses.replace`` does, without running
        ``__init__`` over all 38 fields again (about a tenth of its cost; the ping path makes
        several copies per heartbeat on the store's writer thread). Unknown names raise."""
        unknown = changes.keys() - _CHECK_FIELDS
        if unknown:
            raise TypeError(f"Check has no field {sorted(unknown)[0]!r}")
        new = object.__new__(Check)
        new.__dict__.update(self.__dict__, **changes)
        return new

    @property
    def grace(self) -> float:
        return self.schedule.grace


_CHECK_FIELDS = frozenset(f.name for f in fields(Check))


@dataclass(frozen=True)
class Ping:
    id: int
    check_id: int
    at: float
    kind: PingKind
    exit_status: int | None
    source: str  # "http" | "email"
    remote_addr: str | None
    method: str | None
    user_agent: str | None
    body: str | None
    rid: str | None = None  # the run id the client sent (?rid=)
    duration: float | None = None  # a success or fail: seconds since its matching /start


@dataclass(frozen=True)
class Flip:
    """A status change, stored as an event row in the same transaction as the new status."""

    check_id: int
    at: float
    old: Status
    new: Status
    reason: str  # "deadline", "ping", "fail", "pause", "resume", "restart"


@dataclass(frozen=True)
class Event:
    id: int
    check_id: int | None
    at: float
    kind: str  # "flip" | "created" | "paused" | "resumed" | "note" | ...
    old_status: str | None
    new_status: str | None
    detail: str | None


@dataclass(frozen=True)
class PingMeta:
    """What an edge knows about an incoming heartbeat besides the check and the kind."""

    source: str = "http"
    remote_addr: str | None = None
    method: str | None = None
    user_agent: str | None = None
    body: str | None = None
    rid: str | None = None  # a run id (?rid=) pairing a /start with its success or fail


@dataclass(frozen=True)
class OutboxRow:
    """One message in the outbox: an alert, a reply, a note (rows for one recipient decided
    close together are sent as one message)."""

    id: int
    created: float
    channel: str  # "sms" | "email"
    recipient: str
    text: str
    state: str  # pending | sending | sent | failed
    attempts: int
    error: str | None
    sent_at: float | None
    refs: str | None  # the modem's message references, once sent
    # down | fail | up | reminder | escalation | call | note | test | reply | budget | modem | summary;
    # relay (sent for someone else, gateway.relay) | forward (an inbound SMS, by email)
    kind: str
    check_name: str | None
    check_id: int | None
    delivery: str | None = None  # JSON {"<ref>": "delivered"|"pending"|"failed"} from delivery reports
    delivered_at: float | None = None  # when the last part was delivered
    delivery_note: str | None = None  # the network's words for the latest report
    origin: str | None = None  # a relayed message's sender ("mail nas@home.lan", "api key 3 (backup)")

    @property
    def delivery_state(self) -> str | None:
        """ "delivered" (every part), "failed" (any part), "pending" (a report said "still
        trying", or some parts have no report yet), or None: no report at all (yet)."""
        if not self.delivery:
            return None
        parts = json.loads(self.delivery)
        refs = [r for r in (self.refs or "").split(",") if r and r != "-1"]
        if "failed" in parts.values():
            return "failed"
        if refs and all(parts.get(r) == "delivered" for r in refs):
            return "delivered"
        return "pending"

    def to_json(self) -> dict[str, object]:
        """The stable JSON form (CLI ``--json``, the API)."""
        return {
            "id": self.id,
            "to": self.recipient,
            "channel": self.channel,
            "text": self.text,
            "state": self.state,
            "attempts": self.attempts,
            "error": self.error,
            "kind": self.kind,
            "check": self.check_name,
            "delivery": self.delivery_state,
            "delivered_at": iso(self.delivered_at),
            "delivery_note": self.delivery_note,
            "created": iso(self.created),
            "sent_at": iso(self.sent_at),
            "refs": self.refs,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class InboxRow:
    """One SMS that reached the SIM, stored before anything was done with it."""

    id: int
    received: float
    sender: str
    text: str
    allowed: bool  # on the allow-list when it arrived: its text was a command
    handled: bool
    reply: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "received": iso(self.received),
            "from": self.sender,
            "text": self.text,
            "allowed": self.allowed,
            "handled": self.handled,
            "reply": self.reply,
        }


@dataclass(frozen=True)
class ModemLogRow:
    """The modem's health at one moment, as the daemon recorded it."""

    at: float
    connected: bool
    signal_dbm: int | None
    registration: str | None
    operator: str | None
    error: str | None
    storage_used: int | None = None  # SIM message slots in use
    storage_total: int | None = None
    recovery: str | None = None  # the recovery ladder's step then, e.g. "radio cycle (step 2 of 5)"


@dataclass(frozen=True)
class ModemReport:
    """The modem as the daemon's modem task sees it now (the modem page, /metrics)."""

    backend: str
    port: str
    connected: bool
    last_error: str | None
    since: float  # when the connection state last changed
    retrying: bool
    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None
    sim: str | None = None
    registration: str | None = None
    operator: str | None = None
    signal_dbm: int | None = None
    smsc: str | None = None
    storage_used: int | None = None  # SIM message slots in use (new SMS are received there)
    storage_total: int | None = None
    radio: str | None = None  # "on" | "off" | "refused" (AT+CFUN)
    access_technology: str | None = None  # GSM | UMTS | LTE | NR
    registration_note: str | None = None  # what an SMS-only or denied registration means for alerts
    recovery: str | None = None  # the recovery ladder's step, e.g. "radio cycle (step 2 of 5)"


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: never the key itself, only its first characters for recognition."""

    id: int
    label: str
    prefix: str
    created: float
    last_used: float | None
    revoked: float | None
    scope: str = "write"  # "write": everything the API offers; "read": reading checks, flips and metrics


def iso(ts: float | None) -> str | None:
    """POSIX seconds → ISO 8601 UTC with a Z, to the second (None stays None)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
