"""Rows to records and back, by column name."""

from __future__ import annotations

import sqlite3

from gateway.model import ApiKey, Check, OutboxRow, Schedule, Status
from gateway.rules.maintenance import Window

CHECK_COLUMNS = (
    "id, name, token, period, grace, cron, tz, status, anchor, last_ping, last_start, "
    "last_failed, last_exit_status, next_deadline, sms_enabled, email_enabled, created, "
    "n_pings, repeat, muted_until, acked, filters, down_since, last_alert, alert_at, ladder_step, acked_by, "
    "acked_at, ladder, slug, tags, description, manual_resume, methods, last_duration, last_start_rid, "
    "snooze_until_up, outage_told"
)


# Columns read as they are, in CHECK_COLUMNS order, by the Check field they fill; the others
# (the schedule's four, the status, the flags) are converted in check_from_row.
_PLAIN = {
    "id": "id",
    "name": "name",
    "token": "token",
    "anchor": "anchor",
    "last_ping": "last_ping",
    "last_start": "last_start",
    "last_exit_status": "last_exit_status",
    "next_deadline": "next_deadline",
    "created": "created",
    "n_pings": "n_pings",
    "repeat": "repeat",
    "muted_until": "muted_until",
    "filters": "filters",
    "down_since": "down_since",
    "last_alert": "last_alert",
    "alert_at": "alert_at",
    "ladder_step": "ladder_step",
    "acked_by": "acked_by",
    "acked_at": "acked_at",
    "ladder": "ladder",
    "slug": "slug",
    "tags": "tags",
    "description": "desc",
    "methods": "methods",
    "last_duration": "last_duration",
    "last_start_rid": "last_start_rid",
}
_FLAGS = {
    "last_failed": "last_failed",
    "sms_enabled": "sms_enabled",
    "email_enabled": "email_enabled",
    "acked": "acked",
    "manual_resume": "manual_resume",
    "snooze_until_up": "snooze_until_up",
    "outage_told": "outage_told",
}
_COLUMNS = [c.strip() for c in CHECK_COLUMNS.split(",")]
_PLAIN_AT = [(i, _PLAIN[c]) for i, c in enumerate(_COLUMNS) if c in _PLAIN]
_FLAGS_AT = [(i, _FLAGS[c]) for i, c in enumerate(_COLUMNS) if c in _FLAGS]
_AT = {c: i for i, c in enumerate(_COLUMNS)}
_PERIOD, _GRACE, _CRON, _TZ, _STATUS = (_AT[c] for c in ("period", "grace", "cron", "tz", "status"))
_STATUSES = {s.value: s for s in Status}


def check_from_row(r: sqlite3.Row | tuple[object, ...]) -> Check:
    """A Check from a row of ``SELECT {CHECK_COLUMNS}``. It fills the frozen record's fields
    directly, as ``Check.evolve`` does: the ping path reads a check per heartbeat, and running
    ``__init__`` over its 38 fields was a fifth of the writer's time per ping."""
    values = tuple(r)
    fields: dict[str, object] = {name: values[i] for i, name in _PLAIN_AT}
    fields.update((name, bool(values[i])) for i, name in _FLAGS_AT)
    fields["schedule"] = Schedule(values[_PERIOD], values[_GRACE], values[_CRON], values[_TZ])
    fields["status"] = _STATUSES[values[_STATUS]]
    check = object.__new__(Check)
    check.__dict__.update(fields)
    return check


OUTBOX_COLUMNS = (
    "id, created, channel, recipient, text, state, attempts, error, sent_at, refs, kind, check_name, check_id,"
    " delivery, delivered_at, delivery_note, origin"
)


def outbox_from_row(r: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=r["id"],
        created=r["created"],
        channel=r["channel"],
        recipient=r["recipient"],
        text=r["text"],
        state=r["state"],
        attempts=r["attempts"],
        error=r["error"],
        sent_at=r["sent_at"],
        refs=r["refs"],
        kind=r["kind"],
        check_name=r["check_name"],
        check_id=r["check_id"],
        delivery=r["delivery"],
        delivered_at=r["delivered_at"],
        delivery_note=r["delivery_note"],
        origin=r["origin"],
    )


API_KEY_COLUMNS = "id, label, prefix, created, last_used, revoked, scope"


def api_key_from_row(r: sqlite3.Row) -> ApiKey:
    return ApiKey(r["id"], r["label"], r["prefix"], r["created"], r["last_used"], r["revoked"], r["scope"])


WINDOW_COLUMNS = 'id, scope, start, "end", cron, tz, duration, created, ended_early'


def window_from_row(r: sqlite3.Row) -> Window:
    return Window(
        id=r["id"],
        scope=r["scope"],
        start=r["start"],
        end=r["end"],
        cron=r["cron"],
        tz=r["tz"],
        duration=r["duration"],
        created=r["created"],
        ended_early=r["ended_early"],
    )
