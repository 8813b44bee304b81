"""All SQL lives here. SQLite in WAL mode with one writer thread.

Writes are queued to a single writer thread that owns the only write connection. It takes every
job waiting in the queue and runs them in one ``BEGIN IMMEDIATE`` transaction, each job inside
its own SAVEPOINT so one failing job does not undo the others (group commit: under load a commit
carries many pings). A job's future resolves only after COMMIT, so a heartbeat acknowledged with
200 is in the database. Jobs marked ``durable`` (status flips, alert decisions) commit with
``synchronous=FULL`` so they survive power loss; pings use NORMAL, which survives a crash of this
process (``kill -9``) but not of the OS.

Reads use per-thread connections opened read-only.

Transaction functions (``_tx_*``) load rows, hand them to a pure decision from
:mod:`gateway.rules.lifecycle` that the caller chose, and write the result, so a
read-modify-write is atomic. No business rule lives here: only SQL and row mapping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.model import (
    ApiKey,
    Check,
    Event,
    Flip,
    InboxRow,
    ModemLogRow,
    OutboxRow,
    Ping,
    PingKind,
    PingMeta,
    Schedule,
    Status,
)
from gateway.rules.lifecycle import Decision
from gateway.rules.policy import Outgoing

logger = logging.getLogger(__name__)

T = TypeVar("T")
PING_HISTORY = 1000  # newest pings kept per check
_PRUNE_EVERY = 50  # prune in batches: at most PING_HISTORY + _PRUNE_EVERY - 1 rows stay
BODY_EXCERPT = 10_000  # characters of a ping body that are stored
# History kept by prune(): events (flips, owner actions) for 400 days; finished outbox rows and
# received SMS for 90 days. Pending or in-flight messages are never pruned.
KEEP_EVENTS = 400 * 86400
KEEP_MESSAGES = 90 * 86400
_PRUNE_BATCH = 2000  # rows per write transaction, so pings keep flowing while it runs


class StoreError(Exception):
    """Root of the store's own errors."""


class Conflict(StoreError):
    """A uniqueness rule was violated (e.g. a check name that exists)."""


class NotFound(StoreError):
    """The named row does not exist."""


_MIGRATIONS: list[str] = [
    # v1
    """
    CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL COLLATE NOCASE UNIQUE,
        token TEXT NOT NULL UNIQUE,
        period REAL NOT NULL,
        grace REAL NOT NULL,
        cron TEXT,
        tz TEXT NOT NULL DEFAULT 'UTC',
        status TEXT NOT NULL DEFAULT 'new',
        anchor REAL,
        last_ping REAL,
        last_start REAL,
        last_failed INTEGER NOT NULL DEFAULT 0,
        last_exit_status INTEGER,
        next_deadline REAL,
        sms_enabled INTEGER NOT NULL DEFAULT 1,
        email_enabled INTEGER NOT NULL DEFAULT 1,
        repeat REAL,
        created REAL NOT NULL,
        n_pings INTEGER NOT NULL DEFAULT 0,
        muted_until REAL,
        acked INTEGER NOT NULL DEFAULT 0,
        filters TEXT,
        down_since REAL,
        last_alert REAL,
        alert_at REAL
    );
    -- reminders due, the watchdog's second queue
    CREATE INDEX checks_alert_at ON checks(alert_at) WHERE alert_at IS NOT NULL;
    -- the watchdog's priority queue: only checks that will change status on their own
    CREATE INDEX checks_next_deadline ON checks(next_deadline) WHERE next_deadline IS NOT NULL;

    CREATE TABLE pings (
        id INTEGER PRIMARY KEY,
        check_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        exit_status INTEGER,
        source TEXT NOT NULL,
        remote_addr TEXT,
        method TEXT,
        user_agent TEXT,
        body TEXT
    );
    CREATE INDEX pings_by_check ON pings(check_id, id);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        check_id INTEGER REFERENCES checks(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        old_status TEXT,
        new_status TEXT,
        detail TEXT
    );
    CREATE INDEX events_by_check ON events(check_id, id);

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created REAL NOT NULL,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        not_before REAL NOT NULL,
        lease_until REAL,
        refs TEXT,
        sent_at REAL,
        check_id INTEGER REFERENCES checks(id) ON DELETE SET NULL,
        dedupe_key TEXT UNIQUE,
        kind TEXT NOT NULL DEFAULT 'alert',
        check_name TEXT,
        fallback_of INTEGER
    );
    CREATE INDEX outbox_due ON outbox(not_before) WHERE state IN ('pending', 'sending');

    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY,
        received REAL NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        allowed INTEGER NOT NULL DEFAULT 0,
        handled INTEGER NOT NULL DEFAULT 0,
        reply TEXT
    );

    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        remote_addr TEXT
    );

    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        label TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL
    );

    CREATE TABLE login_attempts (
        remote_addr TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX login_attempts_by_addr ON login_attempts(remote_addr, at);

    CREATE TABLE modem_log (
        at REAL NOT NULL,
        connected INTEGER NOT NULL,
        signal_dbm INTEGER,
        registration TEXT,
        operator TEXT,
        error TEXT
    );
    CREATE INDEX modem_log_at ON modem_log(at);
    """,
]

SCHEMA_VERSION = len(_MIGRATIONS)

_CHECK_COLUMNS = (
    "id, name, token, period, grace, cron, tz, status, anchor, last_ping, last_start, "
    "last_failed, last_exit_status, next_deadline, sms_enabled, email_enabled, created, "
    "n_pings, repeat, muted_until, acked, filters, down_since, last_alert, alert_at"
)


def _check_from_row(r: sqlite3.Row) -> Check:
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
    )


def _save_check(conn: sqlite3.Connection, c: Check) -> None:
    conn.execute(
        "UPDATE checks SET status=:status, anchor=:anchor, last_ping=:last_ping, last_start=:last_start,"
        " last_failed=:last_failed, last_exit_status=:last_exit_status, next_deadline=:next_deadline,"
        " sms_enabled=:sms_enabled, email_enabled=:email_enabled, n_pings=:n_pings, period=:period,"
        " grace=:grace, cron=:cron, tz=:tz, repeat=:repeat, muted_until=:muted_until, acked=:acked,"
        " filters=:filters, down_since=:down_since, last_alert=:last_alert, alert_at=:alert_at,"
        " token=:token WHERE id=:id",
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
            "token": c.token,
            "id": c.id,
        },
    )


def _add_event(
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


def _apply(conn: sqlite3.Connection, d: Decision, before: Check | None, now: float) -> None:
    """Write what a decision says: the check (when it changed), its events, the flip as an event
    row, the alerts as outbox rows. Runs inside the transaction that loaded ``before``."""
    if d.check is not None and d.check != before:
        _save_check(conn, d.check)
    for note in d.events:
        _add_event(conn, note.check_id, now, note.kind, detail=note.detail)
    if d.flip is not None:
        f = d.flip
        _add_event(conn, f.check_id, f.at, "flip", f.old.value, f.new.value, f.reason)
    _queue(conn, d.alerts, now, d.wait)


def _queue(conn: sqlite3.Connection, rows: Sequence[Outgoing], now: float, wait: float) -> int:
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


_OUTBOX_COLUMNS = (
    "id, created, channel, recipient, text, state, attempts, error, sent_at, refs, kind, check_name, check_id"
)


def _outbox_from_row(r: sqlite3.Row) -> OutboxRow:
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
    )


_API_KEY_COLUMNS = "id, label, prefix, created, last_used, revoked"


def _api_key_from_row(r: sqlite3.Row) -> ApiKey:
    return ApiKey(r["id"], r["label"], r["prefix"], r["created"], r["last_used"], r["revoked"])


Decide = Callable[[Check], Decision]
DecidePing = Callable[[Check, "str | None"], Decision]  # (check, stored body excerpt)
DecideAll = Callable[[list[Check]], list[Decision]]


@dataclasses.dataclass(frozen=True)
class PingResult:
    check: Check
    flip: Flip | None
    created: bool = False


@dataclasses.dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: concurrent.futures.Future[Any]
    durable: bool


_STOP = object()


class Store:
    """The SQLite database of one gateway. Thread-safe; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> Store:
        """Create the file if needed, run migrations, start the writer thread.

        Raises StoreError with a readable message when the file cannot be opened or written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect_writer()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open database {self.path}: {e}") from None
        try:
            self._migrate(conn)
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot prepare database {self.path}: {e}") from None
        started = threading.Event()
        self._writer = threading.Thread(
            target=self._writer_loop, args=(conn, started), name="hbgw-store-writer", daemon=True
        )
        self._writer.start()
        started.wait()
        return self

    def close(self) -> None:
        """Finish queued writes, stop the writer, close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Readers first: the writer's connection, closing last, then checkpoints the WAL into
        # the main file (a read-only connection left open would prevent that).
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row  # rows are read by column name
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"database schema v{version} is newer than this hbgw (v{SCHEMA_VERSION})")
        for v in range(version, SCHEMA_VERSION):
            logger.info("migrating database to schema v%d", v + 1)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _MIGRATIONS[v].split(";\n"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {v + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("store is closed")
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # ---------------------------------------------------------------- the writer

    def submit(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> concurrent.futures.Future[T]:
        """Queue ``fn(conn, *args)`` for the writer; the future resolves after COMMIT."""
        if self._closed:
            raise StoreError("store is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(fn, args, fut, durable))
        return fut

    def write(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a write transaction and wait for it (sync callers)."""
        return self.submit(fn, *args, durable=durable).result()

    async def awrite(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a write transaction; awaits the commit without parking a
        thread (async callers)."""
        return await asyncio.wrap_future(self.submit(fn, *args, durable=durable))

    async def awrite_message(
        self, kind: str, channel: str, recipient: str, text: str, now: float, check_id: int | None = None
    ) -> int:
        """:meth:`queue_message` for async callers."""
        return await self.awrite(_tx_queue_message, kind, channel, recipient, text, now, check_id, durable=True)

    async def log_modem(
        self,
        at: float,
        connected: bool,
        signal_dbm: int | None,
        registration: str | None,
        operator: str | None,
        error: str | None,
    ) -> None:
        await self.awrite(_tx_log_modem, at, connected, signal_dbm, registration, operator, error)

    async def aset_setting(self, key: str, value: str) -> None:
        await self.awrite(_tx_set_setting, key, value)

    async def queue_once(
        self, key: str, mark: str, kind: str, channel: str, recipients: Sequence[str], text: str, now: float
    ) -> int:
        """Queue ``text`` to each recipient unless the setting ``key`` already holds ``mark``, and
        set it, in one transaction. Returns the rows queued."""
        return await self.awrite(_tx_queue_once, key, mark, kind, channel, tuple(recipients), text, now, durable=True)

    async def achange_check(self, name: str, decide: Decide, now: float) -> Decision:
        """:meth:`change_check` for async callers."""
        return await self.awrite(_tx_change_check, name, decide, now, durable=True)

    async def aadd_event(self, check_name: str | None, at: float, kind: str, detail: str | None) -> None:
        """An event row, for the check called ``check_name`` (if it still exists) or the gateway."""
        await self.awrite(_tx_add_named_event, check_name, at, kind, detail)

    async def aadvance(self, now: float, decide: Decide) -> list[Decision]:
        """:meth:`advance` for async callers (the watchdog)."""
        return await self.awrite(_tx_advance, now, decide, durable=True)

    async def afresh_start(self, now: float, decide: DecideAll) -> list[Decision]:
        return await self.awrite(_tx_decide_all, _DEADLINE_PASSED, now, decide, durable=True)

    async def aclock_back(self, now: float, decide: DecideAll) -> list[Decision]:
        return await self.awrite(_tx_decide_all, _STAMPED_AFTER, now, decide, durable=True)

    async def release_leases(self) -> int:
        return await self.awrite(_tx_release_leases, durable=True)

    async def claim_due(self, now: float, lease: float) -> list[list[OutboxRow]]:
        return await self.awrite(_tx_claim_due, now, lease, durable=True)

    async def mark_sent(self, ids: list[int], refs: str, now: float) -> None:
        await self.awrite(_tx_mark_sent, ids, refs, now, durable=True)

    async def mark_retry(self, ids: list[int], error: str, not_before: float) -> None:
        await self.awrite(_tx_mark_retry, ids, error, not_before, durable=True)

    async def mark_failed(self, ids: list[int], error: str, fallback_to: tuple[str, ...], now: float) -> int:
        return await self.awrite(_tx_mark_failed, ids, error, fallback_to, now, durable=True)

    async def add_inbox(self, sender: str, text: str, received: float, allowed: bool) -> int:
        return await self.awrite(_tx_add_inbox, sender, text, received, allowed, durable=True)

    async def mark_inbox_handled(self, inbox_id: int, reply: str | None) -> None:
        await self.awrite(_tx_mark_inbox, inbox_id, reply)

    async def prune(self, now: float) -> dict[str, int]:
        """Forget old history (events for KEEP_EVENTS, finished outbox rows and received SMS for
        KEEP_MESSAGES; never a pending message, never the newest event or outbox id), a batch per
        transaction so pings keep flowing. Returns the rows removed per table."""
        removed = {}
        for table, sql in _PRUNE.items():
            removed[table] = 0
            keep = KEEP_EVENTS if table == "events" else KEEP_MESSAGES
            while True:
                n = await self.awrite(_tx_exec, sql, (now - keep, _PRUNE_BATCH))
                removed[table] += n
                if n < _PRUNE_BATCH:
                    break
        return removed

    def _writer_loop(self, conn: sqlite3.Connection, started: threading.Event) -> None:
        started.set()
        stopping = False
        try:
            while not stopping:
                item = self._queue.get()
                batch: list[_Job] = []
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)
                    if len(batch) >= 512:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
        finally:
            try:
                conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        durable = any(j.durable for j in live)
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            for job in live:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn, *job.args)
                except Exception as e:  # the job's own error: undo just this job
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, e))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            # The transaction as a whole failed (disk full, read-only file, ...): nothing of it
            # is stored, so every job in it fails with this error.
            logger.error("database write failed: %s", e)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = StoreError(f"database write failed: {e}")
            outcomes = [(j, None, err) for j in live]
        finally:
            if durable:
                conn.execute("PRAGMA synchronous=NORMAL")
        for job, result, exc in outcomes:
            if exc is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(exc)

    # ---------------------------------------------------------------- checks: reads

    def list_checks(self) -> list[Check]:
        rows = self._reader().execute(f"SELECT {_CHECK_COLUMNS} FROM checks ORDER BY name").fetchall()
        return [_check_from_row(r) for r in rows]

    def get_check(self, name: str) -> Check | None:
        r = self._reader().execute(f"SELECT {_CHECK_COLUMNS} FROM checks WHERE name = ?", (name,)).fetchone()
        return _check_from_row(r) if r else None

    def min_deadline(self) -> float | None:
        """The earliest moment any check changes status on its own (uses the partial index)."""
        r = (
            self._reader()
            .execute(
                "SELECT (SELECT min(next_deadline) FROM checks WHERE next_deadline IS NOT NULL),"
                " (SELECT min(alert_at) FROM checks WHERE alert_at IS NOT NULL)"
            )
            .fetchone()
        )
        times = [t for t in r if t is not None]
        return min(times) if times else None

    def list_pings(self, check_id: int, limit: int = 100) -> list[Ping]:
        rows = (
            self._reader()
            .execute(
                "SELECT id, check_id, at, kind, exit_status, source, remote_addr, method, user_agent,"
                " body FROM pings WHERE check_id = ? ORDER BY id DESC LIMIT ?",
                (check_id, limit),
            )
            .fetchall()
        )
        return [Ping(r[0], r[1], r[2], PingKind(r[3]), r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows]

    def count_pings(self, check_id: int) -> int:
        return int(self._reader().execute("SELECT count(*) FROM pings WHERE check_id = ?", (check_id,)).fetchone()[0])

    def list_events(self, check_id: int | None = None, limit: int = 100) -> list[Event]:
        if check_id is None:
            rows = (
                self._reader()
                .execute(
                    "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                    " ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        else:
            rows = (
                self._reader()
                .execute(
                    "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                    " WHERE check_id = ? ORDER BY id DESC LIMIT ?",
                    (check_id, limit),
                )
                .fetchall()
            )
        return [Event(*r) for r in rows]

    def get_setting(self, key: str) -> str | None:
        r = self._reader().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    # ---------------------------------------------------------------- checks: writes

    def add_check(self, name: str, token: str, schedule: Schedule, now: float, max_checks: int | None = None) -> Check:
        """Insert a new check. Raises Conflict if the name or token exists or the cap is reached."""
        return self.write(_tx_add_check, name, token, schedule, now, max_checks)

    def remove_check(self, name: str) -> Check:
        return self.write(_tx_remove_check, name)

    def change_check(self, name: str, decide: Decide, now: float) -> Decision:
        """Load the named check, ``decide`` what becomes of it (a pure function of the check as
        loaded), write that, all in one transaction. Raises NotFound."""
        return self.write(_tx_change_check, name, decide, now, durable=True)

    def submit_ping(
        self,
        token: str | None,
        name: str | None,
        decide: DecidePing,
        meta: PingMeta,
        kind: PingKind,
        exit_status: int | None,
        now: float,
        create: tuple[str, Schedule, int] | None = None,
    ) -> concurrent.futures.Future[PingResult | None]:
        """Queue a ping for the check with ``token``, or else the one called ``name`` (created
        when ``create`` = (token, schedule, max_checks) is given and it does not exist):
        ``decide`` says what the ping does to the check; the ping row is stored beside it. The
        future resolves after COMMIT: None when there is no such check; Conflict when creating
        it would pass the cap."""
        return self.submit(_tx_record_ping, token, name, decide, meta, kind, exit_status, now, create)

    def advance(self, now: float, decide: Decide) -> list[Decision]:
        """``decide`` for every check whose deadline or reminder time is at or before ``now``
        (the partial indexes); returns the decisions written."""
        return self.write(_tx_advance, now, decide, durable=True)

    def fresh_start(self, now: float, decide: DecideAll) -> list[Decision]:
        """``decide`` for the checks whose deadline is at or before ``now`` (at start-up, after
        a clock jump forward), all at once; returns the decisions written."""
        return self.write(_tx_decide_all, _DEADLINE_PASSED, now, decide, durable=True)

    def clock_back(self, now: float, decide: DecideAll) -> list[Decision]:
        """``decide`` for the checks anchored or alerted after ``now`` (the clock went back)."""
        return self.write(_tx_decide_all, _STAMPED_AFTER, now, decide, durable=True)

    def set_setting(self, key: str, value: str) -> None:
        self.write(_tx_set_setting, key, value)

    def setting_or_create(self, key: str, make: Callable[[], str]) -> str:
        """The stored value for ``key``, storing ``make()`` first if there is none."""
        return self.write(_tx_setting_or_create, key, make)

    def add_event(self, check_id: int | None, at: float, kind: str, detail: str | None = None) -> None:
        self.write(_add_event, check_id, at, kind, None, None, detail)

    # ---------------------------------------------------------------- outbox and inbox

    def queue_message(
        self, kind: str, channel: str, recipient: str, text: str, now: float, check_id: int | None = None
    ) -> int:
        """Queue one message to send as soon as possible; returns its outbox id."""
        return self.write(_tx_queue_message, kind, channel, recipient, text, now, check_id, durable=True)

    def next_due_message(self) -> float | None:
        r = (
            self._reader()
            .execute(
                "SELECT min(CASE WHEN state = 'sending' THEN lease_until ELSE not_before END)"
                " FROM outbox WHERE state IN ('pending', 'sending')"
            )
            .fetchone()
        )
        return r[0] if r else None

    def sms_sent_since(self, since: float) -> int:
        """SMS messages sent since ``since`` (rows merged into one message count once)."""
        r = (
            self._reader()
            .execute(
                "SELECT count(DISTINCT sent_at) FROM outbox WHERE channel = 'sms' AND state = 'sent' AND sent_at >= ?",
                (since,),
            )
            .fetchone()
        )
        return int(r[0])

    def count_outbox(self) -> dict[str, int]:
        rows = (
            self._reader()
            .execute("SELECT channel || ':' || state, count(*) FROM outbox GROUP BY channel, state")
            .fetchall()
        )
        return {k: n for k, n in rows}

    def list_outbox(self, limit: int = 100) -> list[OutboxRow]:
        rows = self._reader().execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        return [_outbox_from_row(r) for r in rows]

    def recent_alerted_names(self, limit: int) -> list[str]:
        rows = (
            self._reader()
            .execute(
                "SELECT check_name FROM outbox WHERE kind IN ('down', 'fail', 'reminder')"
                " AND check_name IS NOT NULL ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return list(dict.fromkeys(r[0] for r in rows))

    def list_inbox(self, limit: int = 100) -> list[InboxRow]:
        rows = self._reader().execute(
            "SELECT id, received, sender, text, allowed, handled, reply FROM inbox ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [
            InboxRow(r["id"], r["received"], r["sender"], r["text"], bool(r["allowed"]), bool(r["handled"]), r["reply"])
            for r in rows
        ]

    def get_check_by_token(self, token: str) -> Check | None:
        """The check whose ping token is ``token`` (exact, case-sensitive), or None."""
        r = self._reader().execute(f"SELECT {_CHECK_COLUMNS} FROM checks WHERE token = ?", (token,)).fetchone()
        return _check_from_row(r) if r else None

    # ---- web admin (sessions, API keys, settings, listings) ----

    def add_session(self, sid_hash: str, csrf: str, created: float, expires: float, remote_addr: str | None) -> None:
        """Store a session under the hash of its cookie value (the cookie itself is never stored)."""
        self.write(_tx_add_session, sid_hash, csrf, created, expires, remote_addr)

    def get_session(self, sid_hash: str) -> tuple[str, float, float] | None:
        """``(csrf, created, expires)`` of a stored session, expired or not; None if unknown."""
        r = self._reader().execute("SELECT csrf, created, expires FROM sessions WHERE id = ?", (sid_hash,)).fetchone()
        return (str(r[0]), float(r[1]), float(r[2])) if r else None

    def extend_session(self, sid_hash: str, expires: float) -> None:
        self.write(_tx_exec, "UPDATE sessions SET expires = ? WHERE id = ?", (expires, sid_hash))

    def delete_session(self, sid_hash: str) -> None:
        self.write(_tx_exec, "DELETE FROM sessions WHERE id = ?", (sid_hash,))

    def set_password(self, key: str, digest: str, *, forget: Sequence[str], keep_session: str | None) -> int:
        """Store a new password hash under ``key``, empty the settings ``forget`` and end every
        session but ``keep_session``, in one transaction. Returns the sessions ended."""
        return self.write(_tx_set_password, key, digest, tuple(forget), keep_session)

    def login_failures(self, remote_addr: str, since: float) -> tuple[int, float | None]:
        """How many failed logins came from ``remote_addr`` since ``since``, and the oldest one."""
        r = (
            self._reader()
            .execute(
                "SELECT count(*), min(at) FROM login_attempts WHERE remote_addr = ? AND at >= ?", (remote_addr, since)
            )
            .fetchone()
        )
        return int(r[0]), r[1]

    def add_login_failure(self, remote_addr: str, at: float, forget_before: float) -> None:
        """Record a failed login; rows older than ``forget_before`` (any address) are dropped."""
        self.write(_tx_add_login_failure, remote_addr, at, forget_before)

    def clear_login_failures(self, remote_addr: str) -> None:
        self.write(_tx_exec, "DELETE FROM login_attempts WHERE remote_addr = ?", (remote_addr,))

    def add_api_key(self, label: str, prefix: str, digest: str, created: float) -> int:
        """Store an API key by its hash; returns its id."""
        return self.write(
            _tx_insert,
            "INSERT INTO api_keys (label, prefix, hash, created) VALUES (?, ?, ?, ?)",
            (label, prefix, digest, created),
        )

    def list_api_keys(self) -> list[ApiKey]:
        rows = self._reader().execute(f"SELECT {_API_KEY_COLUMNS} FROM api_keys ORDER BY revoked IS NOT NULL, id DESC")
        return [_api_key_from_row(r) for r in rows]

    def find_api_key(self, digest: str) -> ApiKey | None:
        """The live (not revoked) key with this hash, or None."""
        r = (
            self._reader()
            .execute(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE hash = ? AND revoked IS NULL", (digest,))
            .fetchone()
        )
        return _api_key_from_row(r) if r else None

    def revoke_api_key(self, key_id: int, at: float) -> bool:
        """Revoke a key; False when there is no live key with that id."""
        return bool(
            self.write(_tx_exec, "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (at, key_id))
        )

    def touch_api_key(self, key_id: int, at: float) -> None:
        self.write(_tx_exec, "UPDATE api_keys SET last_used = ? WHERE id = ?", (at, key_id))

    def set_settings(self, values: dict[str, str]) -> None:
        """Store several settings in one transaction."""
        self.write(_tx_set_settings, values)

    def ping_histogram(
        self, since: float, bucket: float, until: float | None = None
    ) -> dict[int, dict[int, tuple[int, int]]]:
        """Pings from ``since`` (to ``until``, exclusive) per check and per ``bucket``-second
        slot: ``{check_id: {slot: (pings, failures)}}`` (slot 0 starts at ``since``)."""
        conn = self._reader()
        first = _first_ping_id_at(conn, since)
        if first is None:
            return {}
        rows = conn.execute(
            "SELECT check_id, CAST((at - ?) / ? AS INTEGER), count(*),"
            " sum(kind = 'fail' OR coalesce(exit_status, 0) != 0)"
            " FROM pings WHERE id >= ? AND at >= ? AND at < ? AND kind != 'log' GROUP BY 1, 2",
            (since, bucket, first, since, float("inf") if until is None else until),
        ).fetchall()
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for check_id, slot, n, fails in rows:
            out.setdefault(check_id, {})[slot] = (int(n), int(fails or 0))
        return out

    def list_outbox_for_check(self, check_id: int, limit: int = 100) -> list[OutboxRow]:
        rows = self._reader().execute(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE check_id = ? ORDER BY id DESC LIMIT ?", (check_id, limit)
        )
        return [_outbox_from_row(r) for r in rows]

    def outbox_backlog(self, now: float) -> tuple[int, float | None]:
        """Messages waiting to go out, and since when the longest-overdue one could have gone
        (a message held for quiet hours or a retry's backoff is not overdue)."""
        waiting, overdue = (
            self._reader()
            .execute(
                "SELECT count(*), min(CASE WHEN state = 'pending' AND not_before <= :now THEN not_before"
                " WHEN state = 'sending' AND lease_until <= :now THEN lease_until END)"
                " FROM outbox WHERE state IN ('pending', 'sending')",
                {"now": now},
            )
            .fetchone()
        )
        return int(waiting), overdue

    def count_failed(self, since: float) -> int:
        """Messages queued since ``since`` that failed for good."""
        return int(
            self._reader()
            .execute("SELECT count(*) FROM outbox WHERE state = 'failed' AND created >= ?", (since,))
            .fetchone()[0]
        )

    def modem_history(self, since: float) -> list[ModemLogRow]:
        rows = self._reader().execute(
            "SELECT at, connected, signal_dbm, registration, operator, error FROM modem_log WHERE at >= ? ORDER BY at",
            (since,),
        )
        return [
            ModemLogRow(r["at"], bool(r["connected"]), r["signal_dbm"], r["registration"], r["operator"], r["error"])
            for r in rows
        ]

    def count_watched(self) -> int:
        """Checks that are watched for pings (not paused, pinged at least once)."""
        return int(
            self._reader().execute("SELECT count(*) FROM checks WHERE status NOT IN ('paused', 'new')").fetchone()[0]
        )

    def total_pings(self) -> int:
        """Pings received over the checks' lifetimes (kept counters, not the pruned log)."""
        return int(self._reader().execute("SELECT coalesce(sum(n_pings), 0) FROM checks").fetchone()[0])


# -------------------------------------------------------------------- transactions


def _load(conn: sqlite3.Connection, where: str, arg: Any) -> Check | None:
    r = conn.execute(f"SELECT {_CHECK_COLUMNS} FROM checks WHERE {where}", (arg,)).fetchone()
    return _check_from_row(r) if r else None


def _tx_add_check(
    conn: sqlite3.Connection, name: str, token: str, schedule: Schedule, now: float, max_checks: int | None
) -> Check:
    if max_checks is not None:
        n = conn.execute("SELECT count(*) FROM checks").fetchone()[0]
        if n >= max_checks:
            raise Conflict(f"the limit of {max_checks} checks is reached")
    try:
        cur = conn.execute(
            "INSERT INTO checks (name, token, period, grace, cron, tz, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, token, schedule.period, schedule.grace, schedule.cron, schedule.tz, now),
        )
    except sqlite3.IntegrityError:
        raise Conflict(f"a check named {name!r} exists") from None
    _add_event(conn, cur.lastrowid, now, "created")
    check = _load(conn, "id = ?", cur.lastrowid)
    assert check is not None
    return check


def _tx_remove_check(conn: sqlite3.Connection, name: str) -> Check:
    check = _load(conn, "name = ?", name)
    if check is None:
        raise NotFound(name)
    conn.execute("DELETE FROM checks WHERE id = ?", (check.id,))
    return check


def _tx_add_named_event(
    conn: sqlite3.Connection, check_name: str | None, at: float, kind: str, detail: str | None
) -> None:
    check = _load(conn, "name = ?", check_name) if check_name else None
    _add_event(conn, check.id if check else None, at, kind, detail=detail)


def _tx_change_check(conn: sqlite3.Connection, name: str, decide: Decide, now: float) -> Decision:
    before = _load(conn, "name = ?", name)
    if before is None:
        raise NotFound(name)
    d = decide(before)
    _apply(conn, d, before, now)
    return d


def _tx_record_ping(
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
        before = _load(conn, "token = ?", token)
    else:
        before = _load(conn, "name = ?", name)
        if before is None and create is not None and name is not None:
            before = _tx_add_check(conn, name, create[0], create[1], now, create[2])
            created = True
    if before is None:
        return None
    body = meta.body[:BODY_EXCERPT] if meta.body else None
    d = decide(before, body)
    _apply(conn, d, before, now)
    after = d.check or before
    conn.execute(
        "INSERT INTO pings (check_id, at, kind, exit_status, source, remote_addr, method,"
        " user_agent, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (after.id, now, kind.value, exit_status, meta.source, meta.remote_addr, meta.method, meta.user_agent, body),
    )
    if after.n_pings % _PRUNE_EVERY == 0:
        conn.execute(
            "DELETE FROM pings WHERE check_id = ? AND id <= (SELECT id FROM pings"
            " WHERE check_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (after.id, after.id, PING_HISTORY),
        )
    return PingResult(after, d.flip, created)


def _tx_advance(conn: sqlite3.Connection, now: float, decide: Decide) -> list[Decision]:
    rows = conn.execute(
        f"SELECT {_CHECK_COLUMNS} FROM checks WHERE next_deadline <= ? OR alert_at <= ?", (now, now)
    ).fetchall()
    out = []
    for row in rows:
        before = _check_from_row(row)
        d = decide(before)
        _apply(conn, d, before, now)
        out.append(d)
    return out


_DEADLINE_PASSED = "next_deadline IS NOT NULL AND next_deadline <= :now"
_STAMPED_AFTER = "anchor > :now OR last_alert > :now"


def _tx_decide_all(conn: sqlite3.Connection, where: str, now: float, decide: DecideAll) -> list[Decision]:
    rows = conn.execute(f"SELECT {_CHECK_COLUMNS} FROM checks WHERE {where}", {"now": now}).fetchall()
    before = {c.id: c for c in map(_check_from_row, rows)}
    decisions = decide(list(before.values()))
    for d in decisions:
        _apply(conn, d, before.get(d.check.id) if d.check else None, now)
    return decisions


def _tx_queue_message(
    conn: sqlite3.Connection, kind: str, channel: str, recipient: str, text: str, now: float, check_id: int | None
) -> int:
    cur = conn.execute(
        "INSERT INTO outbox (created, channel, recipient, text, not_before, check_id, kind)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now, channel, recipient, text, now, check_id, kind),
    )
    return int(cur.lastrowid or 0)


def _tx_claim_due(conn: sqlite3.Connection, now: float, lease: float) -> list[list[OutboxRow]]:
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
            _outbox_from_row(r)
            for r in conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE channel = ? AND recipient = ?"
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


def _tx_mark_sent(conn: sqlite3.Connection, ids: list[int], refs: str, now: float) -> None:
    conn.executemany(
        "UPDATE outbox SET state = 'sent', sent_at = ?, refs = ?, error = NULL,"
        " lease_until = NULL WHERE id = ? AND state = 'sending'",
        [(now, refs, i) for i in ids],
    )


def _tx_mark_retry(conn: sqlite3.Connection, ids: list[int], error: str, not_before: float) -> None:
    conn.executemany(
        "UPDATE outbox SET state = 'pending', error = ?, not_before = ?,"
        " lease_until = NULL WHERE id = ? AND state = 'sending'",
        [(error, not_before, i) for i in ids],
    )


def _tx_mark_failed(
    conn: sqlite3.Connection, ids: list[int], error: str, fallback_to: tuple[str, ...], now: float
) -> int:
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


def _tx_release_leases(conn: sqlite3.Connection) -> int:
    return conn.execute(
        "UPDATE outbox SET state = 'pending', lease_until = NULL, not_before = 0 WHERE state = 'sending'"
    ).rowcount


def _tx_add_inbox(conn: sqlite3.Connection, sender: str, text: str, received: float, allowed: bool) -> int:
    cur = conn.execute(
        "INSERT INTO inbox (received, sender, text, allowed) VALUES (?, ?, ?, ?)",
        (received, sender, text, int(allowed)),
    )
    return int(cur.lastrowid or 0)


def _tx_mark_inbox(conn: sqlite3.Connection, inbox_id: int, reply: str | None) -> None:
    conn.execute("UPDATE inbox SET handled = 1, reply = ? WHERE id = ?", (reply, inbox_id))


def _tx_log_modem(
    conn: sqlite3.Connection,
    at: float,
    connected: bool,
    signal_dbm: int | None,
    registration: str | None,
    operator: str | None,
    error: str | None,
) -> None:
    conn.execute(
        "INSERT INTO modem_log (at, connected, signal_dbm, registration, operator, error) VALUES (?, ?, ?, ?, ?, ?)",
        (at, int(connected), signal_dbm, registration, operator, error),
    )
    conn.execute("DELETE FROM modem_log WHERE at < ?", (at - 7 * 86400,))


def _tx_queue_once(
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
        _tx_queue_message(conn, kind, channel, recipient, text, now, None)
    _tx_set_setting(conn, key, mark)
    return len(recipients)


def _tx_set_password(
    conn: sqlite3.Connection, key: str, digest: str, forget: tuple[str, ...], keep_session: str | None
) -> int:
    _tx_set_setting(conn, key, digest)
    for k in forget:
        _tx_set_setting(conn, k, "")
    return int(conn.execute("DELETE FROM sessions WHERE id IS NOT ?", (keep_session,)).rowcount)


def _tx_set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _tx_setting_or_create(conn: sqlite3.Connection, key: str, make: Callable[[], str]) -> str:
    r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    if r:
        return str(r[0])
    value = make()
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))
    return value


# ---- web admin (sessions, API keys, settings, listings) ----


# The newest row of events and outbox always stays, so their ids never restart (outbox dedupe keys
# are built from event ids).
_PRUNE = {
    "events": "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?"
    " AND id < (SELECT max(id) FROM events) ORDER BY id LIMIT ?)",
    "outbox": "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created < ?"
    " AND state IN ('sent', 'failed') AND id < (SELECT max(id) FROM outbox) ORDER BY id LIMIT ?)",
    "inbox": "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE received < ? ORDER BY id LIMIT ?)",
}


def _tx_exec(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    """One statement; returns the number of rows it changed."""
    return int(conn.execute(sql, args).rowcount)


def _tx_insert(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> int:
    return int(conn.execute(sql, args).lastrowid or 0)


def _tx_add_session(
    conn: sqlite3.Connection, sid_hash: str, csrf: str, created: float, expires: float, remote_addr: str | None
) -> None:
    conn.execute("DELETE FROM sessions WHERE expires <= ?", (created,))
    conn.execute(
        "INSERT INTO sessions (id, csrf, created, expires, remote_addr) VALUES (?, ?, ?, ?, ?)",
        (sid_hash, csrf, created, expires, remote_addr),
    )


def _tx_add_login_failure(conn: sqlite3.Connection, remote_addr: str, at: float, forget_before: float) -> None:
    conn.execute("DELETE FROM login_attempts WHERE at < ?", (forget_before,))
    conn.execute("INSERT INTO login_attempts (remote_addr, at) VALUES (?, ?)", (remote_addr, at))


def _tx_set_settings(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    for key, value in values.items():
        _tx_set_setting(conn, key, value)


def _first_ping_id_at(conn: sqlite3.Connection, since: float) -> int | None:
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


# ---- backup ----
# Backups use SQLite's online backup API: a consistent snapshot taken inside one read
# transaction, so it is safe while the daemon writes (WAL readers never block the writer).

_HBGW_TABLES = frozenset({"checks", "pings", "events", "outbox", "inbox", "settings"})


@dataclasses.dataclass(frozen=True)
class DatabaseInfo:
    """What a backup or restore copied: schema version, number of checks, size in bytes."""

    path: Path
    schema: int
    checks: int
    size: int


def _uri(path: Path, mode: str) -> str:
    from urllib.parse import quote

    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def _inspect(conn: sqlite3.Connection, path: Path, what: str) -> DatabaseInfo:
    """Raise StoreError unless ``conn`` holds an intact hbgw database of a schema we know."""
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{what} is not an hbgw database: {e}") from None
    if ok != "ok":
        raise StoreError(f"{what} is damaged (integrity check: {ok})")
    missing = _HBGW_TABLES - tables
    if version < 1 or missing:
        raise StoreError(
            f"{what} is not an hbgw database (schema v{version}, missing tables: {', '.join(sorted(missing)) or '-'})"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(f"{what} has schema v{version}, newer than this hbgw (v{SCHEMA_VERSION}): upgrade hbgw first")
    checks = int(conn.execute("SELECT count(*) FROM checks").fetchone()[0])
    return DatabaseInfo(path, version, checks, path.stat().st_size if path.exists() else 0)


def _copy(src_uri: str, dest: Path, what: str) -> DatabaseInfo:
    """Copy the database at ``src_uri`` into the new file ``dest`` (mode 0600, single file:
    journal_mode=DELETE), check it and fsync it. Removes ``dest`` again on any failure."""
    import os

    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        src = sqlite3.connect(src_uri, uri=True, timeout=10)
        try:
            dst = sqlite3.connect(dest, isolation_level=None)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")
                info = _inspect(dst, dest, what)
            finally:
                dst.close()
        finally:
            src.close()
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return dataclasses.replace(info, size=dest.stat().st_size)
    except sqlite3.DatabaseError as e:
        dest.unlink(missing_ok=True)
        raise StoreError(f"{what} is not an hbgw database: {e}") from None
    except sqlite3.Error as e:
        dest.unlink(missing_ok=True)
        raise StoreError(f"cannot read {what}: {e}") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(db_path: Path, dest: Path) -> DatabaseInfo:
    """Write a consistent copy of the database at ``db_path`` to ``dest`` (replaced atomically,
    mode 0600: it holds tokens and the admin password hash). Safe while the daemon runs.
    Raises StoreError."""
    import os

    if not db_path.is_file():
        raise StoreError(f"no database at {db_path}")
    dest = Path(dest)
    if dest.is_dir():
        raise StoreError(f"{dest} is a directory: give the backup file's name")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        # mode=rw, not ro: a read-only connection would leave -wal/-shm files owned by whoever
        # ran the backup (root) in the data dir, which the service user then cannot open.
        info = _copy(_uri(db_path, "rw"), tmp, str(db_path))
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write backup {dest}: {e.strerror or e}") from None
    return dataclasses.replace(info, path=dest)


def restore_database(source: Path, db_path: Path) -> tuple[DatabaseInfo, Path | None]:
    """Replace the database at ``db_path`` with the backup ``source``, after checking that it is
    an intact hbgw database of a schema this version knows (older ones are migrated at the next
    start). The old database is kept as ``<name>.bak``; returns (info, that path or None).
    The daemon must not be running (the caller checks). Raises StoreError."""
    import os

    source = Path(source)
    if not source.is_file():
        raise StoreError(f"no backup file at {source}")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".restore-tmp")
    tmp.unlink(missing_ok=True)
    try:
        info = _copy(_uri(source, "ro"), tmp, str(source))
    except OSError as e:
        raise StoreError(f"cannot restore into {db_path.parent}: {e.strerror or e}") from None
    bak: Path | None = None
    try:
        # The restored file belongs to whoever owns the data (the service user), not to root.
        owner = (db_path if db_path.exists() else db_path.parent).stat()
        if os.geteuid() == 0:
            os.chown(tmp, owner.st_uid, owner.st_gid)
        if db_path.exists():
            conn = sqlite3.connect(_uri(db_path, "rw"), uri=True, timeout=10)
            try:  # fold the write-ahead log into the old file, so the .bak is complete alone
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.close()
            wal = db_path.with_name(db_path.name + "-wal")
            if busy or (wal.exists() and wal.stat().st_size > 0):
                raise StoreError(f"{db_path} is in use (is the gateway running?)")
            bak = db_path.with_name(db_path.name + ".bak")
            os.replace(db_path, bak)
            for suffix in ("-wal", "-shm"):
                db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot restore into {db_path}: {e}") from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot restore into {db_path}: {e.strerror or e}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dataclasses.replace(info, path=db_path), bak
