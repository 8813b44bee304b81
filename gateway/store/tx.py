"""Write transactions: each runs on the store's writer thread inside a SAVEPOINT of a group
commit (see :class:`gateway.store.Store`). Checks are loaded, handed to the pure decision the
caller chose (:mod:`gateway.rules.lifecycle`) and saved: SQL and row mapping only."""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from gateway.model import Check, Flip, OutboxRow, PingKind, PingMeta, Schedule, Status
from gateway.rules import dependencies as deps
from gateway.rules.lifecycle import Decision, Parents
from gateway.rules.maintenance import Window
from gateway.rules.policy import Outgoing
from gateway.rules.slugs import slugify
from gateway.rules.status import effective_kind
from gateway.store.errors import Ambiguous, Conflict, NotFound, Refused
from gateway.store.rows import (
    CHECK_COLUMNS,
    OUTBOX_COLUMNS,
    WINDOW_COLUMNS,
    check_from_row,
    outbox_from_row,
    window_from_row,
)

PING_HISTORY = 1000  # newest pings kept per check


PRUNE_EVERY = 50  # prune in batches: at most PING_HISTORY + PRUNE_EVERY - 1 rows stay


BODY_EXCERPT = 10_000  # characters of a ping body that are stored (web.ping cuts at as many bytes)


Decide = Callable[[Check, Parents], Decision]  # (check, its parents' states: () unless it is down)


DecidePing = Callable[[Check, "str | None", PingKind, Parents], Decision]  # (..., stored body excerpt, kind, ...)


DecideAll = Callable[[list[Check]], list[Decision]]


@dataclasses.dataclass(frozen=True)
class PingResult:
    check: Check
    flip: Flip | None
    created: bool = False


def save_check(conn: sqlite3.Connection, c: Check) -> None:
    conn.execute(
        "UPDATE checks SET status=:status, anchor=:anchor, last_ping=:last_ping, last_start=:last_start,"
        " last_failed=:last_failed, last_exit_status=:last_exit_status, next_deadline=:next_deadline,"
        " sms_enabled=:sms_enabled, email_enabled=:email_enabled, n_pings=:n_pings, period=:period,"
        " grace=:grace, cron=:cron, tz=:tz, repeat=:repeat, muted_until=:muted_until, acked=:acked,"
        " filters=:filters, down_since=:down_since, last_alert=:last_alert, alert_at=:alert_at,"
        " ladder_step=:ladder_step, acked_by=:acked_by, acked_at=:acked_at, ladder=:ladder, token=:token,"
        " name=:name, slug=:slug, tags=:tags, description=:description, manual_resume=:manual_resume,"
        " methods=:methods, last_duration=:last_duration, last_start_rid=:last_start_rid,"
        " snooze_until_up=:snooze_until_up, outage_told=:outage_told WHERE id=:id",
        {
            "status": c.status.value,
            "anchor": c.anchor,
            "last_ping": c.last_ping,
            "last_start": c.last_start,
            "last_failed": int(c.last_failed),
            "last_exit_status": c.last_exit_status,
            "next_deadline": c.next_deadline,
            "sms_enabled": int(c.sms_enabled),
            "email_enabled": int(c.email_enabled),
            "n_pings": c.n_pings,
            "period": c.schedule.period,
            "grace": c.schedule.grace,
            "cron": c.schedule.cron,
            "tz": c.schedule.tz,
            "repeat": c.repeat,
            "muted_until": c.muted_until,
            "acked": int(c.acked),
            "filters": c.filters,
            "down_since": c.down_since,
            "last_alert": c.last_alert,
            "alert_at": c.alert_at,
            "ladder_step": c.ladder_step,
            "acked_by": c.acked_by,
            "acked_at": c.acked_at,
            "ladder": c.ladder,
            "token": c.token,
            "name": c.name,
            "slug": c.slug,
            "tags": c.tags,
            "description": c.desc,
            "manual_resume": int(c.manual_resume),
            "methods": c.methods,
            "last_duration": c.last_duration,
            "last_start_rid": c.last_start_rid,
            "snooze_until_up": int(c.snooze_until_up),
            "outage_told": int(c.outage_told),
            "id": c.id,
        },
    )


def add_event(
    conn: sqlite3.Connection,
    check_id: int | None,
    at: float,
    kind: str,
    old: str | None = None,
    new: str | None = None,
    detail: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO events (check_id, at, kind, old_status, new_status, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (check_id, at, kind, old, new, detail),
    )


def load_parents(conn: sqlite3.Connection, check_id: int) -> Parents:
    """The parents of a check with their status now (gateway.rules.dependencies)."""
    rows = conn.execute(
        "SELECT c.name, c.status FROM check_parents p JOIN checks c ON c.id = p.parent_id"
        " WHERE p.child_id = ? ORDER BY c.name",
        (check_id,),
    ).fetchall()
    return tuple(deps.Parent(r[0], Status(r[1])) for r in rows)


def decide_check(conn: sqlite3.Connection, before: Check, decide: Callable[[Parents], Decision]) -> Decision:
    """``decide`` for ``before``; again with its parents' states when the check is down after
    it (only then do they matter): a check that is up pays no lookup on the ping path."""
    d = decide(())
    if d.check is not None and d.check.status is Status.DOWN:
        parents = load_parents(conn, before.id)
        if parents:
            d = decide(parents)
    return d


def apply_children(conn: sqlite3.Connection, d: Decision) -> None:
    """What a flip does to the checks behind it (``d.children``): a parent going down silences
    its children that went down within the dependency window (their DOWN, still waiting in the
    outbox, is dropped at send time); a parent coming back sets the next alert time of its
    children still down and never told (behind no other down parent) to their own grace from
    now, when they alert on their own."""
    if d.children is None or d.check is None:
        return
    what, at = d.children
    if what == "down":
        conn.execute(
            "UPDATE checks SET outage_told = 0, ladder_step = 0 WHERE status = 'down' AND down_since >= ?"
            " AND id IN (SELECT child_id FROM check_parents WHERE parent_id = ?)",
            (at, d.check.id),
        )
    else:
        conn.execute(
            "UPDATE checks SET alert_at = ? + grace WHERE status = 'down' AND outage_told = 0 AND acked = 0"
            " AND id IN (SELECT child_id FROM check_parents WHERE parent_id = ?)"
            " AND NOT EXISTS (SELECT 1 FROM check_parents q JOIN checks o ON o.id = q.parent_id"
            " WHERE q.child_id = checks.id AND o.status = 'down')",
            (at, d.check.id),
        )


def apply(conn: sqlite3.Connection, d: Decision, before: Check | None, now: float) -> None:
    """Write what a decision says: the check (when it changed), its events, the flip as an event
    row, the alerts as outbox rows. Runs inside the transaction that loaded ``before``."""
    if d.check is not None and d.check != before:
        save_check(conn, d.check)
    for note in d.events:
        add_event(conn, note.check_id, now, note.kind, detail=note.detail)
    if d.flip is not None:
        f = d.flip
        add_event(conn, f.check_id, f.at, "flip", f.old.value, f.new.value, f.reason)
    queue_rows(conn, d.alerts, now, d.wait)
    apply_children(conn, d)


def queue_rows(conn: sqlite3.Connection, rows: Sequence[Outgoing], now: float, wait: float) -> int:
    """Insert outbox rows (a row whose dedupe key exists is skipped); returns how many."""
    n = 0
    for r in rows:
        cur = conn.execute(
            "INSERT OR IGNORE INTO outbox (created, channel, recipient, text, not_before, check_id,"
            " dedupe_key, kind, check_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (now, r.channel, r.recipient, r.text, now + wait, r.check_id, r.dedupe, r.kind, r.check_name),
        )
        n += cur.rowcount
    return n


def load_check(conn: sqlite3.Connection, where: str, arg: Any) -> Check | None:
    r = conn.execute(f"SELECT {CHECK_COLUMNS} FROM checks WHERE {where}", (arg,)).fetchone()
    return check_from_row(r) if r else None


def add_check(
    conn: sqlite3.Connection,
    name: str,
    token: str,
    schedule: Schedule,
    now: float,
    max_checks: int | None,
    fields: dict[str, Any] | None = None,
) -> Check:
    """Insert a check (its slug made from its name unless ``fields`` give one; ``fields`` are
    other :class:`Check` fields to set: tags, desc, ...)."""
    if max_checks is not None:
        n = conn.execute("SELECT count(*) FROM checks").fetchone()[0]
        if n >= max_checks:
            raise Conflict(f"the limit of {max_checks} checks is reached")
    try:
        cur = conn.execute(
            "INSERT INTO checks (name, token, period, grace, cron, tz, created, slug) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, token, schedule.period, schedule.grace, schedule.cron, schedule.tz, now, slugify(name)),
        )
    except sqlite3.IntegrityError as e:
        if "token" in str(e):
            raise Conflict("another check has this ping token") from None
        raise Conflict(f"a check named {name!r} exists") from None
    add_event(conn, cur.lastrowid, now, "created")
    check = load_check(conn, "id = ?", cur.lastrowid)
    assert check is not None
    if fields:
        check = check.evolve(**fields)
        save_check(conn, check)
    return check


def remove_check(conn: sqlite3.Connection, name: str) -> Check:
    check = load_check(conn, "name = ?", name)
    if check is None:
        raise NotFound(name)
    conn.execute("DELETE FROM checks WHERE id = ?", (check.id,))
    add_counter(conn, "pings_of_removed_checks", check.n_pings)
    return check


def add_counter(conn: sqlite3.Connection, name: str, n: int) -> None:
    """Add ``n`` to a kept counter (one that must not go down when rows it counted are removed)."""
    if n:
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, n, n),
        )


def load_by_slug(conn: sqlite3.Connection, slug: str) -> Check | None:
    """The check whose slug is ``slug``, else the one named ``slug`` (names match without case,
    as before slugs existed). Raises Ambiguous when two checks share the slug."""
    rows = conn.execute(f"SELECT {CHECK_COLUMNS} FROM checks WHERE slug = ? LIMIT 2", (slug,)).fetchall()
    if len(rows) > 1:
        raise Ambiguous(f"more than one check has the slug {slug!r}")
    if rows:
        return check_from_row(rows[0])
    return load_check(conn, "name = ?", slug)


def add_named_event(conn: sqlite3.Connection, check_name: str | None, at: float, kind: str, detail: str | None) -> None:
    check = load_check(conn, "name = ?", check_name) if check_name else None
    add_event(conn, check.id if check else None, at, kind, detail=detail)


def change_check(conn: sqlite3.Connection, name: str, decide: Decide, now: float) -> Decision:
    before = load_check(conn, "name = ?", name)
    if before is None:
        raise NotFound(name)
    d = decide_check(conn, before, lambda parents: decide(before, parents))
    try:
        apply(conn, d, before, now)
    except sqlite3.IntegrityError:
        raise Conflict(f"a check named {(d.check.name if d.check else name)!r} exists") from None
    return d


def record_ping(
    conn: sqlite3.Connection,
    token: str | None,
    name: str | None,
    decide: DecidePing,
    meta: PingMeta,
    kind: PingKind,
    exit_status: int | None,
    now: float,
    create: tuple[str, Schedule, int] | None,
) -> PingResult | None:
    created = False
    if token is not None:
        before = load_check(conn, "token = ?", token)
    else:
        assert name is not None
        before = load_by_slug(conn, name)
        if before is None and create is not None:
            before = add_check(conn, name, create[0], create[1], now, create[2])
            created = True
    if before is None:
        return None
    body = meta.body[:BODY_EXCERPT] if meta.body else None
    kind = effective_kind(before, kind, meta.method)
    found = before
    d = decide_check(conn, before, lambda parents: decide(found, body, kind, parents))
    apply(conn, d, before, now)
    after = d.check or before
    duration = after.last_duration if kind in (PingKind.SUCCESS, PingKind.FAIL) else None
    conn.execute(
        "INSERT INTO pings (check_id, at, kind, exit_status, source, remote_addr, method,"
        " user_agent, body, rid, duration) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            after.id,
            now,
            kind.value,
            exit_status,
            meta.source,
            meta.remote_addr,
            meta.method,
            meta.user_agent,
            body,
            meta.rid,
            duration,
        ),
    )
    if after.n_pings % PRUNE_EVERY == 0:
        conn.execute(
            "DELETE FROM pings WHERE check_id = ? AND id <= (SELECT id FROM pings"
            " WHERE check_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (after.id, after.id, PING_HISTORY),
        )
    return PingResult(after, d.flip, created)


def advance(conn: sqlite3.Connection, now: float, decide: Decide) -> list[Decision]:
    rows = conn.execute(
        f"SELECT {CHECK_COLUMNS} FROM checks WHERE next_deadline <= ? OR alert_at <= ?", (now, now)
    ).fetchall()
    out = []
    for row in rows:
        before = check_from_row(row)
        d = decide_check(conn, before, functools.partial(decide, before))
        apply(conn, d, before, now)
        out.append(d)
    return out


def decide_all(conn: sqlite3.Connection, where: str, now: float, decide: DecideAll) -> list[Decision]:
    rows = conn.execute(f"SELECT {CHECK_COLUMNS} FROM checks WHERE {where}", {"now": now}).fetchall()
    before = {c.id: c for c in map(check_from_row, rows)}
    decisions = decide(list(before.values()))
    for d in decisions:
        apply(conn, d, before.get(d.check.id) if d.check else None, now)
    return decisions


def queue_message(
    conn: sqlite3.Connection, kind: str, channel: str, recipient: str, text: str, now: float, check_id: int | None
) -> int:
    cur = conn.execute(
        "INSERT INTO outbox (created, channel, recipient, text, not_before, check_id, kind)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, channel, recipient, text, now, check_id, kind),
    )
    return int(cur.lastrowid or 0)


def queue_noted(
    conn: sqlite3.Connection, key: str, value: str, kind: str, channel: str, recipient: str, text: str, now: float
) -> int:
    """Queue a message and set a setting in one transaction (the canary and its record)."""
    set_setting(conn, key, value)
    return queue_message(conn, kind, channel, recipient, text, now, None)


def queue_relay(
    conn: sqlite3.Connection,
    recipients: Sequence[str],
    text: str,
    origin: str,
    now: float,
    room: Callable[[int, int], str | None],
) -> list[int]:
    """Queue a relayed SMS to each of ``recipients`` if ``room(sent_by_origin, sent_relayed)``
    (counted over the last hour, this message's parts included) says there is room; raises
    Refused with its reason otherwise. One transaction: two senders racing for the last slot
    cannot both get it."""
    by_origin, relayed = conn.execute(
        "SELECT count(*) FILTER (WHERE origin = ?), count(*) FROM outbox WHERE kind = 'relay' AND created >= ?",
        (origin, now - 3600),
    ).fetchone()
    why = room(by_origin + len(recipients) - 1, relayed + len(recipients) - 1)
    if why is not None:
        raise Refused(why)
    return [
        insert(
            conn,
            "INSERT INTO outbox (created, channel, recipient, text, not_before, kind, origin)"
            " VALUES (?, 'sms', ?, ?, ?, 'relay', ?)",
            (now, to, text, now, origin),
        )
        for to in recipients
    ]


def claim_due(conn: sqlite3.Connection, now: float, lease: float) -> list[list[OutboxRow]]:
    heads = conn.execute(
        # The redundant state IN (...) lets SQLite use the partial index outbox_due instead of
        # scanning every sent/failed row of the outbox's history on each claim.
        "SELECT DISTINCT channel, recipient FROM outbox WHERE state IN ('pending', 'sending')"
        " AND ((state = 'pending' AND not_before <= ?) OR (state = 'sending' AND lease_until <= ?))",
        (now, now),
    ).fetchall()
    groups = []
    for channel, recipient in heads:
        # Everything waiting for this recipient goes in one message: alerts decided close
        # together are merged (coalescing), and nothing waits longer than the first one's window.
        rows = [
            outbox_from_row(r)
            for r in conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE channel = ? AND recipient = ?"
                # state IN (...): the partial index, as above; "+id": sort the few rows it yields
                # rather than walk the whole table in rowid order (SQLite's choice without stats)
                " AND state IN ('pending', 'sending')"
                " AND (state = 'pending' OR (state = 'sending' AND lease_until <= ?)) ORDER BY +id",
                (channel, recipient, now),
            )
        ]
        conn.executemany(
            "UPDATE outbox SET state = 'sending', lease_until = ?, attempts = attempts + 1 WHERE id = ?",
            [(now + lease, r.id) for r in rows],
        )
        groups.append(rows)  # as they were before this claim (attempts: those already made)
    return groups


def mark_sent(conn: sqlite3.Connection, ids: list[int], refs: str, now: float) -> None:
    conn.executemany(
        "UPDATE outbox SET state = 'sent', sent_at = ?, refs = ?, error = NULL,"
        " lease_until = NULL WHERE id = ? AND state = 'sending'",
        [(now, refs, i) for i in ids],
    )


REPORT_WINDOW = 7 * 86400.0  # a delivery report is matched to SMS sent this recently


def apply_delivery_report(
    conn: sqlite3.Connection, recipient: str, reference: int, state: str, note: str, at: float
) -> int:
    """Record a delivery report on the SMS rows sent to ``recipient`` whose references include
    ``reference`` (the newest message with it: references wrap at 256). Returns how many rows
    it marked (merged alerts share one message); 0 for a report nobody waits for."""
    rows = conn.execute(
        "SELECT id, refs, delivery, sent_at FROM outbox WHERE channel = 'sms' AND state = 'sent'"
        " AND recipient = ? AND sent_at >= ? ORDER BY sent_at DESC, id DESC",
        (recipient, at - REPORT_WINDOW),
    ).fetchall()
    ref = str(reference)
    newest = next((r["sent_at"] for r in rows if ref in (r["refs"] or "").split(",")), None)
    marked = 0
    for r in rows:
        if r["sent_at"] != newest or ref not in (r["refs"] or "").split(","):
            continue
        parts = json.loads(r["delivery"]) if r["delivery"] else {}
        if parts.get(ref) in ("delivered", "failed"):
            continue  # a late "still trying" never undoes the final word
        parts[ref] = state
        refs = [x for x in r["refs"].split(",") if x and x != "-1"]
        done = all(parts.get(x) == "delivered" for x in refs)
        conn.execute(
            "UPDATE outbox SET delivery = ?, delivery_note = ?, delivered_at = ? WHERE id = ?",
            (json.dumps(parts, sort_keys=True), note, at if done else None, r["id"]),
        )
        marked += 1
    return marked


def mark_retry(conn: sqlite3.Connection, ids: list[int], error: str, not_before: float) -> None:
    conn.executemany(
        "UPDATE outbox SET state = 'pending', error = ?, not_before = ?,"
        " lease_until = NULL WHERE id = ? AND state = 'sending'",
        [(error, not_before, i) for i in ids],
    )


def mark_retries(conn: sqlite3.Connection, not_before: dict[int, float], error: str) -> None:
    """Claimed rows back to pending, each with its own next try (its own backoff)."""
    conn.executemany(
        "UPDATE outbox SET state = 'pending', error = ?, not_before = ?,"
        " lease_until = NULL WHERE id = ? AND state = 'sending'",
        [(error, at, i) for i, at in not_before.items()],
    )


SUPERSEDED = "superseded: the check's state now says it all"


def mark_superseded(conn: sqlite3.Connection, ids: list[int], now: float) -> None:
    """Claimed rows with nothing left to say: done, without a message (refs NULL: no SMS)."""
    conn.executemany(
        "UPDATE outbox SET state = 'sent', sent_at = ?, refs = NULL, error = ?,"
        " lease_until = NULL WHERE id = ? AND state = 'sending'",
        [(now, SUPERSEDED, i) for i in ids],
    )


def mark_failed(conn: sqlite3.Connection, ids: list[int], error: str, fallback_to: tuple[str, ...], now: float) -> int:
    n = 0
    for i in ids:
        cur = conn.execute(
            "UPDATE outbox SET state = 'failed', error = ?, lease_until = NULL WHERE id = ? AND state = 'sending'",
            (error, i),
        )
        if not cur.rowcount:
            continue
        row = conn.execute("SELECT text, kind, check_id, check_name, channel FROM outbox WHERE id = ?", (i,)).fetchone()
        if row[4] == "email":
            continue  # email is the last resort; the failure is visible in the outbox
        for addr in fallback_to:
            n += conn.execute(
                "INSERT OR IGNORE INTO outbox (created, channel, recipient, text, not_before,"
                " check_id, dedupe_key, kind, check_name, fallback_of)"
                " VALUES (?, 'email', ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, addr, row[0], now, row[2], f"fallback:{i}:{addr}", row[1], row[3], i),
            ).rowcount
    return n


def release_leases(conn: sqlite3.Connection) -> int:
    return conn.execute(
        "UPDATE outbox SET state = 'pending', lease_until = NULL, not_before = 0 WHERE state = 'sending'"
    ).rowcount


def add_inbox(conn: sqlite3.Connection, sender: str, text: str, received: float, allowed: bool) -> int:
    cur = conn.execute(
        "INSERT INTO inbox (received, sender, text, allowed) VALUES (?, ?, ?, ?)",
        (received, sender, text, int(allowed)),
    )
    return int(cur.lastrowid or 0)


def mark_inbox(conn: sqlite3.Connection, inbox_id: int, reply: str | None) -> None:
    conn.execute("UPDATE inbox SET handled = 1, reply = ? WHERE id = ?", (reply, inbox_id))


def log_modem(
    conn: sqlite3.Connection,
    at: float,
    connected: bool,
    signal_dbm: int | None,
    registration: str | None,
    operator: str | None,
    error: str | None,
    storage: tuple[int | None, int | None] = (None, None),
    recovery: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO modem_log (at, connected, signal_dbm, registration, operator, error, storage_used,"
        " storage_total, recovery) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (at, int(connected), signal_dbm, registration, operator, error, *storage, recovery),
    )
    conn.execute("DELETE FROM modem_log WHERE at < ?", (at - 7 * 86400,))


def queue_once(
    conn: sqlite3.Connection,
    key: str,
    mark: str,
    kind: str,
    channel: str,
    recipients: tuple[str, ...],
    text: str,
    now: float,
) -> int:
    r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    if r and r[0] == mark:
        return 0
    for recipient in recipients:
        queue_message(conn, kind, channel, recipient, text, now, None)
    set_setting(conn, key, mark)
    return len(recipients)


def set_password(
    conn: sqlite3.Connection, key: str, digest: str, forget: tuple[str, ...], keep_session: str | None
) -> int:
    set_setting(conn, key, digest)
    for k in forget:
        set_setting(conn, k, "")
    return int(conn.execute("DELETE FROM sessions WHERE id IS NOT ?", (keep_session,)).rowcount)


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def setting_or_create(conn: sqlite3.Connection, key: str, make: Callable[[], str]) -> str:
    r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    if r:
        return str(r[0])
    value = make()
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))
    return value


def execute(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    """One statement; returns the number of rows it changed."""
    return int(conn.execute(sql, args).rowcount)


def insert(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    return int(conn.execute(sql, args).lastrowid or 0)


def add_session(
    conn: sqlite3.Connection, sid_hash: str, csrf: str, created: float, expires: float, remote_addr: str | None
) -> None:
    conn.execute("DELETE FROM sessions WHERE expires <= ?", (created,))
    conn.execute(
        "INSERT INTO sessions (id, csrf, created, expires, remote_addr) VALUES (?, ?, ?, ?, ?)",
        (sid_hash, csrf, created, expires, remote_addr),
    )


def reserve_login_attempt(
    conn: sqlite3.Connection, remote_addr: str, at: float, since: float, limit: int
) -> tuple[bool, float | None]:
    conn.execute("DELETE FROM login_attempts WHERE at < ?", (since,))
    n, oldest = conn.execute(
        "SELECT count(*), min(at) FROM login_attempts WHERE remote_addr = ?", (remote_addr,)
    ).fetchone()
    if n >= limit:
        return False, oldest
    conn.execute("INSERT INTO login_attempts (remote_addr, at) VALUES (?, ?)", (remote_addr, at))
    return True, oldest


def set_settings(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    for key, value in values.items():
        set_setting(conn, key, value)


DEADLINE_PASSED = "next_deadline IS NOT NULL AND next_deadline <= :now"


STAMPED_AFTER = "anchor > :now OR last_alert > :now"
# checks whose alert times a new or ended maintenance window may move
DOWN_NOW = "status = 'down'"


# The newest row of events and outbox always stays, so their ids never restart (an email
# fallback's dedupe key is built from the outbox id of the SMS it stands in for).
PRUNE = {
    "events": "FROM events WHERE id IN (SELECT id FROM events WHERE at < ?"
    " AND id < (SELECT max(id) FROM events) ORDER BY id LIMIT ?)",
    "outbox": "FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created < ?"
    " AND state IN ('sent', 'failed') AND id < (SELECT max(id) FROM outbox) ORDER BY id LIMIT ?)",
    "inbox": "FROM inbox WHERE id IN (SELECT id FROM inbox WHERE received < ? ORDER BY id LIMIT ?)",
}


def prune(conn: sqlite3.Connection, table: str, before: float, limit: int) -> int:
    """Remove up to ``limit`` rows of ``table`` older than ``before`` (PRUNE says which). Messages
    leave their count in the kept counters (``<channel>:<state>``) so /metrics never goes down."""
    where = PRUNE[table]
    if table == "outbox":
        for channel, state, n in conn.execute(
            f"SELECT channel, state, count(*) {where} GROUP BY 1, 2", (before, limit)
        ):
            add_counter(conn, f"{channel}:{state}", n)
    return conn.execute(f"DELETE {where}", (before, limit)).rowcount


def counters(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: value for name, value in conn.execute("SELECT name, value FROM counters")}


def first_ping_id_at(conn: sqlite3.Connection, since: float) -> int | None:
    """The smallest ping id stored at or after ``since``, by binary search on the rowid.

    There is no index on ``pings.at``, but one writer inserts pings with the wall clock, so
    ``at`` grows with ``id``; a search over ids costs ~20 rowid lookups instead of a scan of
    up to a million rows. A clock step backwards only moves the window's edge by that step,
    and callers still filter on ``at``.
    """
    lo, hi = conn.execute("SELECT min(id), max(id) FROM pings").fetchone()
    if hi is None:
        return None

    def at_or_after(i: int) -> float:
        r = conn.execute("SELECT at FROM pings WHERE id >= ? ORDER BY id LIMIT 1", (i,)).fetchone()
        return float(r[0])

    if at_or_after(hi) < since:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if at_or_after(mid) >= since:
            hi = mid
        else:
            lo = mid + 1
    return int(lo)


# ---------------------------------------------------------------- maintenance windows


def add_window(conn: sqlite3.Connection, w: Window, detail: str) -> Window:
    """Store ``w`` (its id is given here) with an event row saying what was added."""
    wid = insert(
        conn,
        'INSERT INTO maintenance (scope, start, "end", cron, tz, duration, created) VALUES (?, ?, ?, ?, ?, ?, ?)',
        (w.scope, w.start, w.end, w.cron, w.tz, w.duration, w.created),
    )
    add_event(conn, None, w.created, "maintenance", None, None, f"window {wid} added: {detail}")
    return dataclasses.replace(w, id=wid)


def end_window(conn: sqlite3.Connection, wid: int, now: float, by: str) -> Window | None:
    """End window ``wid`` at ``now`` (compare-and-set: a window ended already stays as it was).
    Returns the window as stored after, or None when there is no such window."""
    n = execute(conn, "UPDATE maintenance SET ended_early = ? WHERE id = ? AND ended_early IS NULL", (now, wid))
    r = conn.execute(f"SELECT {WINDOW_COLUMNS} FROM maintenance WHERE id = ?", (wid,)).fetchone()
    if r is None:
        return None
    if n:
        add_event(conn, None, now, "maintenance", None, None, f"window {wid} ended by {by}")
    return window_from_row(r)


# ---------------------------------------------------------------- check dependencies


def parents_graph(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Every check's parents by name (the cycle check's graph)."""
    out: dict[str, list[str]] = {}
    for child, parent in conn.execute(
        "SELECT c.name, p.name FROM check_parents r JOIN checks c ON c.id = r.child_id"
        " JOIN checks p ON p.id = r.parent_id ORDER BY c.name, p.name"
    ):
        out.setdefault(child, []).append(parent)
    return out


def set_parents(conn: sqlite3.Connection, name: str, parents: Sequence[str], now: float) -> tuple[str, ...]:
    """Make ``parents`` (names) the parents of the check ``name``, replacing its others.
    Raises NotFound (the check, or a parent), deps.CycleError (a loop). Returns the parents'
    names as stored."""
    child = load_check(conn, "name = ?", name)
    if child is None:
        raise NotFound(name)
    found: list[Check] = []
    for p in parents:
        c = load_check(conn, "name = ?", p)
        if c is None:
            raise NotFound(p)
        found.append(c)
    names = deps.check_parents(child.name, [c.name for c in found], parents_graph(conn))
    conn.execute("DELETE FROM check_parents WHERE child_id = ?", (child.id,))
    conn.executemany(
        "INSERT OR IGNORE INTO check_parents (child_id, parent_id) VALUES (?, ?)",
        [(child.id, c.id) for c in found],
    )
    add_event(conn, child.id, now, "depends_on", detail=", ".join(names) or "none")
    return names
