"""All SQL lives here. SQLite in WAL mode with one writer thread.

Writes are queued to a single writer thread that owns the only write connection. It takes every
job waiting in the queue and runs them in one ``BEGIN IMMEDIATE`` transaction, each job inside
its own SAVEPOINT so one failing job does not undo the others (group commit: under load a commit
carries many pings). A job's future resolves only after COMMIT, so a heartbeat acknowledged with
200 is in the database. Jobs marked ``durable`` (status flips, alert decisions) commit with
``synchronous=FULL`` so they survive power loss; pings use NORMAL, which survives a crash of this
process (``kill -9``) but not of the OS.

Reads use per-thread connections opened read-only.

Transaction functions (``_tx_*``) load rows, apply a pure transition from
:mod:`gateway.status`, and write the result, so a read-modify-write is atomic.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway import status as st
from gateway.model import Check, Event, Flip, Ping, PingKind, PingMeta, Schedule, Status

logger = logging.getLogger(__name__)

T = TypeVar("T")
PING_HISTORY = 1000  # newest pings kept per check
_PRUNE_EVERY = 50  # prune in batches: at most PING_HISTORY + _PRUNE_EVERY - 1 rows stay
BODY_EXCERPT = 10_000  # characters of a ping body that are stored


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
        filters TEXT
    );
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
        dedupe_key TEXT UNIQUE
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
    "n_pings, repeat, muted_until, acked, filters"
)


def _check_from_row(r: sqlite3.Row | tuple[Any, ...]) -> Check:
    return Check(
        id=r[0], name=r[1], token=r[2],
        schedule=Schedule(period=r[3], grace=r[4], cron=r[5], tz=r[6]),
        status=Status(r[7]), anchor=r[8], last_ping=r[9], last_start=r[10],
        last_failed=bool(r[11]), last_exit_status=r[12], next_deadline=r[13],
        sms_enabled=bool(r[14]), email_enabled=bool(r[15]), created=r[16], n_pings=r[17],
        repeat=r[18], muted_until=r[19], acked=bool(r[20]), filters=r[21],
    )


def _save_check(conn: sqlite3.Connection, c: Check) -> None:
    conn.execute(
        "UPDATE checks SET status=?, anchor=?, last_ping=?, last_start=?, last_failed=?,"
        " last_exit_status=?, next_deadline=?, sms_enabled=?, email_enabled=?, n_pings=?,"
        " period=?, grace=?, cron=?, tz=?, repeat=?, muted_until=?, acked=?, filters=? WHERE id=?",
        (c.status.value, c.anchor, c.last_ping, c.last_start, int(c.last_failed),
         c.last_exit_status, c.next_deadline, int(c.sms_enabled), int(c.email_enabled),
         c.n_pings, c.schedule.period, c.schedule.grace, c.schedule.cron, c.schedule.tz,
         c.repeat, c.muted_until, int(c.acked), c.filters, c.id),
    )


def _add_event(conn: sqlite3.Connection, check_id: int | None, at: float, kind: str,
               old: str | None = None, new: str | None = None, detail: str | None = None) -> None:
    conn.execute(
        "INSERT INTO events (check_id, at, kind, old_status, new_status, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (check_id, at, kind, old, new, detail),
    )


def _flip(conn: sqlite3.Connection, before: Check, after: Check, at: float, reason: str) -> Flip | None:
    """Record a status change as an event row; the caller saves ``after`` in the same transaction."""
    if before.status is after.status:
        return None
    _add_event(conn, after.id, at, "flip", before.status.value, after.status.value, reason)
    return Flip(check_id=after.id, at=at, old=before.status, new=after.status, reason=reason)


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
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join(timeout=30)
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"database schema v{version} is newer than this hbgw (v{SCHEMA_VERSION})"
            )
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
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10
            )
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
        r = self._reader().execute(
            f"SELECT {_CHECK_COLUMNS} FROM checks WHERE name = ?", (name,)
        ).fetchone()
        return _check_from_row(r) if r else None

    def get_check_by_id(self, check_id: int) -> Check | None:
        r = self._reader().execute(
            f"SELECT {_CHECK_COLUMNS} FROM checks WHERE id = ?", (check_id,)
        ).fetchone()
        return _check_from_row(r) if r else None

    def count_checks(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM checks").fetchone()[0])

    def min_deadline(self) -> float | None:
        """The earliest moment any check changes status on its own (uses the partial index)."""
        r = self._reader().execute(
            "SELECT min(next_deadline) FROM checks WHERE next_deadline IS NOT NULL"
        ).fetchone()
        return r[0] if r else None

    def list_pings(self, check_id: int, limit: int = 100) -> list[Ping]:
        rows = self._reader().execute(
            "SELECT id, check_id, at, kind, exit_status, source, remote_addr, method, user_agent,"
            " body FROM pings WHERE check_id = ? ORDER BY id DESC LIMIT ?",
            (check_id, limit),
        ).fetchall()
        return [Ping(r[0], r[1], r[2], PingKind(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])
                for r in rows]

    def count_pings(self, check_id: int) -> int:
        return int(self._reader().execute(
            "SELECT count(*) FROM pings WHERE check_id = ?", (check_id,)).fetchone()[0])

    def list_events(self, check_id: int | None = None, limit: int = 100) -> list[Event]:
        if check_id is None:
            rows = self._reader().execute(
                "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._reader().execute(
                "SELECT id, check_id, at, kind, old_status, new_status, detail FROM events"
                " WHERE check_id = ? ORDER BY id DESC LIMIT ?", (check_id, limit)).fetchall()
        return [Event(*r) for r in rows]

    def get_setting(self, key: str) -> str | None:
        r = self._reader().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return r[0] if r else None

    # ---------------------------------------------------------------- checks: writes

    def add_check(self, name: str, token: str, schedule: Schedule, now: float,
                  max_checks: int | None = None) -> Check:
        """Insert a new check. Raises Conflict if the name or token exists or the cap is reached."""
        return self.write(_tx_add_check, name, token, schedule, now, max_checks)

    def remove_check(self, name: str) -> Check:
        return self.write(_tx_remove_check, name)

    def update_check(self, name: str, change: Callable[[Check], Check], now: float,
                     event: str | None = None) -> tuple[Check, Flip | None]:
        """Apply a pure ``change`` to the named check atomically; raises NotFound."""
        return self.write(_tx_update_check, name, change, now, event, durable=True)

    def record_ping(self, token: str, kind: PingKind, exit_status: int | None, meta: PingMeta,
                    now: float) -> PingResult | None:
        """Store a ping for the check with ``token``; None when no check has that token."""
        return self.write(_tx_record_ping, token, None, kind, exit_status, meta, now, None)

    def record_named_ping(self, name: str, kind: PingKind, exit_status: int | None,
                          meta: PingMeta, now: float,
                          create: tuple[str, Schedule, int] | None = None) -> PingResult | None:
        """Store a ping for the check called ``name``, creating it when ``create`` =
        (token, schedule, max_checks) is given and it does not exist. Raises Conflict when
        the cap is reached."""
        return self.write(_tx_record_ping, None, name, kind, exit_status, meta, now, create)

    def advance(self, now: float) -> list[Flip]:
        """Bring every check whose deadline has passed up to ``now``; returns the flips."""
        return self.write(_tx_advance, now, durable=True)

    def fresh_start(self, now: float, offline_since: float | None) -> list[Check]:
        """Give checks whose deadline passed while the gateway was offline a fresh period."""
        return self.write(_tx_fresh_start, now, offline_since, durable=True)

    def set_setting(self, key: str, value: str) -> None:
        self.write(_tx_set_setting, key, value)

    def setting_or_create(self, key: str, make: Callable[[], str]) -> str:
        """The stored value for ``key``, storing ``make()`` first if there is none."""
        return self.write(_tx_setting_or_create, key, make)

    def add_event(self, check_id: int | None, at: float, kind: str, detail: str | None = None) -> None:
        self.write(_add_event, check_id, at, kind, None, None, detail)


# -------------------------------------------------------------------- transactions


def _load(conn: sqlite3.Connection, where: str, arg: Any) -> Check | None:
    r = conn.execute(f"SELECT {_CHECK_COLUMNS} FROM checks WHERE {where}", (arg,)).fetchone()
    return _check_from_row(r) if r else None


def _tx_add_check(conn: sqlite3.Connection, name: str, token: str, schedule: Schedule,
                  now: float, max_checks: int | None) -> Check:
    if max_checks is not None:
        n = conn.execute("SELECT count(*) FROM checks").fetchone()[0]
        if n >= max_checks:
            raise Conflict(f"the limit of {max_checks} checks is reached")
    try:
        cur = conn.execute(
            "INSERT INTO checks (name, token, period, grace, cron, tz, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
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


def _tx_update_check(conn: sqlite3.Connection, name: str, change: Callable[[Check], Check],
                     now: float, event: str | None) -> tuple[Check, Flip | None]:
    before = _load(conn, "name = ?", name)
    if before is None:
        raise NotFound(name)
    after = change(before)
    if after != before:
        _save_check(conn, after)
        if event:
            _add_event(conn, after.id, now, event)
    return after, _flip(conn, before, after, now, event or "update")


def _tx_record_ping(conn: sqlite3.Connection, token: str | None, name: str | None,
                    kind: PingKind, exit_status: int | None, meta: PingMeta, now: float,
                    create: tuple[str, Schedule, int] | None) -> PingResult | None:
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
    after = st.apply_ping(before, kind, exit_status, now)
    _save_check(conn, after)
    body = meta.body[:BODY_EXCERPT] if meta.body else None
    conn.execute(
        "INSERT INTO pings (check_id, at, kind, exit_status, source, remote_addr, method,"
        " user_agent, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (after.id, now, kind.value, exit_status, meta.source, meta.remote_addr, meta.method,
         meta.user_agent, body),
    )
    if after.n_pings % _PRUNE_EVERY == 0:
        conn.execute(
            "DELETE FROM pings WHERE check_id = ? AND id <= (SELECT id FROM pings"
            " WHERE check_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (after.id, after.id, PING_HISTORY),
        )
    reason = "fail" if after.last_failed else "ping"
    return PingResult(after, _flip(conn, before, after, now, reason), created)


def _tx_advance(conn: sqlite3.Connection, now: float) -> list[Flip]:
    flips = []
    rows = conn.execute(
        f"SELECT {_CHECK_COLUMNS} FROM checks WHERE next_deadline IS NOT NULL"
        " AND next_deadline <= ?", (now,)).fetchall()
    for row in rows:
        before = _check_from_row(row)
        try:
            after = st.refresh(before, now)
        except Exception:
            # A poison row (say, a cron expression a library upgrade no longer accepts) must not
            # crash-loop the watchdog: log it, push its deadline an hour out, go on.
            logger.exception("cannot evaluate check id=%d; retrying in an hour", before.id)
            after = dataclasses.replace(before, next_deadline=now + 3600)
        if after.next_deadline is not None and after.next_deadline <= now:
            after = dataclasses.replace(after, next_deadline=now + 1)  # never spin on one row
        _save_check(conn, after)
        flip = _flip(conn, before, after, now, "deadline")
        if flip:
            flips.append(flip)
    return flips


def _tx_fresh_start(conn: sqlite3.Connection, now: float, offline_since: float | None) -> list[Check]:
    reset = []
    rows = conn.execute(
        f"SELECT {_CHECK_COLUMNS} FROM checks WHERE next_deadline IS NOT NULL"
        " AND next_deadline <= ?", (now,)).fetchall()
    for row in rows:
        before = _check_from_row(row)
        ev = st.evaluate(before, now)
        if ev.down_at is None or (offline_since is not None and ev.down_at < offline_since):
            continue  # went down while we were running: the watchdog will flip it now
        after = st.apply_fresh_start(before, now)
        if after != before:
            _save_check(conn, after)
            reset.append(after)
    return reset


def _tx_set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                 " SET value = excluded.value", (key, value))


def _tx_setting_or_create(conn: sqlite3.Connection, key: str, make: Callable[[], str]) -> str:
    r = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    if r:
        return str(r[0])
    value = make()
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))
    return value
