"""Rows to records and back, by column name."""

from __future__ import annotations

import sqlite3

from gateway.model import ApiKey, Check, OutboxRow, Schedule, Status

CHECK_COLUMNS = (
    "id, name, token, period, grace, cron, tz, status, anchor, last_ping, last_start, "
    "last_failed, last_exit_status, next_deadline, sms_enabled, email_enabled, created, "
    "n_pings, repeat, muted_until, acked, filters, down_since, last_alert, alert_at, ladder_step, acked_by, "
    "acked_at, ladder, slug, tags, description, manual_resume, methods, last_duration, last_start_rid, "
    "snooze_until_up, outage_told"
)


def check_from_row(r: sqlite3.Row) -> Check:
    return Check(
        id=r["id"],
        name=r["name"],
        token=r["token"],
        schedule=Schedule(period=r["period"], grace=r["grace"], cron=r["cron"], tz=r["tz"]),
        status=Status(r["status"]),
        anchor=r["anchor"],
        last_ping=r["last_ping"],
        last_start=r["last_start"],
        last_failed=bool(r["last_failed"]),
        last_exit_status=r["last_exit_status"],
        next_deadline=r["next_deadline"],
        sms_enabled=bool(r["sms_enabled"]),
        email_enabled=bool(r["email_enabled"]),
        created=r["created"],
        n_pings=r["n_pings"],
        repeat=r["repeat"],
        muted_until=r["muted_until"],
        acked=bool(r["acked"]),
        filters=r["filters"],
        down_since=r["down_since"],
        last_alert=r["last_alert"],
        alert_at=r["alert_at"],
        ladder_step=r["ladder_step"],
        acked_by=r["acked_by"],
        acked_at=r["acked_at"],
        ladder=r["ladder"],
        slug=r["slug"],
        tags=r["tags"],
        desc=r["description"],
        manual_resume=bool(r["manual_resume"]),
        methods=r["methods"],
        last_duration=r["last_duration"],
        last_start_rid=r["last_start_rid"],
        snooze_until_up=bool(r["snooze_until_up"]),
        outage_told=bool(r["outage_told"]),
    )


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
